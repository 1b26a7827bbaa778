"""Fixture trees that mirror each real dataset's native layout, written at test time.

File and folder names follow the real datasets exactly (``images_001/images/00000001_000.png``,
``MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png``, ...); the images are
tiny (32 px) and every file has different pixels, so content-duplicate checks see no false
matches.  Nothing binary is committed: each helper writes its tree under a temporary folder.
"""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from xray_utils.config import paper, paths

SHARED_ENV = paths.SHARED_ENV
SAMPLES_ENV = paths.LABELLED_FOLDER_ENV
REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    """The shared reference folder (``$XRAY_SHARED_DIR`` or ``<repo>/../shared``), if present."""
    path = Path(os.environ.get(SHARED_ENV) or REPO.parent / "shared")
    return path if path.is_dir() else None


def labelled_folder_dir() -> Path | None:
    """The real-samples folder: the package's resolver (``$XRAY_REAL_SAMPLES``, else
    ``real-samples`` in ``$XRAY_SHARED_DIR``), else, for the tests only, ``<repo>/../shared``."""
    found = paths.labelled_folder_dir()
    if found is not None or os.environ.get(SAMPLES_ENV):
        return found
    shared = shared_dir()
    return paths.labelled_folder_dir(shared / paths.LABELLED_FOLDER_NAME) if shared else None


def write_image(path: Path, size: tuple[int, int] = (32, 32), mode: str = "L") -> Path:
    """A small image whose pixels depend on its path (so no two fixture files are identical)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(str(path).encode()))
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def _write_text(path: Path, text: str, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


# ----------------------------------------------------------------------------- ChestX-ray14
DATA_ENTRY_2017_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
                          "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
CHEST_LABELS = ("No Finding", "Cardiomegaly", "Effusion|Infiltration", "Mass|Nodule",
                "Pleural_Thickening", "Atelectasis|Pneumothorax", "Hernia")


def make_chestxray14(root: Path, patients: int = 8, per_patient: int = 2, layout: str = "nested",
                     csv_name: str = "Data_Entry_2017.csv", boxes: bool = True,
                     official_lists: bool = True) -> list[dict]:
    """``root`` as extracted from the NIH download; returns one dict per image.

    ``layout="nested"``: ``images_001/images/*.png`` and ``images_002/images/*.png``;
    ``"flat"``: ``images/*.png``.  ``csv_name`` ending in ``.gz`` writes a gzipped CSV.
    """
    rows, lines = [], [DATA_ENTRY_2017_HEADER]
    k = 0
    for p in range(1, patients + 1):
        for f in range(per_patient):
            name = f"{p:08d}_{f:03d}.png"
            labels = CHEST_LABELS[k % len(CHEST_LABELS)]
            folder = ("images_001" if p <= patients // 2 else "images_002") if layout == "nested" else None
            path = root / folder / "images" / name if folder else root / "images" / name
            write_image(path)
            rows.append({"name": name, "patient": p, "labels": labels, "path": path})
            lines.append(f"{name},{labels},{f},{p},{40 + p},M,PA,2500,2048,0.143,0.143,")
            k += 1
    _write_text(root / csv_name, "\n".join(lines) + "\n", gz=csv_name.endswith(".gz"))
    if boxes:
        _write_text(root / "BBox_List_2017.csv",
                    "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
                    f"{rows[1]['name']},Cardiomegaly,100.5,200.25,300,150,,,\n"
                    f"{rows[2]['name']},Infiltrate,10,20,30,40,,,\n"
                    f"{rows[2]['name']},Effusion,50,60,70,80,,,\n")
    if official_lists:
        test_patients = {p for p in range(1, patients + 1) if p % 4 == 0}
        _write_text(root / "train_val_list.txt",
                    "\n".join(r["name"] for r in rows if r["patient"] not in test_patients) + "\n")
        _write_text(root / "test_list.txt",
                    "\n".join(r["name"] for r in rows if r["patient"] in test_patients) + "\n")
    return rows


def make_authors_split(folder: Path, rows: Iterable[dict]) -> Path:
    """Authors'-format lists (``<image> <14 labels>``) for fixture chest rows, patient-wise."""
    out = {"train": [], "val": [], "test": []}
    for r in rows:
        split = ("train", "train", "val", "test")[r["patient"] % 4]
        bits = ["1" if f in r["labels"].split("|") else "0" for f in paper.FINDINGS]
        out[split].append(" ".join([r["name"], *bits]))
    for split, lines in out.items():
        _write_text(folder / f"{split}_list.txt", "\n".join(lines) + "\n")
    return folder


# ----------------------------------------------------------------------------- MURA
MURA_PARTS = ("XR_ELBOW", "XR_FINGER", "XR_FOREARM", "XR_HAND", "XR_HUMERUS", "XR_SHOULDER", "XR_WRIST")


def make_mura(root: Path, patients_per_part: int = 2) -> list[str]:
    """``root/MURA-v1.1/`` with both path lists and labelled-study lists; returns image paths."""
    base = root / "MURA-v1.1"
    listed: dict[str, list[str]] = {"train": [], "valid": []}
    studies: dict[str, list[str]] = {"train": [], "valid": []}
    pid = 1
    for part in MURA_PARTS:
        for _ in range(patients_per_part):
            split = "valid" if pid % 3 == 0 else "train"
            outcome = "positive" if pid % 2 else "negative"
            study = f"MURA-v1.1/{split}/{part}/patient{pid:05d}/study1_{outcome}/"
            studies[split].append(f"{study},{pid % 2}")
            for img in (1, 2):
                rel = f"{study}image{img}.png"
                write_image(root / rel)
                listed[split].append(rel)
            pid += 1
    for split in ("train", "valid"):
        _write_text(base / f"{split}_image_paths.csv", "\n".join(listed[split]) + "\n")
        _write_text(base / f"{split}_labeled_studies.csv", "\n".join(studies[split]) + "\n")
    return listed["train"] + listed["valid"]


# ----------------------------------------------------------------------------- LERA
LERA_PARTS = ("Foot", "Knee", "Ankle", "Hip")


def make_lera(root: Path, studies: int = 8, with_csv: bool = False, layout: str | None = None) -> list[Path]:
    """A LERA tree; returns the image files.

    ``layout="aimi"`` (the Stanford AIMI release): ``root/LERA Dataset/labels.csv`` without a
    header (``<study id>,XR <PART>,<label>``) and ``root/LERA Dataset/<study id>/ST-1/*.png``
    (one study with a deeper folder and a DICOM file, as any depth and format are allowed);
    ``"folders"`` (default): ``root/LERA/<study>/XR_<PART>/imageN.png``; ``"csv"`` (or
    ``with_csv=True``): flat files + ``labels.csv`` with named columns.
    """
    layout = layout or ("csv" if with_csv else "folders")
    files = []
    csv_lines = ["path,body_part,patient_id"]
    aimi_lines = []
    base = root / "LERA Dataset"
    for s in range(1, studies + 1):
        part = LERA_PARTS[s % len(LERA_PARTS)]
        sid = str(1000 + s)
        aimi_lines.append(f"{sid},XR {part.upper()},{s % 2}")
        for k in (1, 2):
            if layout == "csv":
                rel = f"images/{s:04d}_{k}.png"
                csv_lines.append(f"{rel},{part.lower()},{s:04d}")
                files.append(write_image(root / rel))
            elif layout == "aimi":
                if s == 1 and k == 2:  # deeper below the study folder, and DICOM
                    path = base / sid / "ST-1" / "SE-2" / f"image{k}.dcm"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"\0" * 128 + b"DICM" + bytes([s, k]))
                    files.append(path)
                else:
                    files.append(write_image(base / sid / "ST-1" / f"image{k}.png"))
            elif layout == "folders":
                files.append(write_image(root / "LERA" / f"{s:04d}" / f"XR_{part.upper()}" / f"image{k}.png"))
            else:
                raise ValueError(f"unknown LERA fixture layout {layout!r}")
    if layout == "csv":
        _write_text(root / "labels.csv", "\n".join(csv_lines) + "\n")
    if layout == "aimi":
        _write_text(base / "labels.csv", "\n".join(aimi_lines) + "\n")
    return files


# ----------------------------------------------------------------------------- AASCE
def make_aasce(root: Path, training: int = 5, test: int = 3) -> list[Path]:
    """``root/boostnet_labeldata/{data,labels}/{training,test}/`` as in the SpineWeb archive."""
    base = root / "boostnet_labeldata"
    files = []
    for part, n in (("training", training), ("test", test)):
        names = [f"sunhl-1th-{i:02d}-Jan-2017-{100 + i} A AP.jpg" for i in range(1, n + 1)]
        for name in names:
            files.append(write_image(base / "data" / part / name, size=(32, 64)))
            (base / "labels" / part).mkdir(parents=True, exist_ok=True)
            (base / "labels" / part / f"{name}.mat").write_bytes(b"MATLAB 5.0 MAT-file")
        _write_text(base / "labels" / part / "filenames.csv", "\n".join(names) + "\n")
        _write_text(base / "labels" / part / "landmarks.csv",
                    "\n".join("0.5," * 135 + "0.5" for _ in names) + "\n")
        _write_text(base / "labels" / part / "angles.csv", "\n".join("10.1,5.2,3.3" for _ in names) + "\n")
    return files


# ----------------------------------------------------------------------------- dental
def make_dental(root: Path, categories: int = 3, per_category: int = 2) -> list[Path]:
    """``root/UFBA_UESC_DENTAL_IMAGES/images/cateN/*.jpg`` plus mask folders to be ignored."""
    base = root / "UFBA_UESC_DENTAL_IMAGES"
    files = []
    for c in range(1, categories + 1):
        for k in range(1, per_category + 1):
            files.append(write_image(base / "images" / f"cate{c}" / f"{c * 100 + k}.jpg", size=(64, 32)))
            write_image(base / "masks" / f"cate{c}" / f"{c * 100 + k}.jpg", size=(64, 32))
            write_image(base / "images" / f"cate{c}" / "segmentation" / f"{c * 100 + k}.png", size=(64, 32))
    return files


# ----------------------------------------------------------------------------- ImageNet
def make_imagenet(root: Path, layout: str = "synset", synsets: int = 3, per_synset: int = 4) -> list[Path]:
    """ImageNet-style photographs: ``synset`` (``train/n01440764/n01440764_10026.JPEG``),
    ``imagenette`` (``imagenette2-160/{train,val}/<wnid>/``) or ``flat``."""
    files = []
    wnids = [f"n0{1440764 + 1000 * i}" for i in range(synsets)]
    for w in wnids:
        for k in range(per_synset):
            name = f"{w}_{10026 + k}.JPEG"
            if layout == "synset":
                path = root / "train" / w / name
            elif layout == "imagenette":
                path = root / "imagenette2-160" / ("val" if k == 0 else "train") / w / name
            else:
                path = root / name
            files.append(write_image(path, mode="RGB"))
    return files


# ----------------------------------------------------------------------------- labelled folder
LABELLED_HEADER = ("file,is_xray,xray_type,labels,extra,width,height,source_repo,commit,path_in_repo,"
                   "sha256_original,license")


def make_labelled_folder(root: Path) -> list[dict]:
    """A labelled folder of real images (the ``labels.csv`` format): NIH chest films (one with a box), a
    non-ChestX-ray14 chest film, OAI knees of one patient, hands, photographs."""
    rows = [
        ("nih/00000005_000.jpg", 1, "chest", "Effusion|Mass",
         "patient_id=5;age=60;sex=F;view=PA;bbox=Mass:200,400,100,50", 512, 512),
        ("nih/00000005_001.jpg", 1, "chest", "No Finding", "patient_id=5;age=61;sex=F;view=PA", 512, 512),
        ("nih/00000007_000.jpg", 1, "chest", "Pleural_Thickening", "", 512, 512),
        ("misc/tb0001.jpg", 1, "chest", "Tuberculosis (TBX11K)", "", 512, 512),
        ("knee/kl1_9016304L.jpg", 1, "knee", "KL=1", "knee joint crop 224x224 (OAI-derived)", 64, 64),
        ("knee/kl2_9016304R.jpg", 1, "knee", "KL=2", "knee joint crop 224x224 (OAI-derived)", 64, 64),
        ("frac/IMG0000001.jpg", 1, "hand", "fractured=0", "fracatlas_region=hand;fractured=0", 40, 48),
        ("frac/IMG0000002.jpg", 1, "hand", "fractured=1", "fracatlas_region=hand;fractured=1", 40, 48),
        ("photos/n01440764_tench.jpg", 0, "", "natural:tench", "wnid=n01440764", 50, 40),
        ("photos/n02102480_Sussex_spaniel.jpg", 0, "", "natural:Sussex spaniel", "wnid=n02102480", 50, 40),
    ]
    lines = [LABELLED_HEADER]
    out = []
    for file, is_xray, xtype, labels, extra, w, h in rows:
        write_image(root / file, size=(w, h), mode="L" if is_xray else "RGB")
        lines.append(f'{file},{is_xray},{xtype},{labels},"{extra}",{w},{h},repo,abc,{file},0,CC BY 4.0')
        out.append({"file": file, "is_xray": is_xray, "xray_type": xtype, "labels": labels,
                    "extra": extra, "width": w, "height": h})
    _write_text(root / "labels.csv", "\n".join(lines) + "\n")
    return out


def make_raw_root(raw: Path) -> dict[str, object]:
    """A complete ``data/raw/`` with all six sources (tiny)."""
    return {
        "chestxray14": make_chestxray14(raw / "chestxray14", patients=24),
        "mura": make_mura(raw / "mura"),
        "lera": make_lera(raw / "lera"),
        "aasce": make_aasce(raw / "aasce"),
        "dental": make_dental(raw / "dental"),
        "imagenet": make_imagenet(raw / "imagenet", synsets=5, per_synset=20),
    }
