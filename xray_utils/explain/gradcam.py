"""Grad-CAM for the project's DenseNet-121 models, taught from scratch and scored.

Grad-CAM (Selvaraju et al., 2017) explains one output ``y_c`` of a CNN with a heatmap over the
last convolutional block: with ``A`` the block's activations (``K`` channels of ``h x w``),

    alpha_ck = mean_ij dy_c / dA_kij          (channel weights: pooled gradients)
    cam_c    = ReLU(sum_k alpha_ck * A_k)     (weighted sum of the activation maps)

upsampled (bilinear) to the input size and scaled to ``[0, 1]``.  For :class:`XrayDenseNet`
the block is ``model.features`` (its last module is ``norm5``); the model applies ReLU, global
average pooling and the linear ``classifier`` after it.

What is here:

* :class:`GradCAM` -- the backward-based version (hooks + autograd), batched, a context manager
  that always removes its hooks.  Matches ``pytorch_grad_cam.GradCAM`` (tested).
* :func:`all_class_cams` -- the same maps for every class from ONE forward pass and no backward
  pass: for this head the gradient has a closed form (see the function's docstring).
* :func:`overlay` -- heatmap over a grayscale image, as RGB.
* Localisation scores against bounding boxes: :func:`pointing_game`, :func:`cam_iou`,
  :func:`localisation_records`, :func:`score_localisation`, :func:`localisation_summary`.
* The randomisation sanity check (Adebayo et al., 2018): :func:`randomized_copy` and
  :func:`heatmap_similarity`.
* What ``notebooks/05_gradcam.ipynb`` needs besides: :func:`load_images`,
  :func:`center_baseline`, :func:`pointing_ceiling`, :func:`select_films`, :func:`case_cams`,
  :func:`probabilities`, :func:`pick_examples`, :func:`gallery_panels` and the figures
  :func:`plot_cam_gallery`, :func:`plot_randomization_check`, :func:`plot_localisation_scores`.

Normalisation of every map (both paths, and what pytorch-grad-cam does): after the ReLU and the
upsampling each map is min-max scaled to ``[0, 1]``.  A map with no spread -- in particular the
all-zero map that Grad-CAM gives when no location has positive evidence for the class -- has no
meaningful maximum and is returned as all zeros (never NaN).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from xray_utils.config import paper

#: Ranges below this are treated as "no spread" when a map is scaled to [0, 1].
_FLAT = 1e-12

Box = tuple[float, float, float, float]  # x, y, w, h


# --------------------------------------------------------------------------------------------
# normalisation and input checks shared by both paths
# --------------------------------------------------------------------------------------------
def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, C, h, w)`` -> ``(N, C, H, W)`` by bilinear interpolation (half-pixel centres).

    This is the interpolation of ``cv2.resize(..., INTER_LINEAR)`` that pytorch-grad-cam uses,
    so both give the same upsampled maps.
    """
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max scale each ``(h, w)`` map of ``(..., h, w)`` to ``[0, 1]``; flat maps -> zeros."""
    flat = maps.flatten(-2)
    lo = flat.min(dim=-1).values[..., None, None]
    hi = flat.max(dim=-1).values[..., None, None]
    span = hi - lo
    out = (maps - lo) / span.clamp_min(_FLAT)
    return torch.where(span > _FLAT, out, torch.zeros_like(out))


def _as_model_input(x: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    """Check that ``x`` is a float batch ``(N, 1 or 3, H, W)`` and move it to ``device``."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not torch.is_tensor(x):
        raise TypeError(f"expected a torch.Tensor (N, 1, H, W), got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise ValueError(
            f"Grad-CAM expects the model input (float), got dtype {x.dtype}; convert 8-bit "
            "images with xray_utils.models.to_model_input(images) first.")
    if x.ndim != 4:
        raise ValueError(f"expected a batch of shape (N, 1, H, W), got shape {tuple(x.shape)}")
    return x.to(device)


def _device_of(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _class_indices(class_idx: int | Sequence[int] | None, n: int,
                   logits: torch.Tensor) -> torch.Tensor:
    """One class index per image (``None`` = each image's top-scoring class)."""
    if class_idx is None:
        return logits.argmax(dim=1)
    if isinstance(class_idx, (int, np.integer)):
        idx = torch.full((n,), int(class_idx), dtype=torch.long)
    else:
        idx = torch.as_tensor(list(class_idx), dtype=torch.long)
        if idx.shape != (n,):
            raise ValueError(f"class_idx has {idx.numel()} entries for a batch of {n} images; "
                             "give one int for all images or one per image")
    num = logits.shape[1]
    if (idx < 0).any() or (idx >= num).any():
        raise IndexError(f"class index out of range: {idx.tolist()} (the model has {num} outputs)")
    return idx.to(logits.device)


# --------------------------------------------------------------------------------------------
# backward-based Grad-CAM
# --------------------------------------------------------------------------------------------
@dataclass
class CamResult:
    """Everything one Grad-CAM pass computed (tensors on the CPU, float32).

    ``activations`` A ``(N, K, h, w)`` and ``gradients`` dy/dA ``(N, K, h, w)`` of the target
    layer, channel ``weights`` ``(N, K)``, ``raw`` = ReLU(sum_k weights_k A_k) ``(N, h, w)``
    before upsampling and scaling, the ``logits`` ``(N, C)`` and the explained ``class_idx``.
    """

    activations: torch.Tensor
    gradients: torch.Tensor
    weights: torch.Tensor
    raw: torch.Tensor
    logits: torch.Tensor
    class_idx: torch.Tensor


class GradCAM:
    """Backward-based Grad-CAM on one layer of a model (default ``model.features``).

    Use it as a context manager -- the hooks it puts on the model are removed on exit, also
    when an exception is raised inside the block::

        with GradCAM(model) as cam:
            heat = cam(x, class_idx=1)          # (N, H, W) in [0, 1]

    How the hooks work: a *forward* hook on the target layer keeps its output ``A`` and puts a
    *tensor* hook on it that records ``dy/dA`` when the backward pass reaches it.  Tensor hooks
    on the output (rather than ``register_full_backward_hook`` on the module) keep working when
    a later operation modifies the output in place (DenseNet's ``F.relu(..., inplace=True)``);
    to make this hold for the activations too, the forward hook hands a copy of ``A`` to the
    rest of the network, so in-place changes downstream can never alter the saved ``A``.
    The backward pass is ``torch.autograd.grad`` with respect to ``A`` only: it does not touch
    the parameters' ``.grad`` and runs only the head's backward.

    While active the model is put in eval mode (BatchNorm uses its running statistics, so each
    image's map is independent of the others in the batch); the previous mode is restored on
    exit.
    """

    def __init__(self, model: nn.Module, target_layer: nn.Module | None = None) -> None:
        if target_layer is None:
            target_layer = getattr(model, "features", None)
            if not isinstance(target_layer, nn.Module):
                raise ValueError("the model has no .features module; pass target_layer= "
                                 "(the last convolutional block) explicitly")
        self.model = model
        self.target_layer = target_layer
        self._handles: list[Any] = []
        self._activation: torch.Tensor | None = None
        self._gradient: torch.Tensor | None = None
        self._was_training: bool | None = None

    # -- hook management ---------------------------------------------------------------------
    def __enter__(self) -> "GradCAM":
        self.attach()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.release()
        return False  # never swallow exceptions

    def attach(self) -> "GradCAM":
        """Register the forward hook (idempotent) and switch the model to eval mode."""
        if not self._handles:
            self._handles.append(self.target_layer.register_forward_hook(self._forward_hook))
            self._was_training = self.model.training
            self.model.eval()
        return self

    def release(self) -> None:
        """Remove every hook this object registered, drop saved tensors, restore the mode."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._activation = self._gradient = None
        if self._was_training is not None:
            self.model.train(self._was_training)
            self._was_training = None

    @property
    def active(self) -> bool:
        """Whether hooks are currently registered."""
        return bool(self._handles)

    def _forward_hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(output):
            raise TypeError(f"Grad-CAM target layer {type(module).__name__} returns "
                            f"{type(output).__name__}, not a tensor; choose another layer")
        self._activation = output
        self._gradient = None
        if output.requires_grad:
            output.register_hook(self._save_gradient)
        return output.clone()  # downstream in-place ops modify the copy, never A

    def _save_gradient(self, grad: torch.Tensor) -> None:
        self._gradient = grad

    # -- computation -------------------------------------------------------------------------
    def compute(self, x: torch.Tensor | np.ndarray,
                class_idx: int | Sequence[int] | None = None) -> CamResult:
        """Forward + backward for a batch; returns activations, gradients, weights, raw maps."""
        if not self.active:
            raise RuntimeError("GradCAM is not active: use it as `with GradCAM(model) as cam:` "
                               "(or call .attach() first)")
        if torch.is_inference_mode_enabled():
            raise RuntimeError("Grad-CAM needs gradients: call it outside torch.inference_mode() "
                               "(or use all_class_cams, which needs no backward pass)")
        x = _as_model_input(x, _device_of(self.model))
        with torch.enable_grad():
            # the input requires grad so a graph exists even when all parameters are frozen
            logits = self.model(x.detach().requires_grad_(True))
            if self._activation is None:
                raise RuntimeError("the target layer was not called in the model's forward pass; "
                                   "check target_layer")
            idx = _class_indices(class_idx, x.shape[0], logits)
            score = logits.gather(1, idx[:, None]).sum()  # images are independent in eval mode
            torch.autograd.grad(score, self._activation)
        if self._gradient is None:
            raise RuntimeError("no gradient reached the target layer; does the explained output "
                               "depend on it?")
        A = self._activation.detach().float()
        G = self._gradient.detach().float()
        weights = G.double().mean(dim=(2, 3))                                  # (N, K)
        raw = torch.relu(torch.einsum("nk,nkij->nij", weights, A.double()))  # (N, h, w)
        self._activation = self._gradient = None
        return CamResult(activations=A.cpu(), gradients=G.cpu(), weights=weights.float().cpu(),
                         raw=raw.float().cpu(), logits=logits.detach().float().cpu(),
                         class_idx=idx.cpu())

    def __call__(self, x: torch.Tensor | np.ndarray, class_idx: int | Sequence[int] | None = None,
                 upsample: bool = True, normalize: bool = True) -> np.ndarray:
        """Heatmaps ``(N, H, W)`` float32 for ``x`` ``(N, 1, H, W)`` and one class per image.

        ``class_idx``: one int for all images, one per image, or ``None`` for each image's
        top-scoring class.  With ``upsample=False`` the maps keep the layer's ``h x w``; with
        ``normalize=False`` they keep Grad-CAM's raw scale (still after the ReLU).
        """
        res = self.compute(x, class_idx)
        maps = res.raw.double()[:, None]
        if upsample:
            maps = upsample_maps(maps, tuple(x.shape[-2:]))
        if normalize:
            maps = normalize_maps(maps)
        return maps[:, 0].float().numpy()


# --------------------------------------------------------------------------------------------
# the fast path: every class from one forward pass
# --------------------------------------------------------------------------------------------
def _check_head(model: nn.Module) -> nn.Linear:
    clf = getattr(model, "classifier", None)
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Module) or not isinstance(clf, nn.Linear):
        raise TypeError(
            "all_class_cams needs a model whose forward is features -> ReLU -> global average "
            "pool -> classifier (nn.Linear), like xray_utils.models.XrayDenseNet; use GradCAM "
            f"for other models (got {type(model).__name__})")
    return clf


def _resolve_classes(classes: Sequence[int | str] | None, num_outputs: int,
                     class_names: Sequence[str] | None) -> list[int]:
    if classes is None:
        return list(range(num_outputs))
    out = []
    for c in classes:
        if isinstance(c, str):
            if class_names is None or c not in class_names:
                raise ValueError(f"class {c!r}: pass class_names=meta['classes'] to select classes "
                                 "by name, or give output indices")
            out.append(list(class_names).index(c))
        else:
            out.append(int(c))
    bad = [c for c in out if not 0 <= c < num_outputs]
    if bad:
        raise IndexError(f"class indices {bad} out of range (the model has {num_outputs} outputs)")
    return out


@torch.no_grad()
def all_class_cams(model: nn.Module, x: torch.Tensor | np.ndarray,
                   classes: Sequence[int | str] | None = None, upsample: bool = True, *,
                   class_names: Sequence[str] | None = None, normalize: bool = True) -> np.ndarray:
    """Grad-CAM of every class (or of ``classes``) at once: ``(N, C, H, W)`` float32 in [0, 1].

    No backward pass is needed, because the head after the target layer is simple.  With
    ``A = model.features(x)`` (norm5's output, before the ReLU) and ``h x w`` cells::

        y_c = sum_k W_ck * mean_ij ReLU(A_kij) + b_c
        dy_c / dA_kij = W_ck * 1[A_kij > 0] / (h w)
        alpha_ck = mean_ij dy_c / dA_kij = W_ck * (fraction of cells where A_k > 0) / (h w)
        cam_c = ReLU(sum_k alpha_ck A_kij)

    So one forward pass through ``features`` gives the maps of all classes; the result equals
    :class:`GradCAM` (tested for every class).  ``classes`` are output indices (or names, with
    ``class_names=meta["classes"]``); ``upsample=False`` keeps the ``h x w`` grid;
    ``normalize=False`` returns the raw (post-ReLU) maps.  Maps are scaled per map as described
    in the module docstring (flat maps -> zeros).
    """
    x = _as_model_input(x, _device_of(model))
    A, _ = features_and_logits(model, x)
    return cams_from_features(model, A, classes, tuple(x.shape[-2:]) if upsample else None,
                              class_names=class_names, normalize=normalize)


def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass through ``model`` (eval mode) returning the target layer's output ``A`` (norm5,
    before the ReLU) and the logits computed from it exactly as ``XrayDenseNet.forward`` does,
    so a caller that needs both the probabilities and the heatmaps runs the network once."""
    clf = _check_head(model)
    was_training = model.training
    model.eval()
    try:
        xin = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # as XrayDenseNet.forward
        A = model.features(xin)                                   # (N, K, h, w)
    finally:
        model.train(was_training)
    logits = clf(F.adaptive_avg_pool2d(F.relu(A), 1).flatten(1))
    return A, logits


def cams_from_features(model: nn.Module, A: torch.Tensor, classes: Sequence[int | str] | None = None,
                       out_size: tuple[int, int] | None = None, *,
                       class_names: Sequence[str] | None = None,
                       normalize: bool = True) -> np.ndarray:
    """Grad-CAM maps of ``classes`` from the target layer's output ``A`` (see
    :func:`all_class_cams` for the math); ``out_size=None`` keeps the ``h x w`` grid."""
    clf = _check_head(model)
    idx = _resolve_classes(classes, clf.out_features, class_names)
    A = A.double()
    h, w = A.shape[-2:]
    frac_pos = (A > 0).double().mean(dim=(2, 3))                  # (N, K)
    W = clf.weight.detach().double()[idx]                         # (C, K)
    alpha = W[None] * frac_pos[:, None, :] / (h * w)              # (N, C, K)
    maps = torch.relu(torch.einsum("nck,nkij->ncij", alpha, A))   # (N, C, h, w)
    if out_size is not None:
        maps = upsample_maps(maps, out_size)
    if normalize:
        maps = normalize_maps(maps)
    return maps.float().cpu().numpy()


# --------------------------------------------------------------------------------------------
# overlay
# --------------------------------------------------------------------------------------------
def resize_map(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one 2-D map to ``size = (H, W)`` (float32)."""
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise ValueError(f"expected one 2-D heatmap, got shape {cam.shape}")
    if cam.shape == tuple(size):
        return cam
    t = torch.from_numpy(np.ascontiguousarray(cam))[None, None]
    return upsample_maps(t, tuple(size))[0, 0].numpy()


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


# --------------------------------------------------------------------------------------------
# localisation scores
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


def localisation_records(model: nn.Module, images: np.ndarray,
                         boxes_per_image: Sequence[Sequence[Sequence]],
                         box_image_sizes: Any, findings: Sequence[str] = paper.FINDINGS,
                         threshold: float = 0.5, batch_size: int = 32,
                         tolerance: float = 0.0, progress: bool = True) -> pd.DataFrame:
    """One row per (image, finding with a box): ``image``, ``finding``, ``pointing``, ``iou``.

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
        cams = all_class_cams(model, to_model_input(images[batch]))
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


def score_localisation(model: nn.Module, images: np.ndarray,
                       boxes_per_image: Sequence[Sequence[Sequence]], box_image_sizes: Any,
                       findings: Sequence[str] = paper.FINDINGS, threshold: float = 0.5,
                       batch_size: int = 32, tolerance: float = 0.0,
                       progress: bool = True) -> pd.DataFrame:
    """Per finding: ``n`` (images with a box of it), ``pointing`` hit rate, mean ``iou``.

    Arguments as :func:`localisation_records`.  The index is ``findings`` (all of them, in
    order); findings without boxes have ``n = 0`` and NaN scores.
    """
    rec = localisation_records(model, images, boxes_per_image, box_image_sizes, findings,
                               threshold, batch_size, tolerance, progress)
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


def select_films(labels: Sequence[str], boxes_per_image: Sequence[Sequence[Sequence]],
                 findings: Sequence[str] = paper.FINDINGS, per_finding: int = 4) -> list[int]:
    """Rows worth explaining: every film with a box of one of ``findings``, plus the first
    ``per_finding`` films labelled with each finding (galleries still have examples where boxes
    are few or absent).  Keeps the notebook from reading a whole 22,000-film test split."""
    keep = {i for i, b in enumerate(boxes_per_image) if any(x[0] in findings for x in b)}
    for f in findings:
        keep.update([i for i, lab in enumerate(labels) if f in str(lab).split("|")][:per_finding])
    return sorted(keep)


def case_cams(model: nn.Module, images: np.ndarray, cases: Sequence[tuple[int, str]],
              findings: Sequence[str] = paper.FINDINGS, batch_size: int = 32) -> np.ndarray:
    """Grad-CAM ``(len(cases), H, W)`` for ``(image index, finding)`` pairs, batched (fast path)."""
    from xray_utils.models import to_model_input

    out = np.zeros((len(cases),) + tuple(images.shape[1:]), dtype=np.float32)
    index = {f: k for k, f in enumerate(findings)}
    for s in range(0, len(cases), batch_size):
        chunk = cases[s:s + batch_size]
        cams = all_class_cams(model, to_model_input(images[[i for i, _ in chunk]]))
        out[s:s + len(chunk)] = cams[np.arange(len(chunk)), [index[f] for _, f in chunk]]
    return out


@torch.no_grad()
def probabilities(model: nn.Module, images: np.ndarray, batch_size: int = 32,
                  multilabel: bool = True) -> np.ndarray:
    """The model's probabilities ``(N, C)`` for 8-bit images ``(N, H, W)`` (sigmoid when
    ``multilabel``, else softmax), in batches, in eval mode (the previous mode is restored)."""
    from xray_utils.models import to_model_input

    was_training = model.training
    model.eval()
    out = []
    try:
        for s in range(0, len(images), batch_size):
            logits = model(to_model_input(images[s:s + batch_size]).to(_device_of(model)))
            p = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)
            out.append(p.float().cpu().numpy())
    finally:
        model.train(was_training)
    n_out = getattr(getattr(model, "classifier", None), "out_features", 0)
    return np.concatenate(out) if out else np.zeros((0, n_out), np.float32)


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
        probs[rows] = probabilities(model, images[rows], batch_size, multilabel)
    panels = []
    for (i, f), cam in zip(picks, cams):
        H, W = images[i].shape
        bxs = scale_boxes([b[1:5] for b in boxes_per_image[i] if b[0] == f], sizes[i], (W, H))
        panels.append({"image": images[i], "cam": cam, "boxes": bxs, "peak": cam_peak(cam),
                       "title": f"{f}  p={float(probs[i, list(findings).index(f)]):.2f}"
                                + ("" if bxs else " (no box)")})
    return panels


# --------------------------------------------------------------------------------------------
# randomisation sanity check
# --------------------------------------------------------------------------------------------
def randomized_copy(model: nn.Module, seed: int, scope: str = "all") -> nn.Module:
    """A deep copy of ``model`` with re-initialised weights (the original is untouched).

    ``scope="all"`` re-initialises every layer; ``scope="head"`` only the classifier and the
    last block (``features.denseblock4`` and ``features.norm5``) -- the first steps of the
    cascading randomisation of Adebayo et al. (2018).  If the heatmaps of the copy look like
    the trained model's, they explain the image (edges, contrast), not what the model learnt.
    The global random state is left as it was.
    """
    if scope not in ("all", "head"):
        raise ValueError(f"scope must be 'all' or 'head', got {scope!r}")
    clone = copy.deepcopy(model)
    if scope == "all":
        roots: list[nn.Module] = [clone]
    else:
        feats = getattr(clone, "features", None)
        roots = [clone.classifier] + [getattr(feats, n) for n in ("denseblock4", "norm5")
                                      if feats is not None and hasattr(feats, n)]
    device = _device_of(clone)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for root in roots:
            for m in root.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
    return clone.train(model.training)


def heatmap_similarity(a: np.ndarray, b: np.ndarray, method: str = "spearman") -> float:
    """Similarity of two heatmaps of the same shape.

    ``"spearman"``: rank correlation of the pixel values (1 = same ordering, about 0 =
    unrelated); ``"ssim"``: structural similarity (skimage, data range 1).  Flat maps have no
    ranking: Spearman then gives NaN.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"heatmaps differ in shape: {a.shape} vs {b.shape}")
    if method == "spearman":
        from scipy.stats import spearmanr

        if np.ptp(a) <= _FLAT or np.ptp(b) <= _FLAT:
            return float("nan")
        return float(spearmanr(a.ravel(), b.ravel()).statistic)
    if method == "ssim":
        from skimage.metrics import structural_similarity

        win = min(7, *a.shape)
        win -= 1 - win % 2  # odd window that fits small maps
        return float(structural_similarity(a, b, data_range=1.0, win_size=win))
    raise ValueError(f"unknown method {method!r}; use 'spearman' or 'ssim'")


# --------------------------------------------------------------------------------------------
# figures for the notebook
# --------------------------------------------------------------------------------------------
def draw_boxes(ax: Any, boxes: Iterable[Sequence[float]], color: str = "lime",
               linewidth: float = 1.5) -> None:
    """Draw ``(x, y, w, h)`` boxes (pixel coordinates of the shown image) on a matplotlib axis."""
    from matplotlib.patches import Rectangle

    for x, y, w, h in boxes:
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=color,
                               linewidth=linewidth))


def plot_cam_gallery(panels: Sequence[dict[str, Any]], ncols: int = 4, alpha: float = 0.4,
                     size: float = 2.6) -> Any:
    """Grid of overlays; each panel is ``{"image", "cam", "title", "boxes"?, "peak"?, "alpha"?}``.

    ``boxes`` are in the image's pixel coordinates; ``peak`` (row, col) is marked with a cross.
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
        draw_boxes(ax, p.get("boxes", ()))
        if p.get("peak") is not None:
            ax.plot(p["peak"][1], p["peak"][0], "w+", markersize=10, markeredgewidth=2)
        ax.set_title(p.get("title", ""), fontsize=8)
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
