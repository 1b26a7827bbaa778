"""``python -m xray_utils bench``: the performance figures.

The harness is not part of the tutorial's package: it lives in ``tools/bench/harness.py`` at the
top of the repository and is imported only when this command runs.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from xray_utils.config.paths import REPO_ROOT

HARNESS = REPO_ROOT / "tools" / "bench" / "harness.py"


def _harness():
    """The harness module, imported from the repository's ``tools`` folder."""
    if not HARNESS.is_file():
        raise SystemExit(f"The benchmark harness {HARNESS} is missing: `bench` runs from a clone of the "
                         "repository (pip install -e .), not from an installed wheel.")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module("tools.bench.harness")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``bench`` (the harness defines its arguments)."""
    _harness().add_parser(sub)
