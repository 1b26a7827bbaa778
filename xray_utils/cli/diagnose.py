"""``python -m xray_utils diagnose``: the end-to-end pipeline on image files, from a terminal.

::

    python -m xray_utils diagnose [--checkpoints DIR] [--json] [--heatmap-dir DIR] [--top K] FILE...

Prints a readable verdict per file (or, with ``--json``, one JSON array of records with the keys
``file, ok, error, is_xray, xray_type, type_probs, findings, heatmaps``).  With
``--heatmap-dir`` the Grad-CAM overlays of each chest film's top ``K`` findings are written
there as PNG files and listed in the output.

Exit status: 0 when every file was diagnosed, 1 when any file could not be read (the others
are still diagnosed), 2 for usage errors (bad arguments, no checkpoints).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from xray_utils.config import paper
from xray_utils.diagnose import rule as chain
from xray_utils.diagnose.diagnoser import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_TOP_K,
    CheckpointError,
    CheckpointsMissing,
    Diagnoser,
    Diagnosis,
    default_checkpoints_dir,
    write_heatmaps,
)

PROG = "python -m xray_utils diagnose"
DESCRIPTION = ("Diagnose X-ray images with the three trained modules chained as in the paper: "
               "X-ray or not -> X-ray type -> chest findings, with Grad-CAM heatmaps.")
EPILOG = ("exit status: 0 all files diagnosed, 1 some file could not be read, 2 usage error.\n"
          "For teaching and research only; not a medical device.")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``diagnose`` arguments to ``parser``."""
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="image files: PNG, JPEG, TIFF, BMP or DICOM")
    parser.add_argument("--checkpoints", metavar="DIR", default=None,
                        help="folder with xray_or_not/, xray_type/ and chest/ checkpoints "
                             f"(default: the demo run, {default_checkpoints_dir()})")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON array of records instead of the readable report")
    parser.add_argument("--heatmap-dir", metavar="DIR", default=None,
                        help="write Grad-CAM overlays (PNG) of each chest film's top findings here")
    parser.add_argument("--top", metavar="K", type=_positive_int, default=DEFAULT_TOP_K,
                        help=f"findings to list and explain per chest film (default "
                             f"{DEFAULT_TOP_K}, at most {len(paper.FINDINGS)})")
    parser.add_argument("--device", default="auto",
                        help="torch device: auto (GPU when present), cpu, cuda, cuda:1 ...")
    parser.add_argument("--batch-size", metavar="N", type=_positive_int,
                        default=DEFAULT_BATCH_SIZE, help="images per forward pass")
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``diagnose`` sub-command (``run`` is its ``func``)."""
    parser = subparsers.add_parser(
        "diagnose", help="diagnose image files (X-ray? type? chest findings + heatmaps)",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(parser)
    parser.set_defaults(func=run)
    return parser


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Diagnose ``args.files``; print the report or JSON; return the exit status."""
    folder = Path(args.checkpoints).expanduser() if args.checkpoints else default_checkpoints_dir()
    if not folder.is_dir():
        return _fail(f"checkpoints folder not found: {folder}. Run notebooks 01-03 (make demo) "
                     "first, or pass --checkpoints <run_dir>/checkpoints.")
    top = min(args.top, len(paper.FINDINGS))
    try:
        diagnoser = Diagnoser(folder, device=args.device, top_k=top,
                              batch_size=getattr(args, "batch_size", DEFAULT_BATCH_SIZE))
    except (CheckpointsMissing, CheckpointError, ValueError) as exc:  # ValueError: --device
        return _fail(str(exc))

    results = diagnoser.diagnose(args.files, heatmaps=top if args.heatmap_dir else False)
    written: list[dict[str, str] | None] = [None] * len(results)
    if args.heatmap_dir:
        try:
            for i, d in enumerate(results):
                if d.heatmaps:
                    stem = Path(d.file).stem if d.file else "image"
                    written[i] = write_heatmaps(d, args.heatmap_dir, prefix=f"{i:03d}_{stem}")
        except OSError as exc:
            return _fail(f"cannot write heatmaps into {args.heatmap_dir}: {exc}")

    if args.json:
        records = [d.to_json(paths) for d, paths in zip(results, written)]
        print(json.dumps(records, indent=2))
    else:
        print(format_diagnoses(results, written, top))
    return 1 if any(not d.ok for d in results) else 0


def format_diagnoses(results: Sequence[Diagnosis],
                     heatmap_paths: Sequence[dict[str, str] | None] | None = None,
                     top: int = DEFAULT_TOP_K) -> str:
    """The readable report: one block per file, then a summary line."""
    heatmap_paths = heatmap_paths or [None] * len(results)
    lines: list[str] = []
    n = len(results)
    for i, (d, paths) in enumerate(zip(results, heatmap_paths), start=1):
        lines.append(f"[{i}/{n}] {d.file if d.file is not None else '<array>'}")
        pad = " " * 6
        if not d.ok:
            lines.append(f"{pad}ERROR: {d.error}")
            continue
        verdict = "yes" if d.stage != "not_xray" else "no"
        lines.append(f"{pad}X-ray?    {verdict} (P(X-ray) = {d.is_xray:.3f})")
        if d.stage == "not_xray":
            lines.append(f"{pad}stop: not an X-ray, modules II-III not run")
            continue
        ranked = sorted(d.type_probs.items(), key=lambda kv: -kv[1])
        others = ", ".join(f"{t} {p:.2f}" for t, p in ranked[1:3])
        lines.append(f"{pad}type      {d.xray_type} (P = {ranked[0][1]:.3f}; next: {others})")
        if d.stage == "type_only":
            lines.append(f"{pad}stop: not a chest film, module III not run")
            continue
        tops = " | ".join(f"{f} {p:.3f}" for f, p in d.top_findings(top))
        lines.append(f"{pad}findings  top {top}: {tops}")
        present = [f for f, p in d.findings.items() if p >= chain.FINDING_THRESHOLD]
        lines.append(f"{pad}          P >= {chain.FINDING_THRESHOLD:g}: "
                     f"{', '.join(present) if present else 'none'}")
        if paths:
            lines.append(f"{pad}heatmaps  " + f"\n{pad}          ".join(paths.values()))
    ok = [d for d in results if d.ok]
    stages = [d.stage for d in ok]
    lines.append(
        f"\n{n} file(s): {len(ok)} diagnosed ({stages.count('chest')} chest, "
        f"{stages.count('type_only')} other X-ray, {stages.count('not_xray')} not X-ray), "
        f"{n - len(ok)} could not be read.")
    lines.append("For teaching and research only; not a medical device.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (same arguments as the sub-command); returns the exit status."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
