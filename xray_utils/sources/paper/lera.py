"""LERA (Stanford AIMI): 1,299 lower-extremity radiographs (foot, knee, ankle, hip) from 180 studies.

The Stanford AIMI release unpacks to::

    data/raw/lera/
        LERA Dataset/
            labels.csv            no header: study id, study type, label
                                  (e.g. ``1001,XR ANKLE,1``; XR ANKLE / XR FOOT / XR KNEE / XR HIP)
            1001/ST-1/*.png       the study's images (any depth below the study folder; PNG or DICOM)
            ...

The body part is only in ``labels.csv``; each study is taken as one patient (the release gives
no other patient id).  Other layouts are read too, in this order:

0. the AIMI layout above (a header-less CSV whose second column names the body part, directly
   in ``data/raw/lera/`` or one folder below; study folders beside it);
1. a labels CSV directly in ``data/raw/lera/`` or one folder below, with a path column
   (``path``, ``file``, ``filename``, ``image``, ``image_path``) and a body-part column
   (``body_part``, ``bodypart``, ``part``, ``region``, ``anatomy``, ``study_type``,
   ``xray_type``, ``type``), optionally a ``patient``/``patient_id``/``study``/``study_id``
   column; paths are relative to the CSV's folder;
2. otherwise every image below ``data/raw/lera/``, the body part taken from the nearest folder
   (or file) name containing ``foot``, ``knee``, ``ankle`` or ``hip`` (``XR_FOOT``, ``Knee``,
   ``hip_left`` ... all match), the patient from a ``patient*`` folder, else from the study
   folder(s) above the image (folders that are not body parts and not shared by every image),
   else one patient per file.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from xray_utils.sources.dataset_spec import (
    DatasetError,
    DatasetSpec,
    check_files_exist,
    image_frame,
    prefixed,
    readme_ref,
    require_folder,
    tokens,
    walk_images,
)
from xray_utils.sources.paper.readiness import problems_of

NAME = "lera"
TITLE = "LERA"
SECTION = "LERA"
LAYOUT = ("data/raw/lera/LERA Dataset/{labels.csv (no header: study id, XR ANKLE|XR FOOT|XR KNEE|"
          "XR HIP, label), <study id>/ST-1/*.png} as released by Stanford AIMI; or images in "
          "folders named after the body part (foot/knee/ankle/hip, e.g. <study>/XR_KNEE/image1.png); "
          "or a labels CSV with path + body_part columns")
BODY_WORDS: dict[str, str] = {"foot": "foot", "feet": "foot", "knee": "knee", "knees": "knee",
                              "ankle": "ankle", "ankles": "ankle", "hip": "hip", "hips": "hip"}
PATH_COLUMNS = ("path", "file", "filename", "file_name", "image", "image_path", "img")
PART_COLUMNS = ("body_part", "bodypart", "body part", "part", "region", "anatomy", "study_type",
                "xray_type", "type")
PATIENT_COLUMNS = ("patient_id", "patient", "study_id", "study", "subject")
_PATIENT_DIR = re.compile(r"^(patient|pt|subject)[\W_]*\w+$", re.IGNORECASE)


def body_part(name: str) -> str | None:
    """``"XR_FOOT"`` -> ``"foot"``; ``None`` when the name names no LERA body part."""
    found = {BODY_WORDS[t] for t in tokens(name) if t in BODY_WORDS}
    return found.pop() if len(found) == 1 else None


def _column(df: pd.DataFrame, choices: tuple[str, ...]) -> str | None:
    lower = {c.lower().strip(): c for c in df.columns}
    return next((lower[c] for c in choices if c in lower), None)


def _labels_csv(root: Path) -> tuple[Path, pd.DataFrame] | None:
    for csv in sorted(root.glob("*.csv")) + sorted(root.glob("*/*.csv")):
        try:
            df = pd.read_csv(csv, dtype=str, keep_default_na=False)
        except Exception:
            continue
        if _column(df, PATH_COLUMNS) and _column(df, PART_COLUMNS):
            return csv, df
    return None


def _study_table(csv: Path) -> pd.DataFrame | None:
    """A header-less AIMI ``labels.csv`` (study id, ``XR <PART>``, label) -> ``study, part``;
    ``None`` when the file does not look like one (fewer than two columns, or a second column
    that names no body part in most rows)."""
    try:
        df = pd.read_csv(csv, header=None, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception:
        return None
    if df.shape[1] < 2 or df.empty:
        return None
    parts = df[1].map(lambda v: body_part(str(v)))
    rest = parts.iloc[1:] if len(df) > 1 else parts
    if rest.notna().mean() < 0.5:
        return None
    if parts.iloc[0] is None and parts.iloc[1:].notna().all() and len(df) > 1:
        df, parts = df.iloc[1:], parts.iloc[1:]  # a header row after all
    if parts.isna().any():
        bad = df.loc[parts.isna(), 1].unique()[:5].tolist()
        raise DatasetError(f"LERA: {csv}: study type(s) {bad} name no body part; expected "
                           "XR ANKLE, XR FOOT, XR KNEE or XR HIP")
    out = pd.DataFrame({"study": df[0].str.strip().to_numpy(), "part": parts.to_numpy()})
    dup = out["study"].duplicated()
    if dup.any():
        raise DatasetError(f"LERA: {csv} lists study id(s) twice: {out.loc[dup, 'study'].head(5).tolist()}")
    return out


def _aimi_labels(root: Path) -> tuple[Path, pd.DataFrame] | None:
    for csv in sorted(root.glob("*.csv")) + sorted(root.glob("*/*.csv")):
        table = _study_table(csv)
        if table is not None:
            return csv, table
    return None


def _from_aimi(csv: Path, table: pd.DataFrame) -> pd.DataFrame:
    """Images of each listed study: every image file at any depth below ``<csv folder>/<study id>``."""
    base = csv.parent
    folders = {d.name: d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")}
    unpadded = {name.lstrip("0") or "0": d for name, d in folders.items()}
    paths, parts, studies, absent, empty = [], [], [], [], []
    for study, part in zip(table["study"], table["part"]):
        folder = folders.get(study) or unpadded.get(study.lstrip("0") or "0")
        if folder is None:
            absent.append(str(base / study))
            continue
        files = walk_images(folder)
        if not files:
            empty.append(str(folder))
            continue
        paths += [str(f) for f in files]
        parts += [part] * len(files)
        studies += [study] * len(files)
    if absent or empty:
        raise DatasetError(
            f"LERA: {csv} lists {len(table)} studies; "
            + (f"{len(absent)} have no folder beside it (e.g. {absent[:5]})" if absent else "")
            + ("; " if absent and empty else "")
            + (f"{len(empty)} folder(s) hold no image file (e.g. {empty[:5]})" if empty else "")
            + ". Extract the whole AIMI download unchanged into data/raw/lera/ "
            f"(see {readme_ref(SECTION)}).")
    return image_frame(len(paths), path=paths, is_xray="1", xray_type=parts,
                       patient_id=prefixed(NAME, studies), source=NAME)


def _from_csv(csv: Path, df: pd.DataFrame) -> pd.DataFrame:
    pcol, bcol = _column(df, PATH_COLUMNS), _column(df, PART_COLUMNS)
    parts = df[bcol].map(lambda v: body_part(str(v)))
    if parts.isna().any():
        bad = df.loc[parts.isna(), bcol].unique()[:5].tolist()
        raise DatasetError(f"LERA: {csv}: column {bcol!r} has value(s) {bad} that name no body "
                           "part; expected foot, knee, ankle or hip")
    paths = [str((csv.parent / p).resolve()) for p in df[pcol]]
    qcol = _column(df, PATIENT_COLUMNS)
    patients = df[qcol].tolist() if qcol else [Path(p).stem for p in df[pcol]]
    return image_frame(len(df), path=paths, is_xray="1", xray_type=parts,
                       patient_id=prefixed(NAME, patients), source=NAME)


def _patients(rels: list[Path]) -> list[str]:
    """Patient (or study) of each image: a ``patient*`` folder if any; else the folders left
    after dropping body-part folders and the folders shared by every image (``LERA/0001/XR_KNEE``
    -> ``0001``); else the file itself."""
    stripped = [tuple(d for d in r.parts[:-1] if body_part(d) is None) for r in rels]
    common = 0
    if stripped:
        shortest = min(len(s) for s in stripped)
        while common < shortest and len({s[common] for s in stripped}) == 1:
            common += 1
    out = []
    for rel, dirs in zip(rels, stripped):
        named = [d for d in rel.parts[:-1] if _PATIENT_DIR.match(d)]
        out.append(named[0] if named else "/".join(dirs[common:]) or rel.as_posix())
    return out


def _from_tree(root: Path) -> pd.DataFrame:
    files = walk_images(root)
    if not files:
        raise DatasetError(f"LERA: no image files under {root}. Expected layout: {LAYOUT}; "
                           f"see {readme_ref(SECTION)}.")
    parts, unplaced = [], []
    for f in files:
        rel = f.relative_to(root)
        found = [body_part(n) for n in (*rel.parts[:-1], rel.stem)]
        found = [p for p in found if p]
        parts.append(found[-1] if found else None)
        if not found:
            unplaced.append(str(f))
    if unplaced:
        raise DatasetError(
            f"LERA: {len(unplaced)} of {len(files)} image(s) under {root} are in no folder named "
            f"after a body part (foot/knee/ankle/hip), e.g. {unplaced[:5]}. Keep the dataset's "
            f"body-part folders, or add a labels CSV with path and body_part columns "
            f"(see {readme_ref(SECTION)}).")
    rels = [f.relative_to(root) for f in files]
    return image_frame(len(files), path=[str(f) for f in files], is_xray="1", xray_type=parts,
                       patient_id=prefixed(NAME, _patients(rels)), source=NAME)


def load(root: str | Path, *, check_files: bool = True, drop_missing: bool = False) -> pd.DataFrame:
    """The LERA image manifest: from the AIMI ``labels.csv`` (study -> body part), else from a
    labels CSV with named columns, else from the folder names.

    ``check_files`` applies to CSV-listed paths; in the other layouts the files are found by
    walking the folders, so they exist.  Raises :class:`DatasetError` naming the file and fix.
    """
    root = require_folder(Path(root).expanduser().resolve(), TITLE, SECTION, LAYOUT)
    found = _labels_csv(root)
    if found is None:
        aimi = _aimi_labels(root)
        if aimi is not None:
            return _from_aimi(*aimi)
    if found:
        out = _from_csv(*found)
        if check_files:
            out = check_files_exist(out, TITLE, drop_missing,
                                    hint=f"Paths in {found[0]} are read relative to its folder.")
        return out
    return _from_tree(root)


def problems(root: Path) -> list[str]:
    """Empty exactly when :func:`load` succeeds (it runs the same reading)."""
    return problems_of(load, root)


SPEC = DatasetSpec(name=NAME, title=TITLE, layout=LAYOUT, load=load, problems=problems,
                   readme_section=SECTION, xray_types=("foot", "knee", "ankle", "hip"))
