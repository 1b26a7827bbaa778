"""DenseNet-121 for the three modules, the input transform they share, and checkpoints.

* :func:`build_model` -- torchvision DenseNet-121 with the head of a task (2-way softmax,
  14-way softmax, 14 sigmoid outputs).  Input is one grayscale channel, replicated to three
  inside the model so ImageNet weights apply unchanged.
* :func:`to_model_input` -- the one transform from 8-bit images to model input (per-image
  standardisation), used by training, evaluation, Grad-CAM and ``diagnose()``.
* :func:`predict_probabilities` -- a model's probabilities over 8-bit images, batched
  (sigmoid for the multi-label Module III, softmax for I and II).
* :func:`save_checkpoint` / :func:`load_checkpoint` -- safetensors weights + a JSON that
  describes the model completely (schema checked by :func:`validate_meta`, with the sha256 of
  the weights); loading verifies both and never unpickles objects.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from xray_utils.config import paper
from xray_utils.config.jsonable import to_jsonable
from xray_utils.config.profiles import check_device

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

    Any other value goes through :func:`xray_utils.config.profiles.check_device`: ``"cuda"`` on
    a machine without a GPU is an error (a ``ValueError``), never a silent fall-back to the CPU.
    """
    text = check_device("auto" if device is None else device)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(text)


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
    given = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
    x = given.float()
    if x is given:  # already float32 (.float() returned it): work on a copy, never on the caller's
        x = x.clone()
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[:, None]
    # centred and scaled in place in the one float copy (a second buffer of a 224 px batch no
    # longer fits in the CPU's cache: 2.3x faster for 32 images, the same values to the bit);
    # x.std over dims (1, 2, 3) takes a slow path on batches, the norm is ~7x faster
    flat = x.reshape(x.shape[0], -1)
    flat.sub_(flat.mean(dim=1, keepdim=True))
    std = (torch.linalg.vector_norm(flat, dim=1, keepdim=True)
           / math.sqrt(max(flat.shape[1] - 1, 1))).clamp_min(1.0)
    return flat.div_(std).view_as(x)


def predict_probabilities(model: nn.Module, meta: Mapping[str, Any], images_uint8: Any,
                          batch_size: int = 64, device: str | torch.device | None = None,
                          rows: Sequence[int] | np.ndarray | None = None,
                          desc: str | None = None) -> np.ndarray:
    """Probabilities ``(N, C)`` (float32 NumPy) of ``model`` over 8-bit images ``(N, H, W)``.

    Sigmoid per class when ``meta["multilabel"]`` (Module III), softmax otherwise.  The images
    go through :func:`to_model_input` ``batch_size`` at a time, so ``images_uint8`` may be a
    memory-mapped cache; ``rows`` picks (in order) the images to use.  ``device``: where to
    run (``None``: where the model is; the model is moved otherwise).  The model runs in eval
    mode and gets its previous mode back.  ``desc`` shows a progress bar with that label.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if device is not None:
        model = model.to(resolve_device(device))
    # channels_last, as in training: oneDNN's faster layout for these convolutions (DenseNet-121
    # inference 1.2-1.5x at 40-64 px on 2 CPU cores; probabilities the same to about 1e-6);
    # converted once: model.to() on a model already converted costs 3 ms a call
    if any(p.dim() == 4 and not p.is_contiguous(memory_format=torch.channels_last)
           for p in model.parameters()):
        model = model.to(memory_format=torch.channels_last)
    param = next(model.parameters(), None)
    run_on = param.device if param is not None else torch.device("cpu")
    index = np.arange(len(images_uint8)) if rows is None else np.asarray(rows, dtype=np.int64)
    multilabel = bool(meta["multilabel"])
    n_out = len(meta["classes"]) if "classes" in meta else getattr(
        getattr(model, "classifier", None), "out_features", 0)
    out = np.empty((len(index), n_out), dtype=np.float32)
    starts = range(0, len(index), batch_size)
    if desc is not None:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, leave=False)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in starts:
                chunk = index[start:start + batch_size]
                batch = (images_uint8[start:start + batch_size] if rows is None
                         else images_uint8[chunk])
                x = to_model_input(np.asarray(batch)).to(run_on)
                logits = model(x.contiguous(memory_format=torch.channels_last)).float()
                probs = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)
                out[start:start + len(chunk)] = probs.cpu().numpy()
    finally:
        model.train(was_training)
    return out


def checkpoint_meta(task: str, image_size: int, training: Mapping[str, Any] | None = None,
                    metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON that makes a checkpoint self-describing."""
    return {
        "format": 1, "arch": ARCH, "task": task, "classes": list(paper.classes_for(task)),
        "multilabel": paper.is_multilabel(task), "in_channels": 1, "image_size": int(image_size),
        "normalization": NORMALIZATION, "training": dict(training or {}),
        "metrics": dict(metrics or {}),
    }


#: Input sizes (px) a checkpoint may declare: DenseNet-121 needs at least 32 px (five
#: halvings down to 1 x 1); above 1024 px the tutorial's models were never trained or tested.
IMAGE_SIZE_RANGE = (32, 1024)


#: best.json's key for the one digest over best.json itself and its weights file
#: (:func:`checkpoint_digest`): any change to either is refused at loading.
DIGEST_KEY = "checkpoint_sha256"
#: The command that adds the digest to checkpoints written before it existed.
UPGRADE_COMMAND = "python -m xray_utils upgrade-checkpoints"


class CheckpointInvalid(ValueError):
    """A checkpoint's files exist but fail verification (schema, sha256, non-finite weights)."""


def validate_meta(meta: Any, where: str = "best.json") -> dict[str, Any]:
    """Check a checkpoint's JSON against the schema; returns it, or raises :class:`CheckpointInvalid`
    listing every problem (task, classes of that task, image size, multilabel, architecture)."""
    if not isinstance(meta, dict):
        raise CheckpointInvalid(f"{where}: not a checkpoint description (a JSON object is "
                                f"expected, found {type(meta).__name__}).")
    problems = []
    task = meta.get("task")
    if meta.get("arch") != ARCH:
        problems.append(f"arch is {meta.get('arch')!r}, expected {ARCH!r}")
    if task not in paper.TASKS:
        problems.append(f"task is {task!r}, expected one of {list(paper.TASKS)}")
    else:
        if meta.get("classes") != list(paper.classes_for(task)):
            problems.append(f"classes are {meta.get('classes')!r}, not the paper's classes of "
                            f"{task!r}")
        if meta.get("multilabel") is not paper.is_multilabel(task):
            problems.append(f"multilabel is {meta.get('multilabel')!r}, but {task!r} is "
                            f"{'multi-label' if paper.is_multilabel(task) else 'single-label'}")
    size, (low, high) = meta.get("image_size"), IMAGE_SIZE_RANGE
    if type(size) is not int or not low <= size <= high:
        problems.append(f"image_size is {size!r}, expected a whole number of pixels from {low} "
                        f"to {high}")
    if meta.get("in_channels", 1) != 1:
        problems.append(f"in_channels is {meta.get('in_channels')!r}, expected 1")
    if meta.get("normalization", NORMALIZATION) != NORMALIZATION:
        problems.append(f"normalization is {meta.get('normalization')!r}, expected "
                        f"{NORMALIZATION!r}")
    digest = meta.get("weights_sha256")
    if digest is not None and (not isinstance(digest, str) or len(digest) != 64
                               or any(c not in "0123456789abcdef" for c in digest)):
        problems.append(f"weights_sha256 is {digest!r}, not a sha256 hex digest")
    sealed = meta.get(DIGEST_KEY)
    if sealed is not None and (not isinstance(sealed, str) or len(sealed) != 64
                               or any(c not in "0123456789abcdef" for c in sealed)):
        problems.append(f"{DIGEST_KEY} is {sealed!r}, not a sha256 hex digest")
    if problems:
        raise CheckpointInvalid(f"{where}: invalid checkpoint description: " + "; ".join(problems)
                                + ". Retrain the module or restore the original file.")
    return meta


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_digest(meta: Mapping[str, Any], weights: str | Path) -> str:
    """The sha256 over best.json's content (all keys but :data:`DIGEST_KEY`, as canonical JSON:
    sorted keys, no spaces) and the bytes of the weights file, binding the two together."""
    import hashlib

    body = {k: v for k, v in meta.items() if k != DIGEST_KEY}
    h = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                  allow_nan=False).encode("utf-8"))
    h.update(b"\0")
    with open(weights, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _non_finite(state: Mapping[str, torch.Tensor]) -> list[str]:
    return [k for k, v in state.items()
            if torch.is_floating_point(v) and not bool(torch.isfinite(v).all())]


def save_checkpoint(model: nn.Module, path: str | Path, meta: Mapping[str, Any]) -> Path:
    """Write ``<path>.safetensors`` (weights) and ``<path>.json`` (``meta``); returns the JSON path.

    The JSON carries the sha256 of the weights file (``weights_sha256``) and one digest over
    itself and the weights (:data:`DIGEST_KEY`, :func:`checkpoint_digest`), which loading checks.
    Non-finite weights (NaN, inf: a diverged training) are refused.  Files are written to
    temporary names first and renamed, so an interruption never leaves a half-written
    checkpoint; both get the same file mode (the one the JSON gets from the umask).
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights, info = path.with_suffix(".safetensors"), path.with_suffix(".json")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = _non_finite(state)
    if bad:
        raise CheckpointInvalid(f"{weights}: not saved: {len(bad)} weight tensors hold NaN or "
                                f"infinite values (e.g. {bad[0]}); the training diverged. Lower "
                                "the learning rate (-p LR ...) and train again.")
    meta = dict(meta)
    validate_meta(to_jsonable(meta), str(info))
    tmp_weights, tmp_info = Path(str(weights) + ".tmp"), info.with_suffix(".json.tmp")
    save_file(state, str(tmp_weights))
    meta["weights_sha256"] = file_sha256(tmp_weights)
    # JSON has no NaN: a non-finite metric (e.g. an AUC without positives) is written as null;
    # the digest is taken over exactly what loading will parse
    doc = json.loads(json.dumps(to_jsonable(meta), allow_nan=False))
    doc.pop(DIGEST_KEY, None)
    doc[DIGEST_KEY] = checkpoint_digest(doc, tmp_weights)
    tmp_info.write_text(json.dumps(doc, indent=2, allow_nan=False))
    tmp_weights.chmod(tmp_info.stat().st_mode & 0o777)
    tmp_weights.replace(weights)
    tmp_info.replace(info)
    return info


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    task: str | None = None) -> tuple[XrayDenseNet, dict]:
    """Rebuild a model from ``<path>.json`` alone and load ``<path>.safetensors`` into it.

    ``path`` may name either file or the common stem; ``task``, when given, must be the
    checkpoint's.  Verified before use: the JSON's schema (:func:`validate_meta`), the weights'
    sha256 against ``weights_sha256``, the tensors' names and shapes, and that every weight is
    finite, and the digest over the JSON and the weights together (:data:`DIGEST_KEY`); any
    failure is a :class:`CheckpointInvalid` naming the file.  A checkpoint without that digest
    (written by an older version) is refused, naming :data:`UPGRADE_COMMAND`, which adds it
    (:func:`upgrade_checkpoints`).  The model is returned in eval mode.
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
    try:
        meta = json.loads(info.read_text(encoding="utf-8"),
                          parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointInvalid(f"{info}: not valid JSON ({exc}); the file is damaged. Retrain "
                                "the module or restore the original file.") from None
    validate_meta(meta, str(info))
    if task is not None and meta["task"] != task:
        raise CheckpointInvalid(f"{info}: made for task {meta['task']!r}, expected {task!r}; "
                                "check the folder.")
    digest = meta.get("weights_sha256")
    if digest is not None and file_sha256(weights) != digest:
        raise CheckpointInvalid(f"{weights}: its sha256 differs from the one recorded in "
                                f"{info.name}: the weights file is damaged or was replaced. "
                                "Retrain the module or restore the original files.")
    sealed = meta.get(DIGEST_KEY)
    if sealed is None:
        raise CheckpointInvalid(
            f"{info}: carries no {DIGEST_KEY} (one digest over {info.name} and its weights): it "
            f"was written by an older version, and an edit of it could not be detected. If you "
            f"trust these files, run `{UPGRADE_COMMAND} {info.parent.parent}` once; otherwise "
            "retrain the module.")
    if checkpoint_digest(meta, weights) != sealed:
        raise CheckpointInvalid(
            f"{info}: {info.name} or {weights.name} changed after they were written (their "
            f"{DIGEST_KEY} no longer matches; e.g. an edited image_size). Restore the original "
            f"files or retrain the module; if you edited {info.name} on purpose, run "
            f"`{UPGRADE_COMMAND} --reseal {info.parent.parent}`.")
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # bad safetensors header, truncated data
        raise CheckpointInvalid(f"{weights}: not a readable safetensors file ({exc}). Retrain "
                                "the module or restore the original file.") from None
    bad = _non_finite(state)
    if bad:
        raise CheckpointInvalid(f"{weights}: {len(bad)} weight tensors hold NaN or infinite "
                                f"values (e.g. {bad[0]}); the model cannot give meaningful "
                                "results. Retrain the module.")
    model = XrayDenseNet(len(meta["classes"]), pretrained=False)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointInvalid(f"{weights}: the tensors do not fit a DenseNet-121 for "
                                f"{meta['task']!r} ({' '.join(first[:3])[:300]}). Retrain the "
                                "module.") from None
    return model.to(device).eval(), meta


def upgrade_checkpoints(folder: str | Path, reseal: bool = False) -> list[tuple[Path, str]]:
    """Add the digest (:data:`DIGEST_KEY`) to every checkpoint JSON under ``folder``.

    Each ``*.json`` with a ``.safetensors`` beside it is checked first (schema, the weights'
    ``weights_sha256`` when recorded; it is added when missing); a checkpoint whose digest is
    present and right is left alone.  One whose digest no longer matches is refused unless
    ``reseal=True`` (you edited it on purpose).  Returns ``(json path, what happened)`` per
    checkpoint: ``"upgraded"``, ``"resealed"``, ``"current"`` or a refusal sentence.
    """
    out: list[tuple[Path, str]] = []
    for info in sorted(Path(folder).rglob("*.json")):
        weights = info.with_suffix(".safetensors")
        if not weights.is_file():
            continue
        try:
            meta = json.loads(info.read_text(encoding="utf-8"))
            validate_meta(meta, str(info))
        except (ValueError, UnicodeDecodeError, CheckpointInvalid) as exc:
            out.append((info, f"refused: {exc}"))
            continue
        digest = meta.get("weights_sha256")
        if digest is not None and file_sha256(weights) != digest:
            out.append((info, f"refused: {weights} differs from its recorded sha256; restore "
                              "it or retrain."))
            continue
        sealed = meta.get(DIGEST_KEY)
        if sealed is not None and checkpoint_digest(meta, weights) == sealed:
            out.append((info, "current"))
            continue
        if sealed is not None and not reseal:
            out.append((info, f"refused: its {DIGEST_KEY} does not match (edited or damaged); "
                              "pass --reseal only if you changed it on purpose."))
            continue
        meta["weights_sha256"] = digest or file_sha256(weights)
        meta.pop(DIGEST_KEY, None)
        meta[DIGEST_KEY] = checkpoint_digest(meta, weights)
        tmp = info.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=2, allow_nan=False))
        tmp.chmod(info.stat().st_mode & 0o777)
        tmp.replace(info)
        out.append((info, "resealed" if sealed is not None else "upgraded"))
    return out


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

