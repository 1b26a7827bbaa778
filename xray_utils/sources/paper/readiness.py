"""Readiness of a dataset folder, decided by the adapter's own reading.

``problems(root)`` of every adapter is :func:`problems_of` its ``load``: empty exactly when
``load(root)`` succeeds, else the one message ``load`` would raise (which names the file and
the fix).  A readiness check that guessed from a few files could pass a folder that the full
reading then rejects; this one cannot.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from xray_utils.sources.dataset_spec import DatasetError


def problems_of(load: Callable[..., pd.DataFrame], root: str | Path) -> list[str]:
    """``[]`` when ``load(root)`` (files checked, none dropped) succeeds, else its error message."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return [f"folder {root} is missing"]
    try:
        load(root, check_files=True, drop_missing=False)
    except DatasetError as exc:
        return [str(exc)]
    return []
