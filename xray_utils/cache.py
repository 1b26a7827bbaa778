"""Preprocessing cache: images decoded once into a uint8 memory-mapped array at one size.

``build_cache(paths, size, cache_dir)`` returns an :class:`ImageCache` whose ``images[i]`` is
the ``size`` x ``size`` 8-bit grayscale version of ``paths[i]``.  The cache is keyed by a hash
of (file list, size, transform version): a stale cache is rebuilt, a good one reused.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from .imageio import ImageReadError, read_gray, resize_gray

TRANSFORM_VERSION = "gray8-resize-bilinear-v1"


@dataclass
class ImageCache:
    """A built cache: ``images`` (N, size, size) uint8 memmap, ``ok`` (N,) bool, ``paths``."""

    images: np.ndarray
    ok: np.ndarray
    paths: list[str]
    folder: Path

    def __len__(self) -> int:
        return len(self.paths)


def cache_key(paths: Sequence[str], size: int) -> str:
    h = hashlib.sha1()
    h.update(f"{TRANSFORM_VERSION}|{size}|".encode())
    for p in paths:
        h.update(str(p).encode() + b"\n")
    return h.hexdigest()[:16]


def build_cache(paths: Sequence[str], size: int, cache_dir: str | Path,
                desc: str = "caching") -> ImageCache:
    """Decode ``paths`` to ``size`` px once (or reuse the cache built before)."""
    paths = [str(p) for p in paths]
    folder = Path(cache_dir) / f"{size}px-{cache_key(paths, size)}"
    folder.mkdir(parents=True, exist_ok=True)
    data, done, index = folder / "images.u8", folder / "ok.npy", folder / "index.json"
    n = len(paths)
    if done.is_file() and index.is_file():
        ok = np.load(done)
        images = np.memmap(data, dtype=np.uint8, mode="r", shape=(n, size, size))
        return ImageCache(images, ok, paths, folder)
    images = np.memmap(data, dtype=np.uint8, mode="w+", shape=(max(n, 1), size, size))[:n]
    ok = np.zeros(n, dtype=bool)
    errors = []
    for i, p in enumerate(tqdm(paths, desc=desc, leave=False)):
        try:
            images[i] = resize_gray(read_gray(p), size)
            ok[i] = True
        except ImageReadError as exc:
            errors.append(str(exc))
    images.flush()
    index.write_text(json.dumps({"size": size, "paths": paths, "errors": errors}))
    np.save(done, ok)
    return ImageCache(np.memmap(data, dtype=np.uint8, mode="r", shape=(n, size, size)), ok, paths, folder)
