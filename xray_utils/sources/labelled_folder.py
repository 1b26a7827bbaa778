"""The generic labelled folder: any images plus one ``labels.csv`` describing them.

This is the format of a labelled folder of real images (``XRAY_REAL_SAMPLES``) and the way to
bring your own films into the demo (notebook parameter ``EXTRA_DATA``).  ``<folder>/labels.csv`` columns:

==============  ==========================================================================
``file``        image path relative to the folder (required)
``is_xray``     ``1`` radiograph / ``0`` photograph (required; ``true``/``false`` accepted)
``xray_type``   one of ``paper.XRAY_TYPES`` for radiographs, empty for photographs (required)
``labels``      chest films: ChestX-ray14 findings joined by ``|`` or ``No Finding``; other
                text that is no finding at all (e.g. ``Tuberculosis``) means "findings
                unknown", so Module III ignores the film; a misspelt finding (``Efusion``) or
                a finding mixed with unknown words is refused with the valid names; ignored
                for other images (required, may be empty)
``extra``       optional ``key=value;key=value`` pairs: ``patient_id=...``; one or more
                ``bbox=<Finding>:x,y,w,h`` boxes (in a ``bbox_space`` x ``bbox_space`` pixel
                space, 1024 by default = the ChestX-ray14 PNGs; scaled to the file's size)
``patient_id``  optional column; beats ``extra``
``split``       optional ``train``/``val``/``test``; empty rows get a patient-wise split
``width``, ``height``  optional size of the file (read from the file when boxes need it)
==============  ==========================================================================

Checked at ingestion: the CSV has at least one row; every ``file`` resolves inside the folder
(no absolute paths, ``..`` or symlinks pointing out); every image is decoded once with the
project's reader, and unreadable ones are reported by name.

Rows without a patient id get one from a known file-name convention
(:data:`DEFAULT_PATIENT_PATTERNS`: NIH ``00008386_000.png`` -> patient 8386; OAI knee
``9016304L`` -> patient 9016304), else one patient per file.
"""
from __future__ import annotations

import difflib
import os
import re
import stat
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from xray_utils.config import paper
from xray_utils.data.manifests import (
    IMAGE_COLUMNS,
    SPLITS,
    assign_splits,
    canonical_finding,
    canonical_findings,
    check_no_leakage,
    encode_boxes,
)
from xray_utils.sources.dataset_spec import (
    DatasetError,
    DatasetSpec,
    check_duplicates,
    image_frame,
    prefixed,
    readme_ref,
)

NAME = "labelled_folder"
TITLE = "labelled folder"
SECTION = "Your own images: the labelled folder format"
LABELS_FILE = "labels.csv"
REQUIRED_COLUMNS: tuple[str, ...] = ("file", "is_xray", "xray_type", "labels")
LAYOUT = ("<folder>/labels.csv (columns file, is_xray, xray_type, labels[, extra, patient_id, "
          "split]) + the images")
#: File-name conventions that carry a patient id (group ``id``); tried in order.
DEFAULT_PATIENT_PATTERNS: tuple[str, ...] = (
    r"(?:^|/)(?P<id>\d{8})_\d{3}\.\w+$",         # ChestX-ray14 image index: patient_followup
    r"(?:^|[/_])(?P<id>9\d{6})[LR]\.\w+$",       # OAI knee crops: patient id + side
)
#: Checking stops (and the folder is refused) once this many listed files are missing: a
#: labels.csv of a million rows of missing files is refused after a few hundred checks.
MAX_MISSING = 100
#: Cells starting with one of these would run as a formula in a spreadsheet; refused, so that
#: such text never reaches a written manifest (CSV).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n"}


def parse_extra(text: str) -> dict[str, list[str]]:
    """``"patient_id=7;bbox=Mass:1,2,3,4"`` -> ``{"patient_id": ["7"], "bbox": ["Mass:1,2,3,4"]}``.

    Parts without ``=`` (free text) are ignored; keys may repeat.
    """
    out: dict[str, list[str]] = {}
    for part in str(text).split(";"):
        if "=" in part:
            key, value = part.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def parse_boxes(values: Sequence[str], where: str) -> list[tuple[str, float, float, float, float]]:
    """``["Nodule:711.9,357.6,58.5,47.7"]`` -> ``[("Nodule", 711.9, 357.6, 58.5, 47.7)]``."""
    boxes = []
    for value in values:
        for item in value.split("|"):
            m = re.fullmatch(r"\s*([^:]+):\s*([-\d.eE+]+),([-\d.eE+]+),([-\d.eE+]+),([-\d.eE+]+)\s*", item)
            finding = canonical_finding(m.group(1)) if m else ""
            if not m or finding not in paper.FINDINGS:
                raise DatasetError(f"{where}: bad box {item!r}; expected bbox=<Finding>:x,y,w,h with a "
                                   f"finding from {paper.FINDINGS}")
            boxes.append((finding, *(float(m.group(i)) for i in range(2, 6))))
    return boxes


def _patient_from_name(rel: str, patterns: Sequence[str]) -> str | None:
    for pattern in patterns:
        m = re.search(pattern, rel)
        if m:
            pid = m.group("id")
            return str(int(pid)) if pid.isdigit() else pid
    return None


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as im:
            return im.size
    except Exception:
        return None


def check_labels(labels: Sequence[str], chest: Sequence[bool], where: str) -> None:
    """Refuse chest-film labels that mix findings with unknown words or look like a misspelt
    finding (e.g. ``Efusion|Mass``), naming the valid findings."""
    valid = list(paper.FINDINGS) + [paper.NO_FINDING]
    lower = {v.lower(): v for v in valid}
    bad = []
    for line, (text, is_chest) in enumerate(zip(labels, chest), start=2):
        if not is_chest or not str(text).strip():
            continue
        parts = [p.strip() for p in str(text).split("|") if p.strip()]
        known = [p for p in parts if canonical_finding(p) in valid]
        unknown = [p for p in parts if canonical_finding(p) not in valid]
        guesses = {p: difflib.get_close_matches(p.lower().replace("_", " "), list(lower), 1, 0.8)
                   for p in unknown}
        close = {p: lower[g[0]] for p, g in guesses.items() if g}
        if unknown and (known or close):
            hint = "; ".join(f"{p!r} -> {g!r}?" for p, g in close.items())
            bad.append(f"line {line}: {text!r}" + (f" ({hint})" if hint else ""))
    if bad:
        raise DatasetError(f"{where}: unknown finding label(s) on {len(bad)} line(s): "
                           f"{'; '.join(bad[:5])}. Valid labels: {', '.join(valid)} (joined by "
                           "'|'); text that is no finding at all (e.g. Tuberculosis) marks the "
                           "findings as unknown.")


def check_inside(folder: Path, files: Sequence[str], where: str,
                 lines: Sequence[int] | None = None) -> None:
    """Every relative path must resolve inside ``folder`` (already resolved); ``lines``: the
    CSV line of each path (default: 2, 3, ...)."""
    bad = []
    for line, rel in zip(lines if lines is not None else range(2, len(files) + 2), files):
        rel = str(rel)
        if not rel.strip():
            bad.append(f"line {line}: empty file name")
            continue
        if os.path.isabs(rel) or Path(rel).drive:
            bad.append(f"line {line}: {rel!r} is an absolute path")
            continue
        target = (folder / rel).resolve()
        if target != folder and folder not in target.parents:
            bad.append(f"line {line}: {rel!r} points outside the folder (to {target})")
    if bad:
        raise DatasetError(f"{where}: file paths must be relative and stay inside {folder} "
                           f"(no '..', absolute paths or symlinks pointing out): "
                           f"{'; '.join(bad[:5])}" + (f"; and {len(bad) - 5} more" if len(bad) > 5
                                                     else "") + ".")


def check_formulas(df: pd.DataFrame, where: str, source: str) -> None:
    """Refuse cells (and a source name) that a spreadsheet would run as a formula."""
    bad = []
    for column in df.columns:
        values = df[column].astype(str)
        hit = values.str.startswith(FORMULA_STARTS)
        for line in (np.flatnonzero(hit.to_numpy()) + 2)[:3].tolist():
            bad.append(f"line {line}, column {column}: {values.iloc[line - 2][:40]!r}")
    if str(source).startswith(FORMULA_STARTS):
        bad.append(f"the source name {source!r}")
    if bad:
        raise DatasetError(f"{where}: text starting with = + - @ (or a tab) would run as a formula "
                           f"in a spreadsheet opening the manifests written from it: "
                           f"{'; '.join(bad[:5])}. Remove the sign (numbers and names never need "
                           "it).")


def check_numbers(df: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    """Optional size columns must be empty or whole numbers of pixels."""
    for column in columns:
        if column not in df.columns:
            continue
        values = df[column].str.strip()
        bad = ~(values.eq("") | values.str.fullmatch(r"\d{1,6}"))
        if bad.any():
            lines = (np.flatnonzero(bad.to_numpy()) + 2)[:5].tolist()
            raise DatasetError(f"{where}: {column} must be empty or a whole number of pixels; bad "
                               f"value(s) {values[bad].unique()[:5].tolist()} on line(s) {lines}.")


def existing_files(folder: Path, files: Sequence[str], where: str,
                   drop_missing: bool = False) -> np.ndarray:
    """One ``stat`` per listed file: which exist (as regular files).  Refused (a
    :class:`DatasetError` naming the count) when any is missing -- at the
    :data:`MAX_MISSING`-th missing file already, without checking the rest -- or, with
    ``drop_missing``, when none exists; with ``drop_missing`` the missing ones are reported."""
    exists = np.zeros(len(files), dtype=bool)
    missing: list[str] = []
    for i, rel in enumerate(files):
        path = os.path.join(folder, str(rel))
        try:
            exists[i] = stat.S_ISREG(os.stat(path).st_mode)
        except (OSError, ValueError):
            try:  # a link is kept for check_inside, which says where it points
                exists[i] = stat.S_ISLNK(os.lstat(path).st_mode)
            except (OSError, ValueError):
                pass
        if not exists[i]:
            missing.append(str(rel))
            if not drop_missing and len(missing) >= MAX_MISSING:
                raise DatasetError(
                    f"{where}: at least {len(missing)} of the first {i + 1} of its {len(files)} "
                    f"listed image(s) are missing (checking stopped there), e.g. "
                    f"{', '.join(missing[:5])}. Paths are relative to {folder}. Fix the paths, or "
                    "pass drop_missing=True to leave missing files out.")
    if missing and not exists.any():
        raise DatasetError(f"{where}: none of its {len(files)} listed image(s) exists, e.g. "
                           f"{', '.join(missing[:5])}. Paths are relative to {folder}.")
    if missing and not drop_missing:
        raise DatasetError(f"{where}: {len(missing)} of {len(files)} listed image(s) are missing, "
                           f"e.g. {', '.join(missing[:5])}. Paths are relative to {folder}. Or "
                           "pass drop_missing=True to leave them out and go on.")
    if missing:
        warnings.warn(f"{where}: dropped {len(missing)} of {len(files)} listed image(s) whose "
                      f"files are missing (e.g. {', '.join(missing[:5])})", stacklevel=3)
    return exists


def check_images(paths: Sequence[str], where: str, drop: bool = False) -> list[bool]:
    """Decode every image once with the project's reader; unreadable ones are an error naming
    them (or, with ``drop``, reported and dropped).  Returns which ones are readable."""
    from xray_utils.data.imageio import ImageReadError, read_gray

    ok, bad = [], []
    for p in paths:
        if not Path(p).is_file():  # missing files are check_files_exist's job
            ok.append(True)
            continue
        try:
            read_gray(p)
            ok.append(True)
        except ImageReadError as exc:
            ok.append(False)
            bad.append(str(exc))
    if bad:
        text = (f"{where}: {len(bad)} image(s) cannot be read: " + " | ".join(bad[:5])
                + (f" | and {len(bad) - 5} more" if len(bad) > 5 else ""))
        if not drop:
            raise DatasetError(text + " Fix or remove them (or load with drop_missing=True).")
        print(text + " They are left out.")
    return ok


def load(folder: str | Path, *, check_files: bool = True, drop_missing: bool = False,
         source: str | None = None, bbox_space: float | None = 1024,
         patient_patterns: Sequence[str] = DEFAULT_PATIENT_PATTERNS,
         check_content: bool = True, drop_duplicates: bool = False,
         decode: bool = True) -> pd.DataFrame:
    """Image manifest of a labelled folder (``source`` defaults to the folder's name).

    Every reader of a labelled folder goes through here.  ``check_files`` checks that the listed
    files exist (one ``stat`` each, refused after :data:`MAX_MISSING` missing ones; dropped with
    ``drop_missing``) and, with ``decode``, decodes each once (a caller that decodes them anyway,
    e.g. ``transfer``, passes ``decode=False`` and skips unreadable ones itself).

    Findings of chest films are kept only when every label is a ChestX-ray14 finding (or the
    label is exactly ``No Finding``); otherwise they are left empty (unknown).  Patient ids are
    prefixed with ``source`` so they never collide with another dataset's.
    """
    folder = Path(folder).expanduser().resolve()
    csv = folder / LABELS_FILE
    if not folder.is_dir():
        raise DatasetError(f"labelled folder {folder} not found; expected {LAYOUT}. "
                           f"See {readme_ref(SECTION)}.")
    if not csv.is_file():
        raise DatasetError(f"labelled folder {folder}: {LABELS_FILE} not found; expected {LAYOUT}. "
                           f"See {readme_ref(SECTION)}.")
    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DatasetError(f"{csv} is not a readable CSV file ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(f"{csv} lacks the column(s) {missing}; expected columns "
                           f"{list(REQUIRED_COLUMNS)} (+ optional extra, patient_id, split, width, "
                           f"height); found {list(df.columns)}")
    if df.empty:
        raise DatasetError(f"{csv} has a header but no rows: it describes no image. Add one row "
                           f"per image ({', '.join(REQUIRED_COLUMNS)}).")
    source = source or folder.name
    check_formulas(df, str(csv), source)
    check_numbers(df, ("width", "height"), str(csv))
    # paths that leave the folder by their text alone (absolute, '..') are refused before any
    # file is looked at; then missing files (fast: refused after a few); then, on the files
    # that exist, symlinks pointing out
    files = df["file"].astype(str)
    norm = files.map(os.path.normpath)
    leaving = (norm.str.startswith("..") | files.map(os.path.isabs) | files.str.strip().eq("")
               | files.map(lambda f: bool(Path(f).drive))).to_numpy()
    if leaving.any():
        check_inside(folder, files[leaving].tolist(), str(csv),
                     (np.flatnonzero(leaving) + 2).tolist())
    dropped = 0
    lines = np.arange(len(df)) + 2
    if check_files:
        exists = existing_files(folder, files.tolist(), str(csv), drop_missing)
        dropped = int((~exists).sum())
        df, lines = df[exists].reset_index(drop=True), lines[exists]
    check_inside(folder, df["file"].tolist(), str(csv), lines.tolist())
    flag = df["is_xray"].str.strip().str.lower()
    bad = ~flag.isin(_TRUE | _FALSE)
    if bad.any():
        rows = (np.flatnonzero(bad.to_numpy()) + 2)[:5].tolist()
        values = df.loc[bad, "is_xray"].unique()[:5].tolist()
        raise DatasetError(f"{csv}: is_xray must be 1 or 0; bad value(s) {values} "
                           f"on line(s) {rows}")
    is_xray = flag.isin(_TRUE)
    xtype = df["xray_type"].str.strip().str.lower().where(is_xray, "")
    bad = is_xray & ~xtype.isin(paper.XRAY_TYPES)
    if bad.any():
        rows = (np.flatnonzero(bad.to_numpy()) + 2)[:5].tolist()
        raise DatasetError(f"{csv}: xray_type must be one of {paper.XRAY_TYPES} for X-rays; bad "
                           f"value(s) {xtype[bad].unique()[:5].tolist()} on line(s) {rows}")
    if "split" in df.columns:
        bad = ~df["split"].isin(("",) + SPLITS)
        if bad.any():
            raise DatasetError(f"{csv}: split must be empty or one of {SPLITS}; found "
                               f"{df.loc[bad, 'split'].unique()[:5].tolist()}")
    extras = [parse_extra(t) for t in df.get("extra", pd.Series([""] * len(df)))]
    chest = (xtype == "chest").to_numpy()
    check_labels(df["labels"].tolist(), chest.tolist(), str(csv))
    findings = [(canonical_findings(lab) or "") if c else "" for lab, c in zip(df["labels"], chest)]

    patients = []
    for i, (rel, ex) in enumerate(zip(df["file"], extras)):
        pid = df["patient_id"].iloc[i].strip() if "patient_id" in df.columns else ""
        pid = pid or (ex.get("patient_id") or [""])[0]
        pid = pid or _patient_from_name(rel, patient_patterns) or f"file:{rel}"
        patients.append(pid)

    paths = [folder / f for f in df["file"]]
    widths = df["width"].tolist() if "width" in df.columns else [""] * len(df)
    heights = df["height"].tolist() if "height" in df.columns else [""] * len(df)
    boxes = []
    for i, ex in enumerate(extras):
        raw = parse_boxes(ex.get("bbox", []), f"{csv} line {i + 2}") if chest[i] else []
        if raw and bbox_space:
            if not (widths[i] and heights[i]):
                size = _image_size(paths[i])
                if size is None:
                    raise DatasetError(f"{csv} line {i + 2}: boxes need the image size but "
                                       f"{paths[i]} cannot be read; add width and height columns")
                widths[i], heights[i] = str(size[0]), str(size[1])
            sx, sy = float(widths[i]) / bbox_space, float(heights[i]) / bbox_space
            raw = [(f, x * sx, y * sy, w * sx, h * sy) for f, x, y, w, h in raw]
        boxes.append(encode_boxes(raw))

    out = image_frame(
        len(df), path=[str(p) for p in paths], is_xray=np.where(is_xray, "1", "0"),
        xray_type=xtype, findings=findings, patient_id=prefixed(source, patients),
        split=df["split"] if "split" in df.columns else "", source=source, boxes=boxes,
        width=widths, height=heights)
    if check_files and decode:
        readable = check_images(out["path"].tolist(), f"labelled folder {folder}", drop_missing)
        out = out[readable].reset_index(drop=True)
    out.attrs["missing_dropped"] = dropped
    return check_duplicates(out, content=check_content, drop=drop_duplicates, what=str(csv))


def add_labelled_folder(images_df: pd.DataFrame, folder: str | Path | None, seed: int = 0,
                        **load_kwargs) -> pd.DataFrame:
    """Ingest a labelled folder, split it patient-wise, and append it to an image manifest.

    Used to mix real films into the demo (notebook parameter ``EXTRA_DATA``).  ``folder=None``
    (or ``""``) returns ``images_df`` unchanged.  Rows of the folder get a 70/20/10 split by
    patient (stratified by X-ray type, seeded); the result is checked for duplicates (same
    path, or same file content in both) and for patient leakage.
    """
    if folder in (None, ""):
        return images_df.copy()
    missing = [c for c in IMAGE_COLUMNS if c not in images_df.columns]
    if missing:
        raise DatasetError(f"add_labelled_folder: the image manifest lacks column(s) {missing}; "
                           f"expected {IMAGE_COLUMNS}")
    check_content = load_kwargs.pop("check_content", True)
    drop_duplicates = load_kwargs.pop("drop_duplicates", False)
    extra = load(folder, check_content=check_content, drop_duplicates=drop_duplicates, **load_kwargs)
    extra = assign_splits(extra, seed=seed)
    base = images_df[list(IMAGE_COLUMNS)].astype(str).replace({"nan": "", "<NA>": ""})
    both = pd.concat([base, extra], ignore_index=True)
    both = check_duplicates(both, content=check_content, drop=drop_duplicates,
                            what=f"image manifest + {folder}")
    check_no_leakage(both, what=f"image manifest + {folder}")
    return both


def problems(root: Path) -> list[str]:
    if not root.is_dir():
        return [f"folder {root} is missing"]
    return [] if (root / LABELS_FILE).is_file() else [f"{root / LABELS_FILE} is missing"]


SPEC = DatasetSpec(name=NAME, title=TITLE, layout=LAYOUT, load=load, problems=problems,
                   readme_section=SECTION)
