"""Splits and task manifests of the real datasets, by the paper's rules (Section III).

* Modules I-II: every non-chest X-ray, 10 % of the chest films, as many photographs as
  X-rays.  The non-chest images and the photographs get a seeded 70/20/10 train/val/test
  split, grouped by patient (the paper's rule); the chest films keep their Module III split
  (below), so with the authors' split the chest sample is 70/10/20, not 70/20/10.
* Module III: every ChestX-ray14 film, split one of three ways (``chest_split``):

  ``"authors"``  the split released by the paper's authors (IS2AI/Chest-X-ray-module, 78,468 /
                 11,219 / 22,433 images, patient-disjoint) -- reproduces Table III;
  ``"nih"``      the official ``train_val_list.txt`` / ``test_list.txt``, with a validation set
                 carved patient-wise out of train_val;
  ``"random"``   a seeded patient-wise 70/20/10 split.

A chest film has one split for all three modules, so a film tested in Module III is never
trained on in Modules I-II (the end-to-end evaluation stays clean).  The 10 % chest sample of
Modules I-II is drawn patient-wise *within* each split, so it keeps the chest split's
proportions: 78,468 / 11,219 / 22,433 = 70/10/20 with ``"authors"``; about 68/10/23 with
``"nih"`` (its 86,524 / 25,596 lists, 12.5 % of train_val held out); 70/20/10 with ``"random"``.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from xray_utils.config import paper
from xray_utils.data.manifests import (
    SPLITS,
    check_no_leakage,
    grouped_split,
)
from xray_utils.sources.dataset_spec import DatasetError
from xray_utils.sources.paper.chestxray14 import NAME as CHEST14
from xray_utils.sources.paper.chestxray14 import read_official_lists

CHEST_SPLITS: tuple[str, ...] = ("authors", "nih", "random")
AUTHORS_LIST_FILES: Mapping[str, str] = {"train": "train_list.txt", "val": "val_list.txt",
                                         "test": "test_list.txt"}
#: Share of the official train_val list kept for validation by the "nih" split (about 10 % of
#: all films, like the authors' validation set).
NIH_VAL_FRACTION = 0.125


def read_authors_split(folder: str | Path) -> pd.DataFrame:
    """The authors' lists -> DataFrame ``image, split, findings`` (findings in Table III order).

    Each line is ``<image> <14 binary labels in paper.FINDINGS order>``.
    """
    folder = Path(folder)
    frames = []
    for split, name in AUTHORS_LIST_FILES.items():
        path = folder / name
        if not path.is_file():
            raise DatasetError(
                f"authors' chest split: {path} not found. Fetch the lists with "
                f"xray_utils.sources.download.fetch_authors_split() (or copy train_list.txt, "
                f"val_list.txt, test_list.txt of IS2AI/Chest-X-ray-module into {folder}).")
        table = pd.read_csv(path, sep=r"\s+", header=None, dtype=str)
        labels = table.iloc[:, 1:]
        if table.shape[1] != 1 + len(paper.FINDINGS) or not labels.isin(["0", "1"]).all().all():
            raise DatasetError(f"authors' chest split: {path} is malformed; expected lines "
                               f"'<image>.png' + {len(paper.FINDINGS)} labels 0/1")
        bits = labels.to_numpy() == "1"
        findings = ["|".join(f for f, b in zip(paper.FINDINGS, row) if b) or paper.NO_FINDING
                    for row in bits]
        frames.append(pd.DataFrame({"image": table[0], "split": split, "findings": findings}))
    out = pd.concat(frames, ignore_index=True)
    dup = out["image"].duplicated()
    if dup.any():
        raise DatasetError(f"authors' chest split: {int(dup.sum())} image(s) are listed twice, "
                           f"e.g. {out.loc[dup, 'image'].head(5).tolist()}")
    return out


def _chest14_rows(images: pd.DataFrame) -> np.ndarray:
    rows = (images["source"] == CHEST14).to_numpy()
    if not rows.any():
        raise DatasetError("no ChestX-ray14 rows (source 'chestxray14') in the image manifest")
    return rows


def apply_authors_split(images: pd.DataFrame, table: pd.DataFrame,
                        use_authors_labels: bool = True) -> pd.DataFrame:
    """Give ChestX-ray14 rows the authors' split (and, by default, the labels they trained on).

    Fails when a film is missing from the lists.  Films whose findings differ between the CSV
    and the lists are counted in ``attrs["authors_label_mismatches"]`` and warned about (the
    v2020 CSV revised some labels after the lists were made).
    """
    images = images.copy()
    rows = _chest14_rows(images)
    names = images.loc[rows, "path"].map(lambda p: Path(p).name)
    lookup = table.set_index("image")
    absent = ~names.isin(lookup.index)
    if absent.any():
        raise DatasetError(
            f"authors' chest split: {int(absent.sum())} ChestX-ray14 film(s) are not in the lists, "
            f"e.g. {names[absent].head(5).tolist()}; the lists cover the 112,120 films of the NIH "
            "release. Use chest_split='random' for another image set.")
    matched = lookup.loc[names.to_numpy()]
    differ = matched["findings"].to_numpy() != images.loc[rows, "findings"].to_numpy()
    images.loc[rows, "split"] = matched["split"].to_numpy()
    if use_authors_labels:
        images.loc[rows, "findings"] = matched["findings"].to_numpy()
    if differ.any():
        warnings.warn(f"authors' chest split: {int(differ.sum())} film(s) have other findings in "
                      f"the lists than in the label CSV (e.g. {names[differ].head(3).tolist()}); "
                      f"using the {'lists' if use_authors_labels else 'CSV'}", stacklevel=2)
    images.attrs["authors_label_mismatches"] = int(differ.sum())
    images.attrs["authors_not_in_manifest"] = int(len(table) - rows.sum())
    return images


def apply_nih_split(images: pd.DataFrame, lists: Mapping[str, set[str]], seed: int = 0,
                    val_fraction: float = NIH_VAL_FRACTION) -> pd.DataFrame:
    """Official NIH split; validation carved patient-wise (seeded) out of train_val."""
    images = images.copy()
    rows = _chest14_rows(images)
    names = images.loc[rows, "path"].map(lambda p: Path(p).name).to_numpy()
    in_test = np.isin(names, list(lists["test"]))
    in_tv = np.isin(names, list(lists["train_val"]))
    absent = ~(in_test | in_tv)
    if absent.any():
        raise DatasetError(f"nih chest split: {int(absent.sum())} film(s) are in neither official "
                           f"list, e.g. {names[absent][:5].tolist()}")
    split = np.where(in_test, "test", "").astype(object)
    pids = images.loc[rows, "patient_id"].to_numpy()
    split[in_tv] = grouped_split(pids[in_tv], {"train": 1 - val_fraction, "val": val_fraction}, seed)
    images.loc[rows, "split"] = split
    return images


def apply_random_split(images: pd.DataFrame, seed: int = 0,
                       fractions: Mapping[str, float] = paper.SPLIT_FRACTIONS) -> pd.DataFrame:
    """Seeded patient-wise 70/20/10 split of the ChestX-ray14 rows."""
    images = images.copy()
    rows = _chest14_rows(images)
    images.loc[rows, "split"] = grouped_split(images.loc[rows, "patient_id"].to_numpy(), fractions, seed)
    return images


def split_chest(images: pd.DataFrame, method: str = "authors", seed: int = 0, *,
                chest_root: str | Path | None = None, authors_split_dir: str | Path | None = None,
                use_authors_labels: bool = True, offline: bool | None = None) -> pd.DataFrame:
    """Split the ChestX-ray14 rows by ``method`` (see :data:`CHEST_SPLITS`); checks leakage."""
    if method == "authors":
        if authors_split_dir is None:
            from xray_utils.sources.download import fetch_authors_split
            authors_split_dir = fetch_authors_split(offline=offline)
        out = apply_authors_split(images, read_authors_split(authors_split_dir), use_authors_labels)
    elif method == "nih":
        if chest_root is None:
            raise DatasetError("nih chest split: pass chest_root, the ChestX-ray14 folder holding "
                               "train_val_list.txt and test_list.txt")
        out = apply_nih_split(images, read_official_lists(chest_root), seed)
    elif method == "random":
        out = apply_random_split(images, seed)
    else:
        raise ValueError(f"unknown chest_split {method!r}; choose one of {CHEST_SPLITS}")
    check_no_leakage(out[out["source"] == CHEST14], what=f"ChestX-ray14 ({method} split)")
    return out


def summary(images: pd.DataFrame, tasks: Mapping[str, pd.DataFrame]) -> dict:
    """Counts to compare with the paper: per X-ray type (Module II) beside Table I, and splits."""
    per_type = tasks["xray_type"]["label"].value_counts()
    out = {
        "images": int(len(images)),
        "sources": {k: int(v) for k, v in images["source"].value_counts().sort_index().items()},
        "table_i": {t: {"ours": int(per_type.get(t, 0)), "paper": paper.TABLE_I[t]}
                    for t in paper.XRAY_TYPES},
        "chest_films": int(((images["is_xray"].astype(int) == 1) & (images["xray_type"] == "chest")).sum()),
        "chest_sample_modules_i_ii": int(per_type.get("chest", 0)),
        "tasks": {task: {s: int((df["split"] == s).sum()) for s in SPLITS} for task, df in tasks.items()},
    }
    for key in ("authors_label_mismatches", "authors_not_in_manifest"):
        if key in images.attrs:
            out[key] = images.attrs[key]
    return out
