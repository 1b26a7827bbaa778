"""The real films shipped in data/open-films: attributed, checksummed, nothing else shipped."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from xray_utils.config import paper
from xray_utils.config.paths import OPEN_FILMS_DIR, REPO_ROOT
from xray_utils.data.manifests import IMAGE_COLUMNS, check_no_leakage
from xray_utils.sources.dataset_spec import DatasetError
from xray_utils.sources.open_films import MANIFEST, is_real, load_open_films, verify_checksums

DOCS = {MANIFEST, "README.md"}


def _pack() -> pd.DataFrame:
    return pd.read_csv(OPEN_FILMS_DIR / MANIFEST, dtype=str, keep_default_na=False)


def test_every_shipped_file_is_listed_with_licence_and_checksum():
    df = _pack()
    shipped = {str(p.relative_to(OPEN_FILMS_DIR)) for p in OPEN_FILMS_DIR.rglob("*") if p.is_file()}
    assert shipped - DOCS == set(df["file"]), "files shipped but not listed, or listed but missing"
    assert df["file"].is_unique
    for column in ("licence", "citation", "source", "sha256"):
        assert (df[column].str.strip() != "").all(), f"empty {column}"
    for f, want in zip(df["file"], df["sha256"]):
        assert hashlib.sha256((OPEN_FILMS_DIR / f).read_bytes()).hexdigest() == want, f
    assert verify_checksums() == []


def test_nothing_else_is_shipped_from_outside_the_open_pack():
    """Only the pack's own sources; nothing from folders whose terms forbid redistribution."""
    df = _pack()
    assert set(df["source"]) == {"nih_cxr14", "fracatlas", "knee_kl", "fraiwan_spine", "grazpedwri_dx",
                                 "flickr_flowers", "acani_portraits", "c2lc_landmarks", "skimage_data",
                                 "sklearn_images", "pfvc_commons", "pganssle_talk"}
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True,
                             text=True).stdout.split("\0")
    if not any(tracked):
        pytest.skip("not a git checkout")
    images = [t for t in tracked if Path(t).suffix.lower() in (".jpg", ".jpeg", ".png", ".dcm")
              and not t.startswith(("figures/", "data/open-films/"))]
    assert images == [], f"image files shipped outside data/open-films: {images[:5]}"
    assert not any("real-samples/" in t for t in tracked)


def test_pack_loads_as_an_image_manifest_split_by_patient():
    images = load_open_films(seed=0)
    assert list(images.columns) == list(IMAGE_COLUMNS)
    assert len(images) == len(_pack())
    check_no_leakage(images)
    assert set(images["split"]) == {"train", "val", "test"}
    nih = images["source"] == "open-films/nih_cxr14"
    assert images.loc[nih, "split"].tolist() == _pack().loc[nih.to_numpy(), "split"].tolist()
    others = images[~nih]
    assert 0.25 < (others["split"] == "test").mean() < 0.35
    assert is_real(images["source"]).all()
    xrays = images[images["is_xray"] == "1"]
    assert set(xrays["xray_type"]) <= set(paper.XRAY_TYPES)
    chest = xrays[xrays["xray_type"] == "chest"]
    assert (chest["findings"] != "").all()  # No Finding is explicit
    assert (images.loc[images["is_xray"] == "0", "findings"] == "").all()
    again = load_open_films(seed=0)
    assert again["split"].tolist() == images["split"].tolist()


def test_a_changed_or_missing_file_is_named(tmp_path):
    import shutil

    dst = tmp_path / "pack"
    shutil.copytree(OPEN_FILMS_DIR, dst)
    first = _pack()["file"].iloc[0]
    (dst / first).write_bytes(b"not the film")
    with pytest.raises(DatasetError, match="differ from their checksum"):
        load_open_films(dst)
    (dst / first).unlink()
    with pytest.raises(DatasetError, match="missing"):
        load_open_films(dst)
    (dst / MANIFEST).unlink()
    with pytest.raises(DatasetError, match="git checkout"):
        load_open_films(dst)


def test_demo_task_manifests_keep_real_films_apart_as_asked():
    from xray_utils.data.manifests import task_manifests

    images = load_open_films(seed=0)
    all_real = task_manifests(images, seed=0, chest_fraction_by_source={"open-films/": 1.0})
    n_chest = int((images["xray_type"] == "chest").sum())
    assert int((all_real["xray_type"]["label"] == "chest").sum()) == n_chest
    tenth = task_manifests(images, seed=0)
    assert int((tenth["xray_type"]["label"] == "chest").sum()) < n_chest / 5
    held = task_manifests(images, seed=0, chest_test_only_sources=("open-films/",))
    assert set(held["chest"]["split"]) == {"test"}
    assert len(held["chest"]) == int(((images["xray_type"] == "chest")
                                      & (images["split"] == "test")).sum())


def test_the_whole_pack_is_shipped_small():
    """All 5,902 films and photographs, each at most 128 px on the long side."""
    from PIL import Image

    df = _pack()
    assert len(df) == 5902
    assert int((df["source"] == "nih_cxr14").sum()) == 4247
    for f in df["file"]:
        with Image.open(OPEN_FILMS_DIR / f) as im:
            assert max(im.size) <= 128, f
    total = sum((OPEN_FILMS_DIR / f).stat().st_size for f in df["file"])
    assert total < 25e6


def test_nih_films_follow_the_authors_split_and_keep_their_boxes():
    df = _pack()
    nih = df[df["source"] == "nih_cxr14"]
    assert set(nih["split"]) == {"train", "val", "test"}
    assert (df.loc[df["source"] != "nih_cxr14", "split"] == "").all()
    assert int((nih["boxes"] != "").sum()) == 837
    images = load_open_films(seed=0, verify=False)
    boxed = images[images["boxes"] != ""]
    assert len(boxed) == 837 and boxed["source"].eq("open-films/nih_cxr14").all()
    from xray_utils.data.manifests import decode_boxes

    for text, w, h in zip(boxed["boxes"], boxed["width"], boxed["height"]):
        for finding, x, y, bw, bh in decode_boxes(text):
            assert finding in paper.FINDINGS
            assert -1 <= x and x + bw <= int(w) + 1 and -1 <= y and y + bh <= int(h) + 1


def test_nih_split_is_the_authors_patient_wise_split():
    """Every shipped NIH film sits in the split the authors' released lists give it."""
    from fixtures_real import shared_dir

    lists = (shared_dir() or REPO_ROOT.parent / "shared") / "reference" / "is2ai-chest-split"
    if not lists.is_dir():
        pytest.skip(f"the authors' split lists are absent ({lists}; set XRAY_SHARED_DIR)")
    where = {}
    for name in ("train", "val", "test"):
        for line in (lists / f"{name}_list.txt").read_text().splitlines():
            if line.strip():
                where[line.split()[0].rsplit(".", 1)[0]] = name
    nih = _pack()
    nih = nih[nih["source"] == "nih_cxr14"]
    assert [where[Path(f).stem] for f in nih["file"]] == nih["split"].tolist()
    check_no_leakage(nih.assign(patient_id=nih["patient_id"]))


def test_a_bad_box_is_named(tmp_path):
    from xray_utils.sources.open_films import parse_boxes

    assert parse_boxes("", (128, 128)) == ""
    assert "Infiltration" in parse_boxes("Infiltrate:512,512,100,100", (128, 128))
    with pytest.raises(DatasetError, match="x,y,w,h"):
        parse_boxes("Mass:1,2,3", (128, 128), "manifest.csv (a.jpg)")
    with pytest.raises(DatasetError, match="unknown finding"):
        parse_boxes("Wart:1,2,3,4", (128, 128))
