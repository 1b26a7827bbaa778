"""``figures/<profile>/metrics.json``: several notebooks each write their own section."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

METRICS_FILE = "metrics.json"


def _default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_metrics(figures_dir: str | Path) -> dict[str, Any]:
    """The current metrics (empty dict when none were written yet)."""
    path = Path(figures_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def update_metrics(figures_dir: str | Path, section: str, data: Mapping[str, Any],
                   profile: str | None = None) -> Path:
    """Replace ``section`` of metrics.json with ``data`` (other sections kept); atomic write."""
    path = Path(figures_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = read_metrics(figures_dir)
    if profile is not None:
        metrics["profile"] = profile
    metrics[section] = data
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=False, default=_default) + "\n")
    os.replace(tmp, path)
    return path
