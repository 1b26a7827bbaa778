"""export-web: the ONNX models agree with PyTorch, and the page's Grad-CAM math (re-implemented
here in NumPy, line by line as web/xray.mjs does it) equals xray_utils.explain.gradcam."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xray_utils.config import paper
from xray_utils.data.imageio import read_gray, resize_gray
from xray_utils.explain.gradcam import all_class_cams
from xray_utils.models import load_checkpoint, to_model_input
from xray_utils.untrained import write_routed_checkpoints
from xray_utils.web import export as web


def page_gradcam(features: np.ndarray, weights: np.ndarray, out_size: int) -> np.ndarray:
    """web/xray.mjs gradcam(), in NumPy, loop for loop: one finding's map from norm5's maps."""
    channels, h, w = features.shape
    cells = h * w
    raw = np.zeros(cells)
    flat = features.reshape(channels, cells).astype(np.float64)
    for k in range(channels):
        pos = int((flat[k] > 0).sum())
        alpha = weights[k] * (pos / cells) / cells
        raw += alpha * flat[k]
    raw = np.maximum(raw, 0).reshape(h, w)
    up = np.zeros((out_size, out_size))
    sy, sx = h / out_size, w / out_size
    for y in range(out_size):
        fy = max((y + 0.5) * sy - 0.5, 0.0)
        y0 = int(np.floor(fy))
        y1, ly = min(y0 + 1, h - 1), fy - y0
        for x in range(out_size):
            fx = max((x + 0.5) * sx - 0.5, 0.0)
            x0 = int(np.floor(fx))
            x1, lx = min(x0 + 1, w - 1), fx - x0
            up[y, x] = ((1 - ly) * ((1 - lx) * raw[y0, x0] + lx * raw[y0, x1])
                        + ly * ((1 - lx) * raw[y1, x0] + lx * raw[y1, x1]))
    span = up.max() - up.min()
    return (up - up.min()) / span if span > 1e-12 else np.zeros_like(up)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Untrained checkpoints with a random (not forced) chest head, exported at 64 px."""
    folder = write_routed_checkpoints(tmp_path_factory.mktemp("ck"), "chest", image_size=64)
    models = tmp_path_factory.mktemp("models")
    config = web.site_config(web.export_models(folder, models, log=lambda *_: None))
    return folder, models, config


def test_onnx_agrees_with_torch_and_keeps_the_checkpoint_facts(exported):
    folder, models, config = exported
    assert set(config["models"]) == set(paper.TASKS)
    for task in paper.TASKS:
        entry = config["models"][task]
        model, meta = load_checkpoint(folder / task / "best.json", task=task)
        assert entry["classes"] == meta["classes"] and entry["image_size"] == meta["image_size"]
        path = models / entry["file"].split("/")[-1]
        assert path.stat().st_size == entry["bytes"]
        images = web.probe_images(meta["image_size"], count=3)
        ref_probs, ref_feats = web.torch_outputs(model, meta["multilabel"], images)
        got = web.onnx_outputs(path, images)
        probs = np.concatenate([g[0] for g in got])
        assert np.abs(probs - ref_probs).max() <= web.FP16_TOLERANCE
        if task == "chest":
            feats = np.concatenate([g[1] for g in got])
            assert feats.shape == ref_feats.shape
            assert np.abs(feats - ref_feats).max() < 0.05 * np.abs(ref_feats).max()
    assert config["models"]["chest"]["outputs"] == ["probs", "features"]
    assert len(config["gradcam"]["weights"]) == len(paper.FINDINGS)
    json.dumps(config)  # the page reads it as JSON


def test_page_gradcam_equals_explain_gradcam(exported):
    folder, models, config = exported
    model, meta = load_checkpoint(folder / "chest" / "best.json", task="chest")
    size = meta["image_size"]
    film = resize_gray(read_gray(web.REPO_ROOT / "data" / "open-films" / "nih_cxr14"
                                 / sorted((web.REPO_ROOT / "data" / "open-films" / "nih_cxr14")
                                          .iterdir())[0].name), size)
    want = all_class_cams(model, to_model_input(film))[0]              # (14, S, S)
    weights = np.asarray(config["gradcam"]["weights"])
    # the page's math on PyTorch's own maps: the same numbers
    with torch.inference_mode():
        feats = model.features(to_model_input(film).expand(-1, 3, -1, -1))[0].numpy()
    for c in range(len(paper.FINDINGS)):
        np.testing.assert_allclose(page_gradcam(feats, weights[c], size), want[c], atol=1e-5)
    # ... and on the exported model's maps (float16 weights): the same picture
    onnx_feats = web.onnx_outputs(models / "chest.onnx", film[None])[0][1][0]
    for c in range(len(paper.FINDINGS)):
        got = page_gradcam(onnx_feats, weights[c], size)
        if want[c].std() > 0:
            assert np.corrcoef(got.ravel(), want[c].ravel())[0, 1] >= 0.99, c


def test_missing_checkpoints_or_runtime_are_named(tmp_path, capsys):
    from xray_utils.cli import main

    assert main(["export-web", "--checkpoints", str(tmp_path / "none"),
                 "--out", str(tmp_path / "site")]) == 2
    out = capsys.readouterr().out
    assert "checkpoint not found" in out or "onnxruntime-web is not installed" in out
    assert main(["export-web", "--checkpoints", str(tmp_path), "--out", str(tmp_path / "s2"),
                 "--ort-dir", str(tmp_path / "no-ort")]) == 2
    assert "npm ci" in capsys.readouterr().out
