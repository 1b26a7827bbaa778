"""Grad-CAM for the project's DenseNet-121 models, taught from scratch and scored.

Grad-CAM (Selvaraju et al., 2017) explains one output ``y_c`` of a CNN with a heatmap over the
last convolutional block: with ``A`` the block's activations (``K`` channels of ``h x w``),

    alpha_ck = mean_ij dy_c / dA_kij          (channel weights: pooled gradients)
    cam_c    = ReLU(sum_k alpha_ck * A_k)     (weighted sum of the activation maps)

upsampled (bilinear) to the input size and scaled to ``[0, 1]``.  For :class:`XrayDenseNet`
the block is ``model.features`` (its last module is ``norm5``); the model applies ReLU, global
average pooling and the linear ``classifier`` after it.

What is here (the method):

* :class:`GradCAM` -- the backward-based version (hooks + autograd), batched, a context manager
  that always removes its hooks.  Matches ``pytorch_grad_cam.GradCAM`` (tested; the notebook
  runs that library beside it as the reference).
* :func:`all_class_cams` -- the same maps for every class from ONE forward pass and no backward
  pass: for this head the gradient has a closed form (see the function's docstring);
  :func:`features_and_logits` + :func:`cams_from_features` split it for ``diagnose()``, and
  :func:`case_cams` batches it over ``(image, finding)`` pairs.
* The randomisation sanity check (Adebayo et al., 2018): :func:`randomized_copy` and
  :func:`heatmap_similarity`.

Scoring the maps against boxes is :mod:`xray_utils.explain.localisation`; the overlay and the
figures are :mod:`xray_utils.explain.plots`.

Normalisation of every map (both paths, and what pytorch-grad-cam does): after the ReLU and the
upsampling each map is min-max scaled to ``[0, 1]``.  A map with no spread -- in particular the
all-zero map that Grad-CAM gives when no location has positive evidence for the class -- has no
meaningful maximum and is returned as all zeros (never NaN).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from xray_utils.config import paper

#: Ranges below this are treated as "no spread" when a map is scaled to [0, 1].
_FLAT = 1e-12


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

def resize_map(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one 2-D map to ``size = (H, W)`` (float32)."""
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise ValueError(f"expected one 2-D heatmap, got shape {cam.shape}")
    if cam.shape == tuple(size):
        return cam
    t = torch.from_numpy(np.ascontiguousarray(cam))[None, None]
    return upsample_maps(t, tuple(size))[0, 0].numpy()

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
