"""``export-web``: the three checkpoints as ONNX models plus a static page that runs them.

The site is a folder any static host can serve (GitHub Pages, a course page, ``python -m
http.server``); the visitor's browser does everything (onnxruntime-web, WebAssembly), nothing is
uploaded.  What is exported, and who owns each fact:

* the networks: each checkpoint through :func:`xray_utils.models.load_checkpoint`; the graph
  takes the 8-bit gray image resized to the module's input size (as float, 0-255) and applies
  :func:`xray_utils.models.to_model_input` itself, so the page never re-implements the
  normalisation; it outputs the probabilities (softmax, or sigmoid for the chest findings);
* the chest model also outputs the last block's maps (``features.norm5``, before the ReLU), from
  which the page computes Grad-CAM without gradients, exactly as
  :func:`xray_utils.explain.gradcam.cams_from_features` (the classifier's weights are written to
  ``models.json``);
* the decision rule's thresholds and blank-image refusal (:mod:`xray_utils.diagnose.rule`), the
  verdicts' headings (:mod:`xray_utils.diagnose.verdict`), the class names and input sizes
  (``best.json``), the image limits (:mod:`xray_utils.data.imageio`) go to ``models.json``;
* weights are stored in float16 (cast to float32 when the page loads them) only when the
  probabilities stay within :data:`FP16_TOLERANCE` of the float32 export on probe images; the
  check and its figures are written to ``models.json`` too.

The page's sources are ``web/`` (``index.html``, ``app.mjs``, ``xray.mjs``, ``style.css``);
onnxruntime-web comes from ``web/node_modules`` (``npm ci`` in ``web/``, pinned by its lock file).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xray_utils.config import paper
from xray_utils.config.paths import REPO_ROOT, best_checkpoint
from xray_utils.data import imageio
from xray_utils.diagnose import rule, verdict
from xray_utils.diagnose.diagnoser import DEFAULT_TOP_K
from xray_utils.explain.gradcam import features_and_logits
from xray_utils.models import load_checkpoint, to_model_input

#: The page's sources.
WEB_SOURCES = REPO_ROOT / "web"
PAGE_FILES = ("index.html", "app.mjs", "xray.mjs", "style.css")
#: onnxruntime-web's files the page needs (the WebAssembly build, no WebGPU/WebGL).
ORT_DIST = WEB_SOURCES / "node_modules" / "onnxruntime-web" / "dist"
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
#: The page refuses files larger than this (bytes): a phone's memory, not the reader's 512 MiB.
WEB_MAX_FILE_BYTES = 20 * 1024 ** 2
#: float16 weights are kept only when every probability on the probe images moves less than this
#: (the page's overall tolerance against ``diagnose()`` is 0.02; this leaves room for the rest).
FP16_TOLERANCE = 0.005
OPSET = 18


class WebExportError(RuntimeError):
    """The site cannot be built; the message says what is missing and how to get it."""


class _WebModel(nn.Module):
    """8-bit gray ``(1, 1, S, S)`` as float -> probabilities (and, for the chest model, norm5's maps)."""

    def __init__(self, model: nn.Module, multilabel: bool, with_features: bool) -> None:
        super().__init__()
        self.model = model
        self.multilabel = multilabel
        self.with_features = with_features

    def forward(self, gray: torch.Tensor):
        features, logits = features_and_logits(self.model, to_model_input(gray))
        probs = torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)
        return (probs, features) if self.with_features else probs


def _export_onnx(wrapper: _WebModel, size: int, path: Path) -> None:
    dummy = torch.full((1, 1, size, size), 128.0)
    names = ["probs", "features"] if wrapper.with_features else ["probs"]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (dummy,), str(path), input_names=["gray"], output_names=names,
                          opset_version=OPSET, dynamo=True, external_data=False, verbose=False)


def _to_float16_weights(src: Path, dst: Path) -> None:
    """Store the large float32 initializers as float16, each followed by a Cast back to float32."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    casts, kept = [], []
    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and np.prod(init.dims) >= 16:
            arr = numpy_helper.to_array(init).astype(np.float16)
            half = numpy_helper.from_array(arr, init.name + "__fp16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name],
                                          to=onnx.TensorProto.FLOAT, name=init.name + "__cast"))
        else:
            kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def probe_images(size: int, count: int = 8, seed: int = 0) -> np.ndarray:
    """Images ``(n, size, size)`` uint8 to compare exports on: real films of the shipped pack when
    it is there (resized as the reader does), plus smooth random images."""
    out = []
    manifest = REPO_ROOT / "data" / "open-films" / "manifest.csv"
    if manifest.is_file():
        import csv

        rows = list(csv.DictReader(manifest.open(encoding="utf-8")))
        for row in rows[:: max(1, len(rows) // count)][:count]:
            try:
                gray = imageio.read_gray(manifest.parent / row["file"])
            except imageio.ImageReadError:
                continue
            out.append(imageio.resize_gray(gray, size))
    rng = np.random.default_rng(seed)
    while len(out) < 2 * count:
        small = rng.uniform(0, 255, (8, 8)).astype(np.uint8)
        out.append(imageio.resize_gray(small, size))
    return np.stack(out)


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_outputs(path: Path, images: np.ndarray) -> list[list[np.ndarray]]:
    """The exported model's outputs for each 8-bit image ``(S, S)`` (one run per image, batch 1)."""
    sess = _session(path)
    return [sess.run(None, {"gray": img[None, None].astype(np.float32)}) for img in images]


def torch_outputs(model: nn.Module, multilabel: bool,
                  images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and norm5's maps of the checkpoint's model in PyTorch (the reference)."""
    with torch.inference_mode():
        features, logits = features_and_logits(model, to_model_input(images))
        probs = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)
    return probs.numpy(), features.numpy()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_models(checkpoints: Path, models_dir: Path, fp16: bool = True,
                  log=print) -> dict[str, Any]:
    """Export the three checkpoints to ``models_dir``; returns the ``models`` part of models.json
    and the chest head's weights."""
    models_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    head = None
    for task in paper.TASKS:
        info = best_checkpoint(checkpoints, task)
        if not info.is_file():
            raise WebExportError(f"{info}: checkpoint not found. Train the three modules first "
                                 "(make demo, or notebooks 01-03) or pass --checkpoints "
                                 "<run>/checkpoints.")
        model, meta = load_checkpoint(info, device="cpu", task=task)
        model.eval()
        size, multilabel = int(meta["image_size"]), bool(meta["multilabel"])
        chest = task == "chest"
        wrapper = _WebModel(model, multilabel, with_features=chest).eval()
        fp32 = models_dir / f"{task}.fp32.onnx"
        _export_onnx(wrapper, size, fp32)
        probes = probe_images(size)
        ref_probs, ref_feats = torch_outputs(model, multilabel, probes)
        got = onnx_outputs(fp32, probes)
        diff32 = float(max(np.abs(g[0][0] - r).max() for g, r in zip(got, ref_probs)))
        if diff32 > 1e-3:
            raise WebExportError(f"{task}: the ONNX export differs from PyTorch by {diff32:.4f} "
                                 "in probability; not exported.")
        final, weights, diff = models_dir / f"{task}.onnx", "float32", diff32
        if fp16:
            half = models_dir / f"{task}.fp16.onnx"
            _to_float16_weights(fp32, half)
            got16 = onnx_outputs(half, probes)
            diff16 = float(max(np.abs(g[0][0] - r).max() for g, r in zip(got16, ref_probs)))
            if diff16 <= FP16_TOLERANCE:
                half.replace(final)
                weights, diff = "float16", diff16
            else:
                log(f"  {task}: float16 weights move a probability by {diff16:.4f} "
                    f"(> {FP16_TOLERANCE}); keeping float32")
                half.unlink()
        if weights == "float32":
            fp32.replace(final)
        else:
            fp32.unlink()
        out[task] = {
            "file": f"models/{final.name}", "bytes": final.stat().st_size,
            "sha256": _sha256(final), "classes": list(meta["classes"]), "image_size": size,
            "multilabel": multilabel, "normalization": meta["normalization"],
            "weights": weights, "max_prob_diff_vs_torch": round(diff, 6),
            "probe_images": int(len(probes)),
            "outputs": ["probs", "features"] if chest else ["probs"],
        }
        if chest:
            out[task]["feature_shape"] = list(ref_feats.shape[1:])
            head = model.classifier.weight.detach().double().numpy()
        log(f"  {task}: {final.name}, {final.stat().st_size / 2**20:.1f} MiB ({weights} weights; "
            f"largest probability difference to PyTorch {diff:.5f} on {len(probes)} probe images)")
    return {"models": out, "gradcam_weights": head}


def copy_page(out: Path, ort_dist: Path = ORT_DIST) -> None:
    """The page's sources and onnxruntime-web's files into ``out``."""
    missing = [f for f in ORT_FILES if not (ort_dist / f).is_file()]
    if missing:
        raise WebExportError(
            f"onnxruntime-web is not installed ({ort_dist / missing[0]} is missing): run "
            "'npm ci' in web/ (make web does it), or pass --ort-dir <onnxruntime-web>/dist.")
    for name in PAGE_FILES:
        shutil.copy2(WEB_SOURCES / name, out / name)
    (out / "ort").mkdir(exist_ok=True)
    for name in ORT_FILES:
        shutil.copy2(ort_dist / name, out / "ort" / name)
    described = ort_dist.parent / "package.json"  # name, version, licence of the copied files
    if described.is_file():
        shutil.copy2(described, out / "ort" / "package.json")


def site_config(models: dict[str, Any]) -> dict[str, Any]:
    """models.json: everything the page needs besides the networks."""
    head = models["gradcam_weights"]
    return {
        "format": 1,
        "made_by": "python -m xray_utils export-web",
        "xray_class": "xray", "xray_threshold": rule.XRAY_THRESHOLD,
        "chest_type": rule.CHEST, "finding_threshold": rule.FINDING_THRESHOLD,
        "top_k": DEFAULT_TOP_K, "blank_std": rule.BLANK_STD,
        # the headings of the command line's, the widget's and the app's verdicts
        "headings": {kind: style[2] for kind, style in verdict.STYLES.items()},
        "limits": {"max_file_bytes": WEB_MAX_FILE_BYTES, "min_side": imageio.MIN_SIDE,
                   "max_aspect": imageio.MAX_ASPECT_RATIO, "max_pixels": imageio.MAX_PIXELS},
        "models": models["models"],
        # the chest classifier's weights (findings x channels): Grad-CAM's channel weights
        "gradcam": {"classes": list(paper.FINDINGS),
                    "weights": [[float(np.float32(v)) for v in row] for row in head]},
    }


def export_site(checkpoints: str | Path, out: str | Path, fp16: bool = True,
                ort_dist: str | Path | None = None, log=print) -> dict[str, Any]:
    """Build the static site in ``out`` from ``checkpoints``; returns models.json's content."""
    checkpoints, out = Path(checkpoints).expanduser(), Path(out).expanduser()
    ort_dist = Path(ort_dist) if ort_dist else ORT_DIST
    if out.exists() and not out.is_dir():
        raise WebExportError(f"{out}: exists and is not a folder; pick another --out.")
    out.mkdir(parents=True, exist_ok=True)
    copy_page(out, ort_dist)
    log(f"exporting the three models from {checkpoints} to {out / 'models'}")
    config = site_config(export_models(checkpoints, out / "models", fp16=fp16, log=log))
    (out / "models.json").write_text(json.dumps(config), encoding="utf-8")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    log(f"site written to {out} ({total / 2**20:.1f} MiB); serve the folder with any static "
        f"server, e.g. python -m http.server -d {out}")
    return config
