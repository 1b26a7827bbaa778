"""``diagnose()``: the three modules chained as in the paper (Fig. 1), with Grad-CAM heatmaps.

For each image: Module I says "X-ray or not" -- a photo stops there; Module II names the X-ray
type -- a radiograph that is not a chest film stops there; Module III gives the probability of
each of the 14 ChestX-ray14 findings, and Grad-CAM shows where the top findings were seen.
The decision rule is :mod:`xray_utils.diagnose.rule` (shared with the end-to-end evaluation), the
input transform :func:`xray_utils.models.to_model_input` (shared with training), the image
reader :func:`xray_utils.data.imageio.read_gray`, and the heatmaps
:func:`xray_utils.explain.gradcam.all_class_cams` (one forward pass for every class).

* :class:`Diagnoser` loads the three checkpoints once and diagnoses lists of files or arrays in
  batches: one forward pass per model per batch, and only the images that reach a module are
  run through it (early exit).
* :func:`diagnose` is the one-call convenience; it keeps one :class:`Diagnoser` per checkpoint
  folder, reloaded when the checkpoints change.
* :class:`Diagnosis` is one image's result; ``to_json()`` gives the record the command line
  prints (``python -m xray_utils diagnose --json``).
* :func:`measure_latency` times ``diagnose()`` against one bare DenseNet-121 forward pass.

A file that cannot be read gives ``Diagnosis(ok=False, error=<message>)``; the other files of
the batch are still diagnosed.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from xray_utils.config import paper
from xray_utils.config.paths import checkpoint_files, project_paths
from xray_utils.data.imageio import (
    MIN_SIDE,
    ImageReadError,
    display_name,
    pil_to_gray,
    read_gray,
    resize_gray,
    to_uint8,
)
from xray_utils.diagnose import rule as chain
from xray_utils.explain.gradcam import cams_from_features, features_and_logits
from xray_utils.models import (
    CheckpointInvalid,
    load_checkpoint,
    predict_probabilities,
    resolve_device,
    to_model_input,
)

#: Heatmaps are made for this many of the most probable findings unless told otherwise.
DEFAULT_TOP_K = 3
#: Images per forward pass.
DEFAULT_BATCH_SIZE = 16
#: The grayscale copy kept in a Diagnosis (for overlays) has at most this long side, in px.
PREVIEW_SIZE = 512
#: File name of a module's checkpoint inside ``<checkpoints_dir>/<task>/``.

ImageInput = str | os.PathLike | np.ndarray | Image.Image


class CheckpointsMissing(FileNotFoundError):
    """A checkpoint file of one of the three modules does not exist."""


class CheckpointError(ValueError):
    """A checkpoint exists but cannot be used (corrupt, or made for other classes)."""


def default_checkpoints_dir() -> Path:
    """The checkpoints of the latest demo run: ``project_paths("demo").checkpoints_dir``.

    That is ``<repo>/runs/demo/checkpoints`` (or ``$XRAY_RUN_DIR/checkpoints``), where notebooks
    01-03 (``make demo``) write ``<task>/best.safetensors`` and ``<task>/best.json``.
    """
    return project_paths("demo").checkpoints_dir


# --------------------------------------------------------------------------- the result


@dataclass
class Diagnosis:
    """One image's diagnosis.

    ``is_xray`` is Module I's probability of "xray"; ``xray_type`` and ``type_probs`` (all 14
    types) are set for X-rays; ``findings`` (all 14 probabilities) for chest films;
    ``heatmaps`` maps each explained finding to a Grad-CAM map (float32 in [0, 1], at Module
    III's input size).  ``image`` is the 8-bit grayscale picture that was diagnosed (long side
    at most :data:`PREVIEW_SIZE`), kept so heatmaps can be drawn over it; it is not part of
    the JSON record.
    """

    file: str | None
    ok: bool
    error: str | None = None
    is_xray: float | None = None
    xray_type: str | None = None
    type_probs: dict[str, float] | None = None
    findings: dict[str, float] | None = None
    heatmaps: dict[str, np.ndarray] | None = None
    image: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def stage(self) -> str | None:
        """How far the chain went: ``"not_xray"``, ``"type_only"``, ``"chest"`` (None if failed)."""
        if not self.ok:
            return None
        if self.xray_type is None:
            return "not_xray"
        return "chest" if self.findings is not None else "type_only"

    def top_findings(self, k: int = DEFAULT_TOP_K) -> list[tuple[str, float]]:
        """The ``k`` most probable findings, most probable first (empty if not a chest film)."""
        if not self.findings:
            return []
        return sorted(self.findings.items(), key=lambda kv: -kv[1])[:k]

    def verdict(self) -> str:
        """One line a person reads: what the chain concluded (:func:`verdict.verdict_line`)."""
        from xray_utils.diagnose.verdict import verdict_line

        return verdict_line(self)

    def overlay(self, finding: str, alpha: float = 0.4) -> np.ndarray:
        """The heatmap of ``finding`` blended over the image: RGB uint8 (``explain.plots.overlay``)."""
        from xray_utils.explain.plots import overlay

        if not self.heatmaps or finding not in self.heatmaps:
            have = sorted(self.heatmaps or {})
            raise KeyError(f"no heatmap for {finding!r} in this diagnosis (have: {have}); "
                           "diagnose with heatmaps=<k> to explain more findings")
        if self.image is None:
            raise ValueError("this diagnosis keeps no image to draw the heatmap on")
        return overlay(self.image, self.heatmaps[finding], alpha=alpha)

    def to_json(self, heatmap_paths: dict[str, str] | Sequence[str] | None = None) -> dict[str, Any]:
        """The JSON record: ``file, ok, error, is_xray, xray_type, type_probs, findings, heatmaps``.

        ``heatmaps`` is ``heatmap_paths`` (the PNG files written, see :func:`write_heatmaps`)
        or null: arrays are never put into JSON.
        """
        def num(v: Any) -> float | None:  # JSON has no NaN: a non-finite value becomes null
            return round(float(v), 6) if v is not None and np.isfinite(v) else None

        def probs(d: dict[str, float] | None) -> dict[str, float | None] | None:
            return None if d is None else {k: num(v) for k, v in d.items()}

        paths: Any = None
        if heatmap_paths is not None:
            paths = ({k: str(v) for k, v in heatmap_paths.items()}
                     if isinstance(heatmap_paths, dict) else [str(p) for p in heatmap_paths])
        return {
            "file": self.file, "ok": bool(self.ok), "error": self.error,
            "is_xray": num(self.is_xray),
            "xray_type": self.xray_type, "type_probs": probs(self.type_probs),
            "findings": probs(self.findings), "heatmaps": paths,
        }


def write_heatmaps(diagnosis: Diagnosis, folder: str | os.PathLike, prefix: str | None = None,
                   alpha: float = 0.4) -> dict[str, str]:
    """Write one PNG overlay per heatmap of ``diagnosis`` into ``folder``; finding -> path.

    Files are named ``<prefix>_<finding>.png``; ``prefix`` defaults to the image's file stem
    (give a unique one, e.g. with an index, when several files share a name).
    """
    if not diagnosis.heatmaps:
        return {}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if prefix is None:
        prefix = Path(diagnosis.file).stem if diagnosis.file else "image"
    out = {}
    for finding in diagnosis.heatmaps:
        path = folder / f"{prefix}_{finding}.png"
        Image.fromarray(diagnosis.overlay(finding, alpha=alpha)).save(path)
        out[finding] = str(path)
    return out


# --------------------------------------------------------------------------- the chain


def _top_k(heatmaps: bool | int | None, default: int) -> int:
    """``heatmaps`` argument -> number of findings to explain (True = default, False = 0)."""
    if heatmaps is True:
        return default
    if heatmaps is False or heatmaps is None:
        return 0
    k = int(heatmaps)
    if k < 0:
        raise ValueError(f"heatmaps must be True, False or a number >= 0, got {heatmaps!r}")
    return min(k, len(paper.FINDINGS))


def _preview(gray: np.ndarray, size: int = PREVIEW_SIZE) -> np.ndarray:
    """Downscale (keeping the aspect ratio) so the long side is at most ``size``."""
    h, w = gray.shape
    scale = size / max(h, w)
    if scale >= 1:
        return gray
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(gray).resize(new, Image.BILINEAR), dtype=np.uint8)


def _item_name(item: Any) -> str | None:
    """The printable name of an input: the escaped file name of a path, else None."""
    if isinstance(item, (str, bytes, os.PathLike)):
        try:
            return display_name(os.fsdecode(item))
        except (TypeError, ValueError):
            return repr(item)
    return None


def _as_gray(item: ImageInput, any_modality: bool = False,
             reader: Any = None) -> tuple[str | None, np.ndarray]:
    """A path, array or PIL image -> (file name or None, 2-D uint8); ImageReadError if not.

    Files are read with ``reader.read_gray`` when given (a
    :class:`~xray_utils.data.decode_worker.DecodeWorker`: under the decoding budget), else in
    this process."""
    if isinstance(item, (str, bytes, os.PathLike)):
        name = _item_name(item)
        try:
            path = Path(os.fsdecode(item))
        except (TypeError, ValueError) as exc:
            raise ImageReadError(f"{name}: not a usable file name ({exc}).") from None
        if "\x00" in str(path):
            raise ImageReadError(f"{name}: a file name cannot contain a NUL character.")
        read = reader.read_gray if reader is not None else read_gray
        return name, read(path, any_modality=any_modality)
    if isinstance(item, Image.Image):
        w, h = item.size
        if min(w, h) < MIN_SIDE:
            raise ImageReadError(f"<PIL image>: {w} x {h} pixels; at least {MIN_SIDE} px on each "
                                 "side are needed.")
        return None, pil_to_gray(item, "<PIL image>")
    if isinstance(item, np.ndarray):
        a = item
        kind = a.dtype.kind
        if kind == "b":
            a = a.astype(np.uint8) * 255
        elif kind not in "uif":
            raise ImageReadError(f"<array>: an array of {a.dtype} values is not an image; pass "
                                 "numbers (uint8 0-255, or any integer or float range).")
        if a.ndim == 3 and a.shape[-1] in (3, 4) and min(a.shape[:2]) >= 1:
            a = np.asarray(Image.fromarray(to_uint8(a[..., :3]) if a.dtype != np.uint8
                                           else np.ascontiguousarray(a[..., :3])).convert("L"))
        if a.ndim != 2 or min(a.shape) < MIN_SIDE:
            raise ImageReadError(f"<array>: expected a 2-D grayscale image (H, W) at least "
                                 f"{MIN_SIDE} px on each side, got an array of shape "
                                 f"{item.shape}")
        return None, (np.ascontiguousarray(a) if a.dtype == np.uint8 else to_uint8(a))
    raise ImageReadError(f"<{type(item).__name__}>: not an image; pass a file path, a 2-D "
                         "NumPy array or a PIL image")


class Diagnoser:
    """The three trained modules, loaded once, chained as in the paper.

    ``checkpoints_dir`` holds ``xray_or_not/``, ``xray_type/`` and ``chest/``, each with
    ``best.json`` + ``best.safetensors`` (default: :func:`default_checkpoints_dir`).  Each
    model gets its images at the size its checkpoint was trained at (``meta["image_size"]``).
    """

    def __init__(self, checkpoints_dir: str | os.PathLike | None = None,
                 device: str | torch.device | None = None,
                 threshold: float = chain.XRAY_THRESHOLD, top_k: int = DEFAULT_TOP_K,
                 batch_size: int = DEFAULT_BATCH_SIZE, any_modality: bool = False,
                 isolate: bool = True) -> None:
        self.checkpoints_dir = Path(checkpoints_dir or default_checkpoints_dir()).expanduser()
        self.device = resolve_device(device)
        #: diagnose DICOM files of non-radiograph modalities too (CT, MR, ...; for teaching)
        self.any_modality = bool(any_modality)
        self.threshold = float(threshold)
        self.top_k = int(top_k)
        self.batch_size = int(batch_size)
        self.models: dict[str, torch.nn.Module] = {}
        self.meta: dict[str, dict] = {}
        for task in paper.TASKS:
            self.models[task], self.meta[task] = self._load(task)
        #: files are decoded in a child process under the decoding budget (memory and time,
        #: :mod:`xray_utils.data.decode_worker`); ``isolate=False`` decodes in this process
        self.isolate = bool(isolate)
        self._worker = None

    @property
    def reader(self):
        """The :class:`~xray_utils.data.decode_worker.DecodeWorker` files are decoded in (None
        when ``isolate=False``); started on first use."""
        if not self.isolate:
            return None
        if self._worker is None:
            from xray_utils.data.decode_worker import DecodeWorker

            self._worker = DecodeWorker()
        return self._worker

    def read_bytes(self, data: bytes | bytearray | memoryview, name: str) -> np.ndarray:
        """An uploaded file's bytes -> 2-D uint8, read as files are (under the decoding budget);
        raises :class:`~xray_utils.data.imageio.ImageReadError`."""
        if self.reader is None:
            from xray_utils.data.imageio import read_gray_bytes

            return read_gray_bytes(data, name, any_modality=self.any_modality)
        return self.reader.read_gray_bytes(data, name, any_modality=self.any_modality)

    def close(self) -> None:
        """End the decoding child process (a later file starts a new one)."""
        if self._worker is not None:
            self._worker.close()

    def _load(self, task: str) -> tuple[torch.nn.Module, dict]:
        info, weights = checkpoint_files(self.checkpoints_dir, task)
        for f in (info, weights):
            if not f.is_file():
                raise CheckpointsMissing(
                    f"checkpoint not found: {f}. Run notebooks 01-03 (make demo) first to train "
                    "the three modules, or pass the checkpoints folder of an existing run "
                    "(<run_dir>/checkpoints).")
        try:
            model, meta = load_checkpoint(info, device=self.device, task=task)
        except CheckpointInvalid as exc:  # schema, sha256, non-finite weights: says it all
            raise CheckpointError(f"{info}: the checkpoint cannot be loaded: {exc}") from exc
        except Exception as exc:  # unreadable files
            raise CheckpointError(f"{info}: the checkpoint cannot be loaded ({type(exc).__name__}:"
                                  f" {exc}). Retrain the module (notebooks 01-03).") from exc
        expected = list(paper.classes_for(task))
        if list(meta.get("classes", [])) != expected or meta.get("task", task) != task:
            raise CheckpointError(f"{info}: made for task {meta.get('task')!r} with classes "
                                  f"{meta.get('classes')}, expected {task!r} with {expected}.")
        return model.eval(), meta

    def image_size(self, task: str) -> int:
        """The input size (px) of ``task``'s model."""
        return int(self.meta[task]["image_size"])

    def _images(self, task: str, grays: Sequence[np.ndarray], rows: Iterable[int],
                memo: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
        """8-bit images ``(n, S, S)`` of ``grays[rows]`` at ``task``'s size; resized images are
        shared via ``memo`` (modules trained at the same size reuse one resize)."""
        size = self.image_size(task)
        batch = []
        for i in rows:
            if (size, i) not in memo:
                memo[size, i] = resize_gray(grays[i], size)
            batch.append(memo[size, i])
        return np.stack(batch)

    def _probs(self, task: str, images: np.ndarray) -> np.ndarray:
        """``task``'s probabilities over ``images`` (one batch)."""
        return predict_probabilities(self.models[task], self.meta[task], images,
                                     batch_size=max(len(images), 1)).astype(np.float64)

    def diagnose(self, images_or_paths: Iterable[ImageInput] | ImageInput,
                 heatmaps: bool | int = True, progress: bool | None = None) -> list[Diagnosis]:
        """Diagnose files and/or arrays; one :class:`Diagnosis` per input, in order.

        ``heatmaps``: ``True`` explains the ``top_k`` most probable findings of each chest film,
        an int ``k`` the top ``k`` (14 = all), ``False`` none.  Unreadable inputs (and inputs
        of any other type) give ``ok=False`` with a message; they never stop the batch.
        """
        if isinstance(images_or_paths, (str, bytes, os.PathLike, np.ndarray, Image.Image)):
            images_or_paths = [images_or_paths]
        items = list(images_or_paths)
        starts = range(0, len(items), self.batch_size)
        show = progress if progress is not None else len(starts) > 1
        bar = tqdm(total=len(items), desc="diagnose", disable=not show, leave=False)
        results: list[Diagnosis] = []
        for d in self.iter_diagnose(items, heatmaps=heatmaps):
            results.append(d)
            bar.update(1)
        bar.close()
        return results

    __call__ = diagnose

    def iter_diagnose(self, images_or_paths: Iterable[ImageInput], heatmaps: bool | int = True,
                      keep_images: bool = True) -> Iterator[Diagnosis]:
        """Like :meth:`diagnose`, but yields each result as soon as its batch is done.

        Inputs are taken from the iterable one batch at a time, so memory does not grow with
        the number of inputs when the caller does not keep the results (the command line);
        ``keep_images=False`` also drops each result's preview image once its heatmaps exist.
        """
        k = _top_k(heatmaps, self.top_k)
        batch: list[ImageInput] = []
        for item in images_or_paths:
            batch.append(item)
            if len(batch) >= self.batch_size:
                yield from self._diagnose_batch(batch, k, keep_images)
                batch = []
        if batch:
            yield from self._diagnose_batch(batch, k, keep_images)

    def _diagnose_batch(self, items: Sequence[ImageInput], k: int,
                        keep_images: bool = True) -> list[Diagnosis]:
        out: list[Diagnosis] = []
        grays: list[np.ndarray] = []
        slots: list[int] = []
        for item in items:
            try:
                name, gray = _as_gray(item, self.any_modality, self.reader)
                blank = chain.blank_reason(gray)
                if blank:
                    raise ImageReadError(f"{name or '<image>'}: {blank}")
            except ImageReadError as exc:
                out.append(Diagnosis(file=_item_name(item), ok=False, error=str(exc)))
                continue
            except Exception as exc:  # any other input problem stays this input's problem
                name = _item_name(item) or f"<{type(item).__name__}>"
                out.append(Diagnosis(file=_item_name(item), ok=False,
                                     error=f"{name}: cannot be used as an image "
                                           f"({type(exc).__name__}: {exc})."))
                continue
            slots.append(len(out))
            grays.append(gray)
            out.append(Diagnosis(file=name, ok=True, image=_preview(gray)))
        if not grays:
            return out
        self._run_models(out, grays, slots, k)
        for j, slot in enumerate(slots):
            d = out[slot]
            values = [d.is_xray, *(d.type_probs or {}).values(), *(d.findings or {}).values()]
            if not all(np.isfinite(v) for v in values if v is not None):
                out[slot] = Diagnosis(
                    file=d.file, ok=False,
                    error=f"{d.file or '<image>'}: the models gave non-finite output (NaN or "
                          "infinity) for this image; no diagnosis. Check the checkpoints.")
            elif not keep_images and not d.heatmaps:
                d.image = None
        return out

    def _run_models(self, out: list[Diagnosis], grays: list[np.ndarray], slots: list[int],
                    k: int) -> None:
        """The three modules over the readable images of one batch; fills ``out[slots]``."""
        n = len(grays)
        memo: dict[tuple[int, int], np.ndarray] = {}
        p1 = self._probs("xray_or_not", self._images("xray_or_not", grays, range(n), memo))
        p_xray = p1[:, paper.XRAY_OR_NOT_CLASSES.index("xray")]
        type_probs = np.zeros((n, len(paper.XRAY_TYPES)))
        to_type = np.flatnonzero(chain.is_xray(p_xray, self.threshold))
        if to_type.size:  # early exit: only X-rays reach Module II
            type_probs[to_type] = self._probs(
                "xray_type", self._images("xray_type", grays, to_type, memo))
        stages = chain.stage_reached(p_xray, type_probs, self.threshold)
        types = chain.xray_type(type_probs)
        to_chest = np.flatnonzero(stages == "chest")
        finding_probs = np.zeros((n, len(paper.FINDINGS)))
        cams: dict[int, dict[str, np.ndarray]] = {}
        if to_chest.size:  # only chest films reach Module III
            # not predict_probabilities: one pass gives both the probabilities and, from the
            # same features, the Grad-CAM maps
            x3 = to_model_input(self._images("chest", grays, to_chest, memo)).to(self.device)
            with torch.inference_mode():
                features, logits = features_and_logits(self.models["chest"], x3)
                finding_probs[to_chest] = torch.sigmoid(logits.float()).cpu().numpy()
                if k:
                    cams = self._heatmaps(features, tuple(x3.shape[-2:]),
                                          finding_probs[to_chest], to_chest, k)

        for j, slot in enumerate(slots):
            d = out[slot]
            d.is_xray = float(p_xray[j])
            if stages[j] != "not_xray":
                d.xray_type = str(types[j])
                d.type_probs = dict(zip(paper.XRAY_TYPES, map(float, type_probs[j])))
            if stages[j] == "chest":
                d.findings = dict(zip(paper.FINDINGS, map(float, finding_probs[j])))
                d.heatmaps = cams.get(j) if k else None

    def _heatmaps(self, features: torch.Tensor, size: tuple[int, int], probs: np.ndarray,
                  rows: np.ndarray, k: int) -> dict[int, dict[str, np.ndarray]]:
        """Grad-CAM maps of each image's top-``k`` findings, from the features already computed."""
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        wanted = sorted(set(top.ravel().tolist()))
        maps = cams_from_features(self.models["chest"], features, wanted, size)  # (m, len, H, W)
        col = {c: i for i, c in enumerate(wanted)}
        return {int(row): {paper.FINDINGS[c]: np.ascontiguousarray(maps[m, col[c]], np.float32)
                           for c in top[m]}
                for m, row in enumerate(rows)}


# --------------------------------------------------------------------------- convenience

_DIAGNOSERS: dict[tuple, Diagnoser] = {}


def _cache_key(folder: Path, device: str | None) -> tuple:
    """The folder, the device and the checkpoints' modification times (retrained -> reload)."""
    stamps = []
    for task in paper.TASKS:
        for f in checkpoint_files(folder, task):
            stamps.append(f.stat().st_mtime_ns if f.is_file() else None)
    return (str(folder.resolve()), str(device), tuple(stamps))


def get_diagnoser(checkpoints_dir: str | os.PathLike | None = None,
                  device: str | None = None) -> Diagnoser:
    """A :class:`Diagnoser` for the folder, reused between calls until its checkpoints change."""
    folder = Path(checkpoints_dir or default_checkpoints_dir()).expanduser()
    key = _cache_key(folder, device)
    if key not in _DIAGNOSERS:
        for old in [k for k in _DIAGNOSERS if k[:2] == key[:2]]:
            del _DIAGNOSERS[old]
        _DIAGNOSERS[key] = Diagnoser(folder, device=device)
    return _DIAGNOSERS[key]


def diagnose(image_or_path: ImageInput | Sequence[ImageInput],
             checkpoints_dir: str | os.PathLike | None = None, heatmaps: bool | int = True,
             device: str | None = None) -> Diagnosis | list[Diagnosis]:
    """Diagnose one image (-> :class:`Diagnosis`) or a list of them (-> list).

    ``checkpoints_dir`` defaults to the latest demo run (:func:`default_checkpoints_dir`).
    """
    diagnoser = get_diagnoser(checkpoints_dir, device)
    if isinstance(image_or_path, (str, os.PathLike, np.ndarray, Image.Image)):
        return diagnoser.diagnose([image_or_path], heatmaps=heatmaps)[0]
    return diagnoser.diagnose(image_or_path, heatmaps=heatmaps)


def measure_latency(diagnoser: Diagnoser, path: str | os.PathLike, repeats: int = 5) -> dict[str, Any]:
    """Seconds per image of ``diagnose()`` (read + three modules + one heatmap) vs one forward pass.

    Both are measured in this call, on ``diagnoser``'s device, after one warm-up run each:
    ``diagnose_s`` is the median time of ``diagnoser.diagnose([path], heatmaps=1)`` (file
    reading included), ``forward_s`` the median time of one bare DenseNet-121 forward pass
    (Module III's network on one image at its input size, no reading, no pre- or
    post-processing), ``ratio`` = diagnose_s / forward_s.  ``stage`` says how far the chain
    went for this file: only a film that reaches ``"chest"`` runs all three models.
    """
    repeats = max(1, int(repeats))
    sync = torch.cuda.synchronize if diagnoser.device.type == "cuda" else (lambda: None)

    def timed(fn) -> list[float]:
        fn()  # warm-up (allocations, kernel selection)
        sync()
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - t0)
        return out

    result: list[Diagnosis] = []
    t_diag = timed(lambda: result.__setitem__(slice(None), diagnoser.diagnose([path], heatmaps=1)))
    d = result[0]
    if not d.ok:
        raise ImageReadError(d.error)
    t_read = timed(lambda: read_gray(path))
    size = diagnoser.image_size("chest")
    model = diagnoser.models["chest"]
    x = to_model_input(np.zeros((1, size, size), np.uint8) + 128).to(diagnoser.device)

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    t_fwd = timed(forward)
    med = statistics.median
    return {
        "file": str(path), "stage": d.stage, "models_run": {"not_xray": 1, "type_only": 2,
                                                            "chest": 3}[d.stage],
        "heatmaps": len(d.heatmaps or {}), "image_size": size, "repeats": repeats,
        "device": str(diagnoser.device), "threads": torch.get_num_threads(),
        "read_s": med(t_read), "diagnose_s": med(t_diag), "diagnose_min_s": min(t_diag),
        "forward_s": med(t_fwd), "forward_min_s": min(t_fwd),
        "ratio": med(t_diag) / med(t_fwd),
    }
