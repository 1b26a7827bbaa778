"""ImageNet (or its small subset Imagenette): the non-X-ray photographs of Module I.

Accepted layouts below ``data/raw/imagenet/``::

    train/n01440764/n01440764_10026.JPEG ...          (ILSVRC synset folders, any depth:
    ILSVRC/Data/CLS-LOC/train/n01440764/*.JPEG         the whole tree is walked)
    imagenette2-160/{train,val}/n01440764/*.JPEG       (Imagenette)
    *.JPEG / *.jpg / *.png                             (a flat folder of photographs)

Every file is a photograph (``is_xray = 0``) and its own "patient".  Module I later samples as
many photographs as there are X-rays, so a larger folder than needed is fine.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from xray_utils.sources.dataset_spec import (
    DatasetError,
    DatasetSpec,
    image_frame,
    prefixed,
    readme_ref,
    require_folder,
    walk_images,
)
from xray_utils.sources.paper.readiness import problems_of

NAME = "imagenet"
TITLE = "ImageNet / Imagenette"
SECTION = "ImageNet / Imagenette (negatives)"
LAYOUT = ("data/raw/imagenet/ with synset folders (n01440764/*.JPEG, at any depth, e.g. "
          "imagenette2-160/train/n01440764/) or a flat folder of photographs")


def load(root: str | Path, *, check_files: bool = True, drop_missing: bool = False) -> pd.DataFrame:
    """The photograph manifest (``is_xray = 0``)."""
    root = require_folder(Path(root).expanduser().resolve(), TITLE, SECTION, LAYOUT)
    files = walk_images(root)
    if not files:
        raise DatasetError(f"{TITLE}: no image files under {root}. Expected layout: {LAYOUT}; "
                           f"see {readme_ref(SECTION)}.")
    return image_frame(len(files), path=[str(f) for f in files], is_xray="0",
                       patient_id=prefixed(NAME, (f.relative_to(root).as_posix() for f in files)),
                       source=NAME)


def problems(root: Path) -> list[str]:
    """Empty exactly when :func:`load` succeeds (it runs the same reading; see readiness)."""
    return problems_of(load, root)


SPEC = DatasetSpec(name=NAME, title=TITLE, layout=LAYOUT, load=load, problems=problems,
                   readme_section=SECTION)
