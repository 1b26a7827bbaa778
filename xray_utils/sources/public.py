"""The ``public`` profile's data: openly licensed X-rays anyone can download without an agreement.

Four sources, each pinned in :data:`FILES` with its URL, size, published checksum, licence and
archive layout and where each fact comes from:

=============  ===========================================  ===============================
source         what it gives                                used for
=============  ===========================================  ===============================
ChestMNIST     ChestX-ray14 (112,120 films, 14 findings) at  Module III on the 78,468 /
(MedMNIST+)    64 / 128 / 224 px, CC BY 4.0                  11,219 / 22,433 split; Modules
                                                             I-II: 10 % of the chest films
MedNIST        64 px JPEGs: CXR, Hand (X-rays) and           Modules I-II (chest, hand);
(MONAI)        AbdomenCT, BreastMRI, ChestCT, HeadCT,        CT / MRI = hard "not X-ray"
               CC BY-SA 4.0                                  negatives (beyond the paper)
FracAtlas      4,083 musculoskeletal films, CC BY 4.0       Module I (all); Module II:
                                                             the 250 films whose body part
                                                             was reviewed (8 types)
Imagenette     ImageNet photographs (10 classes)            Module I "not X-ray"
=============  ===========================================  ===============================

Module II covers nine of the paper's 14 X-ray types (:data:`PUBLIC_XRAY_TYPES`); why the others
are missing is in :data:`MISSING_XRAY_TYPES`.

Downloads (:func:`fetch_public`) go through the project's one downloader
(:mod:`xray_utils.sources.download`: resumable, checksummed, with a deadline): the finished file
must match a published checksum (md5, as the publishers give them) or is deleted.  Where no
checksum is published (none of the files chosen so far), the sha256 of the first download is
recorded in ``<cache>/public/checksums.json`` and later downloads must match it.
Files live in ``<downloads>/public/`` (``downloads_dir()``: ``data/downloads`` or
``$XRAY_DOWNLOADS_DIR`` or ``cache_dir=``).  ``offline=True`` (or ``XRAY_OFFLINE=1``) only looks
in that folder and names what is missing; ``mirror=`` (or ``$XRAY_PUBLIC_MIRROR``) fetches every
file by name from another server, e.g. a teacher's copy on the local network.

:func:`build_public_image_manifest` turns the archives into one image manifest
(``manifests.IMAGE_COLUMNS``); ``write_task_manifests`` then applies the paper's rules.
"""
from __future__ import annotations

import json
import os
import shutil
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence
from urllib.parse import urlparse

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from xray_utils.config import paper
from xray_utils.config.paths import MIRROR_ENV, downloads_dir, is_offline  # noqa: F401 (MIRROR_ENV: re-exported)
from xray_utils.data.imageio import ImageReadError, read_gray
from xray_utils.data.manifests import IMAGE_COLUMNS, SPLITS, assign_splits
from xray_utils.sources.download import (
    DownloadError,
    _mark_verified,
    _marker,
    lookup,
    mirrored_url,
    retrieve,
    url_reachable,
    verify_file,
)
from xray_utils.sources.labelled_folder import load as load_labelled_folder

#: Sub-folder of the downloads folder that holds everything of this module.
SUBDIR = "public"
#: ChestMNIST sizes on Zenodo that the project uses (the 28 px file is left out: the image
#: reader refuses images under ``imageio.MIN_SIDE`` = 32 px).
CHESTMNIST_SIZES: tuple[int, ...] = (64, 128, 224)
#: The ChestMNIST label order, from MedMNIST's ``medmnist/info.py`` ("pleural" = pleural
#: thickening); the same order as ``paper.FINDINGS`` (checked at import below).
CHESTMNIST_LABELS: tuple[str, ...] = (
    "atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
    "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia")
#: MedNIST folder -> (is X-ray, X-ray type).  CT and MRI slices are not radiographs.
MEDNIST_CLASSES: Mapping[str, tuple[bool, str]] = MappingProxyType({
    "AbdomenCT": (False, ""), "BreastMRI": (False, ""), "CXR": (True, "chest"),
    "ChestCT": (False, ""), "Hand": (True, "hand"), "HeadCT": (False, "")})
#: FracAtlas ``dataset.csv`` region flags.  They are too coarse to name a Module II class (the
#: ``hand`` flag covers forearms and elbows, ``leg`` knees, feet and ankles): a film's type
#: comes from :data:`FRACATLAS_BODY_PARTS_CSV` (reviewed by eye) or stays unknown (Module I only).
FRACATLAS_REGIONS: tuple[str, ...] = ("hand", "leg", "hip", "shoulder")
#: The shipped table ``image_id,xray_type`` of the FracAtlas films whose body part was reviewed.
FRACATLAS_BODY_PARTS_CSV = Path(__file__).with_name("fracatlas_body_parts.csv")
FRACATLAS_COLUMNS: tuple[str, ...] = ("image_id", "hand", "leg", "hip", "shoulder", "mixed",
                                      "fractured")
#: The X-ray types of Module II that the public sources cover (FracAtlas: its reviewed films).
PUBLIC_XRAY_TYPES: tuple[str, ...] = tuple(
    t for t in paper.XRAY_TYPES if t not in ("spine", "finger", "wrist", "humerus", "dental"))
#: The other types of ``paper.XRAY_TYPES`` and why no public source gives them here.
MISSING_XRAY_TYPES: Mapping[str, str] = MappingProxyType({
    "spine": "AASCE needs a SpineWeb registration; the open Fraiwan 2022 set (Mendeley) has no "
             "published checksum and an unverified licence",
    "finger": "MURA only (Stanford research-use agreement)",
    "wrist": "MURA needs an agreement; GRAZPEDWRI-DX is open but 15 GB with no file-level "
             "download link found",
    "humerus": "MURA only (Stanford research-use agreement)",
    "dental": "the open panoramic sets are non-commercial (CC BY-NC 3.0 / CC BY-NC-SA 4.0) and "
              "publish no checksum",
})


class PublicDataError(DownloadError):
    """A public file is missing, unreachable, corrupt or laid out unexpectedly (message says which)."""


class PublicDataMissing(PublicDataError):
    """Files are not in the cache and cannot be downloaded now (offline or no network)."""


class ChecksumMismatch(PublicDataError):
    """A downloaded or cached file does not match its checksum."""


@dataclass(frozen=True)
class PublicDataset:
    """One open dataset: what it is, its licence, and how to cite it."""

    name: str
    title: str
    licence: str
    licence_url: str
    citation: str
    homepage: str
    used_for: str
    notes: str = ""


@dataclass(frozen=True)
class PublicFile:
    """One downloadable file of a :class:`PublicDataset`.

    ``checksums`` holds the published value(s) as ``"<alg>:<hex>"`` (any one must match; two
    when the publisher's copies disagree); empty means none is published, and the first
    download's sha256 is recorded and enforced from then on.  ``size`` is in bytes; when
    ``size_exact`` is False it is an estimate for the reader, never used to judge a file.
    """

    name: str
    dataset: str
    url: str
    filename: str
    size: int
    size_exact: bool
    size_source: str
    checksums: tuple[str, ...]
    checksum_source: str
    layout: str

    @property
    def checksum_published(self) -> bool:
        return bool(self.checksums)

    def size_text(self) -> str:
        """``"401.6 MB"`` (exact) or ``"about 59 MB"`` (estimate); MB = 10**6 bytes."""
        mb = self.size / 1e6
        return f"{mb:,.1f} MB" if self.size_exact else f"about {mb:,.0f} MB"


DATASETS: Mapping[str, PublicDataset] = MappingProxyType({
    "chestmnist": PublicDataset(
        name="chestmnist", title="ChestMNIST (MedMNIST+, from NIH ChestX-ray14)",
        licence="CC BY 4.0", licence_url="https://creativecommons.org/licenses/by/4.0/",
        citation=("J. Yang, R. Shi, D. Wei, Z. Liu, L. Zhao, B. Ke, H. Pfister, B. Ni, \"MedMNIST "
                  "v2 - A large-scale lightweight benchmark for 2D and 3D biomedical image "
                  "classification\", Scientific Data 10, 41 (2023), doi:10.1038/s41597-022-01721-8; "
                  "source images: X. Wang, Y. Peng, L. Lu, Z. Lu, M. Bagheri, R. M. Summers, "
                  "\"ChestX-ray8: Hospital-scale chest X-ray database and benchmarks on "
                  "weakly-supervised classification and localization of common thorax diseases\", "
                  "CVPR 2017 (NIH Clinical Center)"),
        homepage="https://medmnist.com/",
        used_for="Module III (14 findings, 78,468 / 11,219 / 22,433 split); chest films of Modules I-II",
        notes="The npz holds images and labels only (no file names or patient ids)."),
    "mednist": PublicDataset(
        name="mednist", title="MedNIST (MONAI)",
        licence="CC BY-SA 4.0", licence_url="https://creativecommons.org/licenses/by-sa/4.0/",
        citation=("MedNIST, gathered from TCIA, the RSNA Bone Age Challenge and the NIH Chest "
                  "X-ray dataset; made available by Dr. Bradley J. Erickson M.D., Ph.D. "
                  "(Department of Radiology, Mayo Clinic); distributed by Project MONAI"),
        homepage="https://github.com/Project-MONAI/tutorials",
        used_for="Modules I-II (CXR = chest, Hand = hand); AbdomenCT, BreastMRI, ChestCT, "
                 "HeadCT as hard 'not X-ray' negatives of Module I",
        notes="Share-alike: figures showing MedNIST images are CC BY-SA 4.0 too."),
    "fracatlas": PublicDataset(
        name="fracatlas", title="FracAtlas v7",
        licence="CC BY 4.0", licence_url="https://creativecommons.org/licenses/by/4.0/",
        citation=("I. Abedeen, M. A. Rahman, F. Z. Prottyasha, T. Ahmed, T. M. Chowdhury, "
                  "S. Shatabda, \"FracAtlas: A dataset for fracture classification, localization "
                  "and segmentation of musculoskeletal radiographs\", Scientific Data 10 (2023), "
                  "doi:10.1038/s41597-023-02432-4; data: doi:10.6084/m9.figshare.22363012.v7"),
        homepage="https://doi.org/10.6084/m9.figshare.22363012",
        used_for="Modules I-II (hand, hip, shoulder films)",
        notes="No patient ids: every film is its own group. 'leg' and multi-region films are "
              "left out (no single X-ray type)."),
    "imagenette": PublicDataset(
        name="imagenette", title="Imagenette (fast.ai subset of ImageNet)",
        licence="no licence stated; ImageNet images (ImageNet terms: non-commercial research "
                "and education)",
        licence_url="https://image-net.org/download.php",
        citation=("J. Howard, Imagenette, https://github.com/fastai/imagenette; ImageNet: "
                  "O. Russakovsky, J. Deng, H. Su et al., \"ImageNet Large Scale Visual "
                  "Recognition Challenge\", IJCV 115 (2015)"),
        homepage="https://github.com/fastai/imagenette",
        used_for="Module I 'not X-ray' photographs (as in the paper, from ImageNet)"),
})

_ZENODO = "https://zenodo.org/records/10519652/files/{}?download=1"
_MEDMNIST_INFO = "MedMNIST's medmnist/info.py (MD5_<size>)"
_CHESTMNIST_LAYOUT = ("npz with train_images, val_images, test_images (N, S, S) uint8 and "
                      "train_labels, val_labels, test_labels (N, 14) 0/1")


def _chestmnist(size: int, md5: str, nbytes: int, exact: bool, size_source: str) -> PublicFile:
    return PublicFile(
        name=f"chestmnist_{size}", dataset="chestmnist", url=_ZENODO.format(f"chestmnist_{size}.npz"),
        filename=f"chestmnist_{size}.npz", size=nbytes, size_exact=exact, size_source=size_source,
        checksums=(f"md5:{md5}",), checksum_source=_MEDMNIST_INFO, layout=_CHESTMNIST_LAYOUT)


_IMAGENETTE_CHECKSUM_SOURCE = (
    "first: torchvision / catalyst; second: fastai's data/checks.txt (the S3 object was "
    "replaced at least once, so both published values are accepted)")
_IMAGENETTE_LAYOUT = "imagenette2-{px}/{{train,val}}/<wnid>/*.JPEG + noisy_imagenette.csv"


def _imagenette(px: int, nbytes: int, *md5s: str) -> PublicFile:
    return PublicFile(
        name=f"imagenette2_{px}", dataset="imagenette",
        url=f"https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-{px}.tgz",
        filename=f"imagenette2-{px}.tgz", size=nbytes, size_exact=False,
        size_source="fastai's data/checks.txt (paired there with the second md5)",
        checksums=tuple(f"md5:{m}" for m in md5s), checksum_source=_IMAGENETTE_CHECKSUM_SOURCE,
        layout=_IMAGENETTE_LAYOUT.format(px=px))

FILES: Mapping[str, PublicFile] = MappingProxyType({f.name: f for f in (
    _chestmnist(64, "9de6cd0b934ebb5b7426cfba5efbae16", 401_604_127, True,
                "not published; measured by a third party whose copy matched the md5"),
    _chestmnist(128, "db107e5590b27930b62dbaf558aebee3", 1_400_000_000, False,
                "estimate: not published (a third party mentions 1.4 GB)"),
    _chestmnist(224, "45bd33e6f06c3e8cdb481c74a89152aa", 4_300_000_000, False,
                "estimate: not published (scaled from the 64 and 128 px files)"),
    PublicFile(
        name="mednist", dataset="mednist",
        url="https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/MedNIST.tar.gz",
        filename="MedNIST.tar.gz", size=59_000_000, size_exact=False,
        size_source="estimate: 59.0 MB in a MONAI tutorial's download log",
        checksums=("md5:0bc7306e7427e00ad1c5526a6677552d",),
        checksum_source="MONAI (monai.apps.MedNISTDataset and the MedNIST tutorial)",
        layout="MedNIST/{AbdomenCT,BreastMRI,CXR,ChestCT,Hand,HeadCT}/NNNNNN.jpeg (64 x 64)"),
    PublicFile(
        name="fracatlas", dataset="fracatlas", url="https://ndownloader.figshare.com/files/65518038",
        filename="FracAtlas.zip", size=338_436_460, size_exact=True,
        size_source="figshare (v7, file 65518038)",
        checksums=("md5:fe9da2c7c285915ebee69dfdab8fd396",), checksum_source="figshare (v7)",
        layout=("FracAtlas/dataset.csv (image_id, hand, leg, hip, shoulder, mixed, hardware, "
                "multiscan, fractured, fracture_count, frontal, lateral, oblique) + "
                "FracAtlas/images/{Fractured,Non_fractured}/IMGnnnnnnn.jpg + FracAtlas/Annotations, "
                "FracAtlas/utilities (not used)")),
    _imagenette(160, 99_003_388, "e793b78cc4c9e9a4ccc0c1155377a412",
                "c475f8f7617a200ba35b9facc48443c3"),
    _imagenette(320, 341_663_724, "3df6f0d01a2c9592104656642f5e78a3",
                "1f1f74f133caff120e575856659b87a2"),
)})

if tuple(label.replace("pleural", "pleural_thickening") for label in CHESTMNIST_LABELS) != tuple(
        f.lower() for f in paper.FINDINGS):  # pragma: no cover - a wrong edit of the facts above
    raise ImportError("CHESTMNIST_LABELS is not in paper.FINDINGS order")


# ------------------------------------------------------------------------------- selection
def public_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``<downloads>/public``: archives, their extracted trees and the ChestMNIST PNGs."""
    return downloads_dir(cache_dir) / SUBDIR


def chestmnist_size_for(image_size: int) -> int:
    """The ChestMNIST file for a training size: the smallest of 64/128/224 px >= ``image_size``."""
    for size in CHESTMNIST_SIZES:
        if size >= int(image_size):
            return size
    return CHESTMNIST_SIZES[-1]


def files_for(image_size: int = 64) -> tuple[str, ...]:
    """The files a ``public`` run at ``image_size`` needs (names of :data:`FILES`)."""
    imagenette = "imagenette2_160" if int(image_size) <= 160 else "imagenette2_320"
    return (f"chestmnist_{chestmnist_size_for(image_size)}", "mednist", "fracatlas", imagenette)


def resolve_names(only: Iterable[str] | None, image_size: int = 64,
                  registry: Mapping[str, PublicFile] | None = None) -> tuple[str, ...]:
    """File names for ``only`` (file or dataset names; ``None`` = :func:`files_for` the size).

    A dataset name (``chestmnist``, ``imagenette``) picks that dataset's file for the size.
    """
    registry = _registry(registry)
    default = files_for(image_size)
    if not only:
        return tuple(n for n in default if n in registry)
    out: list[str] = []
    for item in only:
        for name in (s.strip() for s in str(item).split(",") if s.strip()):
            if name in registry:
                picked = [name]
            else:
                picked = [n for n in default if n in registry and registry[n].dataset == name]
                if not picked:
                    picked = [n for n, f in registry.items() if f.dataset == name][:1]
            if not picked:
                datasets = sorted({f.dataset for f in registry.values()})
                raise PublicDataError(f"unknown public file or dataset {name!r}; choose from the "
                                      f"files {sorted(registry)} or the datasets {datasets}")
            out.extend(n for n in picked if n not in out)
    return tuple(out)


def file_url(spec: PublicFile, mirror: str | None = None) -> str:
    """The URL to fetch ``spec`` from: the publisher's, or ``<mirror>/<filename>``."""
    return mirrored_url(spec.url, spec.filename, mirror)


# ------------------------------------------------------------------------------- downloads
def _registry(registry: Mapping[str, PublicFile] | None) -> Mapping[str, PublicFile]:
    """``registry`` or, when ``None``, the module's :data:`FILES` (looked up at call time)."""
    return FILES if registry is None else registry


def _lookup(names: Iterable[str], registry: Mapping[str, PublicFile] | None) -> dict[str, PublicFile]:
    return lookup(names, _registry(registry), PublicDataError, "public file")


@dataclass(frozen=True)
class FileStatus:
    """Where one public file stands in the cache."""

    name: str
    path: Path
    url: str
    size_text: str
    ok: bool
    problem: str = ""
    partial_bytes: int = 0


def file_status(names: Iterable[str] | None = None, *, cache_dir: str | os.PathLike | None = None,
                image_size: int = 64, mirror: str | None = None,
                registry: Mapping[str, PublicFile] | None = None, record: bool = False) -> list[FileStatus]:
    """The cache state of each file: verified, corrupt, partly downloaded or missing.

    ``record=True`` records the sha256 of a present file whose checksum is not published
    (see :func:`verify_file`).
    """
    folder = public_dir(cache_dir)
    names = list(names) if names is not None else list(resolve_names(None, image_size, registry))
    out = []
    for name, spec in _lookup(names, registry).items():
        path = folder / spec.filename
        part = path.with_name(path.name + ".part")
        if path.is_file():
            problem = verify_file(path, spec, folder, record=record)
        else:
            problem = f"{name}: not in the cache (expected at {path})"
        out.append(FileStatus(name=name, path=path, url=file_url(spec, mirror),
                              size_text=spec.size_text(), ok=problem is None, problem=problem or "",
                              partial_bytes=part.stat().st_size if part.is_file() else 0))
    return out


def _missing_text(statuses: Sequence[FileStatus], registry: Mapping[str, PublicFile] | None,
                  reason: str, folder: Path) -> str:
    registry = _registry(registry)
    bad = [s for s in statuses if not s.ok]
    total = sum(registry[s.name].size for s in bad)
    exact = all(registry[s.name].size_exact for s in bad)
    mb = f"{total / 1e6:,.0f}" if total >= 1e8 else f"{total / 1e6:.1f}"
    lines = [f"{reason}: {len(bad)} public file(s) needed, about {mb} MB in all"
             + ("" if exact else " (some sizes are estimates)") + ":"]
    for s in bad:
        spec = registry[s.name]
        partial = (f"; {s.partial_bytes / 1e6:,.1f} MB already in {s.path.name}.part"
                   if s.partial_bytes else "")
        what = "corrupt: " + s.problem if s.path.is_file() else f"missing{partial}"
        lines.append(f"  - {s.name} ({DATASETS[spec.dataset].title}, {spec.size_text()}, "
                     f"{DATASETS[spec.dataset].licence.split(';')[0]}): {what}\n"
                     f"      from {s.url}\n      to   {s.path}")
    lines.append(f"Download them with `python -m xray_utils download public` where there is "
                 f"internet access and copy them into {folder} (same file names), or use the "
                 "stand-in: build_public_image_manifest(stand_in=<a labelled folder of real images>).")
    return "\n".join(lines)


def require_public(cache_dir: str | os.PathLike | None = None, offline: bool | None = None, *,
                   image_size: int = 64, names: Iterable[str] | None = None,
                   mirror: str | None = None, registry: Mapping[str, PublicFile] | None = None,
                   timeout: float = 10.0) -> dict[str, Path]:
    """Check at once that the public files are here, or can be downloaded now.

    Returns ``{name: local path}`` (the paths of files still to download included).  Raises
    :class:`PublicDataMissing` listing each missing file with its URL and size (MB) when a
    file is missing and we are offline, or its server cannot be reached.  Cheap: files are
    hashed once and stamped (see :func:`verify_file`).
    """
    names = resolve_names(names, image_size, registry) if names is None else tuple(names)
    folder = public_dir(cache_dir)
    statuses = file_status(names, cache_dir=cache_dir, mirror=mirror, registry=registry)
    bad = [s for s in statuses if not s.ok]
    if bad:
        if is_offline(offline):
            raise PublicDataMissing(_missing_text(statuses, registry, "offline mode", folder))
        hosts: dict[str, bool] = {}
        for s in bad:
            host = urlparse(s.url).netloc or s.url
            if host not in hosts:
                hosts[host] = url_reachable(s.url, timeout)
        down = sorted(h for h, ok in hosts.items() if not ok)
        if down:
            raise PublicDataMissing(_missing_text(
                statuses, registry, f"no network ({', '.join(down)} cannot be reached)", folder))
    return {s.name: s.path for s in statuses}


def fetch_public(names: Iterable[str] | None = None, *, cache_dir: str | os.PathLike | None = None,
                 offline: bool | None = None, image_size: int = 64, progress: bool = True,
                 mirror: str | None = None, registry: Mapping[str, PublicFile] | None = None,
                 timeout: float = 60.0, deadline: float | None = None) -> dict[str, Path]:
    """Download (or find in the cache) the public files; returns ``{name: local path}``.

    ``deadline``: seconds each file may take (:func:`~xray_utils.sources.download.download_deadline`).

    Verified files are reused.  Offline, every missing or corrupt file is reported in one
    :class:`PublicDataMissing`.  Online, a corrupt cached file is deleted and fetched again;
    a broken transfer keeps ``<file>.part`` and says to run again (it resumes).
    """
    names = resolve_names(None, image_size, registry) if names is None else tuple(names)
    specs = _lookup(names, registry)
    folder = public_dir(cache_dir)
    statuses = {s.name: s for s in file_status(names, cache_dir=cache_dir, mirror=mirror,
                                                registry=registry, record=True)}
    if is_offline(offline):
        if any(not s.ok for s in statuses.values()):
            raise PublicDataMissing(_missing_text(list(statuses.values()), registry,
                                                  "offline mode", folder))
        return {n: s.path for n, s in statuses.items()}
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, spec in specs.items():
        status = statuses[name]
        if not status.ok and status.path.is_file():  # corrupt copy: fetch it again
            status.path.unlink()
            _marker(status.path).unlink(missing_ok=True)
        if not status.ok:
            _download(spec, status.path, status.url, folder, progress, timeout, deadline)
        out[name] = status.path
    return out


def _download(spec: PublicFile, target: Path, url: str, folder: Path, progress: bool,
              timeout: float, deadline: float | None = None) -> None:
    """One file through the project's downloader; checksum-checked; clear errors."""
    part = target.with_name(target.name + ".part")
    single = spec.checksums[0] if len(spec.checksums) == 1 else None
    try:
        retrieve(url, target, single, desc=spec.filename, progress=progress, timeout=timeout,
                 deadline=deadline)
    except ValueError as exc:  # pooch: hash mismatch (the file was deleted by pooch)
        raise ChecksumMismatch(
            f"{spec.name}: the file downloaded from {url} does not match its published checksum "
            f"{single} ({spec.checksum_source}); nothing was kept. The file on the server changed "
            f"or the transfer was corrupted: try again later, or check {DATASETS[spec.dataset].homepage} "
            f"for a new version. ({exc})") from exc
    except Exception as exc:  # network and file errors of requests / the downloader
        have = part.stat().st_size if part.is_file() else 0
        if part.is_file() and not have:
            part.unlink()
        kept = (f"The partial file {part} ({have / 1e6:,.1f} MB) is kept: run the same command "
                "again to resume." if have else "Nothing was kept.")
        raise PublicDataError(
            f"{spec.name}: could not download {url} ({type(exc).__name__}: {exc}). {kept} Or "
            f"download it by hand to {target} ({spec.size_text()}) and use offline mode.") from exc
    if single is not None:
        _mark_verified(target, single)
        return
    problem = verify_file(target, spec, folder, record=True)
    if problem:
        target.unlink(missing_ok=True)
        _marker(target).unlink(missing_ok=True)
        raise ChecksumMismatch(f"{problem}; the download from {url} was refused and deleted.")


# ------------------------------------------------------------------------------- archives
#: Folder (inside the extracted tree) that each archive's layout starts with.
ARCHIVE_ROOTS: Mapping[str, str] = MappingProxyType({
    "mednist": "MedNIST", "fracatlas": "FracAtlas", "imagenette2_160": "imagenette2-160",
    "imagenette2_320": "imagenette2-320"})
_DONE = ".complete.json"


def _fracatlas_member(name: str) -> bool:
    """Members of the FracAtlas zip that are used (the images and dataset.csv, not annotations)."""
    return name == "FracAtlas/dataset.csv" or (name.startswith("FracAtlas/images/")
                                               and not name.endswith("/"))


_MEMBER_FILTERS: Mapping[str, Callable[[str], bool]] = MappingProxyType({"fracatlas": _fracatlas_member})


def extract_archive(name: str, archive: Path, dest: Path, progress: bool = True) -> Path:
    """Extract ``archive`` once into ``dest`` and return the layout's root folder in it.

    Extraction goes to ``<dest>.partial`` and is renamed when complete, so an interrupted run
    starts over instead of using half a tree.  Unsafe member paths are refused (tar ``data``
    filter; zip names are sanitised by :mod:`zipfile`).
    """
    root_name = ARCHIVE_ROOTS[name]
    if (dest / _DONE).is_file():
        return _check_root(name, archive, dest, root_name)
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    keep = _MEMBER_FILTERS.get(name, lambda _n: True)
    count = 0
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                members = [m for m in zf.infolist() if keep(m.filename)]
                for member in tqdm(members, desc=f"extracting {archive.name}", unit="file",
                                   disable=not progress, leave=False):
                    zf.extract(member, partial)
                    count += 1
        else:
            with tarfile.open(archive, "r:*") as tf:
                members = [m for m in tf.getmembers() if keep(m.name)]
                for member in tqdm(members, desc=f"extracting {archive.name}", unit="file",
                                   disable=not progress, leave=False):
                    tf.extract(member, partial, filter="data")
                    count += 1
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise PublicDataError(f"{name}: cannot extract {archive} ({type(exc).__name__}: {exc}); "
                              "delete it and download it again") from exc
    _check_root(name, archive, partial, root_name)
    (partial / _DONE).write_text(json.dumps({"archive": archive.name, "members": count}))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(partial, dest)
    return dest / root_name


def _check_root(name: str, archive: Path, dest: Path, root_name: str) -> Path:
    root = dest / root_name
    if not root.is_dir():
        found = sorted(p.name for p in dest.iterdir() if p.name != _DONE)[:10]
        raise PublicDataError(
            f"{name}: {archive.name} does not have the expected layout "
            f"({FILES[name].layout if name in FILES else root_name}); no folder {root_name}/ at its "
            f"top, found {found}. The publisher may have changed the archive: report it, or use "
            "the stand-in.")
    return root


def _iter_npy_rows(npz: Path, key: str, chunk: int = 4096) -> Iterator[tuple[int, np.ndarray, tuple]]:
    """``(start, rows, shape)`` blocks of one array of an npz, without loading it whole.

    An npz is a zip of ``.npy`` files; reading the member as a stream keeps memory at one
    block even for the 224 px file (78,468 x 224 x 224 bytes = 3.9 GB for train).
    """
    with zipfile.ZipFile(npz) as zf, zf.open(f"{key}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            shape, fortran, dtype = (), True, np.dtype(np.uint8)
        if fortran or dtype.hasobject or not shape:
            with np.load(npz) as data:
                arr = data[key]
            for start in range(0, len(arr), chunk):
                yield start, arr[start:start + chunk], arr.shape
            return
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        for start in range(0, shape[0], chunk):
            n = min(chunk, shape[0] - start)
            buf = fh.read(n * row_bytes)
            if len(buf) != n * row_bytes:
                raise PublicDataError(f"{npz}: {key} ends early (truncated file?); delete it and "
                                      "download it again")
            yield start, np.frombuffer(buf, dtype=dtype).reshape((n,) + tuple(shape[1:])), shape


def chestmnist_findings(labels: np.ndarray, where: str = "ChestMNIST") -> list[str]:
    """(N, 14) 0/1 labels in ChestMNIST order -> ``"Effusion|Mass"`` / ``"No Finding"`` strings."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] != len(paper.FINDINGS) or not np.isin(labels, (0, 1)).all():
        raise PublicDataError(f"{where}: labels must be an (N, {len(paper.FINDINGS)}) 0/1 array in "
                              f"the order {CHESTMNIST_LABELS}; got shape {labels.shape}")
    names = np.array(paper.FINDINGS, dtype=object)
    return ["|".join(names[row.astype(bool)]) or paper.NO_FINDING for row in labels]


def export_chestmnist(npz: Path, out_dir: Path, progress: bool = True,
                      workers: int | None = None) -> pd.DataFrame:
    """Write the npz images once as ``<out_dir>/<split>/<i>.png``; returns path, split, findings.

    A split is done when ``<out_dir>/<split>/.done.json`` holds its count; an interrupted
    export redoes only the unfinished splits.  PNGs are encoded by ``workers`` threads
    (Pillow releases the GIL while encoding; default: up to 8, one per CPU core).
    """
    workers = workers or min(8, os.cpu_count() or 1)
    frames = []
    try:
        with np.load(npz) as data:
            missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels")
                       if f"{s}_{k}" not in data.files]
            if missing:
                raise PublicDataError(f"{npz} lacks the array(s) {missing}; expected {_CHESTMNIST_LAYOUT}")
            labels = {s: np.asarray(data[f"{s}_labels"]) for s in SPLITS}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise PublicDataError(f"{npz} is not a readable npz file ({exc}); delete it and download "
                              "it again") from exc
    for split in SPLITS:
        folder = out_dir / split
        done = folder / ".done.json"
        n = len(labels[split])
        findings = chestmnist_findings(labels[split], f"{npz} {split}_labels")
        if not (done.is_file() and json.loads(done.read_text()).get("count") == n):
            folder.mkdir(parents=True, exist_ok=True)
            with tqdm(total=n, desc=f"ChestMNIST {split} -> PNG", unit="img", disable=not progress,
                      leave=False) as bar:
                with ThreadPoolExecutor(workers) as pool:
                    for start, block, shape in _iter_npy_rows(npz, f"{split}_images"):
                        if shape[0] != n:
                            raise PublicDataError(f"{npz}: {split}_images has {shape[0]} images "
                                                  f"but {split}_labels has {n} rows")
                        list(pool.map(lambda k, b=block, s0=start: _save_png(b[k], folder / f"{s0 + k}.png"),
                                      range(len(block))))
                        bar.update(len(block))
            done.write_text(json.dumps({"count": n, "npz": npz.name}))
        frames.append(pd.DataFrame({"path": [str(folder / f"{i}.png") for i in range(n)],
                                    "split": split, "findings": findings}))
    return pd.concat(frames, ignore_index=True)


def _save_png(img: np.ndarray, path: Path) -> None:
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.dtype != np.uint8:
        raise PublicDataError(f"ChestMNIST images must be uint8, got {img.dtype} (writing {path})")
    pic = Image.fromarray(img)
    (pic if img.ndim == 2 else pic.convert("L")).save(path, compress_level=1)


# ------------------------------------------------------------------------------- manifests
def chestmnist_images(npz: Path, out_dir: Path, size: int, progress: bool = True) -> pd.DataFrame:
    """ChestMNIST rows: chest films with findings, on the npz's own train/val/test split.

    The npz carries no file names or patient ids, so each film is its own group
    (``chestmnist:<split>:<i>``); the split itself keeps patients apart (it has the sizes of
    the authors' patient-disjoint 70/10/20 split).
    """
    rows = export_chestmnist(npz, out_dir, progress=progress)
    index = rows.groupby("split").cumcount()
    return _frame(rows["path"], is_xray="1", xray_type="chest", findings=rows["findings"],
                  patient_id=[f"chestmnist:{s}:{i}" for s, i in zip(rows["split"], index)],
                  split=rows["split"], source="chestmnist", width=str(size), height=str(size))


def mednist_images(root: Path) -> pd.DataFrame:
    """MedNIST rows: CXR and Hand are X-rays, the four CT / MRI classes are not."""
    frames = []
    missing = [c for c in MEDNIST_CLASSES if not (root / c).is_dir()]
    if missing:
        raise PublicDataError(f"MedNIST: {root} lacks the class folder(s) {missing}; expected "
                              f"{FILES['mednist'].layout}")
    for cls, (xray, xtype) in MEDNIST_CLASSES.items():
        files = sorted(p for p in (root / cls).iterdir()
                       if p.suffix.lower() in (".jpeg", ".jpg", ".png") and not p.name.startswith("."))
        frames.append(_frame([str(p) for p in files], is_xray="1" if xray else "0", xray_type=xtype,
                             patient_id=[f"mednist:{cls}/{p.stem}" for p in files], source="mednist"))
    return pd.concat(frames, ignore_index=True)


def jpeg_complete(path: Path) -> bool:
    """Whether a JPEG decodes whole: cheap end-of-image check, full decode only when it fails.

    FracAtlas ships 59 truncated JPEGs; the project's reader refuses them, so they are left
    out of the manifest instead of failing (or being black) in training.
    """
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - 64))
            if b"\xff\xd9" in fh.read():
                return True
        read_gray(path)
        return True
    except (ImageReadError, OSError):
        return False


def fracatlas_body_parts(path: str | os.PathLike = FRACATLAS_BODY_PARTS_CSV) -> dict[str, str]:
    """``{image_id: xray_type}`` of the FracAtlas films whose body part was reviewed by eye.

    The shipped table (250 films: knee 77, hand 55, foot 48, forearm 27, shoulder 21, hip 10,
    elbow 8, ankle 4) comes from the project's review of single films; ``#`` lines are comments.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, comment="#")
    except (OSError, pd.errors.ParserError) as exc:
        raise PublicDataError(f"FracAtlas body parts: cannot read {path} ({exc})") from exc
    if list(table.columns) != ["image_id", "xray_type"]:
        raise PublicDataError(f"FracAtlas body parts: {path} needs the columns image_id,xray_type; "
                              f"found {list(table.columns)}")
    bad = sorted(set(table["xray_type"]) - set(paper.XRAY_TYPES))
    if bad or table["image_id"].duplicated().any():
        raise PublicDataError(f"FracAtlas body parts: {path} has unknown type(s) {bad} or an image "
                              f"listed twice; types must be among {paper.XRAY_TYPES}")
    return dict(zip(table["image_id"].str.strip(), table["xray_type"].str.strip()))


def fracatlas_images(root: Path, progress: bool = True,
                     body_parts: Mapping[str, str] | None = None) -> pd.DataFrame:
    """FracAtlas rows: every readable film is an X-ray; its type only where it was reviewed.

    ``body_parts`` (default: :func:`fracatlas_body_parts`, the shipped table) gives the type of
    the reviewed films; every other film keeps an empty ``xray_type`` -- an X-ray of unknown
    body part, which :func:`~xray_utils.data.manifests.task_manifests` puts in Module I only,
    never in a Module II class (the dataset's own region flags are too coarse for that).
    Left out, counted in ``attrs["excluded"]``: images found in both class folders (ambiguous),
    images missing from their folder, and truncated JPEGs.  ``attrs["body_part"]`` counts the
    films with a ``reviewed`` type and those of ``unknown`` type, and ``flag_disagrees`` the
    reviewed films whose single region flag names another Module II type.
    """
    csv = root / "dataset.csv"
    if not csv.is_file():
        raise PublicDataError(f"FracAtlas: {csv} not found; expected {FILES['fracatlas'].layout}")
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    missing = [c for c in FRACATLAS_COLUMNS if c not in table.columns]
    if missing:
        raise PublicDataError(f"FracAtlas: {csv} lacks the column(s) {missing}; found "
                              f"{list(table.columns)}")
    parts = fracatlas_body_parts() if body_parts is None else dict(body_parts)
    flags = table[list(FRACATLAS_REGIONS)].apply(lambda c: c.str.strip() == "1")
    single = (flags.sum(axis=1) == 1) & (table["mixed"].str.strip() != "1")
    region = flags.idxmax(axis=1).where(single, "mixed")
    folders = {d: {p.name for p in (root / "images" / d).glob("*")} if (root / "images" / d).is_dir()
               else set() for d in ("Fractured", "Non_fractured")}
    both = folders["Fractured"] & folders["Non_fractured"]
    excluded = {"in_both_folders": 0, "missing_file": 0, "truncated": 0}
    counts = {"reviewed": 0, "unknown": 0, "flag_disagrees": 0}
    keep_paths, keep_types, keep_ids = [], [], []
    for image_id, reg, fractured in tqdm(list(zip(table["image_id"], region, table["fractured"])),
                                         desc="checking FracAtlas", unit="img",
                                         disable=not progress, leave=False):
        image_id = image_id.strip()
        if image_id in both:
            excluded["in_both_folders"] += 1
            continue
        folder = "Fractured" if fractured.strip() == "1" else "Non_fractured"
        if image_id not in folders[folder]:
            excluded["missing_file"] += 1
            continue
        path = root / "images" / folder / image_id
        if not jpeg_complete(path):
            excluded["truncated"] += 1
            continue
        xray_type = parts.get(image_id, "")
        counts["reviewed" if xray_type else "unknown"] += 1
        if xray_type and reg in paper.XRAY_TYPES and reg != xray_type:
            counts["flag_disagrees"] += 1
        keep_paths.append(str(path))
        keep_types.append(xray_type)
        keep_ids.append(f"fracatlas:{Path(image_id).stem}")
    out = _frame(keep_paths, is_xray="1", xray_type=keep_types, patient_id=keep_ids,
                 source="fracatlas")
    out.attrs["excluded"] = excluded
    out.attrs["body_part"] = counts
    return out


def type_counts(images: pd.DataFrame, tasks: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Films per X-ray type: Module II's count per split beside Table I, for the 14 types, and a
    last row for the X-rays of unknown body part (in Module I only, in no Module II class).

    ``images``: the image manifest; ``tasks``: its task manifests (``task_manifests``).
    """
    module_ii = tasks["xray_type"]
    rows = {}
    for t in paper.XRAY_TYPES:
        sub = module_ii[module_ii["label"] == t]
        rows[t] = {**{s: int((sub["split"] == s).sum()) for s in SPLITS}, "total": len(sub),
                   "Table I": paper.TABLE_I[t],
                   "sources": ", ".join(sorted(set(sub["source"]))) or MISSING_XRAY_TYPES.get(t, "")}
    unknown = images[(images["is_xray"].astype(int) == 1) & (images["xray_type"] == "")]
    in_i = set(tasks["xray_or_not"]["path"])
    rows["(unknown body part: Module I only)"] = {
        **{s: int(((unknown["split"] == s) & unknown["path"].isin(in_i)).sum()) for s in SPLITS},
        "total": int(unknown["path"].isin(in_i).sum()), "Table I": "",
        "sources": ", ".join(sorted(set(unknown["source"])))}
    return pd.DataFrame.from_dict(rows, orient="index")


def imagenette_images(root: Path) -> pd.DataFrame:
    """Imagenette rows: every JPEG of ``train/`` and ``val/`` is a "not X-ray" photograph."""
    files = sorted(p for split in ("train", "val") if (root / split).is_dir()
                   for p in (root / split).rglob("*")
                   if p.suffix.lower() in (".jpeg", ".jpg", ".png") and not p.name.startswith("."))
    if not files:
        raise PublicDataError(f"Imagenette: no images under {root}/train or {root}/val; expected "
                              f"{_IMAGENETTE_LAYOUT.format(px='<px>')}")
    return _frame([str(p) for p in files], is_xray="0",
                  patient_id=[f"imagenette:{p.relative_to(root).as_posix()}" for p in files],
                  source="imagenette")


def _frame(path: Sequence[str] | pd.Series, **columns: Any) -> pd.DataFrame:
    """An image manifest (all columns, all strings) from ``path`` and the given columns."""
    n = len(path)
    data = {"path": list(path)}
    for col in IMAGE_COLUMNS[1:]:
        value = columns.get(col, "")
        data[col] = [value] * n if isinstance(value, str) else [str(v) for v in value]
    return pd.DataFrame(data, columns=list(IMAGE_COLUMNS), dtype=object)


def prepare_public(names: Iterable[str] | None = None, *, cache_dir: str | os.PathLike | None = None,
                   image_size: int = 64, progress: bool = True,
                   registry: Mapping[str, PublicFile] | None = None) -> dict[str, Path]:
    """Extract the archives / export the ChestMNIST PNGs of files already in the cache.

    Returns ``{name: folder}`` (the layout root, or the PNG folder for ChestMNIST).
    """
    names = resolve_names(None, image_size, registry) if names is None else tuple(names)
    folder = public_dir(cache_dir)
    out = {}
    for name, spec in _lookup(names, registry).items():
        archive = folder / spec.filename
        if spec.dataset == "chestmnist":
            out[name] = folder / name
            export_chestmnist(archive, out[name], progress=progress)
        else:
            out[name] = extract_archive(name, archive, folder / name, progress=progress)
    return out


def build_public_image_manifest(cache_dir: str | os.PathLike | None = None, seed: int = 0,
                                image_size: int = 64, offline: bool | None = None,
                                stand_in: str | Path | None = None, *, progress: bool = True,
                                mirror: str | None = None,
                                registry: Mapping[str, PublicFile] | None = None) -> pd.DataFrame:
    """The ``public`` profile's image manifest (``IMAGE_COLUMNS``), every row with its split.

    Downloads what is missing (checksummed, resumable; offline: only the cache), extracts the
    archives once, writes the ChestMNIST PNGs once, and combines:

    * ChestMNIST at :func:`chestmnist_size_for` ``image_size``, on the npz's train/val/test
      split (Module III, and the chest films of Modules I-II);
    * MedNIST CXR (chest) and Hand (hand) X-rays; its CT / MRI slices as "not X-ray";
    * FracAtlas films: the reviewed ones with their body part, the others as X-rays of unknown
      type for Module I only (:func:`fracatlas_images` says what is left out);
    * Imagenette photographs ("not X-ray").

    Rows without a split get a seeded patient-wise 70/20/10 one, stratified by X-ray type.
    ``stand_in`` (a labelled folder of real images, e.g. ``$XRAY_REAL_SAMPLES``): read it
    (``datasets.labelled_folder``) instead of the archives -- the CI stand-in, no download.
    ``attrs`` holds ``public``: the ChestMNIST size, files used and rows left out.
    """
    if stand_in not in (None, ""):
        images = assign_splits(load_labelled_folder(stand_in), seed=seed)
        images.attrs["public"] = {"stand_in": str(Path(stand_in).expanduser().resolve())}
        return images
    names = resolve_names(None, image_size, registry)
    require_public(cache_dir, offline, names=names, mirror=mirror, registry=registry)
    fetch_public(names, cache_dir=cache_dir, offline=offline, progress=progress, mirror=mirror,
                 registry=registry)
    roots = prepare_public(names, cache_dir=cache_dir, progress=progress, registry=registry)
    folder = public_dir(cache_dir)
    frames = []
    excluded: dict[str, Any] = {}
    for name, spec in _lookup(names, registry).items():
        if spec.dataset == "chestmnist":
            size = int(name.rsplit("_", 1)[1])
            frames.append(chestmnist_images(folder / spec.filename, roots[name], size, progress))
        elif spec.dataset == "mednist":
            frames.append(mednist_images(roots[name]))
        elif spec.dataset == "fracatlas":
            frames.append(fracatlas_images(roots[name], progress))
            excluded["fracatlas"] = frames[-1].attrs.get("excluded", {})
            excluded["fracatlas_body_part"] = frames[-1].attrs.get("body_part", {})
        elif spec.dataset == "imagenette":
            frames.append(imagenette_images(roots[name]))
    images = pd.concat(frames, ignore_index=True)[list(IMAGE_COLUMNS)]
    images = assign_splits(images, seed=seed)
    images.attrs["public"] = {"chestmnist_size": chestmnist_size_for(image_size),
                              "files": list(names), "excluded": excluded}
    return images


# ------------------------------------------------------------------------------- citations
def citations(datasets: Iterable[str] | None = None) -> str:
    """Markdown: each public dataset's title, licence, citation and use in this project."""
    names = list(datasets) if datasets is not None else list(DATASETS)
    lines = ["**Data of the `public` profile** (openly licensed; please cite):", ""]
    for name in names:
        d = DATASETS[name]
        lines.append(f"- **{d.title}** -- licence: [{d.licence}]({d.licence_url}); used for: "
                     f"{d.used_for}. Cite: {d.citation}. <{d.homepage}>"
                     + (f" *{d.notes}*" if d.notes else ""))
    missing = ", ".join(MISSING_XRAY_TYPES)
    lines += ["", f"Module II covers {', '.join(PUBLIC_XRAY_TYPES)}; no open source is used here "
              f"for {missing} (see `xray_utils.sources.public.MISSING_XRAY_TYPES`)."]
    return "\n".join(lines)
