"""UFBA-UESC dental images: 1,500 panoramic dental radiographs in ten categories.

Expected layout (the archive sent after the request form; tolerant, since versions differ)::

    data/raw/dental/
        UFBA_UESC_DENTAL_IMAGES/        (any name, or none)
            images/                     (``Images``/``images``, any case)
                cate1/*.jpg ... cate10/*.jpg   (category folders, or the files directly)
            masks/ ...                  (segmentation masks: ignored)

Every image below an ``images`` folder is a ``dental`` X-ray; folders whose names mention
masks, segmentation, labels or annotations are skipped, since the masks are images too.  Each
file is its own patient (the dataset has one panoramic film per person).
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from xray_utils.sources.dataset_spec import (
    DatasetError,
    DatasetSpec,
    image_frame,
    prefixed,
    readme_ref,
    require_folder,
    tokens,
    walk_images,
)
from xray_utils.sources.paper.readiness import problems_of

NAME = "dental"
TITLE = "UFBA-UESC dental panoramic images"
SECTION = "Dental panoramic (UFBA-UESC)"
LAYOUT = "data/raw/dental/[UFBA_UESC_DENTAL_IMAGES/]images/[cate1 ... cate10/]*.jpg (masks ignored)"
_SKIP_WORDS = {"mask", "masks", "segmentation", "segmentations", "seg", "label", "labels",
               "annotation", "annotations", "gt", "groundtruth"}


def _skip(dirname: str) -> bool:
    words = tokens(dirname)
    return any(w in _SKIP_WORDS or w.startswith("segmentation") for w in words)


def image_folders(root: Path, max_depth: int = 3) -> list[Path]:
    """Folders named ``images`` (any case) at most ``max_depth`` levels below ``root`` (or ``root``)."""
    if root.name.lower() == "images":
        return [root]
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not _skip(d))
        if depth >= max_depth:
            dirnames[:] = []
        found += [Path(dirpath) / d for d in dirnames if d.lower() == "images"]
    return [f for f in found if not any(f != g and g in f.parents for g in found)]


def load(root: str | Path, *, check_files: bool = True, drop_missing: bool = False) -> pd.DataFrame:
    """The dental image manifest (every image below the ``images`` folder(s))."""
    root = require_folder(Path(root).expanduser().resolve(), TITLE, SECTION, LAYOUT)
    folders = image_folders(root)
    if not folders:
        raise DatasetError(f"{TITLE}: no 'images' folder under {root}. Expected layout: {LAYOUT}; "
                           f"see {readme_ref(SECTION)}.")
    files = [f for folder in folders for f in walk_images(folder, skip_dirs=_skip)]
    if not files:
        raise DatasetError(f"{TITLE}: the folder(s) {[str(f) for f in folders]} hold no image files "
                           f"(.jpg/.png). Expected layout: {LAYOUT}.")
    return image_frame(len(files), path=[str(f) for f in files], is_xray="1", xray_type="dental",
                       patient_id=prefixed(NAME, (f.relative_to(root).as_posix() for f in files)),
                       source=NAME)


def problems(root: Path) -> list[str]:
    """Empty exactly when :func:`load` succeeds (it runs the same reading; see readiness)."""
    return problems_of(load, root)


SPEC = DatasetSpec(name=NAME, title=TITLE, layout=LAYOUT, load=load, problems=problems,
                   readme_section=SECTION, xray_types=("dental",))
