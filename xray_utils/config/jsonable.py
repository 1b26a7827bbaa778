"""One JSON converter for every JSON file the project writes: ``metrics.json``, a checkpoint's
``best.json`` (with the training settings it records) and the benchmark's results."""
from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any, Callable, Mapping

import numpy as np


def to_jsonable(obj: Any, default: Callable[[Any], Any] | None = None) -> Any:
    """Plain-JSON version of ``obj``: mappings -> dicts with string keys; lists, tuples, sets and
    arrays -> lists; NumPy scalars -> Python numbers; paths -> strings; NaN and infinities ->
    None (JSON has no NaN).  Any other object is returned as it is, or as ``default(obj)`` when
    ``default`` is given (``str`` for settings that may hold any object)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v, default) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset, np.ndarray)):
        return [to_jsonable(v, default) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, PurePath):
        return str(obj)
    if obj is None or isinstance(obj, str) or default is None:
        return obj
    return default(obj)
