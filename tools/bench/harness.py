"""``python -m xray_utils bench``: the project's fast paths measured against their baselines.

::

    python -m xray_utils bench [--quick | --tiny] [--json OUT] [--checkpoints DIR] [--no-compile]

Every figure is measured in the same run, on the machine at hand, beside the baseline it is
meant to beat, and reported with the ratio of the two: absolute times move with the load of a
shared machine, ratios of interleaved measurements much less.

=============  ==========================================================================
section        figure (value vs baseline)
=============  ==========================================================================
``machine``    CPU count, ``torch.get_num_threads()``, device; forward pass with one
               thread vs all cores, and the setting chosen for the rest of the bench
``data``       reading the preprocessing cache (raw, through the training loader, batched)
               vs decoding the source files (PNG / JPEG / DICOM -> 8-bit gray at size), in
               images/s on one core; goal: cache >= 20x decode; building the cache (in its
               worker processes) vs decoding on one core, and the time a second build takes
``training``   images/s of the real loader (``data.make_loaders``) + a training step vs the
               same step on a batch already in memory, at the demo and the full size, and
               the time spent fetching a batch vs the step; goal: the loader costs <= 10 %
``training_   ``train_task`` (Catalyst's runner, the project's callbacks, checkpoints) vs a
path``         bare ``for x, y in loader`` loop: same model, seed and cached batches, a fixed
               number of steps at 40 and 64 px, alternating; same final weights checked;
               goal: >= 0.90 of the bare loop's images/s
``inference``  ``Diagnoser.diagnose()`` per-image latency (p50, p95) for a chest film vs the
               sum of the bare forward passes of the models it ran (batch 1 and 16 files);
               goal <= 1.5x.  Grad-CAM of all 14 findings (``gradcam.all_class_cams``) vs
               one forward pass and vs backward-based Grad-CAM (``gradcam.GradCAM``)
``gpu``        DenseNet-121 training images/s at 224 px: fp32 vs bf16 autocast vs
               channels_last + bf16 vs ``torch.compile`` (skipped without a CUDA GPU)
``notebooks``  wall time of each notebook of the last demo run, read from the executed
               notebooks (``runs/demo/notebooks``); the bench never reruns them
=============  ==========================================================================

``--gpu`` runs the GPU check alone (``make gpu-check``, :func:`run_gpu_check`); without a GPU it
prints one sentence and exits 0.

``--quick`` measures few images and steps (about a minute on 2 CPU cores); ``--tiny`` is a
smoke test of the bench itself whose numbers mean nothing.

A *figure* in the JSON is ``{"label", "value", "baseline", "ratio", "unit", "baseline_label"}``
with ``ratio = value / baseline``, plus ``"goal"`` and ``"meets_goal"`` where there is a goal.

Inputs: real films from a labelled folder of real images (set ``XRAY_REAL_SAMPLES``; see
:func:`xray_utils.config.paths.labelled_folder_dir`), some of them re-encoded as PNG, and the two
DICOM films of ``pydicom-data`` (:data:`xray_utils.sources.demo.SAMPLE_DICOM_FILMS`); generated
images when the real ones are absent.  Checkpoints:
``--checkpoints`` or the demo run's; without them untrained DenseNet-121s are written to a
temporary folder (timings hold, predictions do not; the output says so).  Everything the bench
writes besides the JSON lives in a temporary folder that is removed at the end.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from xray_utils.config import paper
from xray_utils.config.jsonable import to_jsonable
from xray_utils.config.paths import LABELLED_FOLDER_ENV, REPO_ROOT, labelled_folder_dir, project_paths

PROG = "python -m xray_utils bench"
DESCRIPTION = ("Measure the fast paths of the project (preprocessing cache, training loader, "
               "diagnose(), Grad-CAM, GPU settings) against their baselines, on this machine.")

#: Goals of the figures (the README's performance table).
GOAL_CACHE_SPEEDUP = 20.0
GOAL_LOADER_OVERHEAD = 0.10
GOAL_DIAGNOSE_RATIO = 1.5
#: The project's training path against a bare PyTorch loop (issue 23).
GOAL_TRAINING_PATH = 0.90

#: The task whose model the training benchmark trains (the step costs the same for all three).
TRAIN_TASK = "xray_or_not"


# --------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchConfig:
    """How much to measure.  The presets are :data:`PRESETS`; tests use ``tiny``."""

    name: str
    #: Real JPEG files decoded in the data benchmark (they also feed the training loader).
    jpeg_files: int
    #: Further real films re-encoded as 8-bit PNG.
    png_files: int
    #: Include the two DICOM films of pydicom-data.
    dicom: bool
    #: Read the cache for at least this many seconds per measurement.
    cache_seconds: float
    #: Image sizes of the data and training benchmarks (demo size, full size).
    sizes: tuple[int, ...]
    #: Training batch size per image size.
    train_batch: dict[int, int]
    #: Timed training steps per path (after one warm-up step).
    train_steps: int
    #: Forward passes per thread setting.
    thread_repeats: int
    #: Image size and batch of the thread comparison.
    thread_size: int
    thread_batch: int
    #: Stop repeating the thread comparison after this many seconds.
    thread_budget_s: float
    #: Repeats of ``diagnose([film])`` (batch 1).
    infer_repeats: int
    #: Files in the batched ``diagnose`` call, and its repeats.
    batch_files: int
    batch_repeats: int
    #: Repeats of the Grad-CAM measurements.
    cam_repeats: int
    #: Image size of untrained checkpoints (when no trained ones exist).
    untrained_size: int
    #: GPU training benchmark: batch, timed steps, warm-up steps.
    gpu_batch: int
    gpu_steps: int
    gpu_warmup: int
    #: The training path vs a bare loop: image sizes, batch, steps per run, runs per path.
    path_sizes: tuple[int, ...] = (40, 64)
    path_batch: int = 32
    path_steps: int = 16
    path_repeats: int = 2


PRESETS: dict[str, BenchConfig] = {
    "full": BenchConfig(
        name="full", jpeg_files=300, png_files=60, dicom=True, cache_seconds=2.0,
        sizes=(64, paper.IMAGE_SIZE), train_batch={64: 32, paper.IMAGE_SIZE: 32},
        train_steps=6, thread_repeats=8, thread_size=64, thread_batch=16,
        thread_budget_s=120.0, infer_repeats=20, batch_files=16, batch_repeats=5,
        cam_repeats=5, untrained_size=64, gpu_batch=64, gpu_steps=20, gpu_warmup=3,
        path_steps=30, path_repeats=4),
    "quick": BenchConfig(
        name="quick", jpeg_files=36, png_files=10, dicom=True, cache_seconds=0.5,
        sizes=(64, paper.IMAGE_SIZE), train_batch={64: 16, paper.IMAGE_SIZE: 4},
        train_steps=3, thread_repeats=3, thread_size=64, thread_batch=8,
        thread_budget_s=15.0, infer_repeats=6, batch_files=16, batch_repeats=2,
        cam_repeats=3, untrained_size=64, gpu_batch=32, gpu_steps=5, gpu_warmup=2),
    # a smoke test of the bench itself: every code path, numbers without meaning
    "tiny": BenchConfig(
        name="tiny", jpeg_files=4, png_files=2, dicom=True, cache_seconds=0.05,
        sizes=(32, 48), train_batch={32: 2, 48: 2}, train_steps=1, thread_repeats=1,
        thread_size=32, thread_batch=1, thread_budget_s=5.0, infer_repeats=2, batch_files=3,
        batch_repeats=1, cam_repeats=1, untrained_size=32, gpu_batch=2, gpu_steps=1,
        gpu_warmup=1, path_sizes=(32,), path_batch=2, path_steps=2, path_repeats=2),
}


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def figure(label: str, value: float, baseline: float, unit: str, baseline_label: str,
           goal: tuple[str, float] | None = None, **extra: Any) -> dict[str, Any]:
    """One measured figure beside its baseline: ``ratio = value / baseline``.

    ``goal`` is ``(">=", x)`` or ``("<=", x)`` on the ratio; ``meets_goal`` says whether the
    measurement reached it.
    """
    value, baseline = float(value), float(baseline)
    if not (value > 0 and baseline > 0):
        raise ValueError(f"{label}: value and baseline must be positive, got {value}, {baseline}")
    out: dict[str, Any] = {"label": label, "value": value, "baseline": baseline,
                           "ratio": value / baseline, "unit": unit,
                           "baseline_label": baseline_label}
    if goal is not None:
        op, bound = goal
        out["goal"] = f"ratio {op} {bound:g}"
        out["meets_goal"] = bool(out["ratio"] >= bound if op == ">=" else out["ratio"] <= bound)
    out.update(extra)
    return out


def iter_figures(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every figure in a (nested) results dict, with its dotted location."""
    if isinstance(node, dict):
        if {"value", "baseline", "ratio"} <= set(node):
            yield where, node
            return
        for key, child in node.items():
            yield from iter_figures(child, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from iter_figures(child, f"{where}[{i}]")


def cpu_count() -> int:
    """CPU cores this process may use (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _sync_for(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _timed(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def _pct(times: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(times, dtype=np.float64), q))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    cuda = torch.cuda.is_available()
    return {
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "cpu": _cpu_name(), "cpu_count": cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cuda": torch.version.cuda if cuda else None, "load_average_start": _load(),
    }


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """One file of the benchmark: its format, whether it is an X-ray, and a chest film."""

    path: str
    fmt: str
    is_xray: bool
    chest: bool


def _round_robin(df: pd.DataFrame) -> list[int]:
    """Row order that takes one file from each top-level folder in turn (a varied mix)."""
    groups = [list(g.index) for _, g in df.groupby(df["file"].str.split("/").str[0], sort=True)]
    order: list[int] = []
    while any(groups):
        for g in groups:
            if g:
                order.append(g.pop(0))
    return order


def _dicom_sources() -> list[Source]:
    """The demo's real DICOM films (none when ``pydicom-data`` is absent)."""
    from xray_utils.sources.demo import sample_dicom_films

    try:
        films = sample_dicom_films()
    except Exception:  # pydicom(-data) absent and no download possible
        return []
    return [Source(str(path), "dicom", True, key == "chest_pa") for key, path in films.items()
            if path.is_file()]


def _synthetic_film(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """A smooth X-ray-like gray picture with noise (only used when no real films exist)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 120 + 80 * np.sin(6 * xx + rng.uniform(0, 3)) * np.cos(4 * yy) - 60 * (xx - 0.5) ** 2
    img += rng.normal(0, 12, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


def collect_sources(cfg: BenchConfig, folder: Path) -> tuple[list[Source], str]:
    """The files of the data and training benchmarks, and a sentence saying where they came from.

    Real samples: ``cfg.jpeg_files`` JPEGs taken in turn from each sub-folder, then
    ``cfg.png_files`` further X-rays re-encoded as 8-bit grayscale PNG (as ChestX-ray14 ships
    its films); plus the DICOM films.  Without real samples the JPEG and PNG files are
    generated.
    """
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    samples = labelled_folder_dir()
    sources: list[Source] = []
    if samples is not None:
        df = pd.read_csv(samples / "labels.csv", dtype=str, keep_default_na=False)
        df = df[df["file"].str.lower().str.endswith((".jpg", ".jpeg"))].reset_index(drop=True)
        order = _round_robin(df)
        used = 0
        for i in order:
            if used >= cfg.jpeg_files:
                break
            row = df.loc[i]
            sources.append(Source(str(samples / row["file"]), "jpeg", row["is_xray"] == "1",
                                  row["xray_type"] == "chest"))
            used += 1
        png_rows = [i for i in order[used:] if df.loc[i, "is_xray"] == "1"][:cfg.png_files]
        for k, i in enumerate(png_rows):
            row = df.loc[i]
            out = folder / f"film_{k:03d}.png"
            Image.open(samples / row["file"]).convert("L").save(out)
            sources.append(Source(str(out), "png", True, row["xray_type"] == "chest"))
        origin = (f"{used} JPEG + {len(png_rows)} PNG (re-encoded) real images from {samples}")
    else:
        rng = np.random.default_rng(0)
        for k in range(cfg.jpeg_files + cfg.png_files):
            fmt = "jpeg" if k < cfg.jpeg_files else "png"
            out = folder / f"generated_{k:03d}.{'jpg' if fmt == 'jpeg' else 'png'}"
            Image.fromarray(_synthetic_film(rng)).save(out)
            sources.append(Source(str(out), fmt, k % 2 == 0, k % 4 == 0))
        origin = ("generated 512 px JPEG/PNG images (no labelled folder of real images found: "
                  f"set {LABELLED_FOLDER_ENV})")
    if cfg.dicom:
        dicom = _dicom_sources()
        sources.extend(dicom)
        origin += f" + {len(dicom)} DICOM film(s) of pydicom-data"
    return sources, origin


def write_manifest(sources: Sequence[Source], path: Path) -> Path:
    """A Module I task manifest of ``sources``, all in the training split."""
    classes = paper.XRAY_OR_NOT_CLASSES
    rows = [{"path": s.path, "label": classes[0] if s.is_xray else classes[1],
             "patient_id": f"bench{i}", "split": "train", "source": s.fmt, "boxes": "",
             "width": 0, "height": 0} for i, s in enumerate(sources)]
    if len({r["label"] for r in rows}) < 2 and rows:  # both classes, so the loss is ordinary
        rows[-1]["label"] = classes[1] if rows[-1]["label"] == classes[0] else classes[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


# --------------------------------------------------------------------------------------------
# CPU threads
# --------------------------------------------------------------------------------------------
def bench_threads(cfg: BenchConfig) -> dict[str, Any]:
    """Forward pass of DenseNet-121 with one thread vs all cores (batch 1 and ``thread_batch``).

    The settings alternate within each repeat (noise on a shared machine hits both); after a
    switch one untimed pass sets up the thread pool.  Repeats stop early once the section has
    used ``thread_budget_s`` (an oversubscribed machine can make a multi-threaded pass take
    seconds).  The chosen setting is the faster one at ``thread_batch`` (training, batches).
    """
    from xray_utils.models import build_model

    cores = cpu_count()
    before = torch.get_num_threads()
    out: dict[str, Any] = {"cpu_count": cores, "default_threads": before,
                           "image_size": cfg.thread_size}
    if cores < 2:
        out["chosen_threads"] = before
        out["note"] = "one core only: nothing to compare"
        return out
    model = build_model("chest").eval()
    batches = sorted({1, cfg.thread_batch})
    inputs = {b: torch.randn(b, 1, cfg.thread_size, cfg.thread_size) for b in batches}
    times = {(b, n): [] for b in batches for n in (1, cores)}
    started = time.perf_counter()
    repeats = 0
    try:
        with torch.inference_mode():
            while repeats < cfg.thread_repeats:
                for (b, n), ts in times.items():
                    torch.set_num_threads(n)
                    model(inputs[b])  # untimed: the first pass after a switch sets up the pool
                    ts.append(_timed(lambda: model(inputs[b]), lambda: None))
                repeats += 1
                if time.perf_counter() - started > cfg.thread_budget_s:
                    break
    finally:
        torch.set_num_threads(before)
    out["repeats"] = repeats
    if repeats < cfg.thread_repeats:
        out["note"] = (f"stopped after {repeats} of {cfg.thread_repeats} repeats: the time "
                       f"budget of {cfg.thread_budget_s:g} s was used up")
    for b in batches:
        t1, tall = _pct(times[b, 1], 50), _pct(times[b, cores], 50)
        out[f"batch_{b}"] = figure(
            f"forward, batch {b}: 1 thread vs {cores}", t1, tall, "s",
            f"{cores} threads (all cores)", one_thread_s=t1, all_cores_s=tall)
    decisive = out[f"batch_{batches[-1]}"]["ratio"]
    out["chosen_threads"] = 1 if decisive < 1.0 else cores
    return out


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def _read_cache_raw(images: np.ndarray, seconds: float) -> float:
    """images/s of reading cache entries one at a time (the baseline the batched read beats)."""
    n, count = len(images), 0
    t0 = time.perf_counter()
    while True:
        for i in range(n):
            np.array(images[i], dtype=np.uint8)
        count += n
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return count / elapsed


def _read_loader(loader: Any, seconds: float) -> float:
    """images/s of iterating a DataLoader (whole epochs) for at least ``seconds``."""
    count = 0
    t0 = time.perf_counter()
    while True:
        for batch in loader:
            count += len(batch["features"])
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return count / elapsed


def _read_batched(images: np.ndarray, batch: int, seconds: float) -> float:
    """images/s of reading whole shuffled batches from the cache and standardising each batch
    with one :func:`~xray_utils.models.to_model_input` call (no augmentation)."""
    from xray_utils.models import to_model_input

    n, count = len(images), 0
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    while True:
        order = rng.permutation(n)
        for s in range(0, n, batch):
            idx = np.sort(order[s:s + batch])
            to_model_input(torch.from_numpy(np.asarray(images[idx])))
            count += len(idx)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return count / elapsed


def _standardise_rates(images: np.ndarray, batch: int, seconds: float) -> tuple[float, float]:
    """images/s of :func:`~xray_utils.models.to_model_input` one image per call (as the
    dataset calls it) and on whole batches (as ``diagnose()`` and evaluation call it)."""
    from xray_utils.models import to_model_input

    block = torch.from_numpy(np.array(images[:batch], dtype=np.uint8))

    def rate(fn: Callable[[], None]) -> float:
        count, t0 = 0, time.perf_counter()
        while True:
            fn()
            count += len(block)
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds / 2:
                return count / elapsed

    return (rate(lambda: [to_model_input(img) for img in block]),
            rate(lambda: to_model_input(block)))


def bench_data(cfg: BenchConfig, sources: Sequence[Source], manifest: Path, cache_dir: Path,
               progress: bool = True) -> dict[str, Any]:
    """Decoding the sources vs reading the preprocessing cache, per image size, on one core."""
    from xray_utils.data.cache import DEFAULT_WORKERS, build_cache
    from xray_utils.data.imageio import ImageReadError, read_gray, resize_gray
    from xray_utils.data.loaders import CachedImageDataset, make_loaders, pass_batch

    fmts = sorted({s.fmt for s in sources})
    read_s = {f: 0.0 for f in fmts}
    resize_s = {f: {size: 0.0 for size in cfg.sizes} for f in fmts}
    count = {f: 0 for f in fmts}
    pixels = {f: 0.0 for f in fmts}
    unreadable = []
    for s in tqdm(sources, desc="decode sources", leave=False, disable=not progress):
        t0 = time.perf_counter()
        try:
            gray = read_gray(s.path)
        except ImageReadError as exc:
            unreadable.append(str(exc))
            continue
        read_s[s.fmt] += time.perf_counter() - t0
        for size in cfg.sizes:
            t0 = time.perf_counter()
            resize_gray(gray, size)
            resize_s[s.fmt][size] += time.perf_counter() - t0
        count[s.fmt] += 1
        pixels[s.fmt] += gray.size / 1e6
    fmts = [f for f in fmts if count[f]]
    out: dict[str, Any] = {"files": {f: count[f] for f in fmts}, "unreadable": unreadable,
                           "mean_megapixels": {f: round(pixels[f] / count[f], 3) for f in fmts}}
    for size in cfg.sizes:
        rates = {f: count[f] / (read_s[f] + resize_s[f][size]) for f in fmts}
        n_all = sum(count[f] for f in fmts)
        mix = n_all / sum(read_s[f] + resize_s[f][size] for f in fmts)
        fastest = max(rates, key=rates.get)
        base, base_label = rates[fastest], f"decode {fastest.upper()} (fastest source format)"
        batch = cfg.train_batch.get(size, max(cfg.train_batch.values()))
        built = _build_rates(build_cache, manifest, size, cache_dir, progress)
        loaders = make_loaders(manifest, TRAIN_TASK, size, batch, cache_dir, splits=("train",))
        train_loader = loaders["train"]
        images = train_loader.dataset.images
        eval_loader = torch.utils.data.DataLoader(
            CachedImageDataset(images, train_loader.dataset.targets, train=False),
            batch_size=batch, collate_fn=pass_batch)
        raw = _read_cache_raw(images, cfg.cache_seconds)
        loader_train = _read_loader(train_loader, cfg.cache_seconds)
        loader_eval = _read_loader(eval_loader, cfg.cache_seconds)
        batched = _read_batched(images, batch, cfg.cache_seconds)
        per_call, whole = _standardise_rates(images, batch, cfg.cache_seconds)
        goal = (">=", GOAL_CACHE_SPEEDUP)
        out[f"{size}px"] = {
            "decode_images_per_s": {f: round(r, 2) for f, r in rates.items()},
            "decode_mix_images_per_s": round(mix, 2), "batch_size": batch,
            "cache_raw": figure(f"{size}px cache read, raw (per image)", raw, base, "images/s",
                                base_label, goal),
            "cache_loader_train": figure(
                f"{size}px cache via training loader (augmented)", loader_train, base,
                "images/s", base_label, goal),
            "cache_loader_eval": figure(f"{size}px cache via loader (no augmentation)",
                                        loader_eval, base, "images/s", base_label, goal),
            "cache_batched": figure(f"{size}px cache read + to_model_input, whole batches",
                                    batched, base, "images/s", base_label, goal),
            "to_model_input_batched": figure(
                f"{size}px to_model_input on batches of {batch} vs one image per call", whole,
                per_call, "images/s", "to_model_input, one image per call"),
            "loader_vs_raw": figure(f"{size}px training loader vs raw cache read", loader_train,
                                    raw, "images/s", "raw cache read (per image)"),
            "cache_vs_decode_mix": figure(f"{size}px cache read, raw vs decode of the mix",
                                          raw, mix, "images/s", "decode, all formats"),
            "cache_build": figure(
                f"{size}px cache build, {DEFAULT_WORKERS} processes, vs decode on one core",
                built["images_per_s"], mix, "images/s", "decode, all formats",
                images=built["images"], reuse_seconds=built["reuse_seconds"]),
        }
    return out


def _build_rates(build_cache: Callable[..., Any], manifest: Path, size: int, cache_dir: Path,
                 progress: bool) -> dict[str, Any]:
    """Build the cache of the manifest's training images (the one the training loader then
    reads), cold, then again: images/s of the cold build and seconds of the reuse."""
    paths = pd.read_csv(manifest, dtype=str).query("split == 'train'")["path"].tolist()
    t0 = time.perf_counter()
    build_cache(paths, size, cache_dir, desc=f"building the {size}px cache", progress=progress)
    cold = max(time.perf_counter() - t0, 1e-9)
    t0 = time.perf_counter()
    build_cache(paths, size, cache_dir, progress=False)
    return {"images": len(paths), "images_per_s": len(paths) / cold,
            "reuse_seconds": round(time.perf_counter() - t0, 4)}


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def _amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _make_step(model: torch.nn.Module, device: torch.device, amp: torch.dtype | None,
               channels_last: bool) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One optimisation step (Adam, cross-entropy) as the training uses it."""
    optimizer = torch.optim.Adam(model.parameters(), **_adam_kwargs())
    criterion = torch.nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            loss = criterion(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def _adam_kwargs() -> dict[str, Any]:
    hp = paper.HYPERPARAMETERS[TRAIN_TASK]
    return {"lr": hp["lr"], "betas": tuple(hp["betas"]), "weight_decay": hp["weight_decay"]}


def _cycle(loader: Any) -> Iterator[dict[str, torch.Tensor]]:
    while True:
        yield from loader


def bench_training(cfg: BenchConfig, manifest: Path, cache_dir: Path, device: torch.device,
                   progress: bool = True) -> dict[str, Any]:
    """Real loader + training step vs the bare step on a batch already on the device.

    The loader is :func:`xray_utils.data.loaders.make_loaders` over the preprocessing cache (as the
    training builds it: workers 0 on the CPU; pinned memory and up to 8 workers on a GPU).
    Loader steps and bare steps alternate (ABBA order), after one warm-up of each, so
    drifting load hits both.  The step uses channels_last (and on a GPU bf16 autocast), as the
    training does.
    """
    from xray_utils.data.loaders import make_loaders
    from xray_utils.models import build_model

    on_gpu = device.type == "cuda"
    workers = min(8, cpu_count()) if on_gpu else 0
    amp = _amp_dtype(device) if on_gpu else None
    sync = _sync_for(device)
    out: dict[str, Any] = {"task": TRAIN_TASK, "device": str(device), "num_workers": workers,
                           "amp": str(amp).replace("torch.", "") if amp else None,
                           "channels_last": True, "threads": torch.get_num_threads()}
    for size in cfg.sizes:
        batch = cfg.train_batch[size]
        loader = make_loaders(manifest, TRAIN_TASK, size, batch, cache_dir, num_workers=workers,
                              splits=("train",), pin_memory=on_gpu)["train"]
        torch.manual_seed(0)
        model = build_model(TRAIN_TASK).to(device).train().to(memory_format=torch.channels_last)
        step = _make_step(model, device, amp, channels_last=True)
        batches = _cycle(loader)
        first = next(batches)
        x_mem = first["features"].to(device)
        y_mem = first["targets"].to(device)
        fetch_times: list[float] = []

        def loader_step(batches: Any = batches, step: Any = step) -> None:
            t0 = time.perf_counter()
            b = next(batches)
            x = b["features"].to(device, non_blocking=True)
            y = b["targets"].to(device, non_blocking=True)
            fetch_times.append(time.perf_counter() - t0)
            step(x, y)

        step(x_mem, y_mem)  # warm-up (allocator, kernel choice)
        loader_step()
        fetch_times.clear()
        t_loader, t_bare = [], []
        for i in tqdm(range(cfg.train_steps), desc=f"train steps {size}px", leave=False,
                      disable=not progress):
            # alternate which path goes first, so an order effect cancels out
            for path in (("loader", "bare") if i % 2 == 0 else ("bare", "loader")):
                if path == "loader":
                    t_loader.append(_timed(loader_step, sync))
                else:
                    t_bare.append(_timed(lambda step=step: step(x_mem, y_mem), sync))
        # medians: one step disturbed by another process does not decide the figure
        loader_rate, bare_rate = batch / _pct(t_loader, 50), batch / _pct(t_bare, 50)
        out[f"{size}px"] = {
            "batch_size": batch, "steps": cfg.train_steps,
            "loader_vs_bare": figure(
                f"{size}px training: loader + step vs bare step", loader_rate, bare_rate,
                "images/s", "bare step on a batch in memory",
                (">=", 1 / (1 + GOAL_LOADER_OVERHEAD)),
                overhead=bare_rate / loader_rate - 1,
                fetch_share=sum(fetch_times) / sum(t_loader),
                loader_step_s=t_loader, bare_step_s=t_bare),
            # the loader's own cost, measured directly: robust to the step's noise
            "fetch_vs_step": figure(
                f"{size}px training: batch fetch time vs step time", _pct(fetch_times, 50),
                _pct(t_bare, 50), "s", "bare training step", ("<=", GOAL_LOADER_OVERHEAD)),
        }
        del model, step, batches, loader
    return out


# --------------------------------------------------------------------------------------------
# the project's training path vs a bare PyTorch loop
# --------------------------------------------------------------------------------------------
def write_training_manifest(sources: Sequence[Source], path: Path, train_rows: int,
                            val_rows: int) -> Path:
    """A Module I manifest of ``train_rows`` training and ``val_rows`` validation rows, the
    sources repeated in turn (so a fixed number of full batches exists whatever the sources)."""
    classes = paper.XRAY_OR_NOT_CLASSES
    rows = []
    for i in range(train_rows + val_rows):
        s = sources[i % len(sources)]
        rows.append({"path": s.path, "label": classes[i % 2], "patient_id": f"bench{i}",
                     "split": "train" if i < train_rows else "val", "source": s.fmt,
                     "boxes": "", "width": 0, "height": 0})
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _bare_epoch(cfg: dict[str, Any], loaders: Any) -> tuple[float, torch.nn.Module]:
    """One epoch as a bare PyTorch loop, the same pieces as ``train_task`` (model, loss,
    optimiser, scheduler, channels_last, then one pass over the validation loader); seconds."""
    from xray_utils.config.seeding import seed_everything
    from xray_utils.models import build_model
    from xray_utils.train.training import make_criterion, make_optimizer, make_scheduler

    task = cfg["TASK"]
    seed_everything(int(cfg["SEED"]))
    model = build_model(task, pretrained=False).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model.parameters())
    scheduler = make_scheduler(cfg, optimizer, steps_per_epoch=len(loaders["train"]))
    criterion = make_criterion(cfg, task)
    seed = int(cfg["SEED"])
    t0 = time.perf_counter()
    # Catalyst seeds every loader of epoch e with SEED + e (the augmentation draws follow it)
    seed_everything(seed + 1)
    model.train()
    for b in loaders["train"]:
        x = b["features"].contiguous(memory_format=torch.channels_last)
        loss = criterion(model(x), b["targets"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    seed_everything(seed + 1)
    model.eval()
    with torch.no_grad():
        for b in loaders["valid"]:
            criterion(model(b["features"].contiguous(memory_format=torch.channels_last)),
                      b["targets"])
    return time.perf_counter() - t0, model


def bench_training_path(cfg: BenchConfig, sources: Sequence[Source], workdir: Path,
                        progress: bool = True) -> dict[str, Any]:
    """``train_task`` (Catalyst's runner and the project's callbacks) vs a bare loop.

    Both train the same DenseNet-121 (same seed, same initial weights) on the same cached
    batches for ``cfg.path_steps`` steps at each of ``cfg.path_sizes`` (the demo's 40 and 64 px)
    and then pass once over the same validation batches; the project's path also writes its
    checkpoints and history, as a training does after every epoch.  The two alternate (ABBA),
    the figure is images/s of the median run, and the two final models are compared weight by
    weight (same seed, same data: the same training).
    """
    from xray_utils.config.paths import project_paths
    from xray_utils.config.profiles import settings
    from xray_utils.data.loaders import make_loaders
    from xray_utils.models import load_checkpoint
    from xray_utils.train.training import train_task

    out: dict[str, Any] = {"task": TRAIN_TASK, "steps": cfg.path_steps,
                           "threads": torch.get_num_threads()}
    for size in cfg.path_sizes:
        batch = cfg.path_batch
        manifest = write_training_manifest(sources, workdir / f"path_{size}" / "manifest.csv",
                                           cfg.path_steps * batch, batch)
        run_cfg = settings("demo", TRAIN_TASK, EPOCHS=1, IMAGE_SIZE=size, BATCH_SIZE=batch,
                           MAX_TRAIN=None, DEVICE="cpu", SEED=0)
        paths = project_paths("demo", data_dir=workdir / f"path_{size}" / "data",
                              run_dir=workdir / f"path_{size}" / "run")
        loaders = make_loaders(manifest, TRAIN_TASK, size, batch, paths.cache_dir, seed=0,
                               augment=str(run_cfg["AUGMENT"]))  # builds the cache once
        images = len(loaders["train"]) * batch
        t_project: list[float] = []
        t_bare: list[float] = []
        weights: dict[str, Any] = {}
        order = ["project", "bare", "bare", "project"] * max(1, cfg.path_repeats // 2)
        for k, which in enumerate(tqdm(order, desc=f"training path {size}px", leave=False,
                                       disable=not progress)):
            if which == "project":
                run = paths.checkpoint_dir(TRAIN_TASK)
                if run.exists():
                    import shutil

                    shutil.rmtree(run)
                result = train_task(paths, run_cfg, manifest, verbose=False)
                t_project.append(result.seconds)
                weights["project"] = load_checkpoint(result.best_checkpoint)[0].state_dict()
            else:
                loaders = make_loaders(manifest, TRAIN_TASK, size, batch, paths.cache_dir,
                                       seed=0, augment=str(run_cfg["AUGMENT"]))
                seconds, model = _bare_epoch(run_cfg, loaders)
                t_bare.append(seconds)
                weights["bare"] = model.state_dict()
        diff = max(float((weights["project"][k].float() - v.float()).abs().max())
                   for k, v in weights["bare"].items() if v.is_floating_point())
        out[f"{size}px"] = {
            "batch_size": batch, "train_images": images,
            "max_abs_weight_difference": diff,
            "project_vs_bare": figure(
                f"{size}px training: train_task (Catalyst + callbacks) vs bare loop",
                images / _pct(t_project, 50), images / _pct(t_bare, 50), "images/s",
                "bare `for x, y in loader` loop", (">=", GOAL_TRAINING_PATH),
                project_s=t_project, bare_s=t_bare),
        }
    return out


# --------------------------------------------------------------------------------------------
# inference
# --------------------------------------------------------------------------------------------
def write_untrained_checkpoints(folder: Path, image_size: int, seed: int = 0) -> Path:
    """Untrained checkpoints that send every image through all three modules (chest route):
    the compute is that of trained models, the predictions mean nothing."""
    from xray_utils.untrained import write_routed_checkpoints

    return write_routed_checkpoints(folder, "chest", image_size, seed,
                                    note="untrained, for the bench")


def _checkpoints_present(folder: Path) -> bool:
    from xray_utils.config.paths import checkpoint_files

    return all(f.is_file() for task in paper.TASKS for f in checkpoint_files(folder, task))


def _chest_candidates(sources: Sequence[Source]) -> list[str]:
    """Chest films, PNG first (ChestX-ray14's format), then JPEG, then DICOM; else any file."""
    rank = {"png": 0, "jpeg": 1, "dicom": 2}
    chest = sorted((s for s in sources if s.chest), key=lambda s: rank.get(s.fmt, 3))
    return [s.path for s in chest] or [s.path for s in sources]


def bench_inference(cfg: BenchConfig, checkpoints: Path | None, sources: Sequence[Source],
                    workdir: Path, device: torch.device) -> dict[str, Any]:
    """``diagnose()`` latency vs bare forward passes; Grad-CAM fast path vs its baselines."""
    from xray_utils.data.imageio import read_gray, resize_gray
    from xray_utils.diagnose.diagnoser import Diagnoser, default_checkpoints_dir
    from xray_utils.models import to_model_input

    out: dict[str, Any] = {}
    folder = Path(checkpoints) if checkpoints else default_checkpoints_dir()
    if _checkpoints_present(folder):
        out["checkpoints"] = str(folder)
    elif checkpoints:
        raise FileNotFoundError(
            f"{folder} lacks <task>/best.json + best.safetensors for one of {paper.TASKS}; pass "
            "the checkpoints folder of a finished run (<run_dir>/checkpoints)")
    else:
        out["checkpoints"] = "untrained (temporary folder)"
        out["note"] = (f"no trained checkpoints in {folder}: untrained DenseNet-121s at "
                       f"{cfg.untrained_size} px were built in a temporary folder, their heads "
                       "set so every image runs all three modules (timings hold, predictions "
                       "do not). Run `make demo` to measure the demo run's.")
        folder = write_untrained_checkpoints(workdir / "untrained_checkpoints", cfg.untrained_size)
    diagnoser = Diagnoser(folder, device=device, batch_size=max(16, cfg.batch_files))
    sync = _sync_for(diagnoser.device)
    out["device"] = str(diagnoser.device)
    out["threads"] = torch.get_num_threads()
    out["image_sizes"] = {t: diagnoser.image_size(t) for t in paper.TASKS}

    # a chest film that the chain takes as far as it goes (Module III if any candidate reaches it)
    candidates = _chest_candidates(sources)
    film, stage = candidates[0], None
    for path in candidates[:8]:
        d = diagnoser.diagnose([path], heatmaps=False, progress=False)[0]
        if d.ok and (stage is None or d.stage == "chest"):
            film, stage = path, d.stage
        if stage == "chest":
            break
    gray = read_gray(film)
    inputs = {t: to_model_input(resize_gray(gray, diagnoser.image_size(t))).to(diagnoser.device)
              for t in paper.TASKS}
    chain = {"not_xray": paper.TASKS[:1], "type_only": paper.TASKS[:2], "chest": paper.TASKS}
    run_tasks = chain.get(stage or "chest", paper.TASKS)

    def bare(counts: dict[str, int], xs: dict[str, torch.Tensor]) -> None:
        with torch.inference_mode():
            for task, n in counts.items():
                if n:
                    diagnoser.models[task](xs[task][:n])

    one = {t: 1 for t in run_tasks}
    for _ in range(2):  # warm-up
        diagnoser.diagnose([film], heatmaps=True, progress=False)
        bare(one, inputs)
    t_diag, t_cam, t_arr, t_bare, t_read = [], [], [], [], []
    for _ in range(cfg.infer_repeats):  # interleaved: drifting load hits every variant alike
        t_diag.append(_timed(lambda: diagnoser.diagnose([film], heatmaps=False, progress=False),
                             sync))
        t_cam.append(_timed(lambda: diagnoser.diagnose([film], heatmaps=True, progress=False),
                            sync))
        t_arr.append(_timed(lambda: diagnoser.diagnose([gray], heatmaps=False, progress=False),
                            sync))
        t_bare.append(_timed(lambda: bare(one, inputs), sync))
        t_read.append(_timed(lambda: read_gray(film), lambda: None))
    goal = ("<=", GOAL_DIAGNOSE_RATIO)
    base_label = f"sum of {len(run_tasks)} bare forward pass(es)"
    out["film"] = {"file": film, "stage": stage, "models_run": len(run_tasks),
                   "shape": list(gray.shape), "read_s_p50": _pct(t_read, 50)}
    out["batch_1"] = {
        "repeats": cfg.infer_repeats,
        "p50": figure("diagnose(), 1 film, p50", _pct(t_diag, 50), _pct(t_bare, 50), "s",
                      base_label + " (p50)", goal),
        "p95": figure("diagnose(), 1 film, p95", _pct(t_diag, 95), _pct(t_bare, 95), "s",
                      base_label + " (p95)", goal),
        "p50_heatmaps": figure(f"diagnose() + top-{diagnoser.top_k} heatmaps, p50",
                               _pct(t_cam, 50), _pct(t_bare, 50), "s", base_label + " (p50)",
                               goal),
        "p50_array": figure("diagnose(array in memory: no file reading), p50", _pct(t_arr, 50),
                            _pct(t_bare, 50), "s", base_label + " (p50)", goal),
    }

    # a batch of files
    files = [candidates[i % len(candidates)] for i in range(cfg.batch_files)]
    results = diagnoser.diagnose(files, heatmaps=False, progress=False)
    stages = [d.stage for d in results if d.ok]
    counts = {"xray_or_not": len(stages),
              "xray_type": sum(s in ("type_only", "chest") for s in stages),
              "chest": stages.count("chest")}
    grays = [read_gray(f) for f in files]
    batch_inputs = {t: to_model_input(np.stack([resize_gray(g, diagnoser.image_size(t))
                                                for g in grays])).to(diagnoser.device)
                    for t in paper.TASKS}
    bare(counts, batch_inputs)  # warm-up at this batch size
    diagnoser.diagnose(files, heatmaps=False, progress=False)
    n = len(files)
    tb_diag, tb_bare = [], []
    for _ in range(cfg.batch_repeats):
        tb_diag.append(_timed(lambda: diagnoser.diagnose(files, heatmaps=False, progress=False),
                              sync) / n)
        tb_bare.append(_timed(lambda: bare(counts, batch_inputs), sync) / n)
    out[f"batch_{n}"] = {
        "files": n, "images_per_model": counts, "repeats": cfg.batch_repeats,
        "p50": figure(f"diagnose(), {n} files, per image, p50", _pct(tb_diag, 50),
                      _pct(tb_bare, 50), "s", "bare forward passes, per image (p50)", goal),
        "p95": figure(f"diagnose(), {n} files, per image, p95", _pct(tb_diag, 95),
                      _pct(tb_bare, 95), "s", "bare forward passes, per image (p95)", goal),
    }
    out["gradcam"] = _bench_gradcam(cfg, diagnoser.models["chest"], inputs["chest"], sync)
    return out


def _bench_gradcam(cfg: BenchConfig, model: torch.nn.Module, x: torch.Tensor,
                   sync: Callable[[], None]) -> dict[str, Any]:
    """All 14 findings' Grad-CAMs in one pass vs one forward pass vs backward-based Grad-CAM."""
    from xray_utils.explain.gradcam import GradCAM, all_class_cams

    n_cls = len(paper.FINDINGS)
    classes = list(range(n_cls))
    x14 = x.expand(n_cls, -1, -1, -1).contiguous()
    results: dict[str, Any] = {}

    def fast() -> None:
        results["fast"] = all_class_cams(model, x)

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    def backward_loop() -> None:
        with GradCAM(model) as cam:
            results["loop"] = np.stack([cam(x, class_idx=c)[0] for c in classes])

    def backward_batched() -> None:
        with GradCAM(model) as cam:
            results["batched"] = cam(x14, class_idx=classes)

    for fn in (fast, forward):  # warm-up
        fn()
    t: dict[str, list[float]] = {"fast": [], "forward": [], "loop": [], "batched": []}
    for _ in range(cfg.cam_repeats):
        t["fast"].append(_timed(fast, sync))
        t["forward"].append(_timed(forward, sync))
        t["loop"].append(_timed(backward_loop, sync))
        t["batched"].append(_timed(backward_batched, sync))
    med = {k: _pct(v, 50) for k, v in t.items()}
    diff = float(max(np.abs(results["fast"][0] - results["loop"]).max(),
                     np.abs(results["fast"][0] - results["batched"]).max()))
    return {
        "classes": n_cls, "image_size": int(x.shape[-1]), "repeats": cfg.cam_repeats,
        "max_abs_diff_vs_backward": diff,
        "vs_forward": figure(f"all_class_cams ({n_cls} maps) vs 1 forward pass", med["fast"],
                             med["forward"], "s", "one forward pass (inference mode)"),
        "vs_backward_loop": figure(
            f"all_class_cams vs GradCAM, {n_cls} x forward+backward", med["fast"], med["loop"],
            "s", f"GradCAM, one forward+backward per class ({n_cls})",
            speedup=med["loop"] / med["fast"]),
        "vs_backward_batched": figure(
            f"all_class_cams vs GradCAM, 1 batched pass of {n_cls}", med["fast"], med["batched"],
            "s", f"GradCAM on the image repeated {n_cls}x, one forward+backward",
            speedup=med["batched"] / med["fast"]),
    }


# --------------------------------------------------------------------------------------------
# GPU
# --------------------------------------------------------------------------------------------
def gpu_training(device: torch.device, image_size: int, batch: int, steps: int, warmup: int,
                 compile: bool = True, progress: bool = True) -> dict[str, Any]:
    """DenseNet-121 training images/s on ``device``: fp32, bf16 autocast, channels_last + bf16,
    and ``torch.compile`` of the last (a synthetic batch already on the device).

    Each variant gets a fresh model with the same initial weights; ``compile_s`` is the time of
    the compiled variant's first step (the compilation).  A variant that fails is reported with
    its error and the others still run.
    """
    from xray_utils.models import build_model

    amp = _amp_dtype(device)
    sync = _sync_for(device)
    label = str(amp).replace("torch.", "")
    variants = [("fp32", None, False, False), (f"{label}_autocast", amp, False, False),
                (f"channels_last_{label}", amp, True, False),
                (f"compile_channels_last_{label}", amp, True, True)]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, image_size, image_size, generator=gen).to(device)
    y = torch.randint(0, len(paper.classes_for(TRAIN_TASK)), (batch,), generator=gen).to(device)
    out: dict[str, Any] = {"image_size": image_size, "batch_size": batch, "steps": steps,
                           "amp_dtype": label}
    base: float | None = None
    for name, dtype, channels_last, compiled in variants:
        if compiled and not compile:
            out[name] = {"skipped": "--no-compile"}
            continue
        try:
            torch.manual_seed(0)
            model = build_model(TRAIN_TASK).to(device).train()
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            runner = torch.compile(model) if compiled else model
            step = _make_step(runner, device, dtype, channels_last)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            first = _timed(lambda: step(x, y), sync)
            for _ in range(max(0, warmup - 1)):
                step(x, y)
            times = [_timed(lambda: step(x, y), sync)
                     for _ in tqdm(range(steps), desc=f"gpu {name}", leave=False,
                                   disable=not progress)]
            rate = batch * steps / sum(times)
            entry: dict[str, Any] = {"images_per_s": rate, "first_step_s": first}
            if compiled:
                entry["compile_s"] = first
            if device.type == "cuda":
                entry["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
            if name == "fp32":
                base = rate
            elif base is not None:
                entry["vs_fp32"] = figure(f"GPU training {image_size}px: {name} vs fp32", rate,
                                          base, "images/s", "fp32")
            out[name] = entry
        except Exception as exc:  # compile toolchain missing, out of memory, ...
            out[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
        finally:
            model = runner = step = None  # noqa: F841  (free the GPU memory of this variant)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return out


def bench_gpu(cfg: BenchConfig, compile: bool, progress: bool = True) -> dict[str, Any]:
    """:func:`gpu_training` at the paper's 224 px on the first GPU, or a note why it was skipped."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA GPU visible to torch (torch.cuda.is_available() is False); "
                           "run the bench on a GPU machine for fp32 / bf16 / channels_last / "
                           "torch.compile training speeds"}
    device = torch.device("cuda")
    out = {"card": torch.cuda.get_device_name(device)}
    out.update(gpu_training(device, paper.IMAGE_SIZE, cfg.gpu_batch, cfg.gpu_steps,
                            cfg.gpu_warmup, compile=compile, progress=progress))
    return out


# --------------------------------------------------------------------------------------------
# the GPU check: bench --gpu, make gpu-check
# --------------------------------------------------------------------------------------------
NO_GPU_SENTENCE = ("No CUDA GPU is visible to PyTorch on this machine (torch.cuda.is_available() "
                   "is False), so the GPU check has nothing to measure; run `make gpu-check` "
                   "on a machine with an NVIDIA GPU.")


def measure_bandwidth(device: torch.device, gib: float = 1.0, repeats: int = 10) -> float:
    """Device memory bandwidth in bytes/s, measured: copies of a ``gib`` GiB buffer (each copy
    reads and writes it once), the fastest of ``repeats``."""
    n = int(gib * 2 ** 30) // 4
    a = torch.empty(n, dtype=torch.float32, device=device)
    b = torch.empty_like(a)
    b.copy_(a)
    times = [_timed(lambda: b.copy_(a), torch.cuda.synchronize) for _ in range(repeats)]
    a = b = None  # noqa: F841  (free the buffers)
    torch.cuda.empty_cache()
    best = min(times)
    return 2 * n * 4 / best


def bandwidth_bound(result: dict[str, Any], bandwidth: float) -> dict[str, Any]:
    """The memory-bandwidth limit of a training variant and its ratio to it (an estimate).

    The activations of one image (``peak memory / batch`` less the weights, gradients and Adam's
    two moments) are written in the forward pass, read again and their gradients written in the
    backward pass: at least three passes over them, so ``bandwidth / (3 x activation bytes)``
    bounds the images/s; ``ratio`` is the measured images/s over that bound.
    """
    from xray_utils.models import build_model

    params = sum(p.numel() for p in build_model(TRAIN_TASK).parameters()) * 4
    peak = result["peak_memory_gib"] * 2 ** 30
    per_image = max(peak - 4 * params, 1.0) / result["batch_size"]
    bound = bandwidth / (3 * per_image)
    return {"activation_mib_per_image": per_image / 2 ** 20, "bound_images_per_s": bound,
            "ratio_to_bound": result["images_per_s"] / bound}


def nih_chest_manifest(out: Path) -> tuple[Path, int]:
    """A Module III manifest of the shipped NIH films (``data/open-films``, the authors' split)."""
    from xray_utils.sources.open_films import load_open_films

    images = load_open_films(verify=False)
    chest = images[(images["xray_type"] == "chest") & images["source"].str.contains("nih")]
    if chest.empty:
        raise FileNotFoundError("no NIH chest films in data/open-films (restore them with "
                                "`git checkout -- data/open-films`)")
    rows = chest.rename(columns={"findings": "label"})[
        ["path", "label", "patient_id", "split", "source", "boxes", "width", "height"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out, index=False)
    return out, int((rows["split"] == "train").sum())


def gpu_module_iii_epoch(device: torch.device, workdir: Path, batch: int = 64) -> dict[str, Any]:
    """One epoch of Module III at 224 px on the shipped NIH films through ``train_task``: AMP,
    channels_last, pinned-memory loaders with worker processes (as the full profile trains)."""
    from xray_utils.config.paths import project_paths
    from xray_utils.config.profiles import settings
    from xray_utils.train.training import train_task

    manifest, n_train = nih_chest_manifest(workdir / "nih_chest.csv")
    cfg = settings("full", "chest", EPOCHS=1, IMAGE_SIZE=paper.IMAGE_SIZE, BATCH_SIZE=batch,
                   AMP=True, DEVICE=str(device), NUM_WORKERS=min(8, cpu_count()), SEED=0,
                   PRETRAINED=False)
    paths = project_paths("full", data_dir=workdir / "data", run_dir=workdir / "run")
    t0 = time.perf_counter()
    result = train_task(paths, cfg, manifest, verbose=False)
    total = time.perf_counter() - t0
    valid = result.history[result.history["loader"] == "valid"]
    auc = valid[valid["metric"] == "auc_mean"]["value"]
    return {"train_films": n_train, "batch_size": batch, "epoch_s": result.seconds,
            "with_cache_build_s": total, "images_per_s": n_train / result.seconds,
            "valid_auc_mean": float(auc.iloc[-1]) if len(auc) else None,
            "num_workers": int(cfg["NUM_WORKERS"]), "amp": True, "pin_memory": True}


def run_gpu_check(compile: bool = True, progress: bool = True,
                  echo: Callable[..., None] = print) -> dict[str, Any] | None:
    """``bench --gpu``: on the first CUDA GPU, in about 5 minutes, DenseNet-121 training images/s
    at 224 px (fp32, bf16 autocast, channels_last + bf16, ``torch.compile`` with its compile
    time), each against the memory-bandwidth bound (:func:`bandwidth_bound`), and one epoch of
    Module III at 224 px on the shipped NIH films.  ``None`` (after one sentence) without a GPU.
    """
    if not torch.cuda.is_available():
        echo(NO_GPU_SENTENCE)
        return None
    device = torch.device("cuda")
    started = time.perf_counter()
    out: dict[str, Any] = {"machine": machine_info(), "card": torch.cuda.get_device_name(device)}
    bw = measure_bandwidth(device)
    out["bandwidth_gb_per_s"] = bw / 1e9
    echo(f"{out['card']}: measured copy bandwidth {bw / 1e9:.0f} GB/s", flush=True)
    train = gpu_training(device, paper.IMAGE_SIZE, 64, 20, 3, compile=compile, progress=progress)
    for name, entry in train.items():
        if isinstance(entry, dict) and "images_per_s" in entry and "peak_memory_gib" in entry:
            entry.update(bandwidth_bound({**entry, "batch_size": 64}, bw))
            echo(f"  {name}: {entry['images_per_s']:.0f} img/s at {paper.IMAGE_SIZE} px, "
                 f"{100 * entry['ratio_to_bound']:.0f} % of the bandwidth bound "
                 f"({entry['bound_images_per_s']:.0f} img/s)"
                 + (f", compile {entry['compile_s']:.0f} s" if "compile_s" in entry else ""),
                 flush=True)
        elif isinstance(entry, dict) and ("error" in entry or "skipped" in entry):
            echo(f"  {name}: {entry.get('error') or entry.get('skipped')}", flush=True)
    out["training_224"] = train
    with tempfile.TemporaryDirectory(prefix="xray-gpu-check-") as tmp:
        try:
            out["module_iii_epoch"] = gpu_module_iii_epoch(device, Path(tmp))
            e = out["module_iii_epoch"]
            echo(f"  Module III, one epoch at {paper.IMAGE_SIZE} px on {e['train_films']} NIH "
                 f"films: {e['epoch_s']:.0f} s ({e['images_per_s']:.0f} img/s; "
                 f"{e['with_cache_build_s']:.0f} s with the cache build)", flush=True)
        except Exception as exc:  # report, keep the figures measured so far
            out["module_iii_epoch"] = {"error": f"{type(exc).__name__}: {exc}"}
            echo(f"  Module III epoch failed: {out['module_iii_epoch']['error']}", flush=True)
    out["seconds"] = round(time.perf_counter() - started, 1)
    echo(f"GPU check took {out['seconds']:.0f} s", flush=True)
    return out


# --------------------------------------------------------------------------------------------
# notebooks of the last demo run
# --------------------------------------------------------------------------------------------
def bench_notebooks(run_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Wall time of each notebook of the last demo run, from papermill's metadata."""
    from xray_utils.cli.run import list_notebooks

    folder = project_paths("demo", run_dir=run_dir).notebooks_out_dir
    executed = sorted(folder.glob("*.ipynb")) if folder.is_dir() else []
    if not executed:
        return {"skipped": f"no demo run found in {folder}: run `python -m xray_utils run "
                           "--profile demo` (make demo) first; the bench does not rerun notebooks",
                "folder": str(folder)}
    try:
        expected = [p.name for p in list_notebooks()]
    except OSError:
        expected = []
    out: dict[str, Any] = {"folder": str(folder), "notebooks": {}}
    for path in executed:
        try:
            nb = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            out["notebooks"][path.name] = {"error": f"cannot read {path}: {exc}"}
            continue
        pm = nb.get("metadata", {}).get("papermill", {})
        cells = []
        for k, cell in enumerate(nb.get("cells", []), 1):
            d = cell.get("metadata", {}).get("papermill", {}).get("duration")
            if d is not None:
                src = cell.get("source", "")
                src = "".join(src) if isinstance(src, list) else src
                first = next((ln for ln in src.splitlines() if ln.strip()), "")
                cells.append((float(d), k, first[:60]))
        seconds = pm.get("duration")
        if seconds is None and cells:
            seconds = sum(c[0] for c in cells)
        entry: dict[str, Any] = {"seconds": None if seconds is None else round(float(seconds), 2),
                                 "status": "failed" if pm.get("exception") else "ok",
                                 "finished": pm.get("end_time")}
        if cells:
            d, k, first = max(cells)
            entry["slowest_cell"] = {"cell": k, "seconds": round(d, 2), "source": first}
        out["notebooks"][path.name] = entry
    out["total_s"] = round(sum(e.get("seconds") or 0.0 for e in out["notebooks"].values()), 2)
    missing = [n for n in expected if n not in out["notebooks"]]
    if missing:
        out["missing"] = missing
    return out


# --------------------------------------------------------------------------------------------
# the whole bench
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_bench(cfg: BenchConfig, checkpoints: str | os.PathLike | None = None,
              compile: bool = True, echo: Callable[..., None] = print,
              progress: bool = True) -> dict[str, Any]:
    """Run every section; returns the results dict (see the module docstring for its schema).

    A section that raises is recorded as ``{"error": ...}`` and the others still run.
    """
    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results: dict[str, Any] = {"machine": machine_info(), "quick": cfg.name != "full",
                               "preset": cfg.name, "config": _config_json(cfg)}
    m = results["machine"]
    echo(f"bench ({cfg.name}): device {m['device']}, {m['cpu_count']} CPU core(s), "
         f"torch threads {m['torch_threads']}, load average {m['load_average_start']}",
         flush=True)

    def section(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        t0 = time.perf_counter()
        echo(f"▶ {name} ...", flush=True)
        try:
            results[name] = fn()
        except Exception as exc:  # report and go on with the other sections
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[name]["section_s"] = round(time.perf_counter() - t0, 1)
        for _, fig in iter_figures(results[name]):
            echo("  " + _format_row(fig), flush=True)
        for key in ("skipped", "note", "error"):
            if key in results[name]:
                echo(f"  {key}: {results[name][key]}", flush=True)

    with tempfile.TemporaryDirectory(prefix="xray-bench-") as tmp:
        work = Path(tmp)
        threads: dict[str, Any] = {}

        def threads_section() -> dict[str, Any]:
            threads.update(bench_threads(cfg))
            return threads

        section("threads", threads_section)
        results["machine"]["threads"] = results.pop("threads")
        chosen = int(threads.get("chosen_threads") or torch.get_num_threads())
        echo(f"  torch threads for the rest of the bench: {chosen}", flush=True)
        with _threads(chosen):
            sources, origin = collect_sources(cfg, work / "sources")
            manifest = write_manifest(sources, work / "manifest.csv")
            cache_dir = work / "cache"
            section("data", lambda: {"sources": origin,
                                     **bench_data(cfg, sources, manifest, cache_dir, progress)})
            section("training", lambda: bench_training(cfg, manifest, cache_dir, device, progress))
            section("training_path", lambda: bench_training_path(cfg, sources, work, progress))
            section("inference", lambda: bench_inference(
                cfg, Path(checkpoints) if checkpoints else None, sources, work, device))
            section("gpu", lambda: bench_gpu(cfg, compile, progress))
    section("notebooks", bench_notebooks)
    results["machine"]["load_average_end"] = _load()
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def _config_json(cfg: BenchConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["train_batch"] = {str(k): v for k, v in cfg.train_batch.items()}
    return d


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------
def _fmt(v: float, unit: str) -> str:
    if unit == "s":
        return f"{v * 1e3:.1f} ms" if v < 10 else f"{v:.1f} s"
    if unit == "images/s":
        return f"{v:,.0f} img/s" if v >= 100 else f"{v:.1f} img/s"
    return f"{v:.3g} {unit}"


def _format_row(fig: dict[str, Any]) -> str:
    mark = {True: " ✓", False: " ✗"}.get(fig.get("meets_goal"), "")
    goal = f" [{fig['goal']}{mark}]" if "goal" in fig else ""
    return (f"{fig['label']}: {_fmt(fig['value'], fig['unit'])} vs "
            f"{_fmt(fig['baseline'], fig['unit'])} ({fig['baseline_label']}) -> "
            f"{fig['ratio']:.3g}x{goal}")


def format_table(results: dict[str, Any]) -> str:
    """The results as a plain-text table: one row per figure, then notes and notebook times."""
    rows = [("section", "figure", "value", "baseline", "ratio", "goal")]
    for where, fig in iter_figures(results):
        mark = {True: " ok", False: " MISSED"}.get(fig.get("meets_goal"), "")
        rows.append((where.split(".")[0], fig["label"], _fmt(fig["value"], fig["unit"]),
                     f"{_fmt(fig['baseline'], fig['unit'])} ({fig['baseline_label']})",
                     f"{fig['ratio']:.3g}x", (fig.get("goal", "") + mark).strip()))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    m = results.get("machine", {})
    t = m.get("threads", {})
    lines.append("")
    lines.append(f"machine: {m.get('device')} | CPU {m.get('cpu')} | {m.get('cpu_count')} core(s) "
                 f"| torch {m.get('torch')} | threads {m.get('torch_threads')} by default, "
                 f"{t.get('chosen_threads')} chosen | load {m.get('load_average_start')} -> "
                 f"{m.get('load_average_end')}")
    tr = results.get("training", {})
    for key, val in tr.items():
        fig = val.get("loader_vs_bare") if isinstance(val, dict) else None
        if fig:
            lines.append(f"training {key}: loader costs {100 * fig['overhead']:.1f} % "
                         f"(batch fetching is {100 * fig['fetch_share']:.1f} % of a loader step)")
    cam = results.get("inference", {}).get("gradcam", {})
    if "max_abs_diff_vs_backward" in cam:
        lines.append(f"Grad-CAM fast path vs backward: max |difference| "
                     f"{cam['max_abs_diff_vs_backward']:.2e}")
    for name in ("data", "training", "inference", "gpu", "notebooks"):
        sec = results.get(name, {})
        for key in ("skipped", "note", "error"):
            if key in sec:
                lines.append(f"{name}: {key}: {sec[key]}")
    nbs = results.get("notebooks", {}).get("notebooks", {})
    if nbs:
        lines.append("")
        lines.append(f"last demo run ({results['notebooks']['folder']}):")
        for name, e in nbs.items():
            slow = e.get("slowest_cell")
            extra = (f"; slowest cell {slow['cell']} ({slow['seconds']} s): {slow['source']}"
                     if slow else "")
            sec = e.get("seconds")
            lines.append(f"  {name}: {'?' if sec is None else f'{sec:.1f} s'} "
                         f"[{e.get('status', e.get('error'))}]{extra}")
        lines.append(f"  total: {results['notebooks']['total_s']:.1f} s")
    if "seconds" in results:
        lines.append(f"bench took {results['seconds']:.0f} s ({results.get('preset')})")
    return "\n".join(lines)


def default_json_path(preset: str) -> Path:
    """Where the JSON goes without ``--json``: ``<repo>/runs/bench/<preset>.json`` (git-ignored)."""
    return REPO_ROOT / "runs" / "bench" / f"{preset}.json"


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``bench`` arguments to ``p``."""
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="few images and steps: about 1-2 minutes on 2 CPU cores")
    size.add_argument("--tiny", action="store_true",
                      help="smoke test of the bench itself (tiny sizes; numbers mean nothing)")
    p.add_argument("--json", metavar="OUT", default=None,
                   help="write the results JSON to OUT ('-' prints it; default: "
                        "runs/bench/<preset>.json)")
    p.add_argument("--checkpoints", metavar="DIR", default=None,
                   help="checkpoints folder for the inference figures (default: the demo run's; "
                        "untrained ones are built when it is absent)")
    p.add_argument("--gpu", action="store_true",
                   help="the GPU check only (make gpu-check): 224 px training speeds against "
                        "the memory-bandwidth bound and one Module III epoch; without a GPU it "
                        "says so and exits 0")
    p.add_argument("--no-compile", action="store_true",
                   help="leave out the torch.compile variant of the GPU benchmark")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``bench`` sub-command."""
    p = subparsers.add_parser(
        "bench", help="measure data, training, inference and Grad-CAM speed against baselines",
        description=DESCRIPTION)
    configure(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the bench, print the table, write the JSON; 1 when a section failed, else 0."""
    if args.gpu:
        results = run_gpu_check(compile=not args.no_compile, progress=not args.no_progress)
        if results is None:
            return 0
        text = json.dumps(to_jsonable(results), indent=2)
        out = Path(args.json) if args.json and args.json != "-" else default_json_path("gpu")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        print(f"results JSON: {out}")
        return 0
    preset = "tiny" if args.tiny else "quick" if args.quick else "full"
    if args.checkpoints and not Path(args.checkpoints).expanduser().is_dir():
        print(f"{PROG}: error: checkpoints folder not found: {args.checkpoints}. Pass "
              "<run_dir>/checkpoints of a run (or leave --checkpoints out).", file=sys.stderr)
        return 2
    results = run_bench(PRESETS[preset],
                        Path(args.checkpoints).expanduser() if args.checkpoints else None,
                        compile=not args.no_compile, progress=not args.no_progress)
    print()
    print(format_table(results))
    text = json.dumps(to_jsonable(results), indent=2)
    if args.json == "-":
        print(text)
    else:
        out = Path(args.json) if args.json else default_json_path(preset)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text + "\n")
        except OSError as exc:
            print(f"{PROG}: error: cannot write the JSON to {out}: {exc}", file=sys.stderr)
            return 2
        print(f"results JSON: {out}")
    return 1 if failed_sections(results) else 0


def failed_sections(results: dict[str, Any]) -> list[str]:
    """Names of the sections that raised (their entry holds ``"error"``)."""
    sections = {k: v for k, v in results.items() if isinstance(v, dict)}
    sections["threads"] = results.get("machine", {}).get("threads", {})
    return [k for k, v in sections.items() if isinstance(v, dict) and "error" in v]


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (same arguments as the sub-command); returns the exit status."""
    parser = configure(argparse.ArgumentParser(prog=PROG, description=DESCRIPTION))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
