"""FracAtlas v7 (figshare): 4,083 musculoskeletal films; the type of the films reviewed by eye.

Every readable film is an X-ray for Module I; Module II gets only the films whose body part is
in the shipped table :data:`FRACATLAS_BODY_PARTS_CSV` (the dataset's region flags are too
coarse to name a type).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import pandas as pd
from tqdm.auto import tqdm

from xray_utils.config import paper
from xray_utils.data.imageio import ImageReadError, read_gray
from xray_utils.sources.public.spec import PublicDataError, PublicDataset, PublicFile, frame

NAME = "fracatlas"
#: FracAtlas ``dataset.csv`` region flags.  They are too coarse to name a Module II class (the
#: ``hand`` flag covers forearms and elbows, ``leg`` knees, feet and ankles): a film's type
#: comes from :data:`FRACATLAS_BODY_PARTS_CSV` (reviewed by eye) or stays unknown (Module I only).
FRACATLAS_REGIONS: tuple[str, ...] = ("hand", "leg", "hip", "shoulder")

#: The shipped table ``image_id,xray_type`` of the FracAtlas films whose body part was reviewed.
FRACATLAS_BODY_PARTS_CSV = Path(__file__).with_name("fracatlas_body_parts.csv")

FRACATLAS_COLUMNS: tuple[str, ...] = ("image_id", "hand", "leg", "hip", "shoulder", "mixed",
                                      "fractured")

#: What the dataset is, its licence and how to cite it.
SPEC: PublicDataset = PublicDataset(
    name="fracatlas", title="FracAtlas v7",
    licence="CC BY 4.0", licence_url="https://creativecommons.org/licenses/by/4.0/",
    citation=("I. Abedeen, M. A. Rahman, F. Z. Prottyasha, T. Ahmed, T. M. Chowdhury, "
              "S. Shatabda, \"FracAtlas: A dataset for fracture classification, localization "
              "and segmentation of musculoskeletal radiographs\", Scientific Data 10 (2023), "
              "doi:10.1038/s41597-023-02432-4; data: doi:10.6084/m9.figshare.22363012.v7"),
    homepage="https://doi.org/10.6084/m9.figshare.22363012",
    used_for="Modules I-II (hand, hip, shoulder films)",
    notes="No patient ids: every film is its own group. 'leg' and multi-region films are "
          "left out (no single X-ray type).")

#: Its downloadable files (:class:`~xray_utils.sources.public.spec.PublicFile`).
FILES: tuple[PublicFile, ...] = (
    PublicFile(
        name="fracatlas", dataset="fracatlas", url="https://ndownloader.figshare.com/files/65518038",
        filename="FracAtlas.zip", size=338_436_460, size_exact=True,
        size_source="figshare (v7, file 65518038)",
        checksums=("md5:fe9da2c7c285915ebee69dfdab8fd396",), checksum_source="figshare (v7)",
        layout=("FracAtlas/dataset.csv (image_id, hand, leg, hip, shoulder, mixed, hardware, "
                "multiscan, fractured, fracture_count, frontal, lateral, oblique) + "
                "FracAtlas/images/{Fractured,Non_fractured}/IMGnnnnnnn.jpg + FracAtlas/Annotations, "
                "FracAtlas/utilities (not used)")),
)


def keep_member(name: str) -> bool:
    """Members of the FracAtlas zip that are used (the images and dataset.csv, not annotations)."""
    return name == "FracAtlas/dataset.csv" or (name.startswith("FracAtlas/images/")
                                               and not name.endswith("/"))


def jpeg_complete(path: Path) -> bool:
    """Whether a JPEG decodes whole: cheap end-of-image check, full decode only when it fails.

    FracAtlas ships 59 truncated JPEGs; the project's reader refuses them, so they are left
    out of the manifest instead of failing (or being black) in training.
    """
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - 64))
            if b"\xff\xd9" in fh.read():
                return True
        read_gray(path)
        return True
    except (ImageReadError, OSError):
        return False

def fracatlas_body_parts(path: str | os.PathLike = FRACATLAS_BODY_PARTS_CSV) -> dict[str, str]:
    """``{image_id: xray_type}`` of the FracAtlas films whose body part was reviewed by eye.

    The shipped table (250 films: knee 77, hand 55, foot 48, forearm 27, shoulder 21, hip 10,
    elbow 8, ankle 4) comes from the project's review of single films; ``#`` lines are comments.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, comment="#")
    except (OSError, pd.errors.ParserError) as exc:
        raise PublicDataError(f"FracAtlas body parts: cannot read {path} ({exc})") from exc
    if list(table.columns) != ["image_id", "xray_type"]:
        raise PublicDataError(f"FracAtlas body parts: {path} needs the columns image_id,xray_type; "
                              f"found {list(table.columns)}")
    bad = sorted(set(table["xray_type"]) - set(paper.XRAY_TYPES))
    if bad or table["image_id"].duplicated().any():
        raise PublicDataError(f"FracAtlas body parts: {path} has unknown type(s) {bad} or an image "
                              f"listed twice; types must be among {paper.XRAY_TYPES}")
    return dict(zip(table["image_id"].str.strip(), table["xray_type"].str.strip()))

def fracatlas_images(root: Path, progress: bool = True,
                     body_parts: Mapping[str, str] | None = None) -> pd.DataFrame:
    """FracAtlas rows: every readable film is an X-ray; its type only where it was reviewed.

    ``body_parts`` (default: :func:`fracatlas_body_parts`, the shipped table) gives the type of
    the reviewed films; every other film keeps an empty ``xray_type`` -- an X-ray of unknown
    body part, which :func:`~xray_utils.data.manifests.task_manifests` puts in Module I only,
    never in a Module II class (the dataset's own region flags are too coarse for that).
    Left out, counted in ``attrs["excluded"]``: images found in both class folders (ambiguous),
    images missing from their folder, and truncated JPEGs.  ``attrs["body_part"]`` counts the
    films with a ``reviewed`` type and those of ``unknown`` type, and ``flag_disagrees`` the
    reviewed films whose single region flag names another Module II type.
    """
    csv = root / "dataset.csv"
    if not csv.is_file():
        raise PublicDataError(f"FracAtlas: {csv} not found; expected {FILES[0].layout}")
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    missing = [c for c in FRACATLAS_COLUMNS if c not in table.columns]
    if missing:
        raise PublicDataError(f"FracAtlas: {csv} lacks the column(s) {missing}; found "
                              f"{list(table.columns)}")
    parts = fracatlas_body_parts() if body_parts is None else dict(body_parts)
    flags = table[list(FRACATLAS_REGIONS)].apply(lambda c: c.str.strip() == "1")
    single = (flags.sum(axis=1) == 1) & (table["mixed"].str.strip() != "1")
    region = flags.idxmax(axis=1).where(single, "mixed")
    folders = {d: {p.name for p in (root / "images" / d).glob("*")} if (root / "images" / d).is_dir()
               else set() for d in ("Fractured", "Non_fractured")}
    both = folders["Fractured"] & folders["Non_fractured"]
    excluded = {"in_both_folders": 0, "missing_file": 0, "truncated": 0}
    counts = {"reviewed": 0, "unknown": 0, "flag_disagrees": 0}
    keep_paths, keep_types, keep_ids = [], [], []
    for image_id, reg, fractured in tqdm(list(zip(table["image_id"], region, table["fractured"])),
                                         desc="checking FracAtlas", unit="img",
                                         disable=not progress, leave=False):
        image_id = image_id.strip()
        if image_id in both:
            excluded["in_both_folders"] += 1
            continue
        folder = "Fractured" if fractured.strip() == "1" else "Non_fractured"
        if image_id not in folders[folder]:
            excluded["missing_file"] += 1
            continue
        path = root / "images" / folder / image_id
        if not jpeg_complete(path):
            excluded["truncated"] += 1
            continue
        xray_type = parts.get(image_id, "")
        counts["reviewed" if xray_type else "unknown"] += 1
        if xray_type and reg in paper.XRAY_TYPES and reg != xray_type:
            counts["flag_disagrees"] += 1
        keep_paths.append(str(path))
        keep_types.append(xray_type)
        keep_ids.append(f"fracatlas:{Path(image_id).stem}")
    out = frame(keep_paths, is_xray="1", xray_type=keep_types, patient_id=keep_ids,
                 source="fracatlas")
    out.attrs["excluded"] = excluded
    out.attrs["body_part"] = counts
    return out
