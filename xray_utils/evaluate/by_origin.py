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
from xray_utils.sources.demo import is_generated

ORIGINS: tuple[str, ...] = ("real", "generated")
#: Metric files' section for these figures in ``metrics.json``.
SECTION = "by_origin"


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


# ---------------------------------------------------------------------------------------------
# Module III within each public copy of the NIH films: a guard against source shortcuts
#: A copy with fewer real test films than this is pooled into "other copies".
MIN_COPY_FILMS = 60


def nih_copy_of(paths: pd.Series, pack_dir: str | Path | None = None) -> pd.Series:
    """The public repository each shipped NIH film was copied from (the pack manifest's
    ``source_repo``), by image path; ``""`` for images that are not shipped NIH films."""
    from xray_utils.config.paths import OPEN_FILMS_DIR
    from xray_utils.sources.open_films import read_pack_manifest

    folder = Path(pack_dir or OPEN_FILMS_DIR).expanduser().resolve()
    pack = read_pack_manifest(folder)
    nih = pack[pack["source"] == "nih_cxr14"]
    repo = {str(folder / f): r for f, r in zip(nih["file"], nih["source_repo"])}
    return pd.Series([repo.get(str(Path(p).resolve()), "") for p in paths], index=paths.index)


def chest_by_copy(predictions_dir: str | Path, train_manifest: str | Path | None = None,
                  n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = CI_LEVEL,
                  min_films: int = MIN_COPY_FILMS, pack_dir: str | Path | None = None
                  ) -> dict[str, Any]:
    """Module III's mean AUC on the real NIH test films of each public copy (copies with fewer
    than ``min_films`` test films pooled), beside the AUC over all of them.

    With ``train_manifest`` (Module III's task manifest) also the **copy-only baseline**: every
    test film scored by the share of its copy's *training* films that have the finding. That
    predictor knows nothing but where a film came from; its AUC is what a pure source shortcut
    could reach, and a model far above it within every copy reads the films, not their source.
    """
    from xray_utils.data.manifests import findings_to_vector, read_task_manifest

    files = prediction_files(predictions_dir)
    test = load_predictions(files["chest_test"])
    val = load_predictions(files["chest_val"])
    test = test[~is_generated(test["source"])].reset_index(drop=True)
    val = val[~is_generated(val["source"])].reset_index(drop=True)
    kw = {"n_resamples": n_resamples, "seed": seed, "level": level}
    copy = nih_copy_of(test["path"], pack_dir)
    test = test[copy != ""].reset_index(drop=True)
    copy = copy[copy != ""].reset_index(drop=True)
    if test.empty:  # no shipped NIH film among the test films (the public and full profiles)
        return {"min_films": min_films, "copies": {}, "all": {"n_test": 0}}
    counts = copy.value_counts()
    small = set(counts[counts < min_films].index)
    group = copy.where(~copy.isin(small), "other copies")
    out: dict[str, Any] = {"min_films": min_films, "copies": {}}

    def summary(part: pd.DataFrame) -> dict[str, Any]:
        m = chest_metrics(part, val, **kw)
        return {"n_test": m["n_test"], "mean_auc": m["mean_auc"], "mean_auc_ci": m["mean_auc_ci"],
                "n_auc_defined": m["n_auc_defined"], "auc": m["auc"],
                "n_positive": {f: m["per_class"][f]["n_positive_test"] for f in m["findings"]}}

    out["all"] = summary(test)
    for name in [*counts.index[counts >= min_films], *(["other copies"] if small else [])]:
        out["copies"][name] = summary(test[(group == name).to_numpy()].reset_index(drop=True))
    if train_manifest is not None:
        from sklearn.metrics import roc_auc_score

        from xray_utils.config import paper

        train = read_task_manifest(train_manifest)
        train = train[(train["split"] == "train") & ~is_generated(train["source"])]
        train_copy = nih_copy_of(train["path"], pack_dir)
        prevalence = (pd.DataFrame(findings_to_vector(train["label"]), columns=list(paper.FINDINGS))
                      .groupby(train_copy.to_numpy()).mean())
        y = findings_to_vector(test["truth"])
        overall = prevalence.mean()
        scores = np.stack([prevalence.loc[c].to_numpy() if c in prevalence.index
                           else overall.to_numpy() for c in copy])
        aucs = {f: float(roc_auc_score(y[:, i], scores[:, i]))
                if 0 < y[:, i].sum() < len(y) else np.nan for i, f in enumerate(paper.FINDINGS)}
        out["copy_only_baseline"] = {"auc": aucs, "mean_auc": float(np.nanmean(list(aucs.values())))}
    return to_jsonable(out)


def copy_table(by_copy: Mapping[str, Any]) -> pd.DataFrame:
    """One row per copy (and all real NIH test films): films, mean AUC with CI, findings scored."""
    if not by_copy["all"]["n_test"]:
        return pd.DataFrame(columns=["copy", "test films", "mean AUC (95 % CI)",
                                     "findings with positives"]).set_index("copy")
    rows = [("all real NIH test films", by_copy["all"])]
    rows += list(by_copy["copies"].items())
    records = [{"copy": name, "test films": m["n_test"],
                "mean AUC (95 % CI)": _fmt(m["mean_auc"], m["mean_auc_ci"]),
                "findings with positives": m["n_auc_defined"]} for name, m in rows]
    if "copy_only_baseline" in by_copy:
        records.append({"copy": "copy-only baseline (all films)", "test films": by_copy["all"]["n_test"],
                        "mean AUC (95 % CI)": _fmt(by_copy["copy_only_baseline"]["mean_auc"], None),
                        "findings with positives": by_copy["all"]["n_auc_defined"]})
    return pd.DataFrame(records).set_index("copy")
