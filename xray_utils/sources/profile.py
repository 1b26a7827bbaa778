"""Where a profile's images come from: one function that every profile goes through.

* ``demo``   -- the generated phantoms and photographs (:mod:`xray_utils.sources.demo`), built once
  into ``data/demo``, plus the real films shipped in ``data/open-films``
  (:mod:`xray_utils.sources.open_films`, setting ``OPEN_FILMS``);
* ``full``   -- the paper's six real datasets under ``data/raw`` (:mod:`xray_utils.sources.paper`);
  fails at once, naming each missing dataset folder, when they are not there;
* ``public`` -- openly downloadable X-rays (:mod:`xray_utils.sources.public`): fails at once, listing
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


def load_profile_images(paths: ProjectPaths, cfg: Mapping[str, Any], seed: int = 0,
                        extra_data: str | Path | None = None,
                        chest_split: str = "authors") -> pd.DataFrame:
    """The image manifest of the profile ``cfg["PROFILE"]`` (splits assigned, patient-disjoint)."""
    profile = str(cfg.get("PROFILE"))
    if profile != paths.profile:
        raise ValueError(f"the settings are those of profile {profile!r} but the folders those of "
                         f"{paths.profile!r}: build both for one profile (settings(PROFILE), "
                         "project_paths(PROFILE))")
    if profile == "demo":
        from xray_utils.sources.demo import build_demo_dataset

        images = read_image_manifest(build_demo_dataset(
            paths.demo_dir, image_size=int(cfg["DEMO_IMAGE_SIZE"]), per_type=int(cfg["DEMO_PER_TYPE"]),
            n_chest=int(cfg["DEMO_CHEST"]), n_photos=int(cfg["DEMO_PHOTOS"]), seed=seed,
            types=cfg.get("DEMO_TYPES", "all")))
        if not cfg.get("PHANTOM_CHEST_TRAINING", True):
            # every chest phantom is a generated test film (one split: no patient straddles two)
            images.loc[images["xray_type"] == "chest", "split"] = "test"
        if cfg.get("OPEN_FILMS"):
            from xray_utils.sources.open_films import OPEN_FILMS_DIR, load_open_films

            folder = OPEN_FILMS_DIR if cfg["OPEN_FILMS"] is True else Path(cfg["OPEN_FILMS"])
            images = pd.concat([images, load_open_films(folder, seed=seed)], ignore_index=True)
    elif profile == "full":
        from xray_utils.sources.paper import build_full_image_manifest, require_datasets

        require_datasets(paths.raw_dir)
        images = build_full_image_manifest(paths.raw_dir, seed=seed, chest_split=chest_split)
    elif profile == "public":
        from xray_utils.sources.public import build_public_image_manifest, require_public

        stand_in = cfg.get("PUBLIC_STAND_IN")
        if not stand_in:
            require_public()
        images = build_public_image_manifest(seed=seed, image_size=int(cfg["IMAGE_SIZE"]),
                                             stand_in=stand_in)
    else:
        raise ValueError(f"unknown profile {profile!r}")
    if extra_data:
        from xray_utils.sources.paper import add_labelled_folder

        images = add_labelled_folder(images, extra_data, seed=seed)
    return images


def task_manifest_options(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """How the profile's task manifests treat the shipped real films and the chest phantoms (demo
    settings ``REAL_CHEST_FRACTION``, ``REAL_CHEST_TRAINING`` and ``PHANTOM_CHEST_TRAINING``);
    empty for the other profiles.

    Without ``PHANTOM_CHEST_TRAINING`` the chest phantoms enter Module III's test split only (the
    generated test films) and Modules I-II not at all: the real chest films teach those."""
    options: dict[str, Any] = {}
    by_source: dict[str, float] = {}
    test_only: list[str] = []
    if cfg.get("PROFILE", "demo") == "demo" and not cfg.get("PHANTOM_CHEST_TRAINING", True):
        from xray_utils.sources.demo import SOURCE as DEMO_SOURCE

        by_source[DEMO_SOURCE] = 0.0
        test_only.append(DEMO_SOURCE)
    if cfg.get("OPEN_FILMS"):
        from xray_utils.sources.open_films import SOURCE_PREFIX

        by_source[SOURCE_PREFIX] = float(cfg.get("REAL_CHEST_FRACTION", 1.0))
        if not cfg.get("REAL_CHEST_TRAINING", True):
            test_only.append(SOURCE_PREFIX)
    if by_source:
        options["chest_fraction_by_source"] = by_source
    if test_only:
        options["chest_test_only_sources"] = tuple(test_only)
    return options


def write_profile_manifests(images: pd.DataFrame, paths: ProjectPaths, cfg: Mapping[str, Any],
                            seed: int = 0) -> dict[str, Path]:
    """Write the three task manifests of ``images`` under ``paths.manifests_dir`` by the paper's
    rules and the profile's options (:func:`task_manifest_options`); returns their paths.
    Also writes ``summary.json`` there (counts per type beside Table I, split sizes)."""
    import json

    from xray_utils.data.manifests import read_task_manifest, write_task_manifests
    from xray_utils.sources.paper.splits import summary

    written = write_task_manifests(images, paths.manifests_dir, seed=seed, **task_manifest_options(cfg))
    info = summary(images, {task: read_task_manifest(path) for task, path in written.items()})
    info.update({"seed": seed, "profile": cfg.get("PROFILE")})
    (paths.manifests_dir / "summary.json").write_text(json.dumps(info, indent=2))
    return written
