"""ChestMNIST (MedMNIST+, from NIH ChestX-ray14): the 112,120 chest films at 64 / 128 / 224 px.

One npz per size (Zenodo) with ``train_images``, ``val_images``, ``test_images`` (N, S, S) uint8
and the matching ``*_labels`` (N, 14) 0/1 in :data:`CHESTMNIST_LABELS` order.  The images are
written once as PNG (:func:`export_chestmnist`); the rows keep the npz's own split.
"""
from __future__ import annotations

import json
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from xray_utils.config import paper
from xray_utils.data.manifests import SPLITS
from xray_utils.sources.public.spec import PublicDataError, PublicDataset, PublicFile, frame

NAME = "chestmnist"
#: ChestMNIST sizes on Zenodo that the project uses (the 28 px file is left out: the image
#: reader refuses images under ``imageio.MIN_SIDE`` = 32 px).
CHESTMNIST_SIZES: tuple[int, ...] = (64, 128, 224)

#: The ChestMNIST label order, from MedMNIST's ``medmnist/info.py`` ("pleural" = pleural
#: thickening); the same order as ``paper.FINDINGS`` (checked at import below).
CHESTMNIST_LABELS: tuple[str, ...] = (
    "atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
    "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia")

#: What the dataset is, its licence and how to cite it.
SPEC: PublicDataset = PublicDataset(
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
    notes="The npz holds images and labels only (no file names or patient ids).")

_ZENODO = "https://zenodo.org/records/10519652/files/{}?download=1"

_MEDMNIST_INFO = "MedMNIST's medmnist/info.py (MD5_<size>)"

_CHESTMNIST_LAYOUT = ("npz with train_images, val_images, test_images (N, S, S) uint8 and "
                      "train_labels, val_labels, test_labels (N, 14) 0/1")


def _chestmnist(size: int, md5: str, nbytes: int, exact: bool, size_source: str) -> PublicFile:
    return PublicFile(
        name=f"chestmnist_{size}", dataset="chestmnist", url=_ZENODO.format(f"chestmnist_{size}.npz"),
        filename=f"chestmnist_{size}.npz", size=nbytes, size_exact=exact, size_source=size_source,
        checksums=(f"md5:{md5}",), checksum_source=_MEDMNIST_INFO, layout=_CHESTMNIST_LAYOUT)


#: Its downloadable files (:class:`~xray_utils.sources.public.spec.PublicFile`).
FILES: tuple[PublicFile, ...] = (
    _chestmnist(64, "9de6cd0b934ebb5b7426cfba5efbae16", 401_604_127, True,
                "not published; measured by a third party whose copy matched the md5"),
    _chestmnist(128, "db107e5590b27930b62dbaf558aebee3", 1_400_000_000, False,
                "estimate: not published (a third party mentions 1.4 GB)"),
    _chestmnist(224, "45bd33e6f06c3e8cdb481c74a89152aa", 4_300_000_000, False,
                "estimate: not published (scaled from the 64 and 128 px files)"),
)

if tuple(label.replace("pleural", "pleural_thickening") for label in CHESTMNIST_LABELS) != tuple(
        f.lower() for f in paper.FINDINGS):  # pragma: no cover - a wrong edit of the facts above
    raise ImportError("CHESTMNIST_LABELS is not in paper.FINDINGS order")


def chestmnist_size_for(image_size: int) -> int:
    """The ChestMNIST file for a training size: the smallest of 64/128/224 px >= ``image_size``."""
    for size in CHESTMNIST_SIZES:
        if size >= int(image_size):
            return size
    return CHESTMNIST_SIZES[-1]

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

def chestmnist_images(npz: Path, out_dir: Path, size: int, progress: bool = True) -> pd.DataFrame:
    """ChestMNIST rows: chest films with findings, on the npz's own train/val/test split.

    The npz carries no file names or patient ids, so each film is its own group
    (``chestmnist:<split>:<i>``); the split itself keeps patients apart (it has the sizes of
    the authors' patient-disjoint 70/10/20 split).
    """
    rows = export_chestmnist(npz, out_dir, progress=progress)
    index = rows.groupby("split").cumcount()
    return frame(rows["path"], is_xray="1", xray_type="chest", findings=rows["findings"],
                  patient_id=[f"chestmnist:{s}:{i}" for s, i in zip(rows["split"], index)],
                  split=rows["split"], source="chestmnist", width=str(size), height=str(size))
