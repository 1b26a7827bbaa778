"""AASCE 2019 challenge data (SpineWeb dataset 16): 609 spinal anterior-posterior radiographs.

Native layout (the extracted ``boostnet_labeldata`` archive)::

    data/raw/aasce/
        boostnet_labeldata/
            data/training/*.jpg     481 images
            data/test/*.jpg         128 images
            labels/training/{filenames.csv, landmarks.csv, angles.csv, *.jpg.mat}
            labels/test/{filenames.csv, landmarks.csv, angles.csv, *.jpg.mat}

Only the images are needed (the landmarks and Cobb angles are not used by the X-ray type
task).  When ``labels/<part>/filenames.csv`` exists it is the list of images of that part and
listed files must be present; otherwise the ``*.jpg`` files of ``data/<part>/`` are taken.
Each image counts as its own patient (the files carry no patient id).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from xray_utils.sources.dataset_spec import (
    IMAGE_SUFFIXES,
    DatasetError,
    DatasetSpec,
    check_files_exist,
    image_frame,
    prefixed,
    readme_ref,
    require_folder,
)
from xray_utils.sources.paper.readiness import problems_of

NAME = "aasce"
TITLE = "AASCE / SpineWeb dataset 16"
SECTION = "AASCE (SpineWeb dataset 16)"
FOLDER = "boostnet_labeldata"
PARTS: tuple[str, ...] = ("training", "test")
LAYOUT = ("data/raw/aasce/boostnet_labeldata/{data/training/*.jpg, data/test/*.jpg, "
          "labels/training/filenames.csv, ...}")


def dataset_dir(root: Path) -> Path:
    """``root/boostnet_labeldata``, or ``root`` itself when it already holds ``data/``."""
    return root / FOLDER if (root / FOLDER).is_dir() or not (root / "data").is_dir() else root


def _listed(names_csv: Path) -> list[str]:
    try:
        df = pd.read_csv(names_csv, header=None, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DatasetError(f"AASCE: {names_csv} is not a readable CSV file ({exc})") from exc
    names = [n.strip() for n in df.iloc[:, 0] if Path(n.strip()).suffix.lower() in IMAGE_SUFFIXES]
    if not names:
        raise DatasetError(f"AASCE: {names_csv} lists no image file names; expected one name "
                           "per line such as 'sunhl-1th-02-Jan-2017-162 A AP.jpg'")
    return names


def load(root: str | Path, *, check_files: bool = True, drop_missing: bool = False) -> pd.DataFrame:
    """The AASCE image manifest (training + test images, all ``spine``)."""
    root = require_folder(Path(root).expanduser().resolve(), TITLE, SECTION, LAYOUT)
    data = dataset_dir(root)
    paths: list[Path] = []
    for part in PARTS:
        folder = data / "data" / part
        names_csv = data / "labels" / part / "filenames.csv"
        if names_csv.is_file():
            paths += [folder / n for n in _listed(names_csv)]
        elif folder.is_dir():
            paths += sorted(p for p in folder.iterdir()
                            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        else:
            raise DatasetError(f"AASCE: folder {folder} not found. Expected layout: {LAYOUT}; "
                               f"see {readme_ref(SECTION)}.")
    if not paths:
        raise DatasetError(f"AASCE: no images in {data / 'data'}/{{training,test}}. Expected "
                           f"layout: {LAYOUT}.")
    out = image_frame(len(paths), path=[str(p) for p in paths], is_xray="1", xray_type="spine",
                      patient_id=prefixed(NAME, (f"{p.parent.name}/{p.stem}" for p in paths)),
                      source=NAME)
    if check_files:
        out = check_files_exist(out, TITLE, drop_missing,
                                hint="The names come from labels/<part>/filenames.csv.")
    return out


def problems(root: Path) -> list[str]:
    """Empty exactly when :func:`load` succeeds (it runs the same reading; see readiness)."""
    return problems_of(load, root)


SPEC = DatasetSpec(name=NAME, title=TITLE, layout=LAYOUT, load=load, problems=problems,
                   readme_section=SECTION, xray_types=("spine",))
