"""The paper datasets: one adapter per source, the registry, and the full-profile manifests.

Each adapter reads a dataset in the layout its publisher ships (documented in
``data/README.md``) and returns an image manifest (``xray_utils.data.manifests.IMAGE_COLUMNS``)::

    from xray_utils.sources.paper import (
        build_full_image_manifest,
        build_full_manifests,
        require_datasets,
    )
    require_datasets(paths.raw_dir)                      # fails at once, naming what is missing
    images = build_full_image_manifest(paths.raw_dir, seed=0, chest_split="authors")
    build_full_manifests(paths.raw_dir, paths.manifests_dir, seed=0)   # images + 3 task CSVs

``add_labelled_folder(images_df, folder, seed)`` mixes a folder of your own labelled images
(the ``labels.csv`` format of a labelled folder of real images) into another image manifest.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd
from tqdm.auto import tqdm

from xray_utils.config import paper
from xray_utils.data.manifests import IMAGE_COLUMNS, assign_splits, grouped_split, task_manifests
from xray_utils.sources import labelled_folder
from xray_utils.sources.dataset_spec import (
    README,
    DatasetError,
    DatasetSpec,
    DuplicateImagesError,
    MissingDatasetsError,
    check_duplicates,
    find_duplicates,
    readme_ref,
)
from xray_utils.sources.labelled_folder import add_labelled_folder
from xray_utils.sources.paper import aasce, chestxray14, dental, imagenet, lera, mura
from xray_utils.sources.paper.splits import CHEST_SPLITS, read_authors_split, split_chest, summary

#: Every adapter, by source name (= folder name under the raw-data root).
ADAPTERS: Mapping[str, DatasetSpec] = {spec.name: spec for spec in (
    chestxray14.SPEC, mura.SPEC, lera.SPEC, aasce.SPEC, dental.SPEC, imagenet.SPEC,
    labelled_folder.SPEC)}
#: The six sources of the paper (the ``full`` profile needs them all).
FULL_SOURCES: tuple[str, ...] = ("chestxray14", "mura", "lera", "aasce", "dental", "imagenet")

__all__ = [
    "ADAPTERS", "FULL_SOURCES", "CHEST_SPLITS", "DatasetError", "DatasetSpec",
    "DuplicateImagesError", "MissingDatasetsError", "add_labelled_folder", "build_full_manifests",
    "build_full_image_manifest",
    "check_duplicates", "find_duplicates", "load_source", "read_authors_split", "require_datasets",
    "split_chest", "summary",
    "assign_splits", "grouped_split",
]


def _spec(name: str) -> DatasetSpec:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose from {list(ADAPTERS)}") from None


def _readiness_error(raw_dir: Path, failures: Mapping[str, str]) -> MissingDatasetsError:
    lines = []
    for name, message in failures.items():
        spec = _spec(name)
        lines.append(f"- {spec.title}: {message}.\n    Expected: {spec.layout}\n"
                     f"    See {readme_ref(spec.readme_section)}.")
    return MissingDatasetsError(
        f"{len(lines)} dataset(s) are missing or incomplete under {raw_dir}:\n" + "\n".join(lines)
        + f"\nEach needs a manual download (most behind a data-use agreement): see {README}. "
        "Or run the demo profile, which needs none of them.")


def require_datasets(raw_dir: str | Path, needed: Iterable[str] = FULL_SOURCES) -> dict[str, Path]:
    """Check that every ``needed`` dataset is in place under ``raw_dir`` and readable.

    Returns ``{name: folder}``; raises :class:`MissingDatasetsError` naming each missing or
    incomplete folder, its expected layout, and the README section that says where to get it.
    Each adapter's ``problems()`` runs its own reading (label files read, listed files checked
    to exist, no image decoded), so a folder said ready here is one that loads: a few seconds
    for the whole set.  Call it first in every ``full``-profile notebook.
    """
    raw_dir = Path(raw_dir).expanduser().resolve()
    found, failures = {}, {}
    for name in needed:
        spec = _spec(name)
        root = raw_dir / name
        issues = spec.problems(root)
        if issues:
            failures[name] = "; ".join(issues)
        found[name] = root
    if failures:
        raise _readiness_error(raw_dir, failures)
    return found


def load_source(name: str, raw_dir: str | Path, *, check_files: bool = True,
                drop_missing: bool = False) -> pd.DataFrame:
    """The image manifest of one source, read from ``raw_dir/<name>``."""
    return _spec(name).load(Path(raw_dir) / name, check_files=check_files, drop_missing=drop_missing)


def build_full_image_manifest(raw_dir: str | Path, seed: int = 0, chest_split: str = "authors", *,
                              sources: Iterable[str] = FULL_SOURCES,
                              authors_split_dir: str | Path | None = None,
                              use_authors_labels: bool = True,
                              check_files: bool = True, drop_missing: bool = False,
                              check_content: bool = False, drop_duplicates: bool = False,
                              offline: bool | None = None) -> pd.DataFrame:
    """The image manifest of the real datasets under ``raw_dir``, every row with its split.

    ChestX-ray14 films are split by ``chest_split`` (one of :data:`CHEST_SPLITS`; with
    ``"authors"`` the lists come from ``authors_split_dir`` or are fetched, checksummed, into
    ``data/downloads``); every other image gets a seeded patient-wise 70/20/10 split,
    stratified by X-ray type.  ``check_files=False`` reads the label files alone (no images
    needed where the labels list them).  ``check_content=True`` also hashes same-size files
    to find one image shipped twice.  Every source is read once; when any is missing or
    unreadable, raises :class:`MissingDatasetsError` listing them all.
    """
    sources = tuple(sources)
    if chest_split not in CHEST_SPLITS:
        raise ValueError(f"unknown chest_split {chest_split!r}; choose one of {CHEST_SPLITS}")
    raw_dir = Path(raw_dir).expanduser().resolve()
    frames, failures = [], {}
    for name in tqdm(sources, desc="reading datasets", leave=False):
        if not (raw_dir / name).is_dir():
            failures[name] = f"folder {raw_dir / name} is missing"
            continue
        try:
            frames.append(load_source(name, raw_dir, check_files=check_files, drop_missing=drop_missing))
        except DuplicateImagesError:
            raise
        except DatasetError as exc:  # read every source, then report all that failed at once
            failures[name] = str(exc)
    if failures:
        raise _readiness_error(raw_dir, failures)
    images = pd.concat(frames, ignore_index=True)[list(IMAGE_COLUMNS)]
    images = check_duplicates(images, content=check_content, drop=drop_duplicates)
    if chestxray14.NAME in sources:
        images = split_chest(images, chest_split, seed, chest_root=raw_dir / chestxray14.NAME,
                             authors_split_dir=authors_split_dir,
                             use_authors_labels=use_authors_labels, offline=offline)
    return assign_splits(images, seed=seed)


def build_full_manifests(raw_dir: str | Path, out_dir: str | Path, seed: int = 0,
                         chest_split: str = "authors", **kwargs) -> dict[str, Path]:
    """Image manifest + the three task manifests of the real datasets, by the paper's rules.

    Writes ``<out_dir>/images.csv``, ``<out_dir>/<task>.csv`` for ``paper.TASKS`` and
    ``<out_dir>/summary.json`` (counts beside Table I, split sizes); returns their paths by
    key (the task names, ``"images"``, ``"summary"``).  Keyword arguments go to
    :func:`build_full_image_manifest`; the task manifests follow
    :func:`~xray_utils.data.manifests.task_manifests` (10 % of the chest films,
    drawn patient-wise within each split, in Modules I-II).
    """
    images = build_full_image_manifest(raw_dir, seed=seed, chest_split=chest_split, **kwargs)
    tasks = task_manifests(images, seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"images": out_dir / "images.csv"}
    images.to_csv(written["images"], index=False)
    for task in paper.TASKS:
        written[task] = out_dir / f"{task}.csv"
        tasks[task].to_csv(written[task], index=False)
    info = summary(images, tasks)
    info.update({"seed": seed, "chest_split": chest_split})
    written["summary"] = out_dir / "summary.json"
    written["summary"].write_text(json.dumps(info, indent=2))
    return written
