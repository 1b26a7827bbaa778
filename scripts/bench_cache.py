"""Benchmark the preprocessing cache against decoding the source images every epoch.

Reads a labelled folder of real images (``--samples DIR`` with a ``labels.csv``, or
``$XRAY_REAL_SAMPLES`` / ``real-samples`` in ``$XRAY_SHARED_DIR``), builds the cache (cold, then
reused), and times epochs of a PyTorch ``DataLoader`` (median of ``--epochs``):

* **loading** -- what the cache replaces: each item is the ``size`` x ``size`` uint8 image,
  either decoded from its file and resized (``decode``) or sliced from the memory-mapped
  cache (``cache``).  ``speedup`` = cache images/s / decode images/s; the check is on this.
* **training pipeline** -- the project's own dataset (:class:`xray_utils.data.loaders.CachedImageDataset`,
  evaluation mode, which adds the model input transform per item) against the same dataset
  decoding the file instead; ``pipeline_speedup`` shows how much of an epoch the transform
  then takes.

Prints a table and writes JSON with ``--out``; exits with status 1 when ``speedup`` is below
``--min-ratio`` (20 by default).

    .venv/bin/python scripts/bench_cache.py --size 224 --out /tmp/bench_cache.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from xray_utils.config.paths import labelled_folder_dir
from xray_utils.data.cache import build_cache
from xray_utils.data.imageio import read_gray, resize_gray
from xray_utils.data.loaders import CachedImageDataset

REPO = Path(__file__).resolve().parents[1]


class DecodingDataset(Dataset):
    """Loading without a cache: decode and resize the source file on every access."""

    def __init__(self, paths: list[str], size: int) -> None:
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(resize_gray(read_gray(self.paths[i]), self.size))


class CachedDataset(Dataset):
    """Loading with the cache: a slice of its memory map."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.images[i]))


class _LazyImages:
    """Array-like that decodes on indexing: turns the project's dataset into a no-cache one."""

    def __init__(self, paths: list[str], size: int) -> None:
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return resize_gray(read_gray(self.paths[i]), self.size)


def epoch_seconds(dataset: Dataset, batch_size: int, workers: int) -> float:
    """Wall time of one shuffled pass over ``dataset``."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)
    start = time.perf_counter()
    n = 0
    for batch in loader:
        n += len(batch["features"] if isinstance(batch, dict) else batch)
    assert n == len(dataset)
    return time.perf_counter() - start


def median_rate(dataset: Dataset, epochs: int, batch_size: int, workers: int) -> tuple[float, float]:
    """(median epoch seconds, images per second)."""
    seconds = statistics.median(epoch_seconds(dataset, batch_size, workers) for _ in range(epochs))
    return seconds, len(dataset) / seconds


def default_samples() -> Path:
    """The package's real-images folder (``$XRAY_REAL_SAMPLES``, ...), else the working folder."""
    return labelled_folder_dir() or Path(".")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=Path, default=default_samples(), help="folder with labels.csv")
    ap.add_argument("--size", type=int, default=224, help="image size (the paper's 224 by default)")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per loader (median reported)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--loader-workers", type=int, default=0, help="DataLoader workers (both loaders)")
    ap.add_argument("--cache-workers", type=int, default=2, help="processes building the cache")
    ap.add_argument("--cache-dir", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images")
    ap.add_argument("--min-ratio", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    labels = args.samples / "labels.csv"
    if not labels.is_file():
        print(f"no {labels}: pass --samples DIR (a folder with labels.csv) or set XRAY_REAL_SAMPLES",
              file=sys.stderr)
        return 2
    files = pd.read_csv(labels, dtype=str, keep_default_na=False)["file"].tolist()[: args.limit]
    paths = [str(args.samples / f) for f in files]
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or Path(tmp)
        t0 = time.perf_counter()
        cache = build_cache(paths, args.size, cache_dir, desc="building cache",
                            workers=args.cache_workers)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        cache = build_cache(paths, args.size, cache_dir, workers=args.cache_workers, progress=False)
        reuse_s = time.perf_counter() - t0
        ok = [p for p, good in zip(paths, cache.ok) if good]
        cached_images = np.asarray(cache.images)[cache.ok]
        targets = np.zeros(len(ok), dtype=np.int64)
        runs = {
            "decode": DecodingDataset(ok, args.size),
            "cache": CachedDataset(cached_images),
            "pipeline_decode": CachedImageDataset(_LazyImages(ok, args.size), targets),
            "pipeline_cache": CachedImageDataset(cached_images, targets),
        }
        rates = {name: median_rate(ds, args.epochs, args.batch_size, args.loader_workers)
                 for name, ds in runs.items()}

    n = len(ok)
    result = {
        "images": n, "unreadable": len(paths) - n, "size": args.size,
        "build_seconds": round(build_s, 2), "build_images_per_s": round(len(paths) / build_s, 1),
        "cache_workers": args.cache_workers, "reuse_seconds": round(reuse_s, 3),
        "loader_workers": args.loader_workers, "batch_size": args.batch_size, "epochs": args.epochs,
    }
    for name, (seconds, rate) in rates.items():
        result[f"{name}_epoch_seconds"] = round(seconds, 4)
        result[f"{name}_images_per_s"] = round(rate, 1)
    result["speedup"] = round(rates["cache"][1] / rates["decode"][1], 1)
    result["pipeline_speedup"] = round(rates["pipeline_cache"][1] / rates["pipeline_decode"][1], 1)
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    if result["speedup"] < args.min_ratio:
        print(f"cached loading only {result['speedup']}x faster than decoding (< {args.min_ratio}x)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
