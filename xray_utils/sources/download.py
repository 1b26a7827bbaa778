"""The project's one downloader: resumable, checksummed, offline-aware, with a mirror and a deadline.

Every public file the project fetches goes through :func:`retrieve` (``pooch.retrieve`` with
:class:`ResumableDownloader`):

* **resumable** -- bytes go to ``<file>.part``; a broken transfer keeps it and the next call
  continues with an HTTP ``Range`` request;
* **checksummed** -- the finished file must match a known checksum (``"<alg>:<hex>"``) or is
  deleted; :func:`verify_file` checks a cached copy against any of several published values,
  records the sha256 of a first download where none is published (``checksums.json``) and
  stamps verified files so that multi-GB files are not hashed again;
* **offline** -- ``offline=True`` or ``XRAY_OFFLINE=1``: nothing is fetched, missing files are
  named with their URL and the place to put them;
* **mirror** -- ``mirror=`` or ``XRAY_PUBLIC_MIRROR``: every file is fetched by name from
  another server (e.g. a teacher's copy on the local network; ``file://`` works too);
* **deadline** -- each download must finish within ``deadline`` seconds overall
  (:data:`DEFAULT_DEADLINE_S`; ``XRAY_DOWNLOAD_DEADLINE`` or ``deadline=``), so a server that
  trickles bytes fails with a clear message instead of hanging; the part is kept to resume.

One registry mechanism: a registry maps a name to a spec with ``url`` and ``checksums``.
:data:`REGISTRY` here holds the small files anyone may fetch without an agreement -- the chest
split released by the paper's authors (Module III's train/val/test lists) and the ChestX-ray14
label and box files as shipped by torchxrayvision -- as :class:`RemoteFile` (one sha256 each;
the values are those of byte-identical copies of the files at the pinned commits; the paths
inside the authors' repository follow its training script, ``labels/{train,val,test}_list.txt``).
The public datasets' archives are :data:`xray_utils.sources.public.FILES`.

Files go to ``data/downloads/`` by default (``XRAY_DOWNLOADS_DIR`` or ``cache_dir=`` to
change it) and are fetched once.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import pooch
from tqdm.auto import tqdm

from xray_utils.config.paths import (
    DEADLINE_ENV,
    DEFAULT_DEADLINE_S,
    download_deadline,
    download_mirror,
    downloads_dir,
    is_offline,
)

__all__ = ["AUTHORS_SPLIT_FILES", "DEFAULT_DEADLINE_S", "DownloadError", "DownloadTimeout",
           "DownloadTooLarge", "REGISTRY", "RemoteFile", "ResumableDownloader", "allowed_checksums",
           "download_deadline", "downloads_dir", "fetch", "fetch_authors_split", "fetch_many", "is_offline",
           "lookup", "mirrored_url", "move_aside", "retrieve", "size_ceiling", "url_reachable", "verify_file"]

class DownloadError(RuntimeError):
    """A file could not be fetched or failed its checksum; the message says which and what to do."""


class DownloadTimeout(OSError):
    """A download did not finish within its deadline (the part is kept to resume)."""


class DownloadTooLarge(OSError):
    """A server sent (or announced) more bytes than the file's size ceiling; nothing is kept."""


#: A download may exceed the registry's exact size by this fraction (plus :data:`SIZE_SLACK`
#: bytes) before it is stopped; an estimated size gets twice the margin.
SIZE_MARGIN = 0.05
SIZE_SLACK = 1 << 20
#: The ceiling for a file whose size the registry does not give.
MAX_UNKNOWN_SIZE = 256 * 1024 ** 2


def size_ceiling(size: int | None, exact: bool = True) -> int:
    """The most bytes a download of a file of ``size`` bytes may write (see :data:`SIZE_MARGIN`)."""
    if not size:
        return MAX_UNKNOWN_SIZE
    margin = SIZE_MARGIN if exact else 2 * SIZE_MARGIN + 1.0
    return int(size * (1 + margin)) + SIZE_SLACK


def move_aside(path: Path, why: str) -> Path:
    """Rename a file the user may have placed (never delete it): ``<name>.rejected[.N]``; says so."""
    path = Path(path)
    dest = path.with_name(path.name + ".rejected")
    n = 1
    while dest.exists():
        dest = path.with_name(f"{path.name}.rejected.{n}")
        n += 1
    os.replace(path, dest)
    print(f"{path}: {why}; moved aside to {dest} (not deleted) and fetching it again.")
    return dest


@dataclass(frozen=True)
class RemoteFile:
    """A public file: where it is, its sha256, and where it comes from (for the reader)."""

    url: str
    sha256: str
    origin: str = ""
    size: int | None = None  # bytes, when known (bounds the download)

    @property
    def checksums(self) -> tuple[str, ...]:
        """The accepted checksums, ``"<alg>:<hex>"`` (as :class:`~xray_utils.sources.public.PublicFile`)."""
        return (f"sha256:{self.sha256}",)


_RAW = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
#: The authors' repository and the commit of the released split (commit named in the paper's
#: materials).  The paths are those the authors' training script reads (``labels/*.txt``).
AUTHORS_REPO = "IS2AI/Chest-X-ray-module"
AUTHORS_COMMIT = "e92af4aeaf25e22065838d57074576c0d6e7dc80"
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


def mirrored_url(url: str, name: str, mirror: str | None = None) -> str:
    """``url``, or ``<mirror>/<name>`` when a mirror is given (or set in ``$XRAY_PUBLIC_MIRROR``)."""
    mirror = download_mirror(mirror)
    return f"{mirror.rstrip('/')}/{name}" if mirror else url


def lookup(names: Iterable[str], registry: Mapping[str, Any], error: type[Exception] = DownloadError,
           what: str = "file") -> dict[str, Any]:
    """``{name: spec}`` from a registry; an unknown name raises ``error`` listing the known ones."""
    out = {}
    for name in names:
        if name not in registry:
            raise error(f"no {what} {name!r} in the download registry; known: {sorted(registry)}")
        out[name] = registry[name]
    return out


# ------------------------------------------------------------------------------- checksums
def _record_path(folder: Path) -> Path:
    return folder / "checksums.json"


def _recorded(folder: Path) -> dict[str, str]:
    path = _record_path(folder)
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()))
    except (ValueError, OSError) as exc:
        raise DownloadError(f"{path} is not readable JSON ({exc}); delete it (the checksums of "
                              "first downloads are then recorded again)") from exc


def allowed_checksums(spec: Any, folder: Path) -> tuple[str, ...]:
    """The checksums a file may have: the published ones, else the one recorded at first download."""
    if spec.checksums:
        return spec.checksums
    recorded = _recorded(folder).get(spec.name)
    return (recorded,) if recorded else ()


def _digest(path: Path, alg: str) -> str:
    return f"{alg}:{pooch.file_hash(str(path), alg=alg)}"


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _mark_verified(path: Path, checksum: str) -> None:
    _marker(path).write_text(json.dumps({**_stamp(path), "checksum": checksum}))


def verify_file(path: Path, spec: Any, folder: Path, record: bool = True) -> str | None:
    """Problem with a local file (``None`` = it matches its checksum).

    Hashing a multi-GB file takes seconds, so a verified file gets a ``.verified.json`` stamp
    (size, modification time, checksum) and is not hashed again until it changes.  A file
    with no published checksum gets its sha256 recorded (``record=True``) on first sight.
    """
    if not path.is_file():
        return f"{spec.name}: not in the cache (expected at {path})"
    allowed = allowed_checksums(spec, folder)
    marker = _marker(path)
    if marker.is_file():
        try:
            stamp = json.loads(marker.read_text())
        except ValueError:
            stamp = {}
        if stamp.get("checksum") in allowed and all(stamp.get(k) == v for k, v in _stamp(path).items()):
            return None
    if not allowed:
        if record:
            digest = _digest(path, "sha256")
            recorded = _recorded(folder)
            recorded[spec.name] = digest
            _record_path(folder).write_text(json.dumps(recorded, indent=2, sort_keys=True))
            _mark_verified(path, digest)
        return None
    digests: dict[str, str] = {}
    for expected in allowed:
        alg = expected.split(":", 1)[0]
        digests.setdefault(alg, _digest(path, alg))
        if digests[alg] == expected:
            _mark_verified(path, expected)
            return None
    got = ", ".join(digests.values())
    source = (spec.checksum_source if spec.checksums
              else f"recorded at the first download in {_record_path(folder)}")
    return (f"{spec.name}: {path} has {got}, expected {' or '.join(allowed)} ({source})")



# ------------------------------------------------------------------------------- the downloader
class ResumableDownloader:
    """A pooch downloader that resumes ``<target>.part`` with an HTTP ``Range`` request.

    pooch calls it as ``downloader(url, output_file, pooch)``.  Bytes go to ``part`` (kept
    when the transfer breaks) and the finished part is moved to ``output_file``, which pooch
    then checks against the known hash.  A server that ignores ``Range`` (status 200) makes
    it start over; ``file://`` URLs are copied the same way (a local mirror).

    ``timeout`` bounds each wait for the server; ``deadline`` (seconds, ``None`` = none) bounds
    the whole transfer: a server that trickles bytes raises :class:`DownloadTimeout` once it is
    past (the part is kept, so a later call resumes).
    """

    def __init__(self, part: Path, desc: str = "", progressbar: bool = True,
                 timeout: float = 60.0, chunk_size: int = 1 << 16,
                 deadline: float | None = None, max_bytes: int | None = None) -> None:
        #: the most bytes the file may have (:func:`size_ceiling`); more, announced or
        #: received (decompressed bytes counted), stops the download and deletes the part
        self.max_bytes = max_bytes
        self.part = Path(part)
        self.desc = desc or self.part.name
        self.progressbar = progressbar
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.deadline = deadline
        self._ends_at: float | None = None

    def __call__(self, url: str, output_file: str | Any, pooch_obj: Any = None,
                 check_only: bool = False) -> bool | None:
        if check_only:
            return url_reachable(url, self.timeout)
        self.part.parent.mkdir(parents=True, exist_ok=True)
        self._ends_at = None if self.deadline is None else time.monotonic() + self.deadline
        if urlparse(url).scheme == "file":
            self._copy_local(url)
        else:
            self._http(url)
        target = output_file if isinstance(output_file, (str, os.PathLike)) else output_file.name
        os.replace(self.part, target)
        return None

    def _check_deadline(self, url: str) -> None:
        if self._ends_at is not None and time.monotonic() > self._ends_at:
            have = self.part.stat().st_size if self.part.exists() else 0
            raise DownloadTimeout(
                f"{url}: the download did not finish within its deadline of {self.deadline:g} s "
                f"({have:,} bytes received; the server is too slow or stalls). Run again to "
                f"resume, use a mirror, or allow more time (deadline=, ${DEADLINE_ENV})")

    def _too_large(self, url: str, size: int, announced: bool = False) -> DownloadTooLarge:
        self.part.unlink(missing_ok=True)  # beyond the expected size: it cannot be resumed
        what = "announces" if announced else "sent more than"
        return DownloadTooLarge(
            f"{url}: the server {what} {size:,} bytes, more than the {self.max_bytes:,} this file "
            "may have (its registered size plus a margin); stopped and nothing kept. The server "
            "sends something else than the registered file: use a mirror or download it by hand.")

    def _check_size(self, url: str, size: int, announced: bool = False) -> None:
        if self.max_bytes is not None and size > self.max_bytes:
            raise self._too_large(url, size, announced)

    def _bar(self, total: int | None, initial: int) -> tqdm:
        return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=self.desc, disable=not self.progressbar, leave=False)

    def _copy_local(self, url: str) -> None:
        source = Path(url2pathname(unquote(urlparse(url).path)))
        if not source.is_file():
            raise FileNotFoundError(f"{source} (from {url}) does not exist")
        offset = self.part.stat().st_size if self.part.exists() else 0
        total = source.stat().st_size
        self._check_size(url, total, announced=True)
        if offset > total:
            offset = 0
        with open(source, "rb") as src, open(self.part, "ab" if offset else "wb") as dst, \
                self._bar(total, offset) as bar:
            src.seek(offset)
            written = offset
            while block := src.read(self.chunk_size):
                written += len(block)
                self._check_size(url, written)
                dst.write(block)
                bar.update(len(block))
                self._check_deadline(url)

    def _http(self, url: str) -> None:
        import requests

        offset = self.part.stat().st_size if self.part.exists() else 0
        if self.max_bytes is not None and offset > self.max_bytes:  # not resumable: start over
            self.part.unlink()
            offset = 0
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with requests.get(url, stream=True, timeout=self.timeout, headers=headers) as response:
            if offset and response.status_code == 416:
                return  # the part is already whole; the checksum decides
            response.raise_for_status()
            resumed = offset > 0 and response.status_code == 206
            if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                self.part.unlink()  # the next attempt starts over
                raise OSError(f"{url}: the server answered the range request for bytes {offset}- "
                              f"with Content-Range {response.headers.get('Content-Range')!r}")
            if not resumed:
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length and length.isdigit() else None
            if total is not None:
                self._check_size(url, total, announced=True)
            written = offset
            with open(self.part, "ab" if resumed else "wb") as fh, self._bar(total, offset) as bar:
                # read1: whatever has arrived (a full-size read would wait for a trickle); the
                # bytes counted are those written, after any decompression
                while block := response.raw.read1(self.chunk_size, decode_content=True):
                    written += len(block)
                    if self.max_bytes is not None and written > self.max_bytes:
                        fh.close()
                        raise self._too_large(url, written)
                    fh.write(block)
                    bar.update(len(block))
                    self._check_deadline(url)
        if total is not None and self.part.stat().st_size != total and response.headers.get(
                "Content-Encoding", "identity") == "identity":
            raise OSError(f"{url}: the connection closed after {self.part.stat().st_size} of "
                          f"{total} bytes")


def url_reachable(url: str, timeout: float = 10.0) -> bool:
    """Whether ``url``'s server answers at all (any HTTP status counts; ``file://``: the file exists)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(url2pathname(unquote(parsed.path))).is_file()
    import requests

    try:
        requests.head(url, timeout=timeout, allow_redirects=False)
    except requests.exceptions.RequestException:
        return False
    return True


def retrieve(url: str, target: Path, checksum: str | None, *, desc: str = "",
             progress: bool = False, timeout: float = 60.0,
             deadline: float | None = None, max_bytes: int | None = None) -> Path:
    """Download ``url`` to ``target`` (resuming ``<target>.part``) and check ``checksum``.

    ``checksum`` is ``"<alg>:<hex>"`` (``None``: not checked here; use :func:`verify_file`).
    Raises ``ValueError`` when the file does not match (nothing is kept), :class:`DownloadTimeout`
    after ``deadline`` seconds (see :func:`download_deadline`), :class:`DownloadTooLarge` past
    ``max_bytes`` (default :data:`MAX_UNKNOWN_SIZE`; nothing kept), and the network's or the
    file system's errors otherwise (the part is kept).  A ``target`` already there that fails
    ``checksum`` is moved aside (:func:`move_aside`), never deleted.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    if checksum and target.is_file():
        alg = checksum.split(":", 1)[0]
        if _digest(target, alg) != checksum:
            move_aside(target, f"does not match its checksum {checksum}")
    downloader = ResumableDownloader(part, desc=desc or target.name, progressbar=progress,
                                     timeout=timeout, deadline=download_deadline(deadline),
                                     max_bytes=MAX_UNKNOWN_SIZE if max_bytes is None
                                     else max_bytes)
    return Path(pooch.retrieve(url, known_hash=checksum, fname=target.name, path=target.parent,
                               downloader=downloader, progressbar=False))


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
               progress: bool = False, mirror: str | None = None, timeout: float = 60.0,
               deadline: float | None = None) -> dict[str, Path]:
    """Fetch (or find in the cache) several files; returns ``{name: local path}``.

    Offline, every missing or corrupt file is reported in one :class:`DownloadError`.
    ``mirror``: fetch ``<mirror>/<name>`` instead; ``deadline``: seconds per file
    (:func:`download_deadline`).
    """
    names = list(names)
    folder = downloads_dir(cache_dir)
    specs = lookup(names, registry)
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
        target, url = targets[n], mirrored_url(specs[n].url, n, mirror)
        try:
            out[n] = retrieve(url, target, f"sha256:{specs[n].sha256}", desc=n,
                              progress=progress, timeout=timeout, deadline=deadline,
                              max_bytes=size_ceiling(getattr(specs[n], "size", None)))
        except ValueError as exc:  # pooch: checksum mismatch
            raise DownloadError(f"{n}: the file downloaded from {url} failed its sha256 "
                                f"check ({exc}). The remote file changed or the download was "
                                "corrupted; nothing was kept.") from exc
        except Exception as exc:  # network errors, the deadline
            raise DownloadError(
                f"{n}: could not download {url} ({type(exc).__name__}: {exc}). Check "
                f"the network, or download it by hand to {target} and use offline=True.") from exc
    return out


def fetch(name: str, *, cache_dir: str | os.PathLike | None = None, offline: bool | None = None,
          registry: Mapping[str, RemoteFile] = REGISTRY, progress: bool = False,
          mirror: str | None = None, deadline: float | None = None) -> Path:
    """Fetch one registered file (or find it in the cache) and return its local path."""
    return fetch_many([name], cache_dir=cache_dir, offline=offline, registry=registry,
                      progress=progress, mirror=mirror, deadline=deadline)[name]


def fetch_authors_split(cache_dir: str | os.PathLike | None = None, offline: bool | None = None,
                        registry: Mapping[str, RemoteFile] = REGISTRY) -> Path:
    """The folder holding the authors' ``train_list.txt``, ``val_list.txt``, ``test_list.txt``."""
    paths = fetch_many(AUTHORS_SPLIT_FILES, cache_dir=cache_dir, offline=offline, registry=registry)
    return next(iter(paths.values())).parent
