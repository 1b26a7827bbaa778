"""``figures/<profile>/metrics.json``: several notebooks each write their own section."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import pandas as pd

from xray_utils.config.jsonable import to_jsonable

METRICS_FILE = "metrics.json"


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
    tmp.write_text(json.dumps(to_jsonable(metrics), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


#: How far a rerun of the demo profile may move a headline figure (absolute): the README's
#: reproducibility statement, checked by ``tests/test_notebooks_records.py`` against the committed
#: ``figures/demo/metrics.json``.
RERUN_TOLERANCE = 0.03


def headline_figures(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The headline figures the README reports, by name, from a metrics.json (missing sections
    left out): each module on all test images, on the generated and on the real ones, the chain
    and the pointing game."""
    def get(*keys: str) -> Any:
        node: Any = metrics
        for key in keys:
            node = node.get(key) if isinstance(node, Mapping) else None
        return node

    # balanced accuracies are left out: on the real films a type may have a single test film
    per_module = {"Module I accuracy": ("xray_or_not", "accuracy"),
                  "Module II accuracy": ("xray_type", "accuracy"),
                  "Module III mean AUC": ("chest", "mean_auc")}
    wanted: dict[str, tuple[str, ...]] = {**per_module,
                                          "end-to-end accuracy": ("end_to_end", "accuracy"),
                                          "Grad-CAM pointing game": ("gradcam", "mean_pointing")}
    for name, (task, key) in per_module.items():
        for origin in ("generated", "real"):
            wanted[f"{name}, {origin} test images"] = ("by_origin", task, origin, key)
    out = {}
    for name, keys in wanted.items():
        value = get(*keys)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def rerun_differences(new: Mapping[str, Any], old: Mapping[str, Any]) -> pd.DataFrame:
    """Headline figures of two runs side by side with their absolute difference."""
    import pandas as pd

    a, b = headline_figures(new), headline_figures(old)
    rows = [{"figure": k, "rerun": a.get(k), "committed": b.get(k),
             "difference": abs(a[k] - b[k]) if k in a and k in b else None}
            for k in sorted(set(a) | set(b))]
    return pd.DataFrame(rows)
