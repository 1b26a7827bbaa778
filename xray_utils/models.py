"""DenseNet-121 for the three modules, the input transform they share, and checkpoints.

* :func:`build_model` -- torchvision DenseNet-121 with the head of a task (2-way softmax,
  14-way softmax, 14 sigmoid outputs).  Input is one grayscale channel, replicated to three
  inside the model so ImageNet weights apply unchanged.
* :func:`to_model_input` -- the one transform from 8-bit images to model input (per-image
  standardisation), used by training, evaluation, Grad-CAM and ``diagnose()``.
* :func:`save_checkpoint` / :func:`load_checkpoint` -- safetensors weights + a JSON that
  describes the model completely; loading never unpickles objects.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from xray_utils.config import paper
from xray_utils.config.paths import best_checkpoint

ARCH = "densenet121"
NORMALIZATION = "per_image_standardize"


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but cannot be had (offline and not in the torch cache)."""


class XrayDenseNet(nn.Module):
    """DenseNet-121 taking ``(N, 1, H, W)`` grayscale input.

    ``features`` is torchvision's feature extractor (the Grad-CAM target is its last block,
    ``features.norm5``); the head is ReLU -> global average pool -> ``classifier`` (linear).
    """

    def __init__(self, num_outputs: int, pretrained: bool = False) -> None:
        super().__init__()
        from torchvision.models import DenseNet121_Weights, densenet121

        weights = DenseNet121_Weights.IMAGENET1K_V1 if pretrained else None
        try:
            net = densenet121(weights=weights)
        except Exception as exc:  # urllib errors, hash mismatches, ...
            raise PretrainedWeightsUnavailable(
                "ImageNet weights for DenseNet-121 could not be downloaded "
                f"({type(exc).__name__}: {exc}). On a machine without internet, copy "
                "'densenet121-a639ec97.pth' into the torch hub cache "
                f"({torch.hub.get_dir()}/checkpoints/) or train from scratch with "
                "-p PRETRAINED False.") from exc
        self.features = net.features
        # DenseNet's blocks use in-place ReLU; Grad-CAM hooks need out-of-place ones.
        for m in self.features.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False
        self.classifier = nn.Linear(net.classifier.in_features, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        f = F.relu(self.features(x))
        f = F.adaptive_avg_pool2d(f, 1).flatten(1)
        return self.classifier(f)



def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The one device rule: ``None``/``"auto"`` -> the GPU when there is one, else the CPU.

    Any other value must name a device torch knows and that is present here: ``"cuda"`` on a
    machine without a GPU is an error, never a silent fall-back to the CPU.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r} ({exc}); use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no GPU here; use "
                         "'auto' or 'cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported by this tutorial; use auto, cpu "
                         "or cuda")
    return dev


def build_model(task: str, pretrained: bool = False, allow_fallback: bool = False) -> XrayDenseNet:
    """DenseNet-121 with the head of ``task``.

    ``pretrained=True`` asks torchvision for ImageNet weights; when they cannot be had and
    ``allow_fallback`` is set, it warns loudly and starts from random weights instead.
    """
    n = len(paper.classes_for(task))
    try:
        return XrayDenseNet(n, pretrained=pretrained)
    except PretrainedWeightsUnavailable as exc:
        if not allow_fallback:
            raise
        import warnings

        warnings.warn(f"{exc}\n-> FALLING BACK to random initial weights.", stacklevel=2)
        print(f"WARNING: {exc}\n-> FALLING BACK to random initial weights.")
        return XrayDenseNet(n, pretrained=False)


def to_model_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """8-bit image(s) ``(H, W)``, ``(N, H, W)`` or ``(N, 1, H, W)`` -> float ``(N, 1, H, W)``.

    Each image is standardised by its own mean and standard deviation (robust to the exposure
    and windowing differences between radiographs, which a fixed mean/std is not).
    """
    x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
    x = x.float()
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[:, None]
    # (x.std over dims (1, 2, 3) takes a slow path on batches; the norm is ~7x faster)
    flat = x.flatten(1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    std = (torch.linalg.vector_norm(centred, dim=1, keepdim=True)
           / math.sqrt(max(flat.shape[1] - 1, 1))).clamp_min(1.0)
    return (centred / std).view_as(x)


def checkpoint_meta(task: str, image_size: int, training: Mapping[str, Any] | None = None,
                    metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON that makes a checkpoint self-describing."""
    return {
        "format": 1, "arch": ARCH, "task": task, "classes": list(paper.classes_for(task)),
        "multilabel": paper.is_multilabel(task), "in_channels": 1, "image_size": int(image_size),
        "normalization": NORMALIZATION, "training": dict(training or {}),
        "metrics": dict(metrics or {}),
    }


def save_checkpoint(model: nn.Module, path: str | Path, meta: Mapping[str, Any]) -> Path:
    """Write ``<path>.safetensors`` (weights) and ``<path>.json`` (``meta``); returns the JSON path.

    Files are written to temporary names first and renamed, so an interruption never leaves a
    half-written checkpoint.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights, info = path.with_suffix(".safetensors"), path.with_suffix(".json")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights) + ".tmp")
    Path(str(weights) + ".tmp").replace(weights)
    info.with_suffix(".json.tmp").write_text(json.dumps(meta, indent=2, default=_json_default))
    info.with_suffix(".json.tmp").replace(info)
    return info


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.generic,)):
        return o.item()
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[XrayDenseNet, dict]:
    """Rebuild a model from ``<path>.json`` alone and load ``<path>.safetensors`` into it.

    ``path`` may name either file or the common stem.  The model is returned in eval mode.
    """
    from safetensors.torch import load_file

    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    info, weights = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    for f in (info, weights):
        if not f.is_file():
            raise FileNotFoundError(
                f"checkpoint file missing: {f}. Train the model first (notebooks 01-03) or pass "
                "the folder of an existing run.")
    meta = json.loads(info.read_text())
    if meta.get("arch") != ARCH:
        raise ValueError(f"{info}: unsupported architecture {meta.get('arch')!r}")
    model = XrayDenseNet(len(meta["classes"]), pretrained=False)
    model.load_state_dict(load_file(str(weights), device=str(device)))
    return model.to(device).eval(), meta


def init_features_from(model: XrayDenseNet, checkpoint: str | Path) -> int:
    """Start ``model``'s feature extractor from another trained checkpoint (transfer learning).

    Copies every ``features.*`` tensor of ``checkpoint`` (a ``best.json`` or its stem) into
    ``model``; the classifier keeps its fresh initialisation, since the other model's classes
    differ.  This is what the paper does with ImageNet weights for Module III; offline, the demo
    starts Module III from Module II, whose features have already learnt what radiographs look
    like.  Returns the number of tensors copied.
    """
    source, _ = load_checkpoint(checkpoint)
    theirs = {k: v for k, v in source.state_dict().items() if k.startswith("features.")}
    mine = model.state_dict()
    bad = [k for k, v in theirs.items() if k not in mine or mine[k].shape != v.shape]
    if bad or not theirs:
        raise ValueError(f"{checkpoint}: its feature weights do not fit a DenseNet-121 "
                         f"({len(bad)} mismatched tensors, e.g. {bad[:2]})")
    with torch.no_grad():
        for k, v in theirs.items():
            mine[k].copy_(v)
    return len(theirs)


#: Where untrained checkpoints written by :func:`write_routed_checkpoints` send every image.
ROUTES: tuple[str, ...] = ("not_xray", "type_only", "chest")


def write_routed_checkpoints(folder: str | Path, route: str = "chest", image_size: int = 32,
                             seed: int = 0, type_only_as: str = "hand",
                             note: str = "untrained, head forces a route") -> Path:
    """Untrained checkpoints of the three modules in ``<folder>/<task>/best.*``; returns ``folder``.

    The heads of Modules I and II get zero weights and a bias that forces ``route`` for every
    image: ``"not_xray"`` (Module I says photo), ``"type_only"`` (an X-ray of type
    ``type_only_as``) or ``"chest"`` (a chest film, so all three modules run).  Module III keeps
    its random head.  For tests and benchmarks: the compute is that of real models, the
    predictions mean nothing.
    """
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    folder = Path(folder)
    torch.manual_seed(seed)
    forced = {"xray_or_not": "not_xray" if route == "not_xray" else "xray",
              "xray_type": "chest" if route == "chest" else type_only_as}
    for task in paper.TASKS:
        model = build_model(task)
        if task in forced:
            classes = list(paper.classes_for(task))
            with torch.no_grad():
                model.classifier.weight.zero_()
                model.classifier.bias.fill_(-10.0)
                model.classifier.bias[classes.index(forced[task])] = 10.0
        meta = checkpoint_meta(task, image_size, training={"note": note})
        save_checkpoint(model, best_checkpoint(folder, task).with_suffix(""), meta)
    return folder
