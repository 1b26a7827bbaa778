"""Figures of the evaluation (the paper's Table II, Figs. 2-4, Table III) and learning curves.

Each function draws from metrics (:mod:`xray_utils.evaluate.metrics`) or prediction tables,
saves a PNG (:func:`xray_utils.data.plots.save_figure`) and returns the matplotlib figure, so a
notebook shows it and a script can close it.  File names the notebooks use are in :data:`FIGURE_NAMES`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from xray_utils.config import paper
from xray_utils.data.imageio import ImageReadError, read_gray
from xray_utils.data.plots import save_figure
from xray_utils.evaluate.metrics import STAGE_LABELS, STAGES, roc_curves, table3_frame

#: Stable file names in ``figures/<profile>/``.
FIGURE_NAMES: Mapping[str, str] = {
    "xray_or_not_confusion": "xray_or_not_confusion.png",
    "xray_or_not_misclassified": "xray_or_not_misclassified.png",
    "xray_type_confusion": "xray_type_confusion.png",
    "chest_roc": "chest_roc.png",
    "chest_auc_table3": "chest_auc_table3.png",
    "end_to_end": "end_to_end.png",
    "table3": "table3.md",
    "by_origin": "by_origin.png",
    "xray_type_confusion_real": "xray_type_confusion_real.png",
}
HISTORY_COLUMNS = ("epoch", "loader", "metric", "value")


def figure_path(figures_dir: str | Path, key: str) -> Path:
    """``<figures_dir>/<file>`` of one of :data:`FIGURE_NAMES`."""
    return Path(figures_dir) / FIGURE_NAMES[key]


def format_ci(ci: Sequence[float] | None) -> str:
    """A confidence interval for a sentence: ``[0.964, 0.992]``, or ``n/a`` when there is none."""
    return "n/a" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
_PRETTY = {"xray": "X-ray", "not_xray": "not X-ray"}


def _count_pct_annotations(cm: np.ndarray) -> np.ndarray:
    totals = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = np.where(totals > 0, 100.0 * cm / totals, np.nan)
    return np.array([[f"{c:d}\n({p:.1f} %)" if np.isfinite(p) else f"{c:d}"
                      for c, p in zip(rc, rp)] for rc, rp in zip(cm, pct)])


def plot_xray_or_not_confusion(section: Mapping[str, Any], out_png: str | Path) -> plt.Figure:
    """Module I's confusion matrix laid out like Table II, beside the paper's Table II.

    Rows are the actual class (X-ray, non-X-ray), columns the predicted one; colour is the
    row-normalised rate so both panels share one scale.
    """
    ours = np.asarray(section["confusion"], dtype=int)
    theirs = np.asarray(paper.TABLE_II, dtype=int)
    labels = [_PRETTY.get(c, c) for c in section["labels"]]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
    panels = [(ours, f"Ours (test, n={ours.sum()}): accuracy {section['accuracy']:.3f}"),
              (theirs, f"Paper, Table II: accuracy {paper.table_ii_accuracy():.3f} "
                       f"(printed {paper.PAPER_RESULTS['xray_or_not_accuracy']:.3f})")]
    for ax, (cm, title) in zip(axes, panels):
        totals = cm.sum(axis=1, keepdims=True)
        rate = np.divide(cm, totals, out=np.zeros_like(cm, dtype=float), where=totals > 0)
        sns.heatmap(rate, annot=_count_pct_annotations(cm), fmt="", cmap="Blues", vmin=0,
                    vmax=1, cbar=False, square=True, ax=ax, annot_kws={"fontsize": 10},
                    xticklabels=[f"predicted {c}" for c in labels],
                    yticklabels=[f"actual {c}" for c in labels])
        ax.set_title(title, fontsize=9.5)
        ax.tick_params(axis="y", rotation=0)
    fig.suptitle("Module I, X-ray or not: confusion matrix (rows actual, columns predicted)",
                 fontsize=11)
    fig.tight_layout()
    save_figure(fig, out_png)
    return fig


def plot_misclassified(errors: pd.DataFrame, out_png: str | Path, max_images: int = 12,
                       ncols: int = 6) -> plt.Figure:
    """Grid of misclassified Module I test images (Fig. 2), most confident mistakes first.

    ``errors`` is :func:`xray_utils.evaluate.metrics.xray_or_not_errors`; each tile says
    actual -> predicted and Module I's probability of the predicted class.
    """
    rows = errors.head(max_images)
    if rows.empty:
        fig, ax = plt.subplots(figsize=(6, 1.6))
        ax.text(0.5, 0.5, "No misclassified test images", ha="center", va="center")
        ax.axis("off")
        save_figure(fig, out_png)
        return fig
    n = len(rows)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.1 * ncols, 2.6 * nrows + 0.4),
                             squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (_, r) in zip(axes.ravel(), rows.iterrows()):
        try:
            ax.imshow(read_gray(r["path"]), cmap="gray", vmin=0, vmax=255)
        except ImageReadError:
            ax.text(0.5, 0.5, "unreadable", ha="center", va="center")
        ax.set_title(f"{_PRETTY.get(r['truth'], r['truth'])} → "
                     f"{_PRETTY.get(r['predicted'], r['predicted'])}\n"
                     f"p = {r['confidence']:.2f}", fontsize=8.5)
    fig.suptitle(f"Module I: misclassified test images ({len(errors)} in all, "
                 f"{n} most confident shown)", fontsize=10.5)
    save_figure(fig, out_png)
    return fig


def plot_xray_type_confusion(section: Mapping[str, Any], out_png: str | Path) -> plt.Figure:
    """Module II's confusion matrix: counts and row-normalised side by side (Fig. 3)."""
    classes = list(section["classes"])
    counts = np.asarray(section["confusion"], dtype=int)
    norm = np.array([[np.nan if v is None else v for v in row]
                     for row in section["confusion_normalized"]], dtype=float)
    # empty cells stay blank so the few confusions stand out
    count_text = np.where(counts > 0, counts.astype(str), "")
    norm_text = np.where(counts > 0, np.char.mod("%.2f", np.nan_to_num(norm)), "")
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.8))
    sns.heatmap(counts, annot=count_text, fmt="", cmap="Blues", cbar=False, square=True,
                ax=axes[0], xticklabels=classes, yticklabels=classes, annot_kws={"fontsize": 7})
    axes[0].set_title(f"Counts (test, n={counts.sum()})")
    sns.heatmap(norm, annot=norm_text, fmt="", cmap="Blues", vmin=0, vmax=1, square=True,
                ax=axes[1], xticklabels=classes, yticklabels=classes,
                annot_kws={"fontsize": 6.5}, cbar_kws={"shrink": 0.7})
    axes[1].set_title("Row-normalised (recall on the diagonal; blank = no image)")
    for ax in axes:
        ax.set_xlabel("predicted type")
        ax.set_ylabel("actual type")
    fig.suptitle(f"Module II, X-ray type: accuracy {section['accuracy']:.3f} (paper "
                 f"{paper.PAPER_RESULTS['xray_type_accuracy']:.3f})", fontsize=12)
    fig.tight_layout()
    save_figure(fig, out_png)
    return fig


def plot_roc_curves(test_df: pd.DataFrame, out_png: str | Path) -> plt.Figure:
    """ROC curves of the 14 findings with the AUC in the legend (Fig. 4).

    Findings without positives (or negatives) in the test split have no curve and are listed
    as "n/a" in the legend.
    """
    curves = roc_curves(test_df)
    fig, ax = plt.subplots(figsize=(7.2, 6.4))
    colors = sns.color_palette("tab10", 10)
    for i, f in enumerate(paper.FINDINGS):
        style = {"color": colors[i % 10], "lw": 1.4, "ls": "-" if i < 10 else "--"}
        if f in curves:
            fpr, tpr, auc = curves[f]
            ax.plot(fpr, tpr, label=f"{f.replace('_', ' ')} ({auc:.2f})", **style)
        else:
            ax.plot([], [], label=f"{f.replace('_', ' ')} (n/a)", **{**style, "ls": ":"})
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (1 - specificity)",
           ylabel="true positive rate (sensitivity)",
           title=f"Module III: ROC curves on the test split (n={len(test_df)})")
    ax.legend(title="finding (AUC)", fontsize=7.5, loc="lower right")
    fig.tight_layout()
    save_figure(fig, out_png)
    return fig


def plot_table3(chest: Mapping[str, Any], out_png: str | Path) -> plt.Figure:
    """Table III as a dot plot: our AUC (with 95 % CI) beside the published columns (both
    versions of the paper)."""
    t = table3_frame(chest)
    y = np.arange(len(t))[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 6.8))
    styles = {"ChestX-ray14": ("s", "0.6"), "CheXNet": ("^", "tab:green"),
              "paper": ("D", "tab:orange"), "published": ("d", "tab:red")}
    names = {"paper": "paper (preprint)", "published": "paper (EMBC 2020)"}
    for col, (marker, color) in styles.items():
        ax.scatter(t[col], y, marker=marker, color=color, s=30, label=names.get(col, col), zorder=2)
    ours = t["ours"].astype(float).to_numpy()
    lo = t["ours_ci_low"].astype(float).to_numpy()
    hi = t["ours_ci_high"].astype(float).to_numpy()
    has_ci = np.isfinite(lo) & np.isfinite(ours)
    err = [ours[has_ci] - lo[has_ci], hi[has_ci] - ours[has_ci]]
    ax.errorbar(ours[has_ci], y[has_ci], xerr=err,
                fmt="o", color="tab:blue", ms=6, capsize=2, label="ours (95 % CI)", zorder=3)
    no_ci = ~has_ci & np.isfinite(ours)
    ax.scatter(ours[no_ci], y[no_ci], marker="o", color="tab:blue", s=36, zorder=3)
    for yi, v in zip(y, ours):
        if not np.isfinite(v):
            ax.annotate("ours: n/a", (0.5, yi), fontsize=7, color="tab:blue", va="center")
    ax.axhline(0.5, color="0.8", lw=0.8)
    ax.set_yticks(y, [("mean" if n == "mean" else n.replace("_", " ")) for n in t.index])
    ax.set_xlim(0.4, 1.0)
    ax.set_xlabel("ROC AUC")
    ax.set_title("Module III: AUC per finding, ours vs Table III")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    save_figure(fig, out_png)
    return fig


def plot_end_to_end(section: Mapping[str, Any], out_png: str | Path) -> plt.Figure:
    """Where the chained pipeline loses images, and its accuracy beside the paper's 0.91."""
    prop = pd.DataFrame(section["propagation"]).set_index("group").loc[list(STAGES)]
    outcome_cols = [("correct", "tab:green"), ("lost_at_I", "tab:red"),
                    ("lost_at_II", "tab:orange"), ("lost_at_III", "tab:purple")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.3, 1]})
    left = np.zeros(len(prop))
    ypos = np.arange(len(prop))[::-1]
    for col, color in outcome_cols:
        vals = prop[col].to_numpy(dtype=float)
        axes[0].barh(ypos, vals, left=left, color=color, label=col.replace("_", " "))
        for yi, l, v in zip(ypos, left, vals):
            if v > 0:
                axes[0].text(l + v / 2, yi, str(int(v)), ha="center", va="center",
                             fontsize=8, color="white")
        left += vals
    axes[0].set_yticks(ypos, [f"{STAGE_LABELS[g]} (n={int(n)})" for g, n in
                              zip(prop.index, prop["n"])])
    axes[0].set_xlabel("test images")
    axes[0].set_title("Where images are lost along I → II → III")
    axes[0].legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4,
                   frameon=False)

    bars = [("ours, strict", section["accuracy"], section.get("accuracy_ci")),
            ("ours, per-label", section["accuracy_per_label"],
             section.get("accuracy_per_label_ci"))]
    product = section.get("product_of_module_accuracies")
    if product:
        bars.append(("ours, product I×II×III", product["value"], product.get("ci")))
    bars += [("paper, printed", section["paper"]["accuracy_printed"], None),
             ("paper, product", section["paper"]["product_of_printed_accuracies"], None)]
    xs = np.arange(len(bars))
    for x, (name, v, ci) in zip(xs, bars):
        color = "tab:orange" if name.startswith("paper") else "tab:blue"
        err = None if not ci else [[v - ci[0]], [ci[1] - v]]
        axes[1].bar(x, v, color=color, yerr=err, capsize=3)
        axes[1].text(x, (ci[1] if ci else v) + 0.02, f"{v:.3f}", ha="center", fontsize=8)
    axes[1].set_xticks(xs, [b[0] for b in bars], rotation=25, ha="right", fontsize=8)
    axes[1].set_ylim(0, 1.1)
    axes[1].set_ylabel("end-to-end accuracy")
    axes[1].set_title("End-to-end accuracy (bars: 95 % CI)")
    fig.tight_layout()
    save_figure(fig, out_png)
    return fig


def plot_learning_curves(history_df: pd.DataFrame, out_png: str | Path,
                         title: str | None = None) -> plt.Figure:
    """One panel per metric, one line per loader (``train``/``valid``), value against epoch.

    ``history_df`` has the columns ``epoch``, ``loader``, ``metric``, ``value`` (long format,
    one row per epoch, loader and metric).
    """
    missing = [c for c in HISTORY_COLUMNS if c not in history_df.columns]
    if missing:
        raise ValueError(f"history table lacks column(s) {missing}; expected long format with "
                         f"columns {list(HISTORY_COLUMNS)} (one row per epoch, loader, metric)")
    if history_df.empty:
        raise ValueError("history table is empty: nothing to plot")
    metrics = list(dict.fromkeys(history_df["metric"]))
    ncols = min(3, len(metrics))
    nrows = int(np.ceil(len(metrics) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.3 * nrows), squeeze=False)
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    for ax, metric in zip(axes.ravel(), metrics):
        sub = history_df[history_df["metric"] == metric].astype({"value": float})
        sns.lineplot(data=sub.sort_values("epoch"), x="epoch", y="value", hue="loader",
                     marker="o", markersize=4, ax=ax, errorbar=None)
        ax.set(title=str(metric), xlabel="epoch", ylabel="")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, out_png)
    return fig
