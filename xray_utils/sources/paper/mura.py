"""MURA v1.1 (Stanford AIMI): 40,005 upper-extremity radiographs of seven body parts.

Native layout (the extracted ``MURA-v1.1.zip``)::

    data/raw/mura/
        MURA-v1.1/
            train_image_paths.csv       no header, one path a line, e.g.
                                        MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png
            valid_image_paths.csv
            train_labeled_studies.csv   (study-level normal/abnormal labels; not needed here)
            valid_labeled_studies.csv
            train/XR_ELBOW/patient00011/study1_negative/image1.png ...
            valid/...

The body part comes from the ``XR_*`` folder, the patient from ``patientNNNNN``.  Both the
``train`` and ``valid`` images are used (36,808 + 3,197 = 40,005 in v1.1, the publisher's
counts; MURA's article gives 40,561 for an earlier release).  The paper's Table I counts are
close to these sums but not equal (shoulder: 9,054 in Table I, 8,942 in v1.1); splits are made
patient-wise later.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from xray_utils.config import paper
from xray_utils.sources.dataset_spec import (
    DatasetError,
    DatasetSpec,
    check_files_exist,
    image_frame,
    prefixed,
    readme_ref,
    require_folder,
)
from xray_utils.sources.paper.readiness import problems_of

NAME = "mura"
TITLE = "MURA v1.1"
SECTION = "MURA v1.1"
FOLDER = "MURA-v1.1"
PATH_LISTS: tuple[str, ...] = ("train_image_paths.csv", "valid_image_paths.csv")
LAYOUT = ("data/raw/mura/MURA-v1.1/{train_image_paths.csv, valid_image_paths.csv, "
          "train/XR_*/patientNNNNN/studyN_*/imageN.png, valid/...}")
#: MURA's study types -> paper.XRAY_TYPES.
BODY_PARTS: dict[str, str] = {f"XR_{t.upper()}": t for t in
                              ("elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist")}
if not set(BODY_PARTS.values()) <= set(paper.XRAY_TYPES):  # pragma: no cover - a wrong edit
    raise ImportError("BODY_PARTS must map to types of paper.XRAY_TYPES")


def dataset_dir(root: Path) -> Path:
    """The ``MURA-v1.1`` folder: ``root/MURA-v1.1`` or ``root`` itself."""
    return root if (root / PATH_LISTS[0]).is_file() and root.name == FOLDER else root / FOLDER


def read_path_list(path: Path) -> list[str]:
    """One MURA ``*_image_paths.csv``: image paths relative to the folder above ``MURA-v1.1``."""
    if not path.is_file():
        raise DatasetError(
            f"MURA: {path} not found. Expected layout: {LAYOUT}; extract MURA-v1.1.zip into "
            f"data/raw/mura/ (see {readme_ref(SECTION)}).")
    try:
        df = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DatasetError(f"MURA: {path} is not a readable CSV file ({exc})") from exc
    if df.shape[1] != 1 or not df[0].str.contains(r"/XR_[A-Z]+/patient\d+/", regex=True).all():
        raise DatasetError(
            f"MURA: {path} is malformed: expected one column without header, each line like "
            f"'MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png'; first line: "
            f"{','.join(df.iloc[0].tolist()) if len(df) else '(empty)'}")
    return df[0].tolist()


def load(root: str | Path, *, check_files: bool = True, drop_missing: bool = False) -> pd.DataFrame:
    """The MURA image manifest (train + valid lists)."""
    root = require_folder(Path(root).expanduser().resolve(), TITLE, SECTION, LAYOUT)
    data = dataset_dir(root)
    base = data.parent
    rel = [p for name in PATH_LISTS for p in read_path_list(data / name)]
    parts = pd.Series(rel).str.extract(r"/(XR_[A-Z]+)/(patient\d+)/")
    unknown = sorted(set(parts[0]) - set(BODY_PARTS))
    if unknown:
        raise DatasetError(f"MURA: unknown study type(s) {unknown} in {data}; expected {sorted(BODY_PARTS)}")
    out = image_frame(
        len(rel),
        path=[str(base / p) for p in rel],
        is_xray="1",
        xray_type=parts[0].map(BODY_PARTS),
        patient_id=prefixed(NAME, parts[1]),
        source=NAME,
    )
    if check_files:
        out = check_files_exist(out, TITLE, drop_missing,
                                hint=f"Is the whole zip extracted (layout: {LAYOUT})?")
    return out


def problems(root: Path) -> list[str]:
    """Empty exactly when :func:`load` succeeds (it runs the same reading; see readiness)."""
    return problems_of(load, root)


SPEC = DatasetSpec(name=NAME, title=TITLE, layout=LAYOUT, load=load, problems=problems,
                   readme_section=SECTION, xray_types=tuple(BODY_PARTS.values()))
