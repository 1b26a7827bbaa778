"""Where a profile's images come from: one function that every profile goes through.

* ``demo``   -- the generated phantoms and photographs (:mod:`xray_utils.data.demo`), built once
  into ``data/demo``;
* ``full``   -- the paper's six real datasets under ``data/raw`` (:mod:`xray_utils.data.real`);
  fails at once, naming each missing dataset folder, when they are not there;
* ``public`` -- openly downloadable X-rays (:mod:`xray_utils.data.public`): fails at once, listing
  what to download and how big, when they are missing; ``PUBLIC_STAND_IN`` replaces them by a
  labelled folder of real images (set ``XRAY_REAL_SAMPLES``), as CI does.

Optionally a labelled folder of real images (``EXTRA_DATA``) is mixed in, split by patient.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from xray_utils.config.paths import ProjectPaths
from xray_utils.data.manifests import read_image_manifest


def load_profile_images(profile: str, paths: ProjectPaths, cfg: Mapping[str, Any], seed: int = 0,
                        extra_data: str | Path | None = None,
                        chest_split: str = "authors") -> pd.DataFrame:
    """The image manifest of ``profile`` (splits assigned, patient-disjoint)."""
    if profile == "demo":
        from xray_utils.data.demo import build_demo_dataset

        images = read_image_manifest(build_demo_dataset(
            paths.demo_dir, image_size=int(cfg["DEMO_IMAGE_SIZE"]), per_type=int(cfg["DEMO_PER_TYPE"]),
            n_chest=int(cfg["DEMO_CHEST"]), n_photos=int(cfg["DEMO_PHOTOS"]), seed=seed))
    elif profile == "full":
        from xray_utils.data.real import build_full_image_manifest, require_datasets

        require_datasets(paths.raw_dir)
        images = build_full_image_manifest(paths.raw_dir, seed=seed, chest_split=chest_split)
    elif profile == "public":
        from xray_utils.data.public import build_public_image_manifest, require_public

        stand_in = cfg.get("PUBLIC_STAND_IN")
        if not stand_in:
            require_public()
        images = build_public_image_manifest(seed=seed, image_size=int(cfg["IMAGE_SIZE"]),
                                             stand_in=stand_in)
    else:
        raise ValueError(f"unknown profile {profile!r}")
    if extra_data:
        from xray_utils.data.real import add_labelled_folder

        images = add_labelled_folder(images, extra_data, seed=seed)
    return images
