"""Figures of the Grad-CAM notebook: heatmap overlays, galleries, the sanity check, the scores.

* :func:`overlay` -- a heatmap blended over a grayscale image, as RGB.
* :func:`gallery_panels` + :func:`plot_cam_gallery` -- overlays of chosen (film, finding) pairs
  with their boxes and peaks.
* :func:`plot_randomization_check` and :func:`plot_localisation_scores`.

Boxes are drawn by the project's one :func:`xray_utils.data.plots.draw_boxes` (the manifest's
``(finding, x, y, w, h)`` boxes, scaled to the shown image).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from torch import nn

from xray_utils.config import paper
from xray_utils.data.plots import as_text, draw_boxes
from xray_utils.explain.gradcam import case_cams, resize_map
from xray_utils.explain.localisation import _sizes_per_image, cam_peak, scale_boxes
from xray_utils.models import predict_probabilities

__all__ = ["draw_boxes", "gallery_panels", "overlay", "plot_cam_gallery",
           "plot_localisation_scores", "plot_randomization_check"]


def overlay(gray_uint8: np.ndarray, cam: np.ndarray, alpha: float = 0.4,
            cmap: str = "jet") -> np.ndarray:
    """Blend a heatmap over a grayscale image: RGB ``uint8`` ``(H, W, 3)``.

    ``cam`` (any ``h x w``, values in [0, 1]) is resized to the image, coloured with the
    matplotlib colormap ``cmap`` and mixed in with weight ``alpha`` (0 = image only, 1 = heatmap
    only).
    """
    import matplotlib

    img = np.asarray(gray_uint8)
    if img.ndim != 2:
        raise ValueError(f"overlay expects a 2-D grayscale image, got shape {img.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    heat = np.clip(resize_map(cam, img.shape), 0.0, 1.0)
    colours = matplotlib.colormaps[cmap](heat)[..., :3]
    base = np.repeat((img.astype(np.float32) / 255.0)[..., None], 3, axis=2)
    out = (1.0 - alpha) * base + alpha * colours
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)

def gallery_panels(model: nn.Module, images: np.ndarray, picks: Sequence[tuple[int, str]],
                   boxes_per_image: Sequence[Sequence[Sequence]], box_image_sizes: Any,
                   findings: Sequence[str] = paper.FINDINGS, multilabel: bool = True,
                   probs: np.ndarray | None = None, batch_size: int = 32) -> list[dict[str, Any]]:
    """Panels for :func:`plot_cam_gallery`: the Grad-CAM of ``finding`` on image ``i`` for each
    pick, its boxes of that finding (rescaled to the image), the peak, and the model's
    probability of the finding in the title (``probs`` ``(N, C)`` if already computed)."""
    sizes = _sizes_per_image(box_image_sizes, len(images))
    cams = case_cams(model, images, picks, findings, batch_size)
    if probs is None:
        rows = sorted({i for i, _ in picks})
        probs = np.zeros((len(images), len(findings)), np.float32)
        probs[rows] = predict_probabilities(model, {"multilabel": multilabel}, images[rows], batch_size)
    panels = []
    for (i, f), cam in zip(picks, cams):
        H, W = images[i].shape
        bxs = scale_boxes([b[1:5] for b in boxes_per_image[i] if b[0] == f], sizes[i], (W, H))
        panels.append({"image": images[i], "cam": cam, "boxes": bxs, "peak": cam_peak(cam),
                       "title": f"{f}  p={float(probs[i, list(findings).index(f)]):.2f}"
                                + ("" if bxs else " (no box)")})
    return panels

def plot_cam_gallery(panels: Sequence[dict[str, Any]], ncols: int = 4, alpha: float = 0.4,
                     size: float = 2.6) -> Any:
    """Grid of overlays; each panel is ``{"image", "cam", "title", "boxes"?, "peak"?, "alpha"?}``.

    ``boxes`` are ``(x, y, w, h)`` in the image's pixel coordinates (as :func:`gallery_panels`
    gives them); ``peak`` (row, col) is marked with a cross.
    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    n = max(len(panels), 1)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, p in zip(axes.ravel(), panels):
        ax.imshow(overlay(p["image"], p["cam"], alpha=p.get("alpha", alpha)))
        # the panel's boxes are (x, y, w, h) in image pixels: one finding, no scaling
        draw_boxes(ax, [("", *b) for b in p.get("boxes", ())], color="lime", linewidth=1.5)
        if p.get("peak") is not None:
            ax.plot(p["peak"][1], p["peak"][0], "w+", markersize=10, markeredgewidth=2)
        ax.set_title(as_text(p.get("title", "")), fontsize=8)
    fig.tight_layout()
    return fig

def plot_randomization_check(image: np.ndarray, cams: Sequence[np.ndarray],
                             titles: Sequence[str], alpha: float = 0.4) -> Any:
    """The image, then one overlay per model (trained, randomised ...), side by side."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cams) + 1, figsize=(2.8 * (len(cams) + 1), 3.1))
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("image", fontsize=9)
    for ax, cam, title in zip(axes[1:], cams, titles):
        ax.imshow(overlay(image, cam, alpha=alpha))
        flat = cam_peak(cam) is None
        ax.set_title(title + ("\n(flat: no positive evidence)" if flat else ""), fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig

def plot_localisation_scores(table: pd.DataFrame, title: str = "") -> Any:
    """Bar chart of pointing-game hit rate and mean IoU per finding (findings with boxes).

    Optional columns ``grid_ceiling``, ``center_baseline`` and ``pointing_randomized`` are
    drawn as markers on the pointing bars.
    """
    import matplotlib.pyplot as plt

    scored = table[table["n"] > 0]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(scored) + 2), 3.6))
    pos = np.arange(len(scored))
    ax.bar(pos - 0.2, scored["pointing"], width=0.4, label="pointing game hit rate")
    ax.bar(pos + 0.2, scored["iou"], width=0.4, label="mean IoU (cam >= 0.5 max)")
    ax.set_xticks(pos, [f"{f}\n(n={n})" for f, n in zip(scored.index, scored["n"])],
                  rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    for col, marker, label in (("grid_ceiling", "g_", "pointing: best reachable on the grid"),
                               ("center_baseline", "k_", "pointing: always the centre"),
                               ("pointing_randomized", "r_", "pointing: randomised model")):
        if col in scored:
            ax.plot(pos - 0.2, scored[col], marker, markersize=14, markeredgewidth=2, label=label)
    if len(scored):
        mean = float(scored["pointing"].mean())
        ax.axhline(mean, color="C0", linestyle="--", linewidth=1,
                   label=f"mean pointing = {mean:.2f}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title)
    fig.tight_layout()
    return fig
