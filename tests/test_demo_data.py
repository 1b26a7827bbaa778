"""The demo dataset builder (xray_utils.sources.demo) and the real DICOM films it points to."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from xray_utils.config import paper
from xray_utils.data import manifests
from xray_utils.data.imageio import read_gray
from xray_utils.sources import demo

TINY = dict(image_size=32, per_type=2, n_chest=12, n_photos=6, seed=3, types="all")


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return demo.build_demo_dataset(out, workers=2, progress=False, **TINY)


def test_tiny_build_writes_a_valid_image_manifest(tiny_build):
    assert tiny_build.name == "images.csv"
    df = manifests.read_image_manifest(tiny_build)
    assert list(df.columns) == list(manifests.IMAGE_COLUMNS)
    n_expected = 13 * TINY["per_type"] + TINY["n_chest"] + TINY["n_photos"]
    assert len(df) == n_expected
    for path in df["path"]:
        img = read_gray(path)
        assert img.shape == (32, 32)
    assert set(df["xray_type"][df["is_xray"] == "1"]) == set(paper.XRAY_TYPES)
    assert (df["is_xray"] == "0").sum() == TINY["n_photos"]
    assert set(df["split"]) <= set(manifests.SPLITS) and "train" in set(df["split"])
    manifests.check_no_leakage(df)
    assert set(df["source"]) == {"demo"}
    chest = df[df["xray_type"] == "chest"]
    assert chest["patient_id"].nunique() < len(chest), "some chest patients should have follow-up films"
    for text, boxes in zip(chest["findings"], chest["boxes"]):
        names = [] if text == paper.NO_FINDING else text.split("|")
        assert set(names) <= set(paper.FINDINGS)
        decoded = manifests.decode_boxes(boxes)
        assert [b[0] for b in decoded] == names
        for _, x, y, w, h in decoded:
            assert 0 <= x <= x + w <= 32 + 0.01 and 0 <= y <= y + h <= 32 + 0.01
    assert (df.loc[df["xray_type"] != "chest", "findings"] == "").all()
    info = json.loads((tiny_build.parent / "demo_info.json").read_text())
    assert info["counts"]["total"] == n_expected
    assert info["parameters"]["seed"] == TINY["seed"] and info["generation_seconds"] >= 0


def test_task_manifests_follow_from_the_demo_manifest(tiny_build, tmp_path):
    df = manifests.read_image_manifest(tiny_build)
    written = manifests.write_task_manifests(df, tmp_path, seed=0)
    tasks = {t: manifests.read_task_manifest(p) for t, p in written.items()}
    assert set(tasks["xray_type"]["label"]) <= set(paper.XRAY_TYPES)
    assert set(tasks["xray_or_not"]["label"]) == set(paper.XRAY_OR_NOT_CLASSES)
    assert len(tasks["chest"]) == TINY["n_chest"]
    manifests.findings_to_vector(tasks["chest"]["label"])  # every label parses


def test_build_is_deterministic_and_independent_of_workers(tiny_build, tmp_path):
    single = demo.build_demo_dataset(tmp_path / "one", workers=1, progress=False, **TINY)
    a = pd.read_csv(tiny_build, dtype=str, keep_default_na=False)
    b = pd.read_csv(single, dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(a, b)
    for rel in a["path"]:
        assert (tiny_build.parent / rel).read_bytes() == (single.parent / rel).read_bytes(), rel
    other = demo.build_demo_dataset(tmp_path / "other", workers=1, progress=False, **{**TINY, "seed": 4})
    c = pd.read_csv(other, dtype=str, keep_default_na=False)
    assert (other.parent / c["path"][0]).read_bytes() != (single.parent / a["path"][0]).read_bytes()


def test_cached_build_is_reused_and_parameter_changes_rebuild(tmp_path):
    params = dict(image_size=24, per_type=1, n_chest=3, n_photos=2, seed=0, types="all")
    path = demo.build_demo_dataset(tmp_path, workers=1, progress=False, **params)
    first = path.stat().st_mtime_ns
    again = demo.build_demo_dataset(tmp_path, workers=1, progress=False, **params)
    assert again == path and path.stat().st_mtime_ns == first  # nothing rewritten
    changed = demo.build_demo_dataset(tmp_path, workers=1, progress=False, **{**params, "n_photos": 3})
    assert len(pd.read_csv(changed)) == 13 + 3 + 3
    forced = demo.build_demo_dataset(tmp_path, workers=1, progress=False, force=True,
                                     **{**params, "n_photos": 3})
    assert forced.stat().st_mtime_ns != first
    assert not (tmp_path / ".parts").exists()


def test_interrupted_build_resumes(tmp_path, monkeypatch):
    params = dict(image_size=24, per_type=4, n_chest=8, n_photos=4, seed=1, types="all")  # 2 chunks
    calls = {"n": 0}
    real = demo._run_chunk

    def crash_on_second(args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(args)

    monkeypatch.setattr(demo, "_run_chunk", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        demo.build_demo_dataset(tmp_path / "a", workers=1, progress=False, **params)
    assert not (tmp_path / "a" / "images.csv").exists()  # no manifest for an incomplete dataset
    assert len(list((tmp_path / "a" / ".parts").glob("0*.json"))) == 1
    monkeypatch.setattr(demo, "_run_chunk", real)
    resumed = demo.build_demo_dataset(tmp_path / "a", workers=1, progress=False, **params)
    clean = demo.build_demo_dataset(tmp_path / "b", workers=1, progress=False, **params)
    assert resumed.read_bytes() == clean.read_bytes()
    rels = pd.read_csv(clean)["path"]
    assert all((resumed.parent / r).read_bytes() == (clean.parent / r).read_bytes() for r in rels)


def test_bad_parameters_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="per_type"):
        demo.build_demo_dataset(tmp_path, per_type=0)


def test_only_the_types_asked_for_are_generated(tmp_path):
    path = demo.build_demo_dataset(tmp_path, workers=1, progress=False,
                                   **{**TINY, "types": ["dental", "finger"], "n_chest": 0})
    df = manifests.read_image_manifest(path)
    assert set(df.loc[df["is_xray"] == "1", "xray_type"]) == {"dental", "finger"}
    assert len(df) == 2 * TINY["per_type"] + TINY["n_photos"]
    again = demo.build_demo_dataset(tmp_path, workers=1, progress=False,
                                    **{**TINY, "types": "dental,finger", "n_chest": 0})
    assert again == path
    with pytest.raises(ValueError, match="unknown X-ray type"):
        demo.check_types("dental,toe")


def test_the_demo_profile_generates_only_where_real_films_are_missing_or_thin():
    from xray_utils.config.profiles import SettingsError, settings, validate

    cfg = settings("demo")
    assert set(cfg["DEMO_TYPES"]) == {"dental", "finger", "wrist", "elbow", "shoulder"}
    assert validate({"DEMO_TYPES": "all"})["DEMO_TYPES"] == tuple(t for t in paper.XRAY_TYPES
                                                                  if t != "chest")
    with pytest.raises(SettingsError, match="unknown X-ray type"):
        validate({"DEMO_TYPES": "toe"})


def test_chest_phantoms_are_test_films_only_unless_asked(tmp_path):
    """Without PHANTOM_CHEST_TRAINING no module trains on a chest phantom; Module III tests on
    all of them."""
    from xray_utils.config.paths import project_paths
    from xray_utils.config.profiles import settings
    from xray_utils.sources.profile import load_profile_images, task_manifest_options

    cfg = settings("demo", DEMO_IMAGE_SIZE=32, DEMO_PER_TYPE=2, DEMO_CHEST=12, DEMO_PHOTOS=6,
                   OPEN_FILMS=False)
    paths = project_paths("demo", tmp_path / "data", tmp_path / "run", tmp_path / "fig")
    images = load_profile_images(paths, cfg, seed=3)
    chest = images[images["xray_type"] == "chest"]
    assert len(chest) == 12 and set(chest["split"]) == {"test"}
    tasks = manifests.task_manifests(images, seed=0, **task_manifest_options(cfg))
    assert (tasks["xray_type"]["label"] != "chest").all()
    assert len(tasks["chest"]) == 12 and set(tasks["chest"]["split"]) == {"test"}
    trained = settings("demo", PHANTOM_CHEST_TRAINING=True)
    assert "demo" not in task_manifest_options(trained).get("chest_test_only_sources", ())


def test_chest_patients_have_follow_ups():
    pats = demo.chest_patients(500, seed=0)
    assert len(pats) == 500
    sizes = np.bincount(pats)
    assert sizes.max() <= 3 and (sizes > 1).mean() > 0.1 and (sizes == 1).mean() > 0.6


def test_sample_dicom_films_are_the_two_pydicom_radiographs():
    pydicom = pytest.importorskip("pydicom")
    films = demo.sample_dicom_films()
    assert set(films) == {"chest_pa", "ankle"}
    for name, path in films.items():
        assert path.is_file()
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.PhotometricInterpretation == "MONOCHROME1", name
        assert 10 <= int(ds.BitsStored) <= 16


def test_task_manifests_survive_a_moved_clone(tiny_build, tmp_path, monkeypatch):
    """Images inside the repository are stored relative to the manifest: a moved clone reads its own."""
    import shutil
    from pathlib import Path

    from xray_utils.config import paths as config_paths

    clone = tmp_path / "clone"
    shutil.copytree(tiny_build.parent, clone / "data" / "demo")
    monkeypatch.setattr(config_paths, "REPO_ROOT", clone)
    df = manifests.read_image_manifest(clone / "data" / "demo" / tiny_build.name)
    written = manifests.write_task_manifests(df, clone / "runs" / "demo" / "manifests", seed=0)
    raw = pd.read_csv(written["chest"], dtype=str)
    assert not any(Path(p).is_absolute() for p in raw["path"])
    moved = clone.rename(tmp_path / "moved")
    task = manifests.read_task_manifest(moved / "runs" / "demo" / "manifests" / "chest.csv")
    assert all(Path(p).is_file() and Path(p).is_relative_to(moved) for p in task["path"])
    outside = manifests.portable_path(tmp_path / "elsewhere.png", moved)
    assert Path(outside).is_absolute()  # an image outside the repository keeps its path
