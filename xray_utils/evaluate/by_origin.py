"""Each module scored twice: on the generated test images and on the shipped real test films.

The demo trains on generated phantoms plus the real films of ``data/open-films``; its test splits
hold both (in the public and full profiles every image is real, and the generated part is
empty).  :func:`metrics_by_origin` splits every module's test predictions by ``source`` and
computes the same metrics (with bootstrap CIs) on each part, so a chapter can show what the gap
between phantoms and real films teaches.  :func:`origin_table` lays the headline figures side by
side; :func:`plot_origin_gap` draws them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from xray_utils.data.plots import save_figure
from xray_utils.evaluate.metrics import (
    CI_LEVEL,
    DEFAULT_RESAMPLES,
    chest_metrics,
    prediction_files,
    to_jsonable,
    xray_or_not_metrics,
    xray_type_metrics,
)
from xray_utils.evaluate.predictions import load_predictions
from xray_utils.sources.demo import SOURCE as GENERATED_SOURCE

ORIGINS: tuple[str, ...] = ("generated", "real")
#: Metric files' section for these figures in ``metrics.json``.
SECTION = "by_origin"


def is_generated(source: pd.Series) -> pd.Series:
    """True for images the demo generator drew; everything else is a real image (the shipped
    films in the demo, every image of the public and full profiles)."""
    return source.astype(str) == GENERATED_SOURCE


def _parts(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    real = ~is_generated(df["source"]).to_numpy()
    return {"generated": df[~real].reset_index(drop=True), "real": df[real].reset_index(drop=True)}


def metrics_by_origin(predictions_dir: str | Path, n_resamples: int = DEFAULT_RESAMPLES,
                      seed: int = 0, level: float = CI_LEVEL) -> dict[str, Any]:
    """Module I accuracy, Module II accuracy / balanced accuracy / confusion and Module III
    AUCs, each on the generated and on the real part of the test split (``None`` for a part
    without images).  Module III's thresholds come from the validation split as a whole."""
    files = prediction_files(predictions_dir)
    kw = {"n_resamples": n_resamples, "seed": seed, "level": level}
    chest_val = load_predictions(files["chest_val"])
    out: dict[str, Any] = {}
    for task, key in (("xray_or_not", "xray_or_not_test"), ("xray_type", "xray_type_test"),
                      ("chest", "chest_test")):
        df = load_predictions(files[key])
        out[task] = {}
        for origin, part in _parts(df).items():
            if part.empty:
                out[task][origin] = None
            elif task == "xray_or_not":
                out[task][origin] = xray_or_not_metrics(part, **kw)
            elif task == "xray_type":
                out[task][origin] = xray_type_metrics(part, **kw)
            else:
                out[task][origin] = chest_metrics(part, chest_val, **kw)
    return to_jsonable(out)


def _fmt(value: float | None, ci: list[float] | None) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")


def origin_table(by_origin: Mapping[str, Any]) -> pd.DataFrame:
    """One row per module and figure, columns ``generated`` / ``real`` (value and 95 % CI) and
    the number of test images of each part."""
    rows = []
    spec = [("Module I: accuracy", "xray_or_not", "accuracy", "accuracy_ci", "n"),
            ("Module II: accuracy", "xray_type", "accuracy", "accuracy_ci", "n"),
            ("Module II: balanced accuracy", "xray_type", "balanced_accuracy", None, "n"),
            ("Module III: mean AUC", "chest", "mean_auc", "mean_auc_ci", "n_test")]
    for label, task, key, ci_key, n_key in spec:
        row: dict[str, Any] = {"figure": label}
        for origin in ORIGINS:
            m = by_origin[task][origin]
            row[origin] = _fmt(m[key], m.get(ci_key) if ci_key else None) if m else "n/a"
            row[f"n {origin}"] = m[n_key] if m else 0
        rows.append(row)
    return pd.DataFrame(rows).set_index("figure")


def plot_origin_gap(by_origin: Mapping[str, Any], out: str | Path | None = None):
    """Bar chart: each module's headline figure on generated vs real test images, with CIs."""
    import matplotlib.pyplot as plt

    spec = [("I: accuracy", "xray_or_not", "accuracy", "accuracy_ci"),
            ("II: accuracy", "xray_type", "accuracy", "accuracy_ci"),
            ("III: mean AUC", "chest", "mean_auc", "mean_auc_ci")]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.38
    for k, (origin, colour) in enumerate(zip(ORIGINS, ("#8da0cb", "#fc8d62"))):
        values, lows, highs = [], [], []
        for _, task, key, ci_key in spec:
            m = by_origin[task][origin]
            v = m[key] if m and m[key] is not None else np.nan
            ci = (m.get(ci_key) or [v, v]) if m else [np.nan, np.nan]
            values.append(v)
            lows.append(v - ci[0])
            highs.append(ci[1] - v)
        x = np.arange(len(spec)) + (k - 0.5) * width
        ax.bar(x, values, width, yerr=[lows, highs], capsize=3, color=colour,
               label=f"{origin} test images")
    ax.set_xticks(np.arange(len(spec)), [s[0] for s in spec])
    ax.set_ylim(0.0, 1.05)
    ax.axhline(0.5, color="grey", lw=0.6, ls=":")
    ax.set_ylabel("score (95 % CI)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("The same models on generated and on real test images")
    fig.tight_layout()
    if out is not None:
        save_figure(fig, out, bbox_inches=None)
    return fig
