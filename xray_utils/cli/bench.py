"""``python -m xray_utils bench``: the performance figures.

The harness is :mod:`xray_utils.bench.harness`.
"""
from __future__ import annotations

from xray_utils.bench.harness import add_parser

__all__ = ["add_parser"]
