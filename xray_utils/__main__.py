"""Command line: ``python -m xray_utils {run,diagnose,...}``."""
from __future__ import annotations

import argparse
import importlib
import sys

#: Sub-commands and the modules that implement them (each has ``add_parser(subparsers)``).
_COMMANDS = ("runner", "training", "cli_diagnose", "cli_download", "bench", "transfer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m xray_utils",
        description="X-ray diagnosis tutorial: run the notebooks, diagnose images, benchmarks.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"xray_utils.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"xray_utils.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func = getattr(args, "func", None) or getattr(args, "handler", None)
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
