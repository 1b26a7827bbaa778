"""The commands as ``python -m xray_utils COMMAND ARGS...`` runs them: each returns the exit status."""
from __future__ import annotations

from typing import Sequence

from xray_utils.cli import main


def diagnose(argv: Sequence[str]) -> int:
    """``python -m xray_utils diagnose ARGV...``."""
    return main(["diagnose", *argv])
