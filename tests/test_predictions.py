"""Predictions from tiny checkpoints over tiny task manifests of PNG files."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from xray_utils.config import paper
from xray_utils.data.imageio import read_gray, resize_gray
from xray_utils.data.manifests import TASK_COLUMNS, ManifestError
from xray_utils.evaluate import metrics as ev
from xray_utils.evaluate import predictions as pr
from xray_utils.models import (
    build_model,
    checkpoint_meta,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
    to_model_input,
)

SIZE = 32

# (name, Module I label or None, type or None, findings or None, split)
IMAGES = [
    ("hand0", "xray", "hand", None, "test"),
    ("hand1", "xray", "hand", None, "test"),
    ("knee0", "xray", "knee", None, "test"),
    ("chest0", "xray", "chest", "Mass", "test"),
    ("photo0", "not_xray", None, None, "test"),
    ("photo1", "not_xray", None, None, "test"),
    ("hand2", "xray", "hand", None, "train"),
    ("photo2", "not_xray", None, None, "train"),
    ("chest1", None, "chest", "No Finding", "test"),
    ("chest2", None, "chest", "Effusion|Mass", "val"),
    ("chest3", None, "chest", "Cardiomegaly", "train"),
]


def _row(name: str, label: str, split: str) -> dict:
    return {"path": f"img/{name}.png", "label": label, "patient_id": name, "split": split,
            "source": "test", "boxes": "", "width": 40, "height": 40}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder: images, three task manifests (relative paths), three checkpoints."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("run")
    (root / "manifests" / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, *_ in IMAGES:
        Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(
            root / "manifests" / "img" / f"{name}.png")
    m1 = [_row(n, lab, s) for n, lab, _, _, s in IMAGES if lab]
    m2 = [_row(n, t, s) for n, lab, t, _, s in IMAGES if t and (lab or t != "chest")]
    m3 = [_row(n, f, s) for n, _, _, f, s in IMAGES if f]
    for task, rows in zip(paper.TASKS, (m1, m2, m3)):
        pd.DataFrame(rows, columns=TASK_COLUMNS).to_csv(root / "manifests" / f"{task}.csv",
                                                       index=False)
    for task in paper.TASKS:
        torch.manual_seed(0)
        save_checkpoint(build_model(task), root / "checkpoints" / task / "best",
                        checkpoint_meta(task, SIZE))
    return root


def _direct_probs(checkpoint, paths, multilabel: bool) -> np.ndarray:
    """Independent path: read, resize, transform, forward, softmax/sigmoid."""
    model, _ = load_checkpoint(checkpoint)
    x = to_model_input(np.stack([resize_gray(read_gray(p), SIZE) for p in paths]))
    with torch.inference_mode():
        z = model(x)
    return (torch.sigmoid(z) if multilabel else torch.softmax(z, 1)).numpy()


def test_predict_split_module_i(run):
    ckpt = run / "checkpoints" / "xray_or_not" / "best.json"
    df = pr.predict_split(ckpt, run / "manifests" / "xray_or_not.csv", "test", batch_size=4,
                          cache_dir=run / "cache", device="cpu")
    assert list(df.columns) == ["id", "path", "split", "source", "truth", "p_xray",
                                "p_not_xray"]
    assert df["truth"].tolist() == ["xray"] * 4 + ["not_xray"] * 2
    assert df["id"].tolist() == [0, 1, 2, 3, 4, 5]  # row index in the task manifest
    assert df["path"].str.endswith("hand0.png").iloc[0]
    assert all(p.startswith(str(run)) for p in df["path"])  # resolved to absolute
    np.testing.assert_allclose(df[["p_xray", "p_not_xray"]].sum(axis=1), 1.0, atol=1e-6)
    direct = _direct_probs(ckpt, df["path"], multilabel=False)
    np.testing.assert_allclose(df[["p_xray", "p_not_xray"]].to_numpy(), direct, atol=1e-5)
    assert df.attrs == {"task": "xray_or_not", "split": "test", "n_dropped": 0,
                        "weights_sha256": file_sha256(ckpt.with_suffix(".safetensors"))}


def test_predict_split_chest_uses_sigmoid(run):
    ckpt = run / "checkpoints" / "chest" / "best.json"
    df = pr.predict_split(ckpt, run / "manifests" / "chest.csv", "test",
                          cache_dir=run / "cache", device="cpu")
    assert df["truth"].tolist() == ["Mass", "No Finding"]
    cols = [f"p_{f}" for f in paper.FINDINGS]
    assert list(df.columns[5:]) == cols
    direct = _direct_probs(ckpt, df["path"], multilabel=True)
    np.testing.assert_allclose(df[cols].to_numpy(), direct, atol=1e-5)
    val = pr.predict_split(ckpt, run / "manifests" / "chest.csv", "val",
                           cache_dir=run / "cache", device="cpu")
    assert val["truth"].tolist() == ["Effusion|Mass"] and val["split"].tolist() == ["val"]


def test_unreadable_images_are_dropped_and_counted(run, tmp_path):
    man = pd.read_csv(run / "manifests" / "xray_or_not.csv", keep_default_na=False)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not an image")
    man["path"] = [str(run / "manifests" / p) for p in man["path"]]
    man.loc[len(man)] = {**man.iloc[0].to_dict(), "path": str(bad), "label": "not_xray"}
    man.to_csv(tmp_path / "m.csv", index=False)
    with pytest.warns(UserWarning, match="1 of 7 image"):
        df = pr.predict_split(run / "checkpoints" / "xray_or_not" / "best.json",
                              tmp_path / "m.csv", cache_dir=tmp_path / "cache", device="cpu")
    assert len(df) == 6 and str(bad) not in set(df["path"])
    assert df.attrs["n_dropped"] == 1


def test_predict_split_clear_errors(run, tmp_path):
    ck = run / "checkpoints"
    man = run / "manifests"
    with pytest.raises(ValueError, match="unknown split"):
        pr.predict_split(ck / "chest" / "best.json", man / "chest.csv", "dev")
    with pytest.raises(ManifestError, match="no rows in split 'val'"):
        pr.predict_split(ck / "xray_or_not" / "best.json", man / "xray_or_not.csv", "val",
                         cache_dir=tmp_path)
    with pytest.raises(ManifestError, match="not classes of the 'xray_type'"):
        pr.predict_split(ck / "xray_type" / "best.json", man / "xray_or_not.csv",
                         cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="Train the model first"):
        pr.predict_split(tmp_path / "nope" / "best.json", man / "chest.csv")
    with pytest.raises(FileNotFoundError, match="04_evaluation"):
        pr.load_predictions(tmp_path / "missing.csv")


def test_save_and_load_round_trip(run, tmp_path):
    df = pr.predict_split(run / "checkpoints" / "chest" / "best.json",
                          run / "manifests" / "chest.csv", cache_dir=run / "cache", device="cpu")
    path = pr.save_predictions(df, pr.prediction_path(tmp_path / "p", "chest", "test"))
    assert path.name == "chest_test.csv"
    back = pr.load_predictions(path)
    pd.testing.assert_frame_equal(back, df, check_dtype=False, check_exact=True)
    assert back["truth"].tolist() == ["Mass", "No Finding"]


def test_end_to_end_images_mixes_module_i_test_and_chest_test(run):
    imgs = pr.end_to_end_images(run / "manifests")
    names = [p.rsplit("/", 1)[-1][:-4] for p in imgs["path"]]
    assert names == ["hand0", "hand1", "knee0", "chest0", "photo0", "photo1", "chest1"]
    assert imgs["is_xray"].tolist() == [1, 1, 1, 1, 0, 0, 1]
    assert imgs["xray_type"].tolist() == ["hand", "hand", "knee", "chest", "", "", "chest"]
    assert imgs["findings"].tolist() == ["", "", "", "Mass", "", "", "No Finding"]


def test_end_to_end_images_requires_types(run, tmp_path):
    for task in paper.TASKS:
        df = pd.read_csv(run / "manifests" / f"{task}.csv", keep_default_na=False)
        df["path"] = [str(run / "manifests" / p) for p in df["path"]]
        if task == "xray_type":
            df = df[~df["path"].str.endswith("knee0.png")]
        df.to_csv(tmp_path / f"{task}.csv", index=False)
    with pytest.raises(ManifestError, match="have no type"):
        pr.end_to_end_images(tmp_path)


def test_predict_chain_agrees_with_each_module_and_feeds_build_metrics(run, tmp_path):
    ck, man, cache = run / "checkpoints", run / "manifests", run / "cache"
    imgs = pr.end_to_end_images(man)
    chain = pr.predict_chain(ck, imgs, batch_size=3, cache_dir=cache, device="cpu")
    assert list(chain.columns[:7]) == ["id", "path", "source", "is_xray", "xray_type",
                                       "findings", "p_xray"]
    assert len(chain.columns) == 7 + 14 + 14
    assert chain["xray_type"].tolist() == imgs["xray_type"].tolist()
    types = chain[[f"p_type_{t}" for t in paper.XRAY_TYPES]].to_numpy()
    np.testing.assert_allclose(types.sum(axis=1), 1.0, atol=1e-6)
    m1 = pr.predict_split(ck / "xray_or_not" / "best.json", man / "xray_or_not.csv",
                          cache_dir=cache, device="cpu")
    same = chain.set_index("path").loc[m1["path"], "p_xray"].to_numpy()
    np.testing.assert_allclose(same, m1["p_xray"], atol=1e-6)
    m3 = pr.predict_split(ck / "chest" / "best.json", man / "chest.csv", cache_dir=cache,
                          device="cpu")
    got = chain.set_index("path").loc[m3["path"],
                                      [f"p_finding_{f}" for f in paper.FINDINGS]].to_numpy()
    np.testing.assert_allclose(got, m3[[f"p_{f}" for f in paper.FINDINGS]], atol=1e-6)
    # the whole evaluation runs on these (tiny) files, including undefined AUCs
    out = tmp_path / "pred"
    pr.save_predictions(m1, pr.prediction_path(out, "xray_or_not", "test"))
    pr.save_predictions(pr.predict_split(ck / "xray_type" / "best.json", man / "xray_type.csv",
                                         cache_dir=cache, device="cpu"),
                        pr.prediction_path(out, "xray_type", "test"))
    pr.save_predictions(m3, pr.prediction_path(out, "chest", "test"))
    pr.save_predictions(pr.predict_split(ck / "chest" / "best.json", man / "chest.csv", "val",
                                         cache_dir=cache, device="cpu"),
                        pr.prediction_path(out, "chest", "val"))
    pr.save_predictions(chain, out / pr.END_TO_END_FILE)
    metrics = ev.build_metrics(out, "demo", n_resamples=50)
    assert metrics["xray_or_not"]["n"] == 6 and metrics["end_to_end"]["n"] == 7
    assert metrics["chest"]["n_auc_defined"] == 1  # only Mass has positives and negatives
    assert metrics["chest"]["auc"]["Hernia"] is None


def test_predict_chain_reuses_split_predictions_of_the_same_weights_only(run, monkeypatch):
    ck, man, cache = run / "checkpoints", run / "manifests", run / "cache"
    imgs = pr.end_to_end_images(man)
    fresh = pr.predict_chain(ck, imgs, batch_size=3, cache_dir=cache, device="cpu")
    known = [pr.predict_split(ck / t / "best.json", man / f"{t}.csv", cache_dir=cache,
                              device="cpu") for t in paper.TASKS]
    assert all(len(df.attrs["weights_sha256"]) == 64 for df in known)
    predicted = []
    real = pr._predict_paths

    def counting(model, meta, paths, *args, **kwargs):
        predicted.append((meta["task"], list(paths)))
        return real(model, meta, paths, *args, **kwargs)

    monkeypatch.setattr(pr, "_predict_paths", counting)
    reused = pr.predict_chain(ck, imgs, batch_size=3, cache_dir=cache, device="cpu", known=known)
    pd.testing.assert_frame_equal(reused, fresh, atol=1e-6, rtol=0)
    done = {t: set(df["path"]) for t, df in zip(paper.TASKS, known)}
    for task, paths in predicted:  # only the images no split had scored went through a model
        assert paths and not set(paths) & done[task]
    assert {t for t, _ in predicted} == {t for t in paper.TASKS if set(imgs["path"]) - done[t]}
    # a frame of other weights is never taken for these
    stale = known[0].copy()
    stale.attrs = {**known[0].attrs, "weights_sha256": "0" * 64}
    stale["p_xray"] = 0.5
    predicted.clear()
    again = pr.predict_chain(ck, imgs, batch_size=3, cache_dir=cache, device="cpu", known=[stale])
    pd.testing.assert_frame_equal(again, fresh, atol=1e-6, rtol=0)
    assert [t for t, _ in predicted] == list(paper.TASKS)


def test_predict_chain_needs_truth_columns(run):
    with pytest.raises(ValueError, match="lacks column"):
        pr.predict_chain(run / "checkpoints", pd.DataFrame({"path": ["a.png"]}))
