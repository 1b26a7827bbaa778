"""Downloads of the public files the project needs, checksummed with pooch.

Only files anyone may fetch without an agreement are listed in :data:`REGISTRY`: the chest
split released by the paper's authors (Module III's train/val/test lists) and the
ChestX-ray14 label and box files as shipped by torchxrayvision.  Every file has a sha256; a
download that does not match is refused.  The sha256 values are those of the copies in the
project's shared reference folder (``shared/reference/``), taken to be byte-identical to the
files at the pinned commits; the file paths inside the authors' repository follow its training
script (``labels/{train,val,test}_list.txt``).

Files go to ``data/downloads/`` by default (``XRAY_DOWNLOADS_DIR`` or ``cache_dir=`` to
change it) and are fetched once.  In offline mode (``offline=True`` or ``XRAY_OFFLINE=1``)
nothing is fetched: files are looked up in the cache, and a missing one is reported with its
URL and the place to put it, e.g. after copying it from a machine that has internet access.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import pooch

from xray_utils.config.paths import project_paths


class DownloadError(RuntimeError):
    """A file could not be fetched or failed its checksum; the message says which and what to do."""


@dataclass(frozen=True)
class RemoteFile:
    """A public file: where it is, its sha256, and where it comes from (for the reader)."""

    url: str
    sha256: str
    origin: str = ""


_RAW = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
#: The authors' repository and the commit of the released split (commit named in the paper's
#: materials).  The paths are those the authors' training script reads (``labels/*.txt``).
AUTHORS_REPO = "IS2AI/Chest-X-ray-module"
AUTHORS_COMMIT = "e92af4a"
TORCHXRAYVISION_COMMIT = "f4087a0b0d0cdc6a5877fb5456965b6d29adb1e5"

#: Name (relative path inside the downloads folder) -> remote file.
REGISTRY: Mapping[str, RemoteFile] = {
    "is2ai-chest-split/train_list.txt": RemoteFile(
        _RAW.format(repo=AUTHORS_REPO, commit=AUTHORS_COMMIT, path="labels/train_list.txt"),
        "332d49fb9b7a380bd25c1a54de7544ab422bdc37142459e273298a8ea2ea5c03",
        "authors' Module III split, train (78,468 images), MIT licence"),
    "is2ai-chest-split/val_list.txt": RemoteFile(
        _RAW.format(repo=AUTHORS_REPO, commit=AUTHORS_COMMIT, path="labels/val_list.txt"),
        "b192648c64db658e4e62cd1875da5a95c86bf7ee57fc574dad9be0c03d051b03",
        "authors' Module III split, validation (11,219 images), MIT licence"),
    "is2ai-chest-split/test_list.txt": RemoteFile(
        _RAW.format(repo=AUTHORS_REPO, commit=AUTHORS_COMMIT, path="labels/test_list.txt"),
        "e16b9899caf381752717bf8f35f4f106e0b6aeaa4450ad934c5f9a7a328efffa",
        "authors' Module III split, test (22,433 images), MIT licence"),
    "nih/Data_Entry_2017_v2020.csv.gz": RemoteFile(
        _RAW.format(repo="mlmed/torchxrayvision", commit=TORCHXRAYVISION_COMMIT,
                    path="torchxrayvision/data/Data_Entry_2017_v2020.csv.gz"),
        "9d4de640ee4f760215d8be98376b20387ca52f9c6b4d1b727cb588fb82f40b80",
        "ChestX-ray14 labels (v2020), NIH Clinical Center; copy shipped by torchxrayvision"),
    "nih/BBox_List_2017.csv.gz": RemoteFile(
        _RAW.format(repo="mlmed/torchxrayvision", commit=TORCHXRAYVISION_COMMIT,
                    path="torchxrayvision/data/BBox_List_2017.csv.gz"),
        "cf9dc6029f65daa8b389415b0546af0eeeb91fbac7d63ec49d7f8de2fd8f40cd",
        "ChestX-ray14 boxes (984), NIH Clinical Center; copy shipped by torchxrayvision"),
}
AUTHORS_SPLIT_FILES: tuple[str, ...] = tuple(n for n in REGISTRY if n.startswith("is2ai-chest-split/"))


def downloads_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The downloads folder: ``cache_dir``, else ``$XRAY_DOWNLOADS_DIR``, else ``<data>/downloads``."""
    if cache_dir not in (None, ""):
        return Path(cache_dir).expanduser().resolve()
    if os.environ.get("XRAY_DOWNLOADS_DIR"):
        return Path(os.environ["XRAY_DOWNLOADS_DIR"]).expanduser().resolve()
    return project_paths().data_dir / "downloads"


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else whether ``$XRAY_OFFLINE`` is set to 1/true/yes."""
    if offline is not None:
        return bool(offline)
    return os.environ.get("XRAY_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _lookup(name: str, registry: Mapping[str, RemoteFile]) -> RemoteFile:
    try:
        return registry[name]
    except KeyError:
        raise DownloadError(f"no file {name!r} in the download registry; known: {sorted(registry)}") from None


def _check_cached(name: str, target: Path, spec: RemoteFile) -> str | None:
    """Problem with the cached copy (``None`` = present and correct)."""
    if not target.is_file():
        return f"{name}: not in the cache (expected at {target}; source {spec.url})"
    digest = pooch.file_hash(str(target), alg="sha256")
    if digest != spec.sha256:
        return (f"{name}: {target} has sha256 {digest}, expected {spec.sha256}; delete it and "
                f"download it again from {spec.url}")
    return None


def fetch_many(names: Iterable[str], *, cache_dir: str | os.PathLike | None = None,
               offline: bool | None = None, registry: Mapping[str, RemoteFile] = REGISTRY,
               progress: bool = False) -> dict[str, Path]:
    """Fetch (or find in the cache) several files; returns ``{name: local path}``.

    Offline, every missing or corrupt file is reported in one :class:`DownloadError`.
    """
    names = list(names)
    folder = downloads_dir(cache_dir)
    specs = {n: _lookup(n, registry) for n in names}
    targets = {n: folder / n for n in names}
    if is_offline(offline):
        problems = [p for n in names if (p := _check_cached(n, targets[n], specs[n]))]
        if problems:
            raise DownloadError(
                f"offline mode: {len(problems)} file(s) unavailable:\n  " + "\n  ".join(problems)
                + "\nCopy them there (same names), or run with offline=False / XRAY_OFFLINE unset "
                "on a machine with internet access.")
        return targets
    out = {}
    for n in names:
        target = targets[n]
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            out[n] = Path(pooch.retrieve(specs[n].url, known_hash=f"sha256:{specs[n].sha256}",
                                         fname=target.name, path=target.parent,
                                         progressbar=progress))
        except ValueError as exc:  # pooch: checksum mismatch
            raise DownloadError(f"{n}: the file downloaded from {specs[n].url} failed its sha256 "
                                f"check ({exc}). The remote file changed or the download was "
                                "corrupted; nothing was kept.") from exc
        except Exception as exc:  # network errors of requests/pooch
            raise DownloadError(
                f"{n}: could not download {specs[n].url} ({type(exc).__name__}: {exc}). Check "
                f"the network, or download it by hand to {target} and use offline=True.") from exc
    return out


def fetch(name: str, *, cache_dir: str | os.PathLike | None = None, offline: bool | None = None,
          registry: Mapping[str, RemoteFile] = REGISTRY, progress: bool = False) -> Path:
    """Fetch one registered file (or find it in the cache) and return its local path."""
    return fetch_many([name], cache_dir=cache_dir, offline=offline, registry=registry,
                      progress=progress)[name]


def fetch_authors_split(cache_dir: str | os.PathLike | None = None, offline: bool | None = None,
                        registry: Mapping[str, RemoteFile] = REGISTRY) -> Path:
    """The folder holding the authors' ``train_list.txt``, ``val_list.txt``, ``test_list.txt``."""
    paths = fetch_many(AUTHORS_SPLIT_FILES, cache_dir=cache_dir, offline=offline, registry=registry)
    return next(iter(paths.values())).parent
