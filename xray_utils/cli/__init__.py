"""Command line: ``python -m xray_utils COMMAND ...``.

One convention for every sub-command: a module ``xray_utils.cli.<command>`` with
``add_parser(subparsers)``, which registers the command's arguments and sets ``func`` to the
module's ``run(args)`` (called with the parsed arguments; its return value is the exit status).
The package has no other entry point: ``main(argv)`` below runs any command (``bench`` hands over to
``tools/bench/harness.py``, whose ``run`` it is).  Only the module of the command
being run is imported, so ``diagnose --help`` never loads Catalyst or the notebook runner.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

#: Sub-command -> (module, one-line help).  The help is repeated here so that the top-level
#: ``--help`` does not import any command.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("xray_utils.cli.run", "execute the notebooks in order with papermill"),
    "train": ("xray_utils.cli.train",
              "train one module outside the notebooks (use -p DISTRIBUTED N for N processes)"),
    "diagnose": ("xray_utils.cli.diagnose",
                 "diagnose image files (X-ray? type? chest findings + heatmaps)"),
    "download": ("xray_utils.cli.download",
                 "download the openly licensed datasets of the public profile"),
    "transfer": ("xray_utils.cli.transfer",
                 "score Modules I and II on a labelled folder of films and photographs"),
    "bench": ("xray_utils.cli.bench",
              "measure data, training, inference and Grad-CAM speed against baselines"),
    "app": ("xray_utils.cli.app", "serve the diagnosis demo as a page on 127.0.0.1 (Voila)"),
    "upgrade-checkpoints": ("xray_utils.cli.upgrade_checkpoints",
                            "add the best.json + weights digest to older checkpoints"),
    "export-web": ("xray_utils.cli.export_web",
                   "export the three models to ONNX with a static page that runs them"),
}


def _chosen(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; only the command named in ``argv`` (if any) is imported and fully registered."""
    parser = argparse.ArgumentParser(
        prog="python -m xray_utils",
        description="X-ray diagnosis tutorial: run the notebooks, diagnose images, benchmarks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _chosen(argv)
    for name, (module, help_text) in COMMANDS.items():
        if name == chosen:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:  # pragma: no cover - every registered command sets func
        build_parser([args.command]).parse_args([args.command, "--help"])
        return 2
    return int(func(args) or 0)
