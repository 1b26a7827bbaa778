"""Real-data adapters, patient-wise splits and the paper's manifest rules.

Three groups: the real ChestX-ray14 metadata and the authors' split (from the shared reference
folder, skipped when absent), fixture trees in each source's native layout (good and broken),
and the generic labelled folder on the real samples.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_real import (
    labelled_folder_dir,
    make_aasce,
    make_authors_split,
    make_chestxray14,
    make_dental,
    make_imagenet,
    make_labelled_folder,
    make_lera,
    make_mura,
    make_raw_root,
    shared_dir,
    write_image,
)

from xray_utils.config import paper
from xray_utils.data import manifests
from xray_utils.sources import labelled_folder
from xray_utils.sources.paper import (
    ADAPTERS,
    FULL_SOURCES,
    DatasetError,
    DuplicateImagesError,
    MissingDatasetsError,
    aasce,
    add_labelled_folder,
    build_full_manifests,
    chestxray14,
    dental,
    imagenet,
    lera,
    mura,
    require_datasets,
    splits,
)

SHARED = shared_dir()
NIH = SHARED / "reference" / "nih" if SHARED else None
AUTHORS = SHARED / "reference" / "is2ai-chest-split" if SHARED else None
needs_shared = pytest.mark.skipif(
    SHARED is None or not (SHARED / "reference" / "nih").is_dir(),
    reason="shared reference folder absent (set XRAY_SHARED_DIR or put it at <repo>/../shared)")
SAMPLES = labelled_folder_dir()
needs_samples = pytest.mark.skipif(
    SAMPLES is None, reason="real samples absent (set XRAY_REAL_SAMPLES or <repo>/../shared/real-samples)")


def leaks(df: pd.DataFrame) -> int:
    return int((df.groupby("patient_id")["split"].nunique() > 1).sum())


# ============================================================ real ChestX-ray14 metadata
@pytest.fixture(scope="module")
def nih_images() -> pd.DataFrame:
    return chestxray14.load(NIH, check_files=False)


@pytest.fixture(scope="module")
def nih_csv() -> pd.DataFrame:
    return pd.read_csv(NIH / "Data_Entry_2017_v2020.csv.gz")


@needs_shared
def test_chestxray14_metadata_counts_match_the_csv(nih_images, nih_csv):
    assert len(nih_images) == 112_120
    assert nih_images["patient_id"].nunique() == nih_csv["Patient ID"].nunique() == 30_805
    assert list(nih_images.columns) == list(manifests.IMAGE_COLUMNS)
    # finding counts computed independently from the raw CSV
    expected = nih_csv["Finding Labels"].str.split("|").explode().value_counts()
    ours = pd.Series(manifests.findings_to_vector(nih_images["findings"]).sum(0).astype(int),
                     index=paper.FINDINGS)
    for f in paper.FINDINGS:
        assert ours[f] == expected[f], f
    assert (nih_images["findings"] == paper.NO_FINDING).sum() == expected[paper.NO_FINDING]
    assert set(nih_images["width"]) == {"1024"} and set(nih_images["xray_type"]) == {"chest"}


@needs_shared
def test_chestxray14_boxes_come_from_the_box_list(nih_images):
    raw = pd.read_csv(NIH / "BBox_List_2017.csv.gz")
    with_boxes = nih_images[nih_images["boxes"] != ""]
    assert len(with_boxes) == raw["Image Index"].nunique()
    decoded = [b for text in with_boxes["boxes"] for b in manifests.decode_boxes(text)]
    assert len(decoded) == len(raw)
    assert {b[0] for b in decoded} <= set(paper.FINDINGS)  # "Infiltrate" was renamed
    row = raw.iloc[0]
    text = nih_images.loc[nih_images["path"].str.endswith(row["Image Index"]), "boxes"].item()
    assert any(abs(b[1] - row["Bbox [x"]) < 0.01 and abs(b[4] - row["h]"]) < 0.01
               for b in manifests.decode_boxes(text))


@needs_shared
def test_random_chest_split_is_patient_disjoint_70_20_10(nih_images):
    split = splits.split_chest(nih_images, "random", seed=0)
    assert leaks(split) == 0
    share = split["split"].value_counts(normalize=True)
    for name, frac in paper.SPLIT_FRACTIONS.items():
        assert abs(share[name] - frac) < 0.01
    again = splits.split_chest(nih_images, "random", seed=0)
    assert (again["split"] == split["split"]).all()  # seeded


@needs_shared
def test_modules_i_ii_use_a_patient_wise_tenth_of_the_chest_films(nih_images):
    split = splits.split_chest(nih_images, "random", seed=0)
    tasks = manifests.task_manifests(split, seed=0)
    sample = tasks["xray_type"]
    n = len(sample)
    print(f"Modules I-II chest sample: {n} films (paper Table I: {paper.TABLE_I['chest']})")
    assert abs(n / len(nih_images) - paper.CHEST_FRACTION_MODULES_I_II) < 0.005
    assert abs(n - paper.TABLE_I["chest"]) / paper.TABLE_I["chest"] < 0.05
    assert leaks(sample) == 0
    # whole patients only: every sampled patient has all their films in the sample
    per_patient = split.groupby("patient_id").size()
    got = sample.groupby("patient_id").size()
    assert (per_patient.reindex(got.index) == got).all()
    share = sample["split"].value_counts(normalize=True)
    for name, frac in paper.SPLIT_FRACTIONS.items():
        assert abs(share[name] - frac) < 0.02
    # each sampled film keeps the split it has in Module III
    chest = tasks["chest"].set_index("path")["split"]
    assert (chest.reindex(sample["path"]).to_numpy() == sample["split"].to_numpy()).all()
    assert len(tasks["chest"]) == len(nih_images)


@needs_shared
def test_authors_split_loads_matches_the_csv_and_is_patient_disjoint(nih_images):
    table = splits.read_authors_split(AUTHORS)
    assert table["split"].value_counts().to_dict() == dict(paper.AUTHORS_CHEST_SPLIT_SIZES)
    names = nih_images["path"].map(lambda p: Path(p).name)
    assert set(table["image"]) == set(names)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = splits.split_chest(nih_images, "authors", authors_split_dir=AUTHORS,
                                   use_authors_labels=False)
    assert leaks(split) == 0
    assert split["split"].value_counts().to_dict() == dict(paper.AUTHORS_CHEST_SPLIT_SIZES)
    mismatches = split.attrs["authors_label_mismatches"]
    print(f"authors' lists vs v2020 CSV: {mismatches} films with other findings")
    assert 0 <= mismatches < 0.005 * len(split)
    assert (mismatches == 0) or any("other findings" in str(w.message) for w in caught)
    # with the authors' labels the findings are exactly those of the lists
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = splits.split_chest(nih_images, "authors", authors_split_dir=AUTHORS)
    lookup = table.set_index("image")["findings"]
    assert (lookup.reindex(names).to_numpy() == ours["findings"].to_numpy()).all()


def test_grouped_split_is_patient_disjoint_stratified_and_seeded():
    rng = np.random.default_rng(4)
    groups = rng.integers(0, 3000, 20000).astype(str)
    strata = np.where(groups.astype(int) % 3 == 0, "chest",
                      np.where(groups.astype(int) % 3 == 1, "hand", "not_xray"))
    out = manifests.grouped_split(groups, seed=7, strata=strata)
    frame = pd.DataFrame({"patient_id": groups, "split": out, "stratum": strata})
    assert leaks(frame) == 0
    for _, part in frame.groupby("stratum"):
        share = part["split"].value_counts(normalize=True)
        for name, frac in paper.SPLIT_FRACTIONS.items():
            assert abs(share[name] - frac) < 0.03
    assert (manifests.grouped_split(groups, seed=7, strata=strata) == out).all()
    assert (manifests.grouped_split(groups, seed=8, strata=strata) != out).any()


# ============================================================ fixture trees: good layouts
@pytest.mark.parametrize("layout,csv_name", [("nested", "Data_Entry_2017.csv"),
                                             ("flat", "Data_Entry_2017_v2020.csv.gz")])
def test_chestxray14_adapter_reads_the_nih_layouts(tmp_path, layout, csv_name):
    rows = make_chestxray14(tmp_path, layout=layout, csv_name=csv_name)
    df = ADAPTERS["chestxray14"].load(tmp_path)
    assert len(df) == len(rows) and list(df.columns) == list(manifests.IMAGE_COLUMNS)
    assert sorted(df["path"]) == sorted(str(r["path"]) for r in rows)
    assert df["patient_id"].nunique() == 8
    by_name = df.set_index(df["path"].map(lambda p: Path(p).name))
    # findings in Table III order, "Infiltrate" box renamed, boxes kept in the 1024 px space
    assert by_name.loc[rows[2]["name"], "findings"] == "Effusion|Infiltration"
    boxes = manifests.decode_boxes(by_name.loc[rows[2]["name"], "boxes"])
    assert [b[0] for b in boxes] == ["Infiltration", "Effusion"]
    assert manifests.decode_boxes(by_name.loc[rows[1]["name"], "boxes"]) == [
        ("Cardiomegaly", 100.5, 200.25, 300.0, 150.0)]


def test_mura_adapter_reads_both_path_lists(tmp_path):
    listed = make_mura(tmp_path)
    df = ADAPTERS["mura"].load(tmp_path)
    assert len(df) == len(listed)
    assert set(df["xray_type"]) == {"elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist"}
    assert df["patient_id"].str.match(r"mura:patient\d{5}$").all()
    assert df.groupby("patient_id")["xray_type"].nunique().max() == 1
    # pointing at the MURA-v1.1 folder itself works too
    assert len(mura.load(tmp_path / "MURA-v1.1")) == len(listed)


@pytest.mark.parametrize("with_csv", [False, True])
def test_lera_adapter_reads_folders_or_a_labels_csv(tmp_path, with_csv):
    files = make_lera(tmp_path, with_csv=with_csv)
    df = lera.load(tmp_path)
    assert len(df) == len(files)
    assert set(df["xray_type"]) == {"foot", "knee", "ankle", "hip"}
    assert df["patient_id"].nunique() == 8  # two images per study


def test_lera_adapter_reads_the_aimi_release(tmp_path):
    """Stanford AIMI layout: header-less labels.csv (study id, XR <PART>, label), images under
    <study id>/ST-1/ at any depth, PNG or DICOM; the body part comes from the CSV alone."""
    files = make_lera(tmp_path, layout="aimi")
    df = lera.load(tmp_path)
    assert sorted(df["path"]) == sorted(map(str, files))
    assert list(df.columns) == list(manifests.IMAGE_COLUMNS)
    assert df.map(lambda v: type(v) is str).all().all()
    by_study = {Path(p).relative_to(tmp_path / "LERA Dataset").parts[0]: t
                for p, t in zip(df["path"], df["xray_type"])}
    expected = {str(1000 + s): ("Foot", "Knee", "Ankle", "Hip")[s % 4].lower() for s in range(1, 9)}
    assert by_study == expected
    assert set(df["is_xray"]) == {"1"} and set(df["source"]) == {"lera"}
    assert df["patient_id"].nunique() == 8 and df["patient_id"].str.match(r"lera:10\d\d$").all()
    assert any(p.endswith(".dcm") for p in df["path"])
    assert lera.problems(tmp_path) == []
    # pointing at the "LERA Dataset" folder itself works too
    assert len(lera.load(tmp_path / "LERA Dataset")) == len(files)


def _break_listed_file(root, pattern):
    victim = sorted(p for p in Path(root).rglob(pattern) if p.is_file())[0]
    victim.unlink()


def _rewrite(path, transform):
    path = Path(path)
    path.write_text(transform(path.read_text()))


#: (adapter, builder, [(variant name, breaker)]): each adapter's native layout and broken copies.
NATIVE = [
    (chestxray14, lambda r: make_chestxray14(r), [
        ("image missing", lambda r: _break_listed_file(r, "*.png")),
        ("no label csv", lambda r: (r / "Data_Entry_2017.csv").unlink()),
        ("unknown finding", lambda r: _rewrite(r / "Data_Entry_2017.csv",
                                               lambda t: t.replace("Cardiomegaly", "Cardio"))),
        ("no images folders", lambda r: [p.unlink() for p in r.rglob("*.png")]),
    ]),
    (mura, lambda r: make_mura(r), [
        ("image missing", lambda r: _break_listed_file(r, "image1.png")),
        ("no valid list", lambda r: (r / "MURA-v1.1" / "valid_image_paths.csv").unlink()),
        ("bad study type", lambda r: _rewrite(r / "MURA-v1.1" / "train_image_paths.csv",
                                              lambda t: t.replace("XR_ELBOW", "XR_KNEE"))),
    ]),
    (lera, lambda r: make_lera(r, layout="aimi"), [
        ("study folder missing", lambda r: __import__("shutil").rmtree(r / "LERA Dataset" / "1003")),
        ("unknown study type", lambda r: _rewrite(r / "LERA Dataset" / "labels.csv",
                                                  lambda t: t.replace("XR HIP", "XR TIBIA"))),
        ("study without images",
         lambda r: [p.unlink() for p in (r / "LERA Dataset" / "1004").rglob("*.png")]),
    ]),
    (lera, lambda r: make_lera(r), [
        ("image outside body-part folders", lambda r: write_image(r / "LERA" / "0099" / "image1.png")),
    ]),
    (lera, lambda r: make_lera(r, with_csv=True), [
        ("listed image missing", lambda r: _break_listed_file(r, "*.png")),
        ("bad body part", lambda r: _rewrite(r / "labels.csv", lambda t: t.replace(",hip,", ",tibia,"))),
    ]),
    (aasce, lambda r: make_aasce(r), [
        ("listed image missing", lambda r: _break_listed_file(r, "*.jpg")),
        ("no test folder", lambda r: __import__("shutil").rmtree(r / "boostnet_labeldata" / "data" / "test")),
    ]),
    (dental, lambda r: make_dental(r), [
        ("no images folder", lambda r: (r / "UFBA_UESC_DENTAL_IMAGES" / "images").rename(
            r / "UFBA_UESC_DENTAL_IMAGES" / "pictures")),
        ("images folder empty",
         lambda r: [p.unlink() for p in (r / "UFBA_UESC_DENTAL_IMAGES" / "images").rglob("*.*")]),
    ]),
    (imagenet, lambda r: make_imagenet(r), [
        ("no photographs", lambda r: [p.unlink() for p in r.rglob("*.JPEG")]),
    ]),
    (imagenet, lambda r: make_imagenet(r, layout="imagenette"), []),
]
_EXPECTED_TYPES = {"chestxray14": {"chest"}, "mura": set(mura.BODY_PARTS.values()),
                   "lera": {"foot", "knee", "ankle", "hip"}, "aasce": {"spine"}, "dental": {"dental"},
                   "imagenet": {""}}


@pytest.mark.parametrize("adapter,build,variants", NATIVE,
                         ids=[f"{a.NAME}-{i}" for i, (a, _, _) in enumerate(NATIVE)])
def test_problems_is_empty_exactly_when_load_succeeds(tmp_path, adapter, build, variants):
    """Each adapter on its publisher's native layout: ready, right rows and types; then each
    broken copy: problems() says so, and load() fails with the same message."""
    root = tmp_path / "good"
    built = build(root)
    assert adapter.problems(root) == []
    df = adapter.load(root)
    assert list(df.columns) == list(manifests.IMAGE_COLUMNS)
    assert df.map(lambda v: type(v) is str).all().all()
    assert len(df) == len(built) and df["path"].is_unique
    assert set(df["xray_type"]) == _EXPECTED_TYPES[adapter.NAME]
    assert set(df["is_xray"]) == ({"0"} if adapter.NAME == "imagenet" else {"1"})
    assert set(df["source"]) == {adapter.NAME} and df["patient_id"].str.startswith(f"{adapter.NAME}:").all()
    assert all(Path(p).is_file() for p in df["path"])
    assert adapter.problems(tmp_path / "absent") == [f"folder {tmp_path / 'absent'} is missing"]
    for k, (name, breaker) in enumerate(variants):
        broken = tmp_path / f"broken{k}"
        build(broken)
        breaker(broken)
        issues = adapter.problems(broken)
        assert issues, f"{adapter.NAME}: problems() passed a broken layout ({name})"
        with pytest.raises(DatasetError) as err:
            adapter.load(broken)
        assert issues == [str(err.value)], name


def test_aasce_adapter_reads_training_and_test(tmp_path):
    files = make_aasce(tmp_path, training=5, test=3)
    df = aasce.load(tmp_path)
    assert len(df) == 8 and set(df["xray_type"]) == {"spine"}
    assert sorted(df["path"]) == sorted(map(str, files))


def test_dental_adapter_skips_masks(tmp_path):
    files = make_dental(tmp_path)
    df = dental.load(tmp_path)
    assert sorted(df["path"]) == sorted(map(str, files))
    rel = df["path"].map(lambda p: Path(p).relative_to(tmp_path).as_posix())
    assert not rel.str.contains("mask|segmentation").any()


@pytest.mark.parametrize("layout", ["synset", "imagenette", "flat"])
def test_imagenet_adapter_reads_photographs(tmp_path, layout):
    files = make_imagenet(tmp_path, layout=layout)
    df = imagenet.load(tmp_path)
    assert len(df) == len(files) and set(df["is_xray"]) == {"0"} and set(df["xray_type"]) == {""}


# ============================================================ fixture trees: bad layouts
def test_chestxray14_errors_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(DatasetError, match=r"folder .*nowhere not found.*Expected layout"):
        chestxray14.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no label file .*Data_Entry_2017_v2020.csv"):
        chestxray14.load(tmp_path / "empty")
    bad = tmp_path / "badcsv"
    bad.mkdir()
    (bad / "Data_Entry_2017.csv").write_text("Image,Labels\na.png,Mass\n")
    with pytest.raises(DatasetError,
                       match=r"lacks the column\(s\) \['Image Index', 'Finding Labels', 'Patient ID'\]"):
        chestxray14.load(bad)
    rows = make_chestxray14(tmp_path / "cx")
    rows[0]["path"].unlink()
    rows[5]["path"].unlink()
    with pytest.raises(DatasetError, match=r"2 of 16 listed image\(s\) are missing, e\.g\. "
                                           r".*00000001_000\.png.*drop_missing=True"):
        chestxray14.load(tmp_path / "cx")
    with pytest.warns(UserWarning, match="dropped 2 of 16"):
        df = chestxray14.load(tmp_path / "cx", drop_missing=True)
    assert len(df) == 14 and df.attrs["missing_dropped"] == 2


def test_chestxray14_detects_missing_images_folder_and_duplicates(tmp_path):
    rows = make_chestxray14(tmp_path, layout="flat")
    for r in rows:
        r["path"].unlink()
    (tmp_path / "images").rmdir()
    with pytest.raises(DatasetError, match=r"no images\*/ folder .*check_files=False"):
        chestxray14.load(tmp_path)
    assert len(chestxray14.load(tmp_path, check_files=False)) == len(rows)
    other = tmp_path / "dup"
    rows = make_chestxray14(other)
    write_image(other / "images_002" / "images" / rows[0]["name"])
    with pytest.raises(DuplicateImagesError, match=r"present twice .*00000001_000\.png"):
        chestxray14.load(other)
    text = (other / "Data_Entry_2017.csv").read_text().replace("Cardiomegaly", "Cardiomegalyy", 1)
    (other / "Data_Entry_2017.csv").write_text(text)
    (other / "images_002" / "images" / rows[0]["name"]).unlink()
    with pytest.raises(DatasetError, match=r"unknown finding label\(s\) \['Cardiomegalyy'\]"):
        chestxray14.load(other)


def test_mura_errors(tmp_path):
    (tmp_path / "MURA-v1.1").mkdir()
    with pytest.raises(DatasetError, match=r"train_image_paths\.csv not found.*data/raw/mura"):
        mura.load(tmp_path)
    make_mura(tmp_path)
    (tmp_path / "MURA-v1.1" / "valid_image_paths.csv").write_text("path,label\nimage1.png,1\n")
    with pytest.raises(DatasetError, match=r"valid_image_paths\.csv is malformed: expected one column"):
        mura.load(tmp_path)
    listed = make_mura(tmp_path)
    (tmp_path / listed[3]).unlink()
    with pytest.raises(DatasetError, match=r"1 of 28 listed image\(s\) are missing"):
        mura.load(tmp_path)


def test_lera_aasce_dental_imagenet_errors(tmp_path):
    make_lera(tmp_path / "lera")
    write_image(tmp_path / "lera" / "LERA" / "0099" / "image1.png")
    with pytest.raises(DatasetError, match=r"1 of 17 image\(s\) .* no folder named after a body part"):
        lera.load(tmp_path / "lera")
    make_aasce(tmp_path / "aasce")
    bad = tmp_path / "aasce" / "boostnet_labeldata" / "data" / "test"
    for f in bad.iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"3 of 8 listed image\(s\) are missing.*filenames\.csv"):
        aasce.load(tmp_path / "aasce")
    bad.rmdir()
    (tmp_path / "aasce" / "boostnet_labeldata" / "labels" / "test" / "filenames.csv").unlink()
    with pytest.raises(DatasetError, match=r"folder .*data/test not found"):
        aasce.load(tmp_path / "aasce")
    write_image(tmp_path / "dental" / "pictures" / "1.jpg")
    with pytest.raises(DatasetError, match=r"no 'images' folder under .*dental"):
        dental.load(tmp_path / "dental")
    (tmp_path / "imagenet").mkdir()
    with pytest.raises(DatasetError, match=r"no image files under .*imagenet"):
        imagenet.load(tmp_path / "imagenet")


def test_labelled_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"labels\.csv not found"):
        labelled_folder.load(tmp_path)
    make_labelled_folder(tmp_path)
    csv = tmp_path / "labels.csv"
    good = csv.read_text()
    csv.write_text(good.replace("file,is_xray", "filename,is_xray", 1))
    with pytest.raises(DatasetError, match=r"lacks the column\(s\) \['file'\]"):
        labelled_folder.load(tmp_path)
    csv.write_text(good.replace(",1,hand,", ",maybe,hand,", 1))
    with pytest.raises(DatasetError,
                       match=r"is_xray must be 1 or 0; bad value\(s\) \['maybe'\] on line\(s\) \[8\]"):
        labelled_folder.load(tmp_path)
    csv.write_text(good.replace(",1,hand,", ",1,pelvis,", 1))
    with pytest.raises(DatasetError, match=r"xray_type must be one of .*'pelvis'"):
        labelled_folder.load(tmp_path)


def test_duplicates_across_sources_are_found_by_content(tmp_path):
    make_imagenet(tmp_path / "imagenet", layout="flat")
    files = make_dental(tmp_path / "dental")
    photo = next((tmp_path / "imagenet").iterdir())
    photo.write_bytes(files[0].read_bytes())  # the same file shipped in two sources
    both = pd.concat([imagenet.load(tmp_path / "imagenet"), dental.load(tmp_path / "dental")],
                     ignore_index=True)
    from xray_utils.sources.paper import check_duplicates
    assert check_duplicates(both) is both  # paths differ
    with pytest.raises(DuplicateImagesError,
                       match=r"1 image\(s\) appear more than once .*\[imagenet\].*\[dental\]"
                             r"|\[dental\].*\[imagenet\]"):
        check_duplicates(both, content=True)
    with pytest.warns(UserWarning, match="dropped 1 duplicate"):
        assert len(check_duplicates(both, content=True, drop=True)) == len(both) - 1


# ============================================================ readiness and full manifests
def test_require_datasets_names_every_missing_folder(tmp_path):
    with pytest.raises(MissingDatasetsError) as err:
        require_datasets(tmp_path)
    text = str(err.value)
    assert text.startswith(f"6 dataset(s) are missing or incomplete under {tmp_path}")
    for spec in (ADAPTERS[n] for n in FULL_SOURCES):
        assert f"- {spec.title}: folder {tmp_path / spec.name} is missing" in text
        assert f'data/README.md (section "{spec.readme_section}")' in text
    make_mura(tmp_path / "mura")
    make_chestxray14(tmp_path / "chestxray14")
    with pytest.raises(MissingDatasetsError, match=r"^4 dataset\(s\)") as err:
        require_datasets(tmp_path)
    assert "MURA" not in str(err.value)
    assert require_datasets(tmp_path, needed=["mura", "chestxray14"]) == {
        "mura": tmp_path / "mura", "chestxray14": tmp_path / "chestxray14"}


def test_every_adapter_has_its_section_in_the_data_readme():
    readme = (Path(__file__).resolve().parents[1] / "data" / "README.md").read_text()
    headings = {line[3:].strip() for line in readme.splitlines() if line.startswith("## ")}
    for spec in ADAPTERS.values():
        assert spec.readme_section in headings, spec.name
        assert spec.layout.startswith("data/raw/" + spec.name) or spec.name == "labelled_folder"


@pytest.mark.parametrize("chest_split", ["random", "nih", "authors"])
def test_build_full_manifests_follows_the_paper_rules(tmp_path, chest_split):
    raw = tmp_path / "raw"
    made = make_raw_root(raw)
    authors = make_authors_split(tmp_path / "authors", made["chestxray14"])
    out = build_full_manifests(raw, tmp_path / "manifests", seed=0, chest_split=chest_split,
                               authors_split_dir=authors)
    assert set(out) == {*paper.TASKS, "images", "summary"}
    images = manifests.read_image_manifest(out["images"])
    assert set(images["source"]) == set(FULL_SOURCES) and leaks(images) == 0
    tasks = {t: manifests.read_task_manifest(out[t]) for t in paper.TASKS}
    for df in tasks.values():
        assert leaks(df) == 0
    chest = images[images["xray_type"] == "chest"]
    assert len(tasks["chest"]) == len(chest)
    assert (tasks["xray_type"]["label"] == "chest").sum() < 0.3 * len(chest)
    i = tasks["xray_or_not"]
    assert (i["label"] == "xray").sum() == len(tasks["xray_type"]) == (i["label"] == "not_xray").sum()
    nonchest = images[(images["is_xray"] == "1") & (images["xray_type"] != "chest")]
    assert set(nonchest["path"]) <= set(tasks["xray_type"]["path"])
    summary = json.loads(out["summary"].read_text())
    assert summary["chest_split"] == chest_split and summary["table_i"]["chest"]["paper"] == 11001
    if chest_split == "nih":
        test_names = set((raw / "chestxray14" / "test_list.txt").read_text().split())
        got = set(tasks["chest"].loc[tasks["chest"]["split"] == "test", "path"].map(lambda p: Path(p).name))
        assert got == test_names
    if chest_split == "authors":
        table = splits.read_authors_split(authors).set_index("image")["split"]
        names = tasks["chest"]["path"].map(lambda p: Path(p).name)
        assert (table.reindex(names).to_numpy() == tasks["chest"]["split"].to_numpy()).all()


def test_build_full_manifests_stops_at_once_when_data_is_missing(tmp_path):
    make_mura(tmp_path / "mura")
    with pytest.raises(MissingDatasetsError, match="5 dataset"):
        build_full_manifests(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ============================================================ generic labelled folder
def test_labelled_folder_fixture(tmp_path):
    rows = make_labelled_folder(tmp_path / "mine")
    df = labelled_folder.load(tmp_path / "mine")
    assert len(df) == len(rows) and set(df["source"]) == {"mine"}
    by_file = df.set_index(df["path"].map(lambda p: Path(p).relative_to(tmp_path / "mine").as_posix()))
    assert by_file.loc["nih/00000005_000.jpg", "findings"] == "Effusion|Mass"
    assert by_file.loc["misc/tb0001.jpg", "findings"] == ""  # not ChestX-ray14: unknown
    assert by_file.loc["knee/kl1_9016304L.jpg", "findings"] == ""
    # patient ids: extra, NIH file name, OAI knee id, else one per file
    patient = by_file["patient_id"]
    assert patient["nih/00000005_000.jpg"] == patient["nih/00000005_001.jpg"] == "mine:5"
    assert by_file.loc["nih/00000007_000.jpg", "patient_id"] == "mine:7"
    assert patient["knee/kl1_9016304L.jpg"] == patient["knee/kl2_9016304R.jpg"]
    assert patient["frac/IMG0000001.jpg"] != patient["frac/IMG0000002.jpg"]
    # box from the 1024 px space scaled to the 512 px file
    assert manifests.decode_boxes(by_file.loc["nih/00000005_000.jpg", "boxes"]) == [
        ("Mass", 100.0, 200.0, 50.0, 25.0)]


def test_add_labelled_folder_mixes_films_into_a_manifest(tmp_path):
    make_labelled_folder(tmp_path / "mine")
    demo_files = [write_image(tmp_path / "demo" / f"d{i}.png") for i in range(12)]
    demo = pd.DataFrame({"path": map(str, demo_files), "is_xray": "1", "xray_type": "hand",
                         "findings": "", "patient_id": [f"demo:{i // 2}" for i in range(12)],
                         "split": ["train", "train", "val", "val", "test", "test"] * 2,
                         "source": "demo", "boxes": "", "width": "32", "height": "32"})
    assert add_labelled_folder(demo, None, seed=0).equals(demo)
    both = add_labelled_folder(demo, tmp_path / "mine", seed=0)
    assert len(both) == 22 and (both["split"] != "").all() and leaks(both) == 0
    assert both.iloc[:12]["split"].tolist() == demo["split"].tolist()
    tasks = manifests.task_manifests(both, seed=0)
    assert set(tasks["chest"]["source"]) == {"mine"}
    # the same film in both -> refused
    copy = demo.copy()
    copy.loc[0, "path"] = str(tmp_path / "mine" / "frac" / "IMG0000001.jpg")
    with pytest.raises(DuplicateImagesError, match=r"IMG0000001\.jpg \[demo\] = .*IMG0000001\.jpg \[mine\]"):
        add_labelled_folder(copy, tmp_path / "mine", seed=0)


@needs_samples
def test_real_samples_ingest_into_manifests_for_all_three_tasks(tmp_path):
    labels = pd.read_csv(SAMPLES / "labels.csv", dtype=str, keep_default_na=False)
    df = labelled_folder.load(SAMPLES, source="real")
    assert len(df) == len(labels) == 1307
    assert (df["is_xray"] == "1").sum() == (labels["is_xray"] == "1").sum()
    chest = df[df["xray_type"] == "chest"]
    assert len(chest) == (labels["xray_type"] == "chest").sum()
    known = chest[chest["findings"] != ""]
    # every NIH film keeps its findings; non-ChestX-ray14 labels (TB, COVID) become unknown
    nih = labels["file"].str.startswith("nih_cxr14")
    assert len(known) >= nih.sum()
    assert not chest.loc[chest["path"].str.contains("tbx11k|covid"), "findings"].any()
    boxed = labels[labels["extra"].str.contains("bbox=")]
    got = df.set_index("path").loc[[str(SAMPLES / f) for f in boxed["file"]], "boxes"]
    for extra, text in zip(boxed["extra"], got):
        raw = [float(v) for v in extra.split("bbox=")[1].split(";")[0].split(":")[1].split(",")]
        box = manifests.decode_boxes(text)[0]
        assert np.allclose(box[1:], [v / 2 for v in raw], atol=0.01)  # 1024 px -> 512 px files
    images = manifests.assign_splits(df, seed=0)
    assert leaks(images) == 0
    out = manifests.write_task_manifests(images, tmp_path, seed=0)
    tasks = {t: manifests.read_task_manifest(p) for t, p in out.items()}
    assert len(tasks["chest"]) == len(known)
    assert set(tasks["xray_type"]["label"]) <= set(paper.XRAY_TYPES)
    labels = tasks["xray_or_not"]["label"]
    assert (labels == "xray").sum() == (labels == "not_xray").sum()
    for t in tasks.values():
        assert leaks(t) == 0 and all(Path(p).is_file() for p in t["path"])
