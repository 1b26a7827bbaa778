"""The ``public`` profile's data: openly licensed X-rays anyone can download without an agreement.

Four sources, one adapter module each (:mod:`.chestmnist`, :mod:`.mednist`, :mod:`.fracatlas`,
:mod:`.imagenette`, in the paper adapters' style: a ``SPEC``, its ``FILES`` and a function for its
rows); every file is pinned in :data:`FILES` with its URL, size, published checksum, licence and
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
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import urlparse

import pandas as pd
from tqdm.auto import tqdm

from xray_utils.config import paper
from xray_utils.config.paths import MIRROR_ENV, downloads_dir, is_offline  # noqa: F401 (MIRROR_ENV: re-exported)
from xray_utils.data.manifests import IMAGE_COLUMNS, SPLITS, assign_splits
from xray_utils.sources.download import (
    _mark_verified,
    _marker,
    lookup,
    mirrored_url,
    move_aside,
    retrieve,
    size_ceiling,
    url_reachable,
    verify_file,
)
from xray_utils.sources.labelled_folder import load as load_labelled_folder
from xray_utils.sources.public import chestmnist, fracatlas, imagenette, mednist
from xray_utils.sources.public.chestmnist import (  # noqa: F401 (re-exported)
    CHESTMNIST_LABELS,
    CHESTMNIST_SIZES,
    _iter_npy_rows,
    chestmnist_findings,
    chestmnist_images,
    chestmnist_size_for,
    export_chestmnist,
)
from xray_utils.sources.public.fracatlas import (  # noqa: F401 (re-exported)
    FRACATLAS_BODY_PARTS_CSV,
    FRACATLAS_COLUMNS,
    FRACATLAS_REGIONS,
    fracatlas_body_parts,
    fracatlas_images,
    jpeg_complete,
)
from xray_utils.sources.public.imagenette import imagenette_images
from xray_utils.sources.public.mednist import MEDNIST_CLASSES, mednist_images  # noqa: F401 (re-exported)
from xray_utils.sources.public.spec import (  # noqa: F401 (re-exported)
    SUBDIR,
    ChecksumMismatch,
    PublicDataError,
    PublicDataMissing,
    PublicDataset,
    PublicFile,
)

#: The adapters, one module per dataset, in the order of :data:`FILES`.
ADAPTERS = (chestmnist, mednist, fracatlas, imagenette)
#: Every public dataset, by name (each adapter's ``SPEC``).
DATASETS: Mapping[str, PublicDataset] = MappingProxyType({a.SPEC.name: a.SPEC for a in ADAPTERS})
#: Every downloadable file, by name (the adapters' ``FILES``).
FILES: Mapping[str, PublicFile] = MappingProxyType({f.name: f for a in ADAPTERS for f in a.FILES})
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


# ------------------------------------------------------------------------------- selection
def public_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``<downloads>/public``: archives, their extracted trees and the ChestMNIST PNGs."""
    return downloads_dir(cache_dir) / SUBDIR

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
                 f"internet access and copy them into {folder} (same file names), or run the "
                 "public profile on a labelled folder of real films instead: python -m xray_utils "
                 "run --profile public -p PUBLIC_STAND_IN DIR.")
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
        if not status.ok and status.path.is_file():  # a wrong copy (maybe placed by hand)
            move_aside(status.path, "does not match its published checksum")
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
                 deadline=deadline, max_bytes=size_ceiling(spec.size, spec.size_exact))
    except ValueError as exc:  # pooch: hash mismatch (the file was deleted by pooch)
        raise ChecksumMismatch(
            f"{spec.name}: the file downloaded from {url} does not match its published checksum "
            f"{single} ({spec.checksum_source}); nothing was kept. The file on the server changed "
            f"or the transfer was corrupted: try again later, or check {DATASETS[spec.dataset].homepage} "
            f"for a new version. ({exc})") from exc
    except Exception as exc:  # network and file errors of requests / the downloader
        have = part.stat().st_size if part.is_file() else 0
        if part.is_file() and (not have or (spec.size_exact and have > spec.size)):
            part.unlink()  # empty, or longer than the file: it cannot be resumed
            have = 0
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
_MEMBER_FILTERS: Mapping[str, Callable[[str], bool]] = MappingProxyType({"fracatlas": fracatlas.keep_member})


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


# ------------------------------------------------------------------------------- manifests
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
