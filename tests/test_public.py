"""The ``public`` profile's data: registry, checksummed resumable downloads, archives -> manifests.

Everything is served from a local HTTP server on 127.0.0.1 (``public_fixtures.RangeServer``)
with archives in each source's exact layout; nothing touches the internet.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import re
import socket
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import public_fixtures as pf
import pytest
from fixtures_real import labelled_folder_dir, make_labelled_folder
from PIL import Image

from xray_utils.cli import download as cli_download
from xray_utils.config import paper
from xray_utils.data.imageio import read_gray
from xray_utils.data.manifests import (
    IMAGE_COLUMNS,
    SPLITS,
    check_no_leakage,
    findings_to_vector,
    read_task_manifest,
    write_task_manifests,
)
from xray_utils.sources import public


@pytest.fixture(autouse=True)
def _local_only(monkeypatch):
    """No proxy for 127.0.0.1, no offline / mirror settings leaking in from the environment."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for var in ("XRAY_OFFLINE", public.MIRROR_ENV, "XRAY_DOWNLOADS_DIR"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def served(tmp_path):
    """The four archives on a local server: yields (server, registry, archives, cache folder)."""
    www = tmp_path / "www"
    archives = pf.write_all(www)
    with pf.RangeServer(www) as server:
        yield server, pf.registry_for(archives, server.url), archives, tmp_path / "downloads"


def _closed_port_url(name: str) -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there any more: "no network"
    return f"http://127.0.0.1:{port}/{name}"


# ----------------------------------------------------------------------------- registry facts
def test_registry_entries_are_complete_and_consistent():
    for name, spec in public.FILES.items():
        assert spec.name == name and spec.dataset in public.DATASETS
        assert spec.url.startswith("https://") and spec.size > 0 and spec.layout
        assert spec.checksums, f"{name}: every chosen source publishes a checksum"
        for checksum in spec.checksums:
            assert re.fullmatch(r"md5:[0-9a-f]{32}", checksum), checksum
        assert spec.size_source and (spec.size_exact or spec.size_text().startswith("about "))
    assert set(public.PUBLIC_XRAY_TYPES) <= set(paper.XRAY_TYPES)
    assert set(public.PUBLIC_XRAY_TYPES).isdisjoint(public.MISSING_XRAY_TYPES)
    assert set(public.PUBLIC_XRAY_TYPES) | set(public.MISSING_XRAY_TYPES) == set(paper.XRAY_TYPES)
    used = {t for x, t in public.MEDNIST_CLASSES.values() if x} | set(public.fracatlas_body_parts().values())
    assert used <= set(public.PUBLIC_XRAY_TYPES)
    # the ChestMNIST label order (MedMNIST's info.py) is the paper's Table III order
    assert [label[:6] for label in public.CHESTMNIST_LABELS] == [f.lower()[:6] for f in paper.FINDINGS]


def test_citations_name_every_source_with_its_licence():
    text = public.citations()
    for d in public.DATASETS.values():
        assert d.title in text and d.licence.split(";")[0] in text and d.homepage in text
    assert "CC BY-SA 4.0" in text and "doi:10.1038/s41597-022-01721-8" in text
    for missing in public.MISSING_XRAY_TYPES:
        assert missing in text
    assert public.citations(["fracatlas"]).count("- **") == 1


def test_file_choice_follows_the_image_size():
    assert [public.chestmnist_size_for(s) for s in (16, 64, 65, 128, 200, 224, 512)] == \
        [64, 64, 128, 128, 224, 224, 224]
    assert public.files_for(128) == ("chestmnist_128", "mednist", "fracatlas", "imagenette2_160")
    assert public.files_for(224)[-1] == "imagenette2_320"
    assert public.resolve_names(["chestmnist", "mednist,fracatlas"], 224) == \
        ("chestmnist_224", "mednist", "fracatlas")
    with pytest.raises(public.PublicDataError, match=r"unknown public file or dataset 'mura'.*chestmnist"):
        public.resolve_names(["mura"])
    spec = public.FILES["mednist"]
    assert public.file_url(spec) == spec.url
    assert public.file_url(spec, "http://lab.local/data/") == "http://lab.local/data/MedNIST.tar.gz"


# ----------------------------------------------------------------------------- downloads
def test_checksum_mismatch_is_refused_and_nothing_is_kept(tmp_path, served):
    server, registry, archives, cache = served
    bad = {"mednist": dataclasses.replace(registry["mednist"], checksums=("md5:" + "0" * 32,))}
    with pytest.raises(public.ChecksumMismatch, match=r"mednist: the file downloaded from http://127\.0\.0\.1:\d+/"
                       r"MedNIST\.tar\.gz does not match its published checksum md5:0{32}"):
        public.fetch_public(["mednist"], cache_dir=cache, registry=bad, progress=False)
    left = sorted(p.name for p in (cache / "public").iterdir())
    assert left == [], f"kept after a checksum mismatch: {left}"


def test_interrupted_download_resumes_with_a_range_request(tmp_path):
    www = tmp_path / "www"
    archive = pf.write_mednist_tar(www, per_class=20)       # several 64 KiB blocks
    size = archive.stat().st_size
    cache = tmp_path / "downloads"
    with pf.RangeServer(www) as server:
        registry = pf.registry_for({"mednist": archive}, server.url)
        server.cut("MedNIST.tar.gz")
        with pytest.raises(public.PublicDataError, match=r"could not download .*is kept: run the same "
                                                         r"command again to resume"):
            public.fetch_public(["mednist"], cache_dir=cache, registry=registry, progress=False)
        part = cache / "public" / "MedNIST.tar.gz.part"
        have = part.stat().st_size
        assert 0 < have <= size // 2 and not (cache / "public" / "MedNIST.tar.gz").exists()
        status = public.file_status(["mednist"], cache_dir=cache, registry=registry)[0]
        assert not status.ok and status.partial_bytes == have
        path = public.fetch_public(["mednist"], cache_dir=cache, registry=registry, progress=False)["mednist"]
    gets = [e for e in server.log if e["method"] == "GET"]
    assert [g["range"] for g in gets] == [None, f"bytes={have}-"], server.log
    assert gets[0]["cut_after"] == size // 2 and gets[1]["status"] == 206
    assert pf.md5(path) == pf.md5(archive) and not part.exists()


def test_offline_mode_names_what_is_missing_with_url_and_size(tmp_path, monkeypatch):
    cache = tmp_path / "downloads"
    (cache / "public").mkdir(parents=True)
    (cache / "public" / "FracAtlas.zip").write_bytes(b"not the archive")
    monkeypatch.setenv("XRAY_OFFLINE", "1")       # offline through the environment
    with pytest.raises(public.PublicDataMissing) as err:
        public.fetch_public(cache_dir=cache, image_size=128)
    text = str(err.value)
    assert text.startswith("offline mode: 4 public file(s) needed")
    for name in public.files_for(128):
        spec = public.FILES[name]
        assert f"- {name} (" in text and spec.url in text and spec.size_text() in text
        assert str(cache / "public" / spec.filename) in text
    assert "fracatlas (FracAtlas v7, 338.4 MB, CC BY 4.0): corrupt" in text
    assert "md5:fe9da2c7c285915ebee69dfdab8fd396" in text


def test_require_public_offline_or_without_network_lists_files_and_megabytes(tmp_path, served):
    server, registry, archives, cache = served
    with pytest.raises(public.PublicDataMissing) as err:
        public.require_public(cache, offline=True, registry=registry)
    text = str(err.value)
    total = sum(p.stat().st_size for p in archives.values()) / 1e6
    assert f"4 public file(s) needed, about {total:.1f} MB in all:" in text
    for name, spec in registry.items():
        assert f"- {name} (" in text and spec.size_text() in text and spec.url in text
    dead = _closed_port_url("")
    unreachable = {n: dataclasses.replace(s, url=dead + s.filename) for n, s in registry.items()}
    with pytest.raises(public.PublicDataMissing, match=r"^no network \(127\.0\.0\.1:\d+ cannot be reached\): "
                                                       r"4 public file\(s\) needed"):
        public.require_public(cache, registry=unreachable, timeout=2)
    # reachable: nothing raised, the planned local paths are returned
    planned = public.require_public(cache, registry=registry)
    assert planned == {n: cache / "public" / s.filename for n, s in registry.items()}
    public.fetch_public(cache_dir=cache, registry=registry, progress=False)
    assert public.require_public(cache, offline=True, registry=registry) == planned


def test_unpublished_checksum_is_recorded_at_first_download_then_enforced(tmp_path):
    www = tmp_path / "www"
    archive = pf.write_fracatlas_zip(www)
    cache = tmp_path / "downloads"
    with pf.RangeServer(www) as server:
        spec = dataclasses.replace(pf.registry_for({"fracatlas": archive}, server.url)["fracatlas"],
                                   checksums=())
        registry = {"fracatlas": spec}
        path = public.fetch_public(["fracatlas"], cache_dir=cache, registry=registry,
                                   progress=False)["fracatlas"]
        recorded = json.loads((cache / "public" / "checksums.json").read_text())
        assert recorded == {"fracatlas": "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()}
        path.unlink()
        archive.write_bytes(archive.read_bytes() + b"changed on the server")
        with pytest.raises(public.ChecksumMismatch, match="recorded at the first download"):
            public.fetch_public(["fracatlas"], cache_dir=cache, registry=registry, progress=False)
    assert not path.exists()


def test_any_published_checksum_is_accepted_and_a_changed_cached_file_is_caught(tmp_path, served):
    server, registry, archives, cache = served
    right = registry["imagenette2_160"].checksums[0]
    two = {"imagenette2_160": dataclasses.replace(registry["imagenette2_160"],
                                                  checksums=("md5:" + "1" * 32, right))}
    path = public.fetch_public(["imagenette2_160"], cache_dir=cache, registry=two,
                               progress=False)["imagenette2_160"]
    assert json.loads(path.with_name(path.name + ".verified.json").read_text())["checksum"] == right
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF                                   # same size, other content
    path.write_bytes(bytes(data))
    with pytest.raises(public.PublicDataMissing, match=r"imagenette2_160 .*: corrupt: .* has md5:"):
        public.fetch_public(["imagenette2_160"], cache_dir=cache, registry=two, offline=True)
    public.fetch_public(["imagenette2_160"], cache_dir=cache, registry=two, progress=False)  # fetched anew
    assert pf.md5(path) == pf.md5(archives["imagenette2_160"])


def test_file_urls_and_a_mirror_folder_work_too(tmp_path):
    archive = pf.write_mednist_tar(tmp_path / "mirror")
    registry = {"mednist": dataclasses.replace(pf.registry_for({"mednist": archive}, "x")["mednist"],
                                               url="https://example.invalid/MedNIST.tar.gz")}
    cache = tmp_path / "downloads"
    path = public.fetch_public(["mednist"], cache_dir=cache, registry=registry, progress=False,
                               mirror=(tmp_path / "mirror").as_uri())["mednist"]
    assert pf.md5(path) == pf.md5(archive)


# ----------------------------------------------------------------------------- archives -> manifests
def test_archives_become_manifests_for_the_three_tasks(tmp_path, served):
    server, registry, archives, cache = served
    images = public.build_public_image_manifest(cache, seed=0, image_size=64, registry=registry,
                                                progress=False)
    assert list(images.columns) == list(IMAGE_COLUMNS)
    check_no_leakage(images)
    assert set(images["split"]) == set(SPLITS)
    by_source = images.groupby("source").size().to_dict()
    _, labels = pf.write_chestmnist_npz(tmp_path / "again")        # same seed -> same labels
    # ChestMNIST: the npz split, its sizes and its labels
    chest = images[images["source"] == "chestmnist"]
    assert chest.groupby("split").size().to_dict() == dict(pf.CHESTMNIST_COUNTS)
    for split in SPLITS:
        rows = chest[chest["split"] == split]
        assert (findings_to_vector(rows["findings"]) == labels[split]).all()
        assert rows["findings"].iloc[0] == paper.NO_FINDING
        assert rows["findings"].iloc[1].split("|")[:2] == ["Effusion", "Mass"]
    assert (chest["width"] == "64").all() and (chest["xray_type"] == "chest").all()
    # MedNIST: CXR and Hand are X-rays, CT / MRI are hard negatives
    med = images[images["source"] == "mednist"]
    assert len(med) == pf.MEDNIST_PER_CLASS * len(public.MEDNIST_CLASSES)
    for cls, (xray, xtype) in public.MEDNIST_CLASSES.items():
        rows = med[med["path"].str.contains(f"/MedNIST/{cls}/")]
        assert len(rows) == pf.MEDNIST_PER_CLASS
        assert set(rows["is_xray"]) == {"1" if xray else "0"} and set(rows["xray_type"]) == {xtype}
    assert (med["findings"] == "").all()
    # FracAtlas: reviewed films with their body part, the others X-rays of unknown type
    frac = images[images["source"] == "fracatlas"]
    expected = {r[0]: ("" if r[4] == "unknown" else r[4]) for r in pf.FRACATLAS_ROWS
                if r[4] not in ("in_both_folders", "truncated")}
    assert dict(zip(frac["path"].map(lambda p: Path(p).name), frac["xray_type"])) == expected
    assert set(frac["is_xray"]) == {"1"}
    assert images.attrs["public"]["excluded"]["fracatlas"] == {
        "in_both_folders": 1, "missing_file": 0, "truncated": 1}
    assert images.attrs["public"]["excluded"]["fracatlas_body_part"] == {
        "reviewed": 10, "unknown": 4, "flag_disagrees": 2}
    assert not (cache / "public" / "fracatlas" / "FracAtlas" / "Annotations").exists()
    # Imagenette: photographs
    _, n_photos = pf.write_imagenette_tgz(tmp_path / "again")
    assert by_source["imagenette"] == n_photos
    assert set(images.loc[images["source"] == "imagenette", "is_xray"]) == {"0"}
    # every file is there and readable by the project's reader
    for _, group in images.groupby("source"):
        assert read_gray(group["path"].iloc[0]).dtype == np.uint8
    assert all(Path(p).is_file() for p in images["path"])

    written = write_task_manifests(images, tmp_path / "manifests", seed=0)
    tasks = {t: read_task_manifest(p) for t, p in written.items()}
    assert all(len(tasks[t]) for t in paper.TASKS)
    for task, df in tasks.items():
        check_no_leakage(df, what=task)
    assert set(tasks["xray_or_not"]["label"]) == set(paper.XRAY_OR_NOT_CLASSES)
    assert set(tasks["xray_type"]["label"]) <= set(public.PUBLIC_XRAY_TYPES)
    assert {"hand", "hip", "shoulder"} <= set(tasks["xray_type"]["label"])
    # Module II: no film labelled by a coarse region flag alone; unknown-type films in Module I only
    module_ii = tasks["xray_type"]
    reviewed = public.fracatlas_body_parts()
    frac_ii = module_ii[module_ii["source"] == "fracatlas"]
    assert len(frac_ii) == 10
    assert all(reviewed[Path(p).name] == lab for p, lab in zip(frac_ii["path"], frac_ii["label"]))
    unknown = {str(Path(p).resolve()) for p in frac.loc[frac["xray_type"] == "", "path"]}
    assert unknown and not unknown & {str(Path(p).resolve()) for p in module_ii["path"]}
    in_i = tasks["xray_or_not"]
    assert unknown <= {str(Path(p).resolve()) for p in in_i.loc[in_i["label"] == "xray", "path"]}
    assert (module_ii["label"] != "").all() and set(module_ii["label"]) <= set(paper.XRAY_TYPES)
    counts = public.type_counts(images, {t: df for t, df in tasks.items()})
    assert list(counts.index[:14]) == list(paper.XRAY_TYPES)
    assert counts.loc["forearm", "total"] == 1 and counts.loc["knee", "total"] == 1
    assert counts["total"].iloc[:14].sum() == len(module_ii)
    assert counts.iloc[14]["total"] == 4
    assert set(tasks["chest"]["source"]) == {"chestmnist"}
    assert tasks["chest"].groupby("split").size().to_dict() == dict(pf.CHESTMNIST_COUNTS)


def test_second_build_is_offline_and_reuses_the_extracted_files(tmp_path, served):
    server, registry, archives, cache = served
    first = public.build_public_image_manifest(cache, seed=3, registry=registry, progress=False)
    png = Path(first.loc[first["source"] == "chestmnist", "path"].iloc[0])
    stamp = png.stat().st_mtime_ns
    requests_before = len(server.log)
    again = public.build_public_image_manifest(cache, seed=3, offline=True, registry=registry,
                                               progress=False)
    pd.testing.assert_frame_equal(first, again)
    assert len(server.log) == requests_before and png.stat().st_mtime_ns == stamp
    other_seed = public.build_public_image_manifest(cache, seed=4, offline=True, registry=registry,
                                                    progress=False)
    chest = first["source"] == "chestmnist"            # npz splits never depend on the seed
    assert (other_seed.loc[chest, "split"] == first.loc[chest, "split"]).all()


def test_chestmnist_pngs_equal_the_npz_arrays(tmp_path):
    npz, labels = pf.write_chestmnist_npz(tmp_path, counts={"train": 5, "val": 2, "test": 3})
    rows = public.export_chestmnist(npz, tmp_path / "png", progress=False, workers=2)
    with np.load(npz) as data:
        for split in SPLITS:
            paths = rows.loc[rows["split"] == split, "path"].tolist()
            assert paths == [str(tmp_path / "png" / split / f"{i}.png") for i in range(len(labels[split]))]
            for i, p in enumerate(paths):
                assert (np.asarray(Image.open(p)) == data[f"{split}_images"][i]).all()
    assert [list(r) for r in public._iter_npy_rows(npz, "train_images", chunk=2)][-1][0] == 4


def test_chestmnist_labels_to_findings():
    labels = np.zeros((3, 14), dtype=np.uint8)
    labels[1, [1, 12]] = 1
    labels[2, :] = 1
    out = public.chestmnist_findings(labels)
    assert out[0] == paper.NO_FINDING and out[1] == "Cardiomegaly|Pleural_Thickening"
    assert out[2] == "|".join(paper.FINDINGS)
    with pytest.raises(public.PublicDataError, match=r"\(N, 14\) 0/1 array"):
        public.chestmnist_findings(np.zeros((2, 15)))


def test_unexpected_archive_layout_is_a_clear_error(tmp_path):
    archive = tmp_path / "MedNIST.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("MedNIST_v2/Hand/000000.jpeg")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(public.PublicDataError, match=r"mednist: MedNIST\.tar\.gz does not have the "
                                                     r"expected layout .*found \['MedNIST_v2'\]"):
        public.extract_archive("mednist", archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the stand-in
def _check_stand_in(images: pd.DataFrame, out: Path) -> dict[str, pd.DataFrame]:
    assert list(images.columns) == list(IMAGE_COLUMNS) and (images["split"] != "").all()
    check_no_leakage(images)
    tasks = {t: read_task_manifest(p) for t, p in write_task_manifests(images, out).items()}
    for task in paper.TASKS:
        assert len(tasks[task]), task
        check_no_leakage(tasks[task], what=task)
    findings_to_vector(tasks["chest"]["label"])          # only known findings reach Module III
    return tasks


def test_stand_in_labelled_folder_gives_the_three_tasks(tmp_path):
    make_labelled_folder(tmp_path / "samples")
    images = public.build_public_image_manifest(stand_in=tmp_path / "samples", seed=0, offline=True)
    tasks = _check_stand_in(images, tmp_path / "manifests")
    assert images.attrs["public"]["stand_in"] == str((tmp_path / "samples").resolve())
    assert len(tasks["chest"]) == 3                       # the film with unknown findings is left out


def test_stand_in_real_samples_gives_the_three_tasks(tmp_path):
    folder = labelled_folder_dir()
    if folder is None:
        pytest.skip("real samples absent (set XRAY_REAL_SAMPLES or XRAY_SHARED_DIR, or put shared/ "
                    "beside the repository)")
    images = public.build_public_image_manifest(stand_in=folder, seed=0, offline=True)
    tasks = _check_stand_in(images, tmp_path / "manifests")
    assert len(tasks["chest"]) > 100 and tasks["xray_type"]["label"].nunique() >= 4


# ----------------------------------------------------------------------------- command line
def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli_download.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["download", *argv])
    assert args.func is cli_download.run
    return args.func(args)


def test_cli_offline_lists_the_missing_files(tmp_path, capsys):
    assert _cli(["public", "--offline", "--cache", str(tmp_path), "--image-size", "64"]) == 1
    out = capsys.readouterr().out
    assert "offline mode: 4 public file(s) needed" in out
    for name in public.files_for(64):
        assert f"  {name} " in out and public.FILES[name].url in out
    assert _cli(["public", "--list", "--cache", str(tmp_path)]) == 0
    assert "md5:fe9da2c7c285915ebee69dfdab8fd396" in capsys.readouterr().out


def test_cli_downloads_through_a_mirror_and_refuses_wrong_files(tmp_path, served, monkeypatch, capsys):
    server, registry, archives, cache = served
    # the real registry: the fixture files do not match the publishers' md5, so they are refused
    rc = _cli(["public", "--cache", str(cache), "--mirror", server.url, "--only", "mednist",
               "--no-progress"])
    assert rc == 1 and "does not match its published checksum md5:0bc7306e" in capsys.readouterr().out
    monkeypatch.setattr(public, "FILES", registry)
    rc = _cli(["public", "--cache", str(cache), "--image-size", "64", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "Ready: chestmnist_64, mednist, fracatlas, imagenette2_160." in out
    assert (cache / "public" / "mednist" / "MedNIST" / "Hand").is_dir()
    assert (cache / "public" / "chestmnist_64" / "test" / ".done.json").is_file()
    assert _cli(["public", "--offline", "--cache", str(cache), "--image-size", "64"]) == 0
    assert capsys.readouterr().out.count("ok (checksum verified)") == 4
