"""Scoring Grad-CAM maps against bounding boxes: pointing game, IoU, baselines and ceilings.

* :func:`pointing_game` (Zhang et al., 2016) and :func:`cam_iou` for one map and its boxes;
  :func:`localisation_records` / :func:`score_localisation` / :func:`localisation_summary`
  over a set of films (boxes in the pixels of each image FILE, rescaled to the model's input).
* What a score means needs a yardstick: :func:`center_baseline` (always point at the centre)
  and :func:`pointing_ceiling` (the best any map on the model's coarse grid could reach).
* The notebook's film selection: :func:`load_images`, :func:`select_films`,
  :func:`pick_examples`.

Boxes here are ``(x, y, w, h)`` in pixels (the manifest's ``(finding, x, y, w, h)`` without the
finding), except where a function takes the manifest's boxes per image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from xray_utils.config import paper
from xray_utils.explain.gradcam import _FLAT, GradCAM, all_class_cams, upsample_maps

Box = tuple[float, float, float, float]  # x, y, w, h


# --------------------------------------------------------------------------------------------
# one map against its boxes
# --------------------------------------------------------------------------------------------
def boxes_mask(shape: tuple[int, int], boxes: Iterable[Sequence[float]]) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the union of ``(x, y, w, h)`` boxes.

    A pixel belongs to a box when its centre ``(col + 0.5, row + 0.5)`` lies inside it.
    """
    H, W = shape
    cols = np.arange(W) + 0.5
    rows = np.arange(H) + 0.5
    mask = np.zeros((H, W), dtype=bool)
    for x, y, w, h in boxes:
        inside_c = (cols >= x) & (cols <= x + w)
        inside_r = (rows >= y) & (rows <= y + h)
        mask |= inside_r[:, None] & inside_c[None, :]
    return mask

def cam_peak(cam: np.ndarray, rtol: float = 1e-6) -> tuple[int, int] | None:
    """``(row, col)`` of a map's maximum, or ``None`` for a flat map (no peak to point with).

    Ties matter for upsampled coarse maps: bilinear interpolation with half-pixel centres
    (cv2, pytorch-grad-cam, :func:`upsample_maps`) copies a border cell's value from the cell's
    centre out to the image border, a flat top of tied pixels.  The value was computed for the
    cell, so the peak is taken at the tied pixel farthest from the image border -- the cell's
    centre -- and among equals at the one nearest the ties' centroid.  (``np.argmax`` would
    return the flat top's first pixel: the image corner for the top-left cell, but the cell
    centre for the bottom-right one.)
    """
    cam = np.asarray(cam, dtype=np.float64)
    hi, lo = cam.max(), cam.min()
    if not np.isfinite(hi) or hi - lo <= _FLAT:
        return None
    tol = rtol * max(abs(hi), abs(hi - lo))
    rows, cols = np.nonzero(cam >= hi - tol)
    if len(rows) > 1:
        H, W = cam.shape
        inner = np.minimum(np.minimum(rows, H - 1 - rows), np.minimum(cols, W - 1 - cols))
        keep = inner == inner.max()
        rows, cols = rows[keep], cols[keep]
    k = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
    return int(rows[k]), int(cols[k])

def pointing_game(cam: np.ndarray, boxes: Sequence[Sequence[float]],
                  tolerance: float = 0.0) -> bool:
    """Does the heatmap's maximum fall inside any of the ``(x, y, w, h)`` boxes?

    Boxes are in the map's pixel coordinates.  The maximum is :func:`cam_peak` (for the flat
    tops of upsampled maps: the cell centre); a flat map, e.g. all zeros, points nowhere and
    scores a miss.  ``tolerance``
    (pixels) grows every box on all sides, as in the original pointing game (15 px at 224 px).
    """
    peak = cam_peak(cam)
    if peak is None or not len(boxes):
        return False
    r, c = peak[0] + 0.5, peak[1] + 0.5
    return any(x - tolerance <= c <= x + w + tolerance and y - tolerance <= r <= y + h + tolerance
               for x, y, w, h in boxes)

def cam_iou(cam: np.ndarray, boxes: Sequence[Sequence[float]], threshold: float = 0.5) -> float:
    """IoU of the thresholded heatmap (``cam >= threshold * max``) with the union of the boxes.

    ``threshold`` is relative to the map's maximum; a map without positive values gives 0.
    """
    cam = np.asarray(cam, dtype=np.float64)
    target = boxes_mask(cam.shape, boxes)
    peak = cam.max()
    if not np.isfinite(peak) or peak <= 0:
        return 0.0
    hot = cam >= threshold * peak
    union = np.logical_or(hot, target).sum()
    return float(np.logical_and(hot, target).sum() / union) if union else 0.0

def scale_boxes(boxes: Iterable[Sequence[float]], from_size: tuple[float, float],
                to_size: tuple[float, float]) -> list[Box]:
    """Rescale ``(x, y, w, h)`` boxes from an image of ``(width, height)`` to another size."""
    sx = to_size[0] / from_size[0]
    sy = to_size[1] / from_size[1]
    return [(x * sx, y * sy, w * sx, h * sy) for x, y, w, h in boxes]

def _sizes_per_image(box_image_sizes: Any, n: int) -> list[tuple[float, float]]:
    """One ``(width, height)`` for every image, from a single size or a per-image list."""
    if isinstance(box_image_sizes, (int, float, np.integer)):
        return [(float(box_image_sizes), float(box_image_sizes))] * n
    sizes = list(box_image_sizes)
    if len(sizes) == 2 and all(isinstance(s, (int, float, np.integer)) for s in sizes):
        return [(float(sizes[0]), float(sizes[1]))] * n
    if len(sizes) != n:
        raise ValueError(f"box_image_sizes has {len(sizes)} entries for {n} images; give one "
                         "(width, height) for all images or one per image")
    return [(float(s[0]), float(s[1])) for s in sizes]


# --------------------------------------------------------------------------------------------
# a set of films
# --------------------------------------------------------------------------------------------
def localisation_records(model: nn.Module, images: np.ndarray,
                         boxes_per_image: Sequence[Sequence[Sequence]],
                         box_image_sizes: Any, findings: Sequence[str] = paper.FINDINGS,
                         threshold: float = 0.5, batch_size: int = 32,
                         tolerance: float = 0.0, progress: bool = True,
                         layer: str | None = None) -> pd.DataFrame:
    """One row per (image, finding with a box): ``image``, ``finding``, ``pointing``, ``iou``.

    ``layer``: ``None`` or ``"norm5"`` explains the last block (every class from one forward
    pass, :func:`all_class_cams`); a block name such as ``"denseblock3"`` explains that earlier,
    finer block with backward Grad-CAM (:class:`GradCAM`, one pass per finding of an image).

    ``images``: ``(N, H, W)`` uint8 at the model's input size.  ``boxes_per_image[i]``: the
    ``(finding, x, y, w, h)`` boxes of image ``i`` in the pixel coordinates of its image FILE,
    whose ``(width, height)`` is ``box_image_sizes`` (one pair for all images or one per image).
    Boxes are rescaled to the heatmap (the model's input size).  Several boxes of one finding
    in one image count as one case (their union).  ``findings`` are the model's outputs in
    order (``meta["classes"]``); boxes of other names are ignored.
    """
    from tqdm.auto import tqdm

    from xray_utils.models import to_model_input

    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, H, W) uint8 at the model's input size, got "
                         f"{images.dtype} {images.shape}")
    n, H, W = images.shape
    if len(boxes_per_image) != n:
        raise ValueError(f"{len(boxes_per_image)} box lists for {n} images")
    sizes = _sizes_per_image(box_image_sizes, n)
    index = {f: i for i, f in enumerate(findings)}
    rows = []
    todo = [i for i in range(n) if any(b[0] in index for b in boxes_per_image[i])]
    starts = range(0, len(todo), batch_size)
    for s in tqdm(starts, desc="Grad-CAM localisation", disable=not progress, leave=False):
        batch = todo[s:s + batch_size]
        if layer in (None, "norm5"):
            cams = all_class_cams(model, to_model_input(images[batch]))
        else:
            cams = layer_cams(model, to_model_input(images[batch]), layer,
                              [[b[0] for b in boxes_per_image[i] if b[0] in index] for i in batch],
                              index)
        for cam, i in zip(cams, batch):
            per_finding: dict[str, list[Box]] = {}
            for name, *xywh in boxes_per_image[i]:
                if name in index:
                    per_finding.setdefault(name, []).append(tuple(float(v) for v in xywh))
            for name, bxs in per_finding.items():
                scaled = scale_boxes(bxs, sizes[i], (W, H))
                heat = cam[index[name]]
                rows.append({"image": i, "finding": name,
                             "pointing": pointing_game(heat, scaled, tolerance),
                             "iou": cam_iou(heat, scaled, threshold)})
    return pd.DataFrame(rows, columns=["image", "finding", "pointing", "iou"])

def _block(model: nn.Module, layer: str) -> nn.Module:
    """``model.features.<layer>``, or a ValueError naming the blocks there are."""
    block = getattr(model.features, layer, None)
    if not isinstance(block, nn.Module):
        names = [n for n, _ in model.features.named_children()]
        raise ValueError(f"no block {layer!r} in model.features; choose one of {names}")
    return block


def layer_grid(model: nn.Module, image_size: int, layer: str = "norm5") -> tuple[int, int]:
    """The ``h x w`` grid of ``model.features.<layer>`` for ``image_size`` inputs (one dummy pass):
    at 64 px, ``norm5`` is 2 x 2 and ``denseblock3`` 4 x 4."""
    block = _block(model, layer)
    shape: list[tuple[int, int]] = []
    handle = block.register_forward_hook(lambda mod, i, o: shape.append(tuple(o.shape[-2:])))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, image_size, image_size, device=next(model.parameters()).device))
    finally:
        model.train(was)
        handle.remove()
    return shape[0]


def layer_cams(model: nn.Module, x: torch.Tensor, layer: str,
               names_per_image: Sequence[Sequence[str]], index: dict[str, int]) -> np.ndarray:
    """Grad-CAM maps ``(N, K, H, W)`` of ``model.features.<layer>``, filled for the classes
    named per image (other maps stay zero): one backward pass per (image, class)."""
    block = _block(model, layer)
    n, _, H, W = x.shape
    out = np.zeros((n, len(index), H, W), dtype=np.float32)
    cases = [(i, index[name]) for i, names in enumerate(names_per_image) for name in dict.fromkeys(names)]
    if not cases:
        return out
    with GradCAM(model, target_layer=block) as cam:
        rows = torch.tensor([i for i, _ in cases])
        maps = cam(x[rows], class_idx=[k for _, k in cases])
    for (i, k), heat in zip(cases, maps):
        out[i, k] = heat
    return out


def score_localisation(model: nn.Module, images: np.ndarray,
                       boxes_per_image: Sequence[Sequence[Sequence]], box_image_sizes: Any,
                       findings: Sequence[str] = paper.FINDINGS, threshold: float = 0.5,
                       batch_size: int = 32, tolerance: float = 0.0,
                       progress: bool = True, layer: str | None = None) -> pd.DataFrame:
    """Per finding: ``n`` (images with a box of it), ``pointing`` hit rate, mean ``iou``.

    Arguments as :func:`localisation_records`.  The index is ``findings`` (all of them, in
    order); findings without boxes have ``n = 0`` and NaN scores.
    """
    rec = localisation_records(model, images, boxes_per_image, box_image_sizes, findings,
                               threshold, batch_size, tolerance, progress, layer)
    rec = rec.astype({"pointing": float, "iou": float})
    table = rec.groupby("finding").agg(n=("image", "size"), pointing=("pointing", "mean"),
                                       iou=("iou", "mean"))
    table = table.reindex(list(findings))
    table["n"] = table["n"].fillna(0).astype(int)
    table.index.name = "finding"
    return table

def localisation_summary(table: pd.DataFrame) -> dict[str, Any]:
    """The metrics.json section: per finding ``{"n", "pointing", "iou"}`` and the means.

    ``mean_pointing`` / ``mean_iou`` average over findings that have boxes (``n > 0``), each
    finding weighing the same; ``n_cases`` counts (image, finding) cases.
    """
    out: dict[str, Any] = {}
    for name, row in table.iterrows():
        has = int(row["n"]) > 0
        out[str(name)] = {"n": int(row["n"]),
                          "pointing": float(row["pointing"]) if has else None,
                          "iou": float(row["iou"]) if has else None}
    scored = table[table["n"] > 0]
    out["mean_pointing"] = float(scored["pointing"].mean()) if len(scored) else None
    out["mean_iou"] = float(scored["iou"].mean()) if len(scored) else None
    out["n_cases"] = int(scored["n"].sum())
    out["findings_scored"] = int(len(scored))
    return out


def gradcam_record(table: pd.DataFrame, by_layer: Mapping[str, tuple[pd.DataFrame, Sequence[int]]],
                   *, layer: str, grid: Sequence[int], threshold: float, tolerance: float,
                   image_size: int) -> dict[str, Any]:
    """Chapter 05's ``gradcam`` section of metrics.json: :func:`localisation_summary` of the
    scored layer's ``table`` (columns ``n``, ``pointing``, ``iou``, ``center_baseline``,
    ``pointing_randomized``, ``grid_ceiling``), the settings, the three baselines (means over the
    findings with boxes) and the mean pointing of every layer in ``by_layer`` (``{layer: (table,
    grid)}``)."""
    summary = localisation_summary(table)
    scored = table["n"] > 0

    def mean_of(column: str) -> float | None:
        return float(table.loc[scored, column].mean()) if summary["n_cases"] else None

    summary.update(threshold=threshold, tolerance_px=tolerance, image_size=image_size, layer=layer,
                   grid=list(grid), baselines={"center_point": mean_of("center_baseline"),
                                               "randomized_model": mean_of("pointing_randomized"),
                                               "grid_ceiling": mean_of("grid_ceiling")})
    summary["by_layer"] = {name: {"grid": list(g),
                                  "mean_pointing": float(t.loc[t["n"] > 0, "pointing"].mean())}
                           for name, (t, g) in by_layer.items()}
    return summary


def format_rate(value: float | None) -> str:
    """A hit rate or score for a sentence: ``0.300``, or ``n/a`` when there is none."""
    return "n/a" if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------------------------
# baselines and ceilings
# --------------------------------------------------------------------------------------------
def center_baseline(boxes_per_image: Sequence[Sequence[Sequence]], box_image_sizes: Any,
                    findings: Sequence[str] = paper.FINDINGS) -> pd.Series:
    """Pointing-game hit rate per finding of a "model" that always points at the image centre.

    The pointing game rewards a centre bias (many findings lie near the middle of a film), so a
    heatmap's hit rate means something only beside this baseline.  Same cases as
    :func:`score_localisation` (one per image and finding with a box).
    """
    sizes = _sizes_per_image(box_image_sizes, len(boxes_per_image))
    hits: dict[str, list[bool]] = {f: [] for f in findings}
    for bxs, (w, h) in zip(boxes_per_image, sizes):
        per_finding: dict[str, list[Box]] = {}
        for name, *xywh in bxs:
            if name in hits:
                per_finding.setdefault(name, []).append(tuple(float(v) for v in xywh))
        for name, b in per_finding.items():
            hits[name].append(any(x <= w / 2 <= x + bw and y <= h / 2 <= y + bh
                                  for x, y, bw, bh in b))
    return pd.Series({f: float(np.mean(v)) if v else float("nan") for f, v in hits.items()},
                     name="center_baseline")

def grid_peaks(image_size: int | tuple[int, int], grid: tuple[int, int]) -> list[tuple[int, int]]:
    """Every pixel a heatmap from an ``h x w`` grid can point at after upsampling to the image.

    Bilinear interpolation peaks at a grid node (a cell centre; see :func:`cam_peak` for the
    flat tops at the border), so a map can only point at ``h * w`` places: the peaks of the
    one-hot grids.
    """
    return [p for p, _ in _grid_candidates(image_size, grid)]

def _grid_candidates(image_size: int | tuple[int, int], grid: tuple[int, int]
                     ) -> list[tuple[tuple[int, int], np.ndarray]]:
    """Per grid node: the peak of its one-hot map, and every pixel a real map peaking at that
    node could point at (the tied top pixels next to the peak: a node between two pixels is
    taken by either, depending on the neighbouring cells)."""
    H, W = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else image_size
    h, w = grid
    onehots = torch.eye(h * w, dtype=torch.float64).reshape(h * w, 1, h, w)
    out = []
    for m in upsample_maps(onehots, (int(H), int(W)))[:, 0].numpy():
        peak = cam_peak(m)
        if peak is None:
            continue
        rows, cols = np.nonzero(m >= m.max() * (1 - 1e-9))
        near = (np.abs(rows - peak[0]) <= 1) & (np.abs(cols - peak[1]) <= 1)
        out.append((peak, np.stack([rows[near], cols[near]], axis=1)))
    return out

def pointing_ceiling(boxes_per_image: Sequence[Sequence[Sequence]], box_image_sizes: Any,
                     image_size: int | tuple[int, int], grid: tuple[int, int],
                     findings: Sequence[str] = paper.FINDINGS,
                     tolerance: float = 0.0) -> pd.Series:
    """The best pointing-game hit rate ANY heatmap on an ``h x w`` grid could reach, per finding.

    A case counts as reachable when a pixel a heatmap could peak at (:func:`grid_peaks`, give
    or take the pixel on the other side of a cell centre) lies in a box of the finding (boxes
    rescaled to ``image_size``, grown by ``tolerance`` pixels as in :func:`pointing_game`); so
    this is an upper bound on the pointing-game hit rate.  At 224 px DenseNet-121 has a 7 x 7
    grid and this is close to 1; at 64 px the grid is 2 x 2 and a heatmap can only point at the
    four cell centres, so a box that covers none of them cannot be hit whatever the model learnt.
    """
    H, W = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else image_size
    pixels = np.concatenate([c for _, c in _grid_candidates((H, W), grid)])  # (rows, cols)
    sizes = _sizes_per_image(box_image_sizes, len(boxes_per_image))
    hits: dict[str, list[bool]] = {f: [] for f in findings}
    for bxs, size in zip(boxes_per_image, sizes):
        per_finding: dict[str, list[Box]] = {}
        for name, *xywh in bxs:
            if name in hits:
                per_finding.setdefault(name, []).append(tuple(float(v) for v in xywh))
        for name, b in per_finding.items():
            scaled = [(x - tolerance, y - tolerance, w + 2 * tolerance, h + 2 * tolerance)
                      for x, y, w, h in scale_boxes(b, size, (W, H))]
            hits[name].append(bool(boxes_mask((H, W), scaled)[pixels[:, 0], pixels[:, 1]].any()))
    return pd.Series({f: float(np.mean(v)) if v else float("nan") for f, v in hits.items()},
                     name="grid_ceiling")


# --------------------------------------------------------------------------------------------
# choosing the films of the notebook
# --------------------------------------------------------------------------------------------
def load_images(paths: Sequence[str], size: int, progress: bool = True
                ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Read image files as the model sees them: ``(N, size, size)`` uint8 and each FILE's
    ``(width, height)`` (the frame of its boxes).  Unreadable files raise ``ImageReadError``
    naming the file."""
    from tqdm.auto import tqdm

    from xray_utils.data.imageio import read_gray, resize_gray

    images, sizes = [], []
    for p in tqdm(list(paths), desc="reading images", disable=not progress, leave=False):
        img = read_gray(p)
        sizes.append((int(img.shape[1]), int(img.shape[0])))
        images.append(resize_gray(img, size))
    return np.stack(images) if images else np.zeros((0, size, size), np.uint8), sizes

def select_films(labels: Sequence[str], boxes_per_image: Sequence[Sequence[Sequence]],
                 findings: Sequence[str] = paper.FINDINGS, per_finding: int = 4) -> list[int]:
    """Rows worth explaining: every film with a box of one of ``findings``, plus the first
    ``per_finding`` films labelled with each finding (galleries still have examples where boxes
    are few or absent).  Keeps the notebook from reading a whole 22,000-film test split."""
    keep = {i for i, b in enumerate(boxes_per_image) if any(x[0] in findings for x in b)}
    for f in findings:
        keep.update([i for i, lab in enumerate(labels) if f in str(lab).split("|")][:per_finding])
    return sorted(keep)

def pick_examples(labels: Sequence[str], boxes_per_image: Sequence[Sequence[Sequence]],
                  findings: Sequence[str] = paper.FINDINGS, per_finding: int = 1
                  ) -> list[tuple[int, str]]:
    """``(image index, finding)`` pairs for a gallery: per finding, the first ``per_finding``
    images labelled with it, those with a box of that finding first."""
    picks = []
    for f in findings:
        positive = [i for i, lab in enumerate(labels) if f in str(lab).split("|")]
        boxed = [i for i in positive if any(b[0] == f for b in boxes_per_image[i])]
        ordered = boxed + [i for i in positive if i not in boxed]
        picks += [(i, f) for i in ordered[:per_finding]]
    return picks


# --------------------------------------------------------------------------------------------
# the trade-off: input size and explained layer against pointing and time
# --------------------------------------------------------------------------------------------
def score_checkpoint(best_json: str | Path, paths: Sequence[str],
                     boxes_per_image: Sequence[Sequence[Sequence]],
                     layers: Sequence[str] = ("norm5", "denseblock3"), threshold: float = 0.5,
                     batch_size: int = 32, tolerance: float = 0.0, device: Any = "cpu",
                     training_seconds: float | None = None) -> pd.DataFrame:
    """Score one Module III checkpoint on the same boxed films at its own input size, for each
    of ``layers``: one row per layer with the input size, the grid, the mean pointing-game hit
    rate over findings (and IoU), the centre baseline, the grid's ceiling, the seconds Grad-CAM
    took and ``training_seconds`` (what the checkpoint cost to train, when known)."""
    import time

    from xray_utils.config.paths import shown_path
    from xray_utils.models import load_checkpoint

    model, meta = load_checkpoint(Path(best_json), device=device)
    classes, size = meta["classes"], int(meta["image_size"])
    images, sizes = load_images(paths, size, progress=False)
    rows = []
    for layer in layers:
        t0 = time.perf_counter()
        table = score_localisation(model, images, boxes_per_image, sizes, classes,
                                   threshold=threshold, batch_size=batch_size,
                                   tolerance=tolerance, layer=layer)
        seconds = time.perf_counter() - t0
        grid = layer_grid(model, size, layer)
        scored = table["n"] > 0
        centre = center_baseline(boxes_per_image, sizes, classes)
        ceiling = pointing_ceiling(boxes_per_image, sizes, size, grid, classes, tolerance)
        rows.append({"input px": size, "layer": layer, "grid": f"{grid[0]} x {grid[1]}",
                     "pointing": float(table.loc[scored, "pointing"].mean()),
                     "iou": float(table.loc[scored, "iou"].mean()),
                     "centre baseline": float(centre[scored].mean()),
                     "grid ceiling": float(ceiling[scored].mean()),
                     "Grad-CAM minutes": seconds / 60,
                     "training minutes": (training_seconds / 60 if training_seconds is not None
                                          else float("nan")),
                     "checkpoint": shown_path(best_json)})
    return pd.DataFrame(rows)
