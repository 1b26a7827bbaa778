"""ChestX-ray14 (NIH Clinical Center): 112,120 frontal chest films, 14 findings, 984 boxes.

Native layout (as extracted from the NIH tarballs; nothing is moved)::

    data/raw/chestxray14/
        Data_Entry_2017_v2020.csv      (or Data_Entry_2017.csv, either one optionally .gz)
        BBox_List_2017.csv             (optional; 984 boxes in the 1024 x 1024 PNG space)
        train_val_list.txt, test_list.txt   (optional; the official split)
        images_001/images/00000001_000.png ... images_012/images/...   (or a flat images/)

Every PNG is 1024 x 1024, so ``width = height = 1024`` and the boxes need no scaling (the
CSV's ``OriginalImage[Width,Height]`` columns describe the films before NIH resized them).
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from xray_utils.config import paper
from xray_utils.data.manifests import FINDING_ALIASES, canonical_finding, canonical_findings, encode_boxes  # noqa: F401
from xray_utils.sources.dataset_spec import (
    DatasetError,
    DatasetSpec,
    DuplicateImagesError,
    check_files_exist,
    first_existing,
    image_frame,
    prefixed,
    readme_ref,
    require_folder,
)
from xray_utils.sources.paper.readiness import problems_of

NAME = "chestxray14"
TITLE = "ChestX-ray14 (NIH)"
SECTION = "ChestX-ray14 (NIH)"
DATA_ENTRY_NAMES: tuple[str, ...] = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017_v2020.csv.gz",
                                     "Data_Entry_2017.csv", "Data_Entry_2017.csv.gz")
BBOX_NAMES: tuple[str, ...] = ("BBox_List_2017.csv", "BBox_List_2017.csv.gz")
OFFICIAL_LISTS: tuple[str, str] = ("train_val_list.txt", "test_list.txt")
DATA_ENTRY_COLUMNS: tuple[str, ...] = ("Image Index", "Finding Labels", "Patient ID")
PNG_SIZE = 1024
LAYOUT = ("data/raw/chestxray14/ with Data_Entry_2017_v2020.csv (or Data_Entry_2017.csv, "
          "optionally .gz), images_001/images/*.png ... images_012/images/*.png (or images/*.png), "
          "optional BBox_List_2017.csv, train_val_list.txt, test_list.txt")


def find_data_entry(root: Path) -> Path:
    """The label CSV in ``root`` (any of :data:`DATA_ENTRY_NAMES`)."""
    found = first_existing(root, DATA_ENTRY_NAMES)
    if found is None:
        raise DatasetError(
            f"ChestX-ray14: no label file in {root}; expected one of {list(DATA_ENTRY_NAMES)} "
            f"(download Data_Entry_2017_v2020.csv from the NIH page). See {readme_ref(SECTION)}.")
    return found


def read_data_entry(path: Path) -> pd.DataFrame:
    """Read ``Data_Entry_2017*.csv[.gz]`` and check its columns and finding labels."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DatasetError(f"ChestX-ray14: {path} is not a readable CSV file ({exc}); "
                           f"download it again (see {readme_ref(SECTION)}).") from exc
    missing = [c for c in DATA_ENTRY_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(
            f"ChestX-ray14: {path} lacks the column(s) {missing}; expected the NIH columns "
            f"{list(DATA_ENTRY_COLUMNS)} (+ Follow-up #, Patient Age, ...); found {list(df.columns)[:8]}")
    return df


def read_boxes(path: Path) -> dict[str, list[tuple[str, float, float, float, float]]]:
    """``BBox_List_2017.csv[.gz]`` -> ``{image name: [(finding, x, y, w, h), ...]}`` (1024 px space)."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DatasetError(f"ChestX-ray14: {path} is not a readable CSV file ({exc})") from exc
    if raw.shape[1] < 6 or raw.columns[0] != "Image Index":
        raise DatasetError(
            f"ChestX-ray14: {path} is not the NIH box list; expected the columns "
            "'Image Index, Finding Label, Bbox [x, y, w, h]'; found " + str(list(raw.columns)[:6]))
    boxes: dict[str, list[tuple[str, float, float, float, float]]] = {}
    for row in raw.itertuples(index=False):
        finding = canonical_finding(row[1])
        if finding not in paper.FINDINGS:
            raise DatasetError(f"ChestX-ray14: {path}: unknown finding {row[1]!r} for {row[0]}")
        try:
            x, y, w, h = (float(v) for v in row[2:6])
        except ValueError as exc:
            raise DatasetError(f"ChestX-ray14: {path}: bad box numbers for {row[0]}: {row[2:6]}") from exc
        boxes.setdefault(row[0], []).append((finding, x, y, w, h))
    return boxes


def image_index(root: Path) -> dict[str, Path]:
    """Map PNG name -> file, over ``images*/images/*.png`` and ``images*/*.png``.

    Raises :class:`DuplicateImagesError` when one name sits in two folders.
    """
    index: dict[str, Path] = {}
    dup: list[str] = []
    for top in sorted(p for p in root.glob("images*") if p.is_dir()):
        for folder in (top / "images", top):
            if not folder.is_dir():
                continue
            with os.scandir(folder) as it:
                for entry in it:
                    if entry.name.lower().endswith(".png") and not entry.name.startswith("."):
                        if entry.name in index and Path(entry.path) != index[entry.name]:
                            dup.append(f"{index[entry.name]} = {entry.path}")
                        index[entry.name] = Path(entry.path)
    if dup:
        raise DuplicateImagesError(
            f"ChestX-ray14: {len(dup)} image(s) are present twice under {root} (e.g. "
            + "; ".join(dup[:5]) + "). Delete the extra copies (each tarball once).")
    return index


def load(root: str | Path, *, check_files: bool = True, drop_missing: bool = False) -> pd.DataFrame:
    """The ChestX-ray14 image manifest.

    ``check_files=False`` is the metadata-only mode: no image needs to be present (paths point
    where the images are expected, ``<root>/images/<name>`` unless found elsewhere).
    """
    root = require_folder(Path(root).expanduser().resolve(), TITLE, SECTION, LAYOUT)
    csv = find_data_entry(root)
    df = read_data_entry(csv)
    if df["Image Index"].duplicated().any():
        dups = df.loc[df["Image Index"].duplicated(), "Image Index"].head(5).tolist()
        raise DuplicateImagesError(f"ChestX-ray14: {csv} lists images twice, e.g. {dups}")
    label_map = {text: canonical_findings(text) for text in df["Finding Labels"].unique()}
    bad = [t for t, v in label_map.items() if v is None]
    if bad:
        raise DatasetError(f"ChestX-ray14: {csv} has unknown finding label(s) {bad[:5]}; expected "
                           f"names from {paper.FINDINGS} or {paper.NO_FINDING!r} joined by '|'")
    index = image_index(root)
    if check_files and not index:
        raise DatasetError(
            f"ChestX-ray14: no images*/ folder with PNG files under {root}. Extract the NIH "
            f"tarballs there (images_001.tar.gz -> images_001/images/*.png ...), see "
            f"{readme_ref(SECTION)}; or use check_files=False for metadata only.")
    box_file = first_existing(root, BBOX_NAMES)
    boxes = read_boxes(box_file) if box_file else {}
    names = df["Image Index"].tolist()
    flat = root / "images"
    out = image_frame(
        len(df),
        path=[str(index.get(n, flat / n)) for n in names],
        is_xray="1", xray_type="chest",
        findings=df["Finding Labels"].map(label_map),
        patient_id=prefixed(NAME, (p.strip().lstrip("0") or "0" if p.strip().isdigit() else p.strip()
                                   for p in df["Patient ID"])),
        source=NAME,
        boxes=[encode_boxes(boxes.get(n, [])) for n in names],
        width=str(PNG_SIZE), height=str(PNG_SIZE),
    )
    if check_files:
        out = check_files_exist(out, TITLE, drop_missing,
                                hint=f"Extract all 12 NIH tarballs (layout: {LAYOUT}).")
    out.attrs.update({"label_file": str(csv), "box_file": str(box_file or "")})
    return out


def read_official_lists(root: str | Path) -> dict[str, set[str]]:
    """The official NIH split: ``{"train_val": {...}, "test": {...}}`` image names."""
    root = Path(root)
    out = {}
    for key, name in zip(("train_val", "test"), OFFICIAL_LISTS):
        path = root / name
        if not path.is_file():
            raise DatasetError(
                f"ChestX-ray14: {path} not found; the 'nih' chest split needs the official "
                f"{list(OFFICIAL_LISTS)} from the NIH download page next to the label CSV "
                f"(see {readme_ref(SECTION)}), or choose chest_split='authors' or 'random'.")
        out[key] = {line.strip() for line in path.read_text().splitlines() if line.strip()}
    overlap = out["train_val"] & out["test"]
    if overlap:
        raise DatasetError(f"ChestX-ray14: {len(overlap)} image(s) are in both official lists, "
                           f"e.g. {sorted(overlap)[:5]}")
    return out


def problems(root: Path) -> list[str]:
    """Empty exactly when :func:`load` succeeds (it runs the same reading; see readiness)."""
    return problems_of(load, root)


SPEC = DatasetSpec(name=NAME, title=TITLE, layout=LAYOUT, load=load, problems=problems,
                   readme_section=SECTION, xray_types=("chest",))
