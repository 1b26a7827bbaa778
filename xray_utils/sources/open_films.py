"""The real films shipped with the repository (``data/open-films``), as an image manifest.

5,902 openly licensed images (4,247 NIH chest films with their findings, 837 of them with the NIH
boxes; FracAtlas films with body parts reviewed one by one; knee joint crops, spine AP films,
paediatric wrists; photographs and drawings), each listed in ``data/open-films/manifest.csv`` with
its licence, citation and the checksum of the stored file, stored at most 128 px on the long side.
The demo profile trains every module on them and tests every module on their held-out part::

    from xray_utils.sources.open_films import load_open_films
    films = load_open_films(seed=0)          # IMAGE_COLUMNS

The NIH films keep the split of the paper's authors (the manifest's ``split`` column: the
patient-wise 70/10/20 split of IS2AI/Chest-X-ray-module, so the real test films are the authors'
test patients); the other films, which the sources give no split, are split patient-wise 60/10/30
(:data:`SPLIT_FRACTIONS`).  The NIH boxes (``boxes``: ``Finding:x,y,w,h;...`` in the original
1024 x 1024 pixels) come back in the pixels of the stored file, as every image manifest has them.

``source`` is ``open-films/<source>`` (e.g. ``open-films/nih_cxr14``), so evaluations can report
generated and real test images apart (:func:`is_real`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from xray_utils.config import paper
from xray_utils.config.paths import OPEN_FILMS_DIR
from xray_utils.data.manifests import (
    IMAGE_COLUMNS,
    assign_splits,
    canonical_finding,
    canonical_findings,
    encode_boxes,
)
from xray_utils.sources.dataset_spec import DatasetError

MANIFEST = "manifest.csv"
SOURCE_PREFIX = "open-films/"
#: Columns every row of the pack's manifest must fill.
REQUIRED = ("file", "is_xray", "xray_type", "findings", "patient_id", "source", "licence",
            "citation", "sha256")
#: The split of the films without one in the manifest (all but the NIH films): a larger test share
#: than the paper's 10 %, so that the rarer real types give usable confidence intervals.
SPLIT_FRACTIONS: Mapping[str, float] = {"train": 0.6, "val": 0.1, "test": 0.3}


def is_real(source: pd.Series | str) -> pd.Series | bool:
    """True for rows that come from the shipped real films (``source`` starts ``open-films/``)."""
    if isinstance(source, str):
        return source.startswith(SOURCE_PREFIX)
    return source.astype(str).str.startswith(SOURCE_PREFIX)


def read_pack_manifest(folder: str | Path = OPEN_FILMS_DIR) -> pd.DataFrame:
    """The pack's ``manifest.csv``, checked: required columns filled, types known, files present."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{path} is missing: the real films ship with the repository in "
                           "data/open-films/; restore it with `git checkout -- data/open-films`.")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DatasetError(f"{path} lacks column(s) {missing}")
    empty = [c for c in REQUIRED if c not in ("xray_type", "findings") and (df[c] == "").any()]
    if empty:
        raise DatasetError(f"{path}: empty value(s) in column(s) {empty}")
    if "split" in df.columns:
        bad_split = sorted(set(df["split"]) - {"", *paper.SPLIT_FRACTIONS})
        if bad_split:
            raise DatasetError(f"{path}: unknown split value(s) {bad_split}; expected "
                               f"{sorted(paper.SPLIT_FRACTIONS)} or empty")
    bad_type = sorted(set(df.loc[df["is_xray"] == "1", "xray_type"]) - set(paper.XRAY_TYPES))
    if bad_type:
        raise DatasetError(f"{path}: unknown X-ray type(s) {bad_type}; expected {paper.XRAY_TYPES}")
    absent = [f for f in df["file"] if not (folder / f).is_file()]
    if absent:
        raise DatasetError(f"{len(absent)} file(s) listed in {path} are missing, e.g. {absent[:3]}; "
                           "restore them with `git checkout -- data/open-films`.")
    return df


def verify_checksums(folder: str | Path = OPEN_FILMS_DIR,
                     df: pd.DataFrame | None = None) -> list[str]:
    """Files whose sha256 differs from the manifest's (empty when the pack is intact); ``df``:
    the manifest when the caller has already read it."""
    folder = Path(folder)
    df = read_pack_manifest(folder) if df is None else df
    return [f for f, want in zip(df["file"], df["sha256"])
            if hashlib.sha256((folder / f).read_bytes()).hexdigest() != want]


#: The pixel space of the NIH boxes in the manifest (``BBox_List_2017.csv``'s).
NIH_BOX_SPACE = 1024.0


def parse_boxes(text: str, size: tuple[int, int], where: str = MANIFEST) -> str:
    """The manifest's ``Finding:x,y,w,h;...`` (1024 x 1024 pixels) as the image manifest's
    ``boxes`` JSON in the pixels of a stored file of ``size`` (width, height)."""
    if not text.strip():
        return ""
    boxes = []
    for part in text.split(";"):
        name, _, numbers = part.partition(":")
        try:
            x, y, w, h = (float(v) for v in numbers.split(","))
        except ValueError:
            raise DatasetError(f"{where}: box {part!r} is not 'Finding:x,y,w,h'") from None
        finding = canonical_finding(name)
        if finding not in paper.FINDINGS:
            raise DatasetError(f"{where}: box {part!r} names an unknown finding")
        sx, sy = size[0] / NIH_BOX_SPACE, size[1] / NIH_BOX_SPACE
        boxes.append((finding, x * sx, y * sy, w * sx, h * sy))
    return encode_boxes(boxes)


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def load_open_films(folder: str | Path = OPEN_FILMS_DIR, seed: int = 0,
                    fractions: Mapping[str, float] = SPLIT_FRACTIONS,
                    verify: bool = True) -> pd.DataFrame:
    """The pack as an image manifest (:data:`IMAGE_COLUMNS`): the manifest's ``split`` where it has
    one (the NIH films: the authors' split), elsewhere split patient-wise by ``fractions``.

    NIH films without a finding are labelled ``No Finding``; every other film has no findings.
    With ``verify`` the files' checksums are checked first (a changed file is an error that
    names it).
    """
    folder = Path(folder).expanduser().resolve()
    df = read_pack_manifest(folder)
    if verify:
        changed = verify_checksums(folder, df)
        if changed:
            raise DatasetError(f"{len(changed)} file(s) of {folder} differ from their checksum in "
                               f"{MANIFEST}, e.g. {changed[:3]}; restore them with "
                               "`git checkout -- data/open-films`.")
    is_xray = df["is_xray"] == "1"
    chest = is_xray & (df["xray_type"] == "chest")
    findings = np.where(chest, [canonical_findings(f) if f else paper.NO_FINDING
                                for f in df["findings"]], "")
    if any(f is None for f in findings):
        raise DatasetError(f"{folder / MANIFEST}: unknown finding label(s) on chest films")
    sizes = [_image_size(folder / f) for f in df["file"]]
    images = pd.DataFrame({
        "path": [str(folder / f) for f in df["file"]],
        "is_xray": np.where(is_xray, "1", "0"),
        "xray_type": np.where(is_xray, df["xray_type"], ""),
        "findings": findings,
        "patient_id": "open-films:" + df["patient_id"],
        "split": df["split"] if "split" in df.columns else "",
        "source": SOURCE_PREFIX + df["source"],
        "boxes": [parse_boxes(b, size, f"{folder / MANIFEST} ({f})")
                  for b, size, f in zip(df.get("boxes", [""] * len(df)), sizes, df["file"])],
        "width": [str(w) for w, _ in sizes],
        "height": [str(h) for _, h in sizes],
    })[list(IMAGE_COLUMNS)]
    return assign_splits(images, seed=seed, fractions=fractions)
