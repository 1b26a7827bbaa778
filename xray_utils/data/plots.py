"""Figures and tables about the data: galleries per class, a batch, counts beside Table I, and
the one figure saver every chapter and module uses (:func:`save_figure`, :data:`DPI`)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from xray_utils.config import paper
from xray_utils.data.imageio import read_gray
from xray_utils.data.manifests import decode_boxes


def as_text(text: str) -> str:
    """``text`` (a file name, an error message) shown literally in a figure: every ``$`` is
    escaped, so matplotlib never reads it as mathtext (``film_$x_1_2$.dcm`` would raise while
    drawing).  Works with wrapped text too, which ignores ``parse_math=False``."""
    return str(text).replace("$", r"\$")


def _grid(n: int, cols: int) -> tuple[plt.Figure, np.ndarray]:
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.9, rows * 2.1))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes:
        ax.axis("off")
    return fig, axes


#: Dots per inch of every saved figure.
DPI = 110


def save_figure(fig: plt.Figure, out_png: str | Path, bbox_inches: str | None = "tight") -> Path:
    """Save ``fig`` as PNG at :data:`DPI` (folders created) and return the path.

    ``bbox_inches="tight"`` crops the saved image to what is drawn; ``None`` keeps the figure's
    own size (for figures laid out with ``fig.tight_layout()``)."""
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, bbox_inches=bbox_inches)
    return out


def _save(fig: plt.Figure, out_png: str | Path | None) -> plt.Figure:
    fig.tight_layout()
    if out_png is not None:
        save_figure(fig, out_png, bbox_inches=None)
    return fig


def type_gallery(images: pd.DataFrame, out_png: str | Path | None = None, per_type: int = 2,
                 seed: int = 0) -> plt.Figure:
    """``per_type`` images of each of the 14 X-ray types plus non-X-ray examples."""
    groups = [(t, images[(images["is_xray"].astype(int) == 1) & (images["xray_type"] == t)])
              for t in paper.XRAY_TYPES]
    groups.append(("not X-ray", images[images["is_xray"].astype(int) == 0]))
    groups = [(name, df) for name, df in groups if len(df)]
    fig, axes = _grid(len(groups) * per_type, per_type * 4)
    k = 0
    for name, df in groups:
        for _, row in df.sample(n=min(per_type, len(df)), random_state=seed).iterrows():
            axes[k].imshow(read_gray(row["path"]), cmap="gray", vmin=0, vmax=255)
            axes[k].set_title(name, fontsize=8)
            k += 1
    return _save(fig, out_png)


def phantom_gallery(out_png: str | Path | None = None, seed: int = 0, size: int = 128) -> plt.Figure:
    """One generated phantom of each of the 14 X-ray types, rendered on the fly (a teaching
    example of what the generator draws; nothing is written to the dataset)."""
    from xray_utils.sources.phantoms import render

    fig, axes = _grid(len(paper.XRAY_TYPES), 7)
    for k, (ax, kind) in enumerate(zip(axes, paper.XRAY_TYPES)):
        ax.imshow(render(kind, (seed, 999, k), size).image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{kind} (phantom)", fontsize=8)
    return _save(fig, out_png)


def draw_boxes(ax: plt.Axes, boxes: Sequence, only: str | None = None,
               scale: float | tuple[float, float] = 1.0, color: str = "red",
               linewidth: float = 1.2) -> None:
    """Draw the manifest's ``(finding, x, y, w, h)`` boxes on an image shown with ``imshow``.

    ``x, y, w, h`` are in pixels of the image the boxes belong to (the file); ``scale`` (one
    factor, or ``(sx, sy)``) takes them to the shown image, e.g. ``shown_width / file_width``.
    ``only``: draw only the boxes of that finding.  Box coordinates put pixel ``col`` at
    ``[col, col + 1)`` and ``imshow`` centres it on ``col``, hence the half-pixel shift.
    """
    sx, sy = (scale, scale) if np.isscalar(scale) else scale
    for finding, x, y, w, h in boxes:
        if only is None or finding == only:
            ax.add_patch(plt.Rectangle((x * sx - 0.5, y * sy - 0.5), w * sx, h * sy, fill=False,
                                       edgecolor=color, linewidth=linewidth))


def findings_gallery(images: pd.DataFrame, out_png: str | Path | None = None,
                     seed: int = 0) -> plt.Figure:
    """For each finding, one chest film that has it, with its box; plus a normal film."""
    chest = images[(images["xray_type"] == "chest") & (images["findings"] != "")]
    fig, axes = _grid(len(paper.FINDINGS) + 1, 5)
    normal = chest[chest["findings"] == paper.NO_FINDING]
    panels = [(paper.NO_FINDING, normal)] + [
        (f, chest[chest["findings"].str.split("|").apply(lambda fs, f=f: f in fs)])
        for f in paper.FINDINGS]
    for ax, (name, df) in zip(axes, panels):
        if df.empty:
            ax.set_title(f"{name}\n(none)", fontsize=8)
            continue
        row = df.sample(n=1, random_state=seed).iloc[0]
        ax.imshow(read_gray(row["path"]), cmap="gray", vmin=0, vmax=255)
        draw_boxes(ax, decode_boxes(row["boxes"]), only=name)
        ax.set_title(name.replace("_", " "), fontsize=8)
    return _save(fig, out_png)


def show_batch(batch: dict, classes: Sequence[str], out_png: str | Path | None = None,
               n: int = 16) -> plt.Figure:
    """The first ``n`` model inputs of a loader batch with their labels."""
    x, y = batch["features"][:n], batch["targets"][:n]
    fig, axes = _grid(len(x), 8)
    for ax, img, target in zip(axes, x, y):
        ax.imshow(img[0].numpy(), cmap="gray")
        if target.ndim == 0:
            title = classes[int(target)]
        else:
            names = [c for c, v in zip(classes, target.tolist()) if v > 0.5]
            title = "\n".join(names[:2]) if names else paper.NO_FINDING
        ax.set_title(title.replace("_", " "), fontsize=7)
    return _save(fig, out_png)


def type_counts_vs_table_i(type_manifest: pd.DataFrame) -> pd.DataFrame:
    """Images per X-ray type in our Module II manifest beside the paper's Table I."""
    ours = type_manifest["label"].value_counts()
    table = pd.DataFrame({"paper (Table I)": pd.Series(dict(paper.TABLE_I)),
                          "ours": ours.reindex(list(paper.XRAY_TYPES)).fillna(0).astype(int)})
    table["ours share"] = (table["ours"] / max(1, table["ours"].sum())).round(3)
    table["paper share"] = (table["paper (Table I)"] / paper.TABLE_I_TOTAL).round(3)
    return table


def split_sizes(task_manifests: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Images per split for each task manifest."""
    return pd.DataFrame({task: df["split"].value_counts() for task, df in task_manifests.items()}
                        ).reindex(["train", "val", "test"]).fillna(0).astype(int)


def finding_counts(chest_manifest: pd.DataFrame) -> pd.DataFrame:
    """Positive images per finding (and "No Finding") by split."""
    rows = {}
    for split, df in chest_manifest.groupby("split"):
        labels = df["label"].str.split("|")
        rows[split] = {f: int(labels.apply(lambda fs, f=f: f in fs).sum())
                       for f in (*paper.FINDINGS, paper.NO_FINDING)}
    return pd.DataFrame(rows).reindex(columns=["train", "val", "test"])
