"""diagnose(): loading, the chain's early exits, batching, heatmaps, bad input, JSON records."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xray_utils.config import paper
from xray_utils.config.paths import project_paths
from xray_utils.data.imageio import ImageReadError, read_gray, resize_gray
from xray_utils.diagnose import diagnoser as pipeline
from xray_utils.diagnose.diagnoser import (
    CheckpointError,
    CheckpointsMissing,
    Diagnoser,
    Diagnosis,
    diagnose,
    measure_latency,
    write_heatmaps,
)
from xray_utils.models import to_model_input, upgrade_checkpoints
from xray_utils.sources.demo import SOURCE as DEMO_SOURCE

sys.path.insert(0, str(Path(__file__).parent))
from bad_files import pattern_image, write_corpus, write_tiny_checkpoints  # noqa: E402

JSON_KEYS = {"file", "ok", "error", "is_xray", "xray_type", "type_probs", "findings", "heatmaps"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    return {route: write_tiny_checkpoints(root / route, route)
            for route in ("chest", "type_only", "not_xray")}


@pytest.fixture(scope="module")
def diagnosers(ckpts):
    return {route: Diagnoser(folder, device="cpu") for route, folder in ckpts.items()}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three small readable files: a PNG pattern, a noisy PNG and the RG1 chest film."""
    from pydicom.data import get_testdata_file

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    Image.fromarray(pattern_image()).save(folder / "pattern.png")
    Image.fromarray(rng.integers(0, 255, (50, 70), dtype=np.uint8)).save(folder / "noise.png")
    return [folder / "pattern.png", folder / "noise.png", Path(get_testdata_file("RG1_UNCR.dcm"))]


class CallCounter:
    """Counts passes and images through each module's network (its feature extractor: the chest
    model's probabilities and heatmaps come from one pass through it, not from model())."""

    def __init__(self, diagnoser: Diagnoser) -> None:
        self.calls = {t: 0 for t in paper.TASKS}
        self.images = {t: 0 for t in paper.TASKS}
        self.handles = [m.features.register_forward_hook(self._hook(t))
                        for t, m in diagnoser.models.items()]

    def _hook(self, task):
        def hook(module, inputs, output):
            self.calls[task] += 1
            self.images[task] += inputs[0].shape[0]
        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def test_default_checkpoints_dir_is_the_demo_run():
    assert pipeline.default_checkpoints_dir() == project_paths("demo").checkpoints_dir


def test_missing_checkpoints_say_which_file_and_what_to_run(tmp_path):
    with pytest.raises(CheckpointsMissing) as info:
        Diagnoser(tmp_path / "nothing-here")
    msg = str(info.value)
    assert str(tmp_path / "nothing-here" / "xray_or_not" / "best.json") in msg
    assert "notebooks 01-03" in msg and "make demo" in msg


def test_corrupt_or_wrong_checkpoints_are_refused_clearly(ckpts, tmp_path):
    bad = tmp_path / "corrupt"
    shutil.copytree(ckpts["chest"] / "xray_or_not", bad / "xray_or_not")
    (bad / "xray_or_not" / "best.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"xray_or_not/best\.json.*cannot be loaded"):
        Diagnoser(bad)
    wrong = tmp_path / "wrong"
    for task in paper.TASKS:
        (wrong / task).mkdir(parents=True)
    for task in paper.TASKS:  # Module I's folder holds the chest model
        src = ckpts["chest"] / ("chest" if task == "xray_or_not" else task)
        for f in ("best.json", "best.safetensors"):
            os.symlink(src / f, wrong / task / f)
    with pytest.raises(CheckpointError, match="expected 'xray_or_not'"):
        Diagnoser(wrong)


def test_chest_route_gives_findings_and_top3_heatmaps(diagnosers, images):
    d = diagnosers["chest"]
    res = d.diagnose(images)
    assert [r.file for r in res] == [str(p) for p in images]
    for r in res:
        assert r.ok and r.error is None and r.stage == "chest"
        assert r.is_xray > 0.99 and r.xray_type == "chest"
        assert list(r.type_probs) == list(paper.XRAY_TYPES)
        assert abs(sum(r.type_probs.values()) - 1) < 1e-5
        assert list(r.findings) == list(paper.FINDINGS)
        assert all(0 <= p <= 1 for p in r.findings.values())
        top = [f for f, _ in r.top_findings(3)]
        assert list(r.heatmaps) == top and len(top) == 3
        for cam in r.heatmaps.values():
            assert cam.shape == (32, 32) and cam.dtype == np.float32
            assert cam.min() >= 0 and cam.max() <= 1
    # a multi-label head: the findings of different images differ
    assert res[0].findings != res[1].findings


def test_heatmaps_are_gradcams_of_the_chest_model(diagnosers, images):
    from xray_utils.explain.gradcam import all_class_cams

    d = diagnosers["chest"]
    r = d.diagnose([images[2]], heatmaps=14)[0]
    assert list(r.heatmaps) == [f for f, _ in r.top_findings(14)]
    x = to_model_input(resize_gray(read_gray(images[2]), 32))
    ref = all_class_cams(d.models["chest"], x)[0]
    for i, finding in enumerate(paper.FINDINGS):
        np.testing.assert_allclose(r.heatmaps[finding], ref[i], atol=1e-5)
    assert d.diagnose([images[2]], heatmaps=False)[0].heatmaps is None
    assert d.diagnose([images[2]], heatmaps=0)[0].heatmaps is None
    assert len(d.diagnose([images[2]], heatmaps=1)[0].heatmaps) == 1


def test_not_xray_stops_after_module_i(diagnosers, images):
    d = diagnosers["not_xray"]
    counter = CallCounter(d)
    try:
        res = d.diagnose(images)
    finally:
        counter.close()
    assert counter.calls == {"xray_or_not": 1, "xray_type": 0, "chest": 0}
    assert counter.images["xray_or_not"] == len(images)
    for r in res:
        assert r.ok and r.stage == "not_xray" and r.is_xray < 0.01
        assert r.xray_type is None and r.type_probs is None
        assert r.findings is None and r.heatmaps is None
    assert "not an X-ray" in res[0].verdict()


def test_non_chest_xray_stops_after_module_ii(diagnosers, images):
    d = diagnosers["type_only"]
    counter = CallCounter(d)
    try:
        res = d.diagnose(images)
    finally:
        counter.close()
    assert counter.calls == {"xray_or_not": 1, "xray_type": 1, "chest": 0}
    assert all(r.stage == "type_only" and r.xray_type == "hand" and r.findings is None
               for r in res)


def test_mixed_batch_runs_each_image_only_as_far_as_the_chain_goes(diagnosers, images,
                                                                    monkeypatch):
    """Module I says X-ray for images 0 and 2 only: only those two reach Modules II and III."""
    d = diagnosers["chest"]
    real_probs = d._probs

    def probs(task, x):
        p = real_probs(task, x)  # the model still runs (and is counted)
        if task == "xray_or_not":
            p_xray = np.array([0.9, 0.1, 0.8])
            p = np.stack([p_xray, 1 - p_xray], axis=1)
        return p

    monkeypatch.setattr(d, "_probs", probs)
    counter = CallCounter(d)
    try:
        res = d.diagnose(images)
    finally:
        counter.close()
    assert [r.stage for r in res] == ["chest", "not_xray", "chest"]
    assert [r.is_xray for r in res] == [0.9, 0.1, 0.8]
    assert counter.images == {"xray_or_not": 3, "xray_type": 2, "chest": 2}
    assert res[1].heatmaps is None and len(res[2].heatmaps) == 3


def test_one_forward_per_model_per_batch_and_order_kept(diagnosers, images):
    d = diagnosers["chest"]
    items = [images[0], images[1], images[2], images[0], images[1]]
    counter = CallCounter(d)
    old = d.batch_size
    d.batch_size = 2
    try:
        batched = d.diagnose(items, heatmaps=False, progress=False)
    finally:
        d.batch_size = old
        counter.close()
    assert counter.calls == {t: 3 for t in paper.TASKS}  # ceil(5 / 2) batches
    single = [d.diagnose([p], heatmaps=False)[0] for p in items]
    for a, b in zip(batched, single):
        assert a.file == b.file
        np.testing.assert_allclose(list(a.findings.values()), list(b.findings.values()),
                                   atol=1e-5)


def test_corpus_batch_completes_with_clear_errors(diagnosers, tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    res = diagnosers["chest"].diagnose([p for p, _ in corpus], heatmaps=1)
    assert len(res) == len(corpus)
    for (path, exp), r in zip(corpus, res):
        assert r.file == str(path)
        if exp.readable is not None:
            assert r.ok is exp.readable, (path.name, r.error)
        if r.ok:
            assert r.stage == "chest" and len(r.heatmaps) == 1
        else:
            with pytest.raises(ImageReadError) as info:
                read_gray(path)
            assert r.error == str(info.value)
            assert r.is_xray is None and r.findings is None and r.heatmaps is None
            record = r.to_json()
            assert record["ok"] is False and record["error"] == r.error


def test_inputs_arrays_and_pil_images(diagnosers):
    d = diagnosers["type_only"]
    pat = pattern_image()
    res = d.diagnose([pat, pat.astype(np.float32) * 10.0, np.dstack([pat] * 3),
                      Image.fromarray(pat), np.zeros((2, 3, 4, 5))])
    assert [r.ok for r in res] == [True, True, True, True, False]
    assert all(r.file is None for r in res)
    assert "expected a 2-D grayscale image" in res[-1].error
    np.testing.assert_allclose(list(res[0].type_probs.values()),
                               list(res[3].type_probs.values()), atol=1e-6)
    single = d.diagnose(pat)  # one item, not a list: still a list of one
    assert len(single) == 1 and single[0].ok


def test_to_json_has_exactly_the_documented_keys(diagnosers, images, tmp_path):
    d = diagnosers["chest"]
    good, bad = d.diagnose([images[0], tmp_path / "missing.png"])
    for r in (good, bad):
        rec = r.to_json()
        assert set(rec) == JSON_KEYS
        json.dumps(rec)  # plain JSON types only
    assert good.to_json()["heatmaps"] is None  # arrays are never put into JSON
    paths = write_heatmaps(good, tmp_path / "heat", prefix="000_pattern")
    assert list(paths) == list(good.heatmaps)
    for finding, p in paths.items():
        assert Path(p).name == f"000_pattern_{finding}.png"
        png = np.asarray(Image.open(p))
        assert png.shape == good.image.shape + (3,)
    assert good.to_json(paths)["heatmaps"] == paths
    assert bad.to_json() == {"file": str(tmp_path / "missing.png"), "ok": False,
                             "error": bad.error, "is_xray": None, "xray_type": None,
                             "type_probs": None, "findings": None, "heatmaps": None}


def test_image_size_comes_from_each_checkpoint(ckpts, tmp_path, images):
    folder = tmp_path / "sizes"
    shutil.copytree(ckpts["chest"], folder, symlinks=True)
    info = folder / "chest" / "best.json"
    meta = json.loads(info.read_text())
    meta["image_size"] = 48
    info.unlink()
    info.write_text(json.dumps(meta))
    upgrade_checkpoints(folder / "chest", reseal=True)  # an edit on purpose: sealed again
    d = Diagnoser(folder)
    assert d.image_size("chest") == 48 and d.image_size("xray_type") == 32
    r = d.diagnose([images[0]], heatmaps=2)[0]
    assert all(cam.shape == (48, 48) for cam in r.heatmaps.values())


def test_module_level_diagnose_caches_per_folder(ckpts, images):
    first = diagnose(images[0], checkpoints_dir=ckpts["type_only"], heatmaps=False)
    assert isinstance(first, Diagnosis) and first.stage == "type_only"
    a = pipeline.get_diagnoser(ckpts["type_only"])
    assert pipeline.get_diagnoser(ckpts["type_only"]) is a
    many = diagnose([images[0], images[1]], checkpoints_dir=ckpts["type_only"])
    assert isinstance(many, list) and len(many) == 2
    info = ckpts["type_only"] / "chest" / "best.json"
    st = info.stat()
    os.utime(info, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # "retrained"
    assert pipeline.get_diagnoser(ckpts["type_only"]) is not a
    assert sum(k[0] == str(ckpts["type_only"].resolve()) for k in pipeline._DIAGNOSERS) == 1


def test_measure_latency_reports_both_times(diagnosers, images):
    out = measure_latency(diagnosers["chest"], images[0], repeats=2)
    assert out["stage"] == "chest" and out["models_run"] == 3 and out["heatmaps"] == 1
    assert out["diagnose_s"] > 0 and out["forward_s"] > 0 and out["read_s"] > 0
    assert out["diagnose_min_s"] <= out["diagnose_s"]
    # three models (plus reading and a heatmap) cost more than one bare forward pass
    assert out["ratio"] > 1
    with pytest.raises(ImageReadError):
        measure_latency(diagnosers["chest"], images[0].parent / "missing.png", repeats=1)


# --------------------------------------------------------------------------- the notebook demo


@pytest.fixture(scope="module")
def demo_paths(tmp_path_factory):
    from conftest import write_tiny_task

    root = tmp_path_factory.mktemp("demo_run")
    paths = project_paths("demo", run_dir=root / "run", figures_dir=root / "fig").ensure()
    for task in paper.TASKS:
        manifest = write_tiny_task(root / "data" / task, task, n=40, size=40)
        df = pd.read_csv(manifest)
        df["source"] = DEMO_SOURCE  # generated images, as the demo's manifests say
        df.to_csv(paths.manifest(task), index=False)
    return paths


def test_sample_images_offers_films_and_demo_test_images(demo_paths, tmp_path):
    from xray_utils.data.manifests import read_task_manifest
    from xray_utils.diagnose.widget import DICOM_FILMS, sample_images

    choices = sample_images(demo_paths, per_kind=2, seed=0)
    labels = list(choices)
    assert [Path(choices[k]).name for k in labels[:2]] == list(DICOM_FILMS)
    assert all(Path(p).is_file() for p in choices.values())
    assert sum(k.startswith("generated chest phantom") for k in labels) == 3
    assert sum(k.startswith("generated ") and k.split(" · ")[0].endswith(" phantom")
               and "chest" not in k for k in labels) == 2
    assert sum(k.startswith("generated photograph") for k in labels) == 1
    test_paths = set()
    for task in paper.TASKS:
        df = read_task_manifest(demo_paths.manifest(task))
        test_paths |= set(df.loc[df["split"] == "test", "path"])
    assert set(list(choices.values())[2:]) <= test_paths  # only test-split images
    assert sample_images(demo_paths, seed=0) == choices  # deterministic
    bare = project_paths("demo", run_dir=tmp_path / "no-run")
    assert len(sample_images(bare)) == 2  # no manifests yet: just the films


def test_diagnose_demo_callbacks(diagnosers, images, tmp_path):
    from xray_utils.diagnose.widget import DiagnoseDemo

    demo = DiagnoseDemo(diagnosers["chest"], {"pattern": str(images[0]), "rg1": str(images[2])})
    demo.sample.value = str(images[2])  # the dropdown's event runs the callback
    assert demo.result.file == str(images[2]) and demo.result.stage == "chest"
    ranked = [f for f, _ in demo.result.top_findings(14)]
    assert [v for _, v in demo.finding.options] == ranked and demo.finding.value == ranked[0]
    assert ranked[0] in demo.caption.value
    demo.finding.value = ranked[5]
    assert ranked[5] in demo.caption.value
    assert set(demo.record()) == JSON_KEYS
    assert len(demo.figure.axes) == 3

    bad = tmp_path / "upload.png"
    bad.write_text("not an image")
    result = demo.simulate_upload(bad)
    assert not result.ok and "contains text" in result.error and result.file == "upload.png"
    assert "cannot be read" in demo.verdict.value and demo.finding.disabled
    good = demo.simulate_upload(images[0])
    assert good.ok and good.file == images[0].name and not demo.finding.disabled


@pytest.mark.parametrize("route,text", [("not_xray", "not an X-ray"), ("type_only", "not chest")])
def test_plot_diagnosis_shows_where_the_chain_stopped(diagnosers, images, route, text):
    import matplotlib.pyplot as plt

    from xray_utils.diagnose.widget import plot_diagnosis

    d = diagnosers[route].diagnose([images[0]])[0]
    fig = plot_diagnosis(d)
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    plt.close(fig)
    assert "not run" in texts and text in texts
