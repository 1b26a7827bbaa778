"""Preprocessing cache: images decoded once into a uint8 memory-mapped array at one size.

``build_cache(paths, size, cache_dir)`` returns an :class:`ImageCache` whose ``images[i]`` is
the ``size`` x ``size`` 8-bit grayscale version of ``paths[i]`` (``ok[i]`` is False for a file
that could not be read; its slot stays black).  Decoding a 1024 px PNG costs milliseconds; a
cached image is a memory read, so every epoch after the first is much faster.

The cache lives in ``<cache_dir>/<size>px-<key>/``, ``key`` being a hash of (file list, size,
transform), so a different list, size or preprocessing code gets its own folder:

===============  ==============================================================
``images.u8``    the images, raw uint8, shape (N, size, size)
``index.json``   size, count, key, transform and the file list
``done.npy``     which entries are decoded (saved every few chunks: resumable)
``ok.npy``       which entries decoded without error
``stamps.npy``   (file size, modification time) of each source at decode time
``report.json``  unreadable images (count + list with the reason), timings, ``complete``
===============  ==============================================================

* Good entries are reused; an entry whose source file changed since (size or modification
  time) is stale and decoded again.
* Interrupted builds resume: the done-mask is saved periodically and when the build stops
  (also on Ctrl-C), so a restart decodes only the missing entries.
* Decoding runs in a pool of worker processes (2 by default), a chunk of files per task,
  with a progress bar.  Unreadable files are skipped, counted and listed; the build goes on.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from xray_utils.data import imageio
from xray_utils.data.imageio import read_gray, read_gray_resized

TRANSFORM_VERSION = "gray8-resize-bilinear-v1"
DEFAULT_WORKERS = 2
DEFAULT_CHUNK = 64
#: Save the done-mask after this many chunks.
DEFAULT_CHECKPOINT_EVERY = 8


@dataclass
class ImageCache:
    """A built cache: ``images`` (N, size, size) uint8 memmap, ``ok`` (N,) bool, ``paths``.

    ``stats`` says what this call did: ``decoded`` (entries decoded now), ``reused``,
    ``unreadable``, ``seconds``, ``images_per_s`` (decoding speed of this call).
    """

    images: np.ndarray
    ok: np.ndarray
    paths: list[str]
    folder: Path
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def report_path(self) -> Path:
        """``report.json``: unreadable images and timings."""
        return self.folder / "report.json"

    def unreadable(self) -> list[str]:
        """Paths that could not be decoded."""
        return [p for p, good in zip(self.paths, self.ok) if not good]


def transform_fingerprint() -> str:
    """Identifies the preprocessing: the version string plus the code of the image reader
    (:mod:`xray_utils.data.imageio`), so any change to reading or resizing invalidates old caches."""
    h = hashlib.sha1(TRANSFORM_VERSION.encode())
    try:
        h.update(inspect.getsource(imageio).encode())
    except (OSError, TypeError):  # source unavailable (e.g. frozen install)
        h.update(f"{read_gray.__module__}.{read_gray.__qualname__}".encode())
    return f"{TRANSFORM_VERSION}+{h.hexdigest()[:8]}"


def cache_key(paths: Sequence[str], size: int, transform: str | None = None) -> str:
    """Hash of (file list, size, transform): the name of the cache folder."""
    h = hashlib.sha1()
    h.update(f"{transform or transform_fingerprint()}|{size}|".encode())
    for p in paths:
        h.update(str(p).encode() + b"\n")
    return h.hexdigest()[:16]


def _decode_one(path: str, size: int) -> np.ndarray:
    return read_gray_resized(path, size)


def _decode_chunk(task: tuple[np.ndarray, list[str], int]) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Worker: decode a chunk; returns (indices, images, {index: error})."""
    indices, paths, size = task
    out = np.zeros((len(indices), size, size), dtype=np.uint8)
    errors: dict[int, str] = {}
    for k, (i, p) in enumerate(zip(indices, paths)):
        try:
            out[k] = _decode_one(p, size)
        except Exception as exc:  # any failure -> listed as unreadable, the build goes on
            errors[int(i)] = str(exc) or type(exc).__name__
    return indices, out, errors


def _stamps(paths: Sequence[str]) -> np.ndarray:
    out = np.full((len(paths), 2), -1, dtype=np.int64)
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
            out[i] = (st.st_size, st.st_mtime_ns)
        except OSError:
            pass
    return out


def _save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.stem + ".tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


class _State:
    """On-disk state of one cache folder (arrays + unreadable list), saved atomically."""

    def __init__(self, folder: Path, paths: list[str], size: int, key: str, transform: str) -> None:
        self.folder, self.paths, self.size, self.key, self.transform = folder, paths, size, key, transform
        n = len(paths)
        f = {name: folder / name for name in ("images.u8", "index.json", "done.npy", "ok.npy",
                                               "stamps.npy", "report.json")}
        self.files = f
        fresh = True
        try:
            if f["index.json"].is_file() and f["images.u8"].is_file() and f["done.npy"].is_file():
                index = json.loads(f["index.json"].read_text())
                if (index.get("n") == n and index.get("size") == size
                        and f["images.u8"].stat().st_size == max(n, 1) * size * size):
                    self.done = np.load(f["done.npy"])
                    self.ok = np.load(f["ok.npy"])
                    self.stamps = np.load(f["stamps.npy"])
                    report = (json.loads(f["report.json"].read_text())
                              if f["report.json"].is_file() else {})
                    self.errors = {int(e["index"]): e["error"] for e in report.get("unreadable", [])}
                    fresh = not (len(self.done) == len(self.ok) == len(self.stamps) == n)
        except (ValueError, OSError, KeyError, TypeError):  # damaged state: start again
            fresh = True
        if fresh:
            folder.mkdir(parents=True, exist_ok=True)
            f["done.npy"].unlink(missing_ok=True)  # never trust an old mask over new pixels
            np.memmap(f["images.u8"], dtype=np.uint8, mode="w+", shape=(max(n, 1), size, size)).flush()
            self.done = np.zeros(n, dtype=bool)
            self.ok = np.zeros(n, dtype=bool)
            self.stamps = np.full((n, 2), -1, dtype=np.int64)
            self.errors = {}
            _write_json(f["index.json"], {"size": size, "n": n, "key": key, "transform": transform,
                                          "paths": paths})
        self.images = np.memmap(f["images.u8"], dtype=np.uint8, mode="r+", shape=(max(n, 1), size, size))

    def save(self, complete: bool, extra: dict[str, Any] | None = None) -> None:
        """Flush the images first, then the masks: the done-mask never claims unwritten data."""
        self.images.flush()
        _save_npy(self.files["ok.npy"], self.ok)
        _save_npy(self.files["stamps.npy"], self.stamps)
        _save_npy(self.files["done.npy"], self.done)
        unreadable = [{"index": i, "path": self.paths[i], "error": e} for i, e in sorted(self.errors.items())]
        report = {"count": len(unreadable), "unreadable": unreadable, "n": len(self.paths),
                  "ok": int(self.ok.sum()), "size": self.size, "key": self.key,
                  "transform": self.transform, "complete": complete}
        report.update(extra or {})
        _write_json(self.files["report.json"], report)


def build_cache(paths: Sequence[str], size: int, cache_dir: str | Path,
                desc: str = "caching", *, workers: int = DEFAULT_WORKERS,
                chunk_size: int = DEFAULT_CHUNK, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
                check_stale: bool = True, progress: bool = True) -> ImageCache:
    """Decode ``paths`` to ``size`` px once (or reuse / resume the cache built before).

    ``workers`` processes decode ``chunk_size`` files per task (``workers <= 1``: in this
    process).  With ``check_stale`` every source file's size and modification time are
    compared with those at decode time and changed files are decoded again.  Unreadable files
    are listed in ``report.json`` and have ``ok = False``.
    """
    paths = [str(p) for p in paths]
    n = len(paths)
    transform = transform_fingerprint()
    key = cache_key(paths, size, transform)
    folder = Path(cache_dir) / f"{size}px-{key}"
    state = _State(folder, paths, size, key, transform)

    current = _stamps(paths) if (check_stale or not state.done.all()) else state.stamps
    if check_stale:
        stale = state.done & (current != state.stamps).any(axis=1)
        state.done[stale] = False
    todo = np.flatnonzero(~state.done)
    start = time.perf_counter()
    if len(todo):
        chunks = [(todo[i:i + chunk_size], [paths[j] for j in todo[i:i + chunk_size]], size)
                  for i in range(0, len(todo), chunk_size)]
        bar = tqdm(total=len(todo), desc=desc, leave=False, disable=not progress)

        def store(result: tuple[np.ndarray, np.ndarray, dict[int, str]]) -> None:
            indices, images, errors = result
            state.images[indices] = images
            for i in indices:
                state.errors.pop(int(i), None)
            state.errors.update(errors)
            state.ok[indices] = True
            state.ok[list(errors)] = False
            state.stamps[indices] = current[indices]
            state.done[indices] = True
            bar.update(len(indices))

        try:
            if workers <= 1 or len(chunks) == 1:
                for k, chunk in enumerate(chunks, 1):
                    store(_decode_chunk(chunk))
                    if k % checkpoint_every == 0:
                        state.save(complete=False)
            else:
                with mp.get_context().Pool(min(workers, len(chunks))) as pool:
                    for k, result in enumerate(pool.imap_unordered(_decode_chunk, chunks), 1):
                        store(result)
                        if k % checkpoint_every == 0:
                            state.save(complete=False)
        finally:
            bar.close()
            state.save(complete=bool(state.done.all()))
    seconds = time.perf_counter() - start
    stats = {"decoded": int(len(todo)), "reused": int(n - len(todo)),
             "unreadable": int((~state.ok).sum()), "seconds": round(seconds, 3),
             "images_per_s": round(len(todo) / seconds, 1) if len(todo) and seconds > 0 else None}
    state.save(complete=True, extra={"last_build": stats})
    images = (np.memmap(state.files["images.u8"], dtype=np.uint8, mode="r", shape=(n, size, size))
              if n else np.zeros((0, size, size), dtype=np.uint8))
    return ImageCache(images, state.ok.copy(), paths, folder, stats)
