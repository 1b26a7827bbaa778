"""Splits and task manifests of the real datasets, by the paper's rules (Section III).

* Modules I-II: every non-chest X-ray, 10 % of the chest films, as many photographs as
  X-rays; 70/20/10 train/val/test, grouped by patient.
* Module III: every ChestX-ray14 film, split one of three ways (``chest_split``):

  ``"authors"``  the split released by the paper's authors (IS2AI/Chest-X-ray-module, 78,468 /
                 11,219 / 22,433 images, patient-disjoint) -- reproduces Table III;
  ``"nih"``      the official ``train_val_list.txt`` / ``test_list.txt``, with a validation set
                 carved patient-wise out of train_val;
  ``"random"``   a seeded patient-wise 70/20/10 split.

A chest film has one split for all three modules, so a film tested in Module III is never
trained on in Modules I-II (the end-to-end evaluation stays clean).  The 10 % chest sample of
Modules I-II is drawn patient-wise *within* each split, in 70/20/10 proportion.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .. import paper
from ..manifests import SPLITS, check_no_leakage, task_manifests
from ._common import DatasetError
from .chestxray14 import NAME as CHEST14, read_official_lists

CHEST_SPLITS: tuple[str, ...] = ("authors", "nih", "random")
AUTHORS_LIST_FILES: Mapping[str, str] = {"train": "train_list.txt", "val": "val_list.txt",
                                         "test": "test_list.txt"}
#: Share of the official train_val list kept for validation by the "nih" split (about 10 % of
#: all films, like the authors' validation set).
NIH_VAL_FRACTION = 0.125


def grouped_split(groups, fractions: Mapping[str, float] = paper.SPLIT_FRACTIONS, seed: int = 0,
                  strata=None) -> np.ndarray:
    """Patient-wise split: the same result as :func:`xray_utils.manifests.grouped_split`.

    Same algorithm and random stream (groups shuffled per stratum, cut by cumulative image
    count), but groups are mapped to splits with a dictionary, so 112,120 films of 30,805
    patients take well under a second (the ``np.isin`` on object arrays there is quadratic).
    """
    groups = np.asarray(groups, dtype=object)
    strata_arr = np.asarray(strata if strata is not None else [""] * len(groups), dtype=object)
    names = list(fractions)
    cum = np.cumsum([fractions[n] for n in names])
    cum = cum / cum[-1]
    rng = np.random.default_rng(seed)
    gser = pd.Series(groups)
    counts = gser.value_counts()
    first_stratum = pd.Series(strata_arr).groupby(gser).first()
    mapping: dict = {}
    for stratum in sorted(set(first_stratum)):
        gs = np.array(sorted(first_stratum.index[first_stratum == stratum]), dtype=object)
        rng.shuffle(gs)
        sizes = counts.reindex(gs).to_numpy()
        pos = (np.cumsum(sizes) - sizes / 2) / sizes.sum()
        which = np.searchsorted(cum, pos, side="right").clip(max=len(names) - 1)
        mapping.update(zip(gs, (names[i] for i in which)))
    return gser.map(mapping).to_numpy(dtype=object)


def assign_splits(images: pd.DataFrame, seed: int = 0,
                  fractions: Mapping[str, float] = paper.SPLIT_FRACTIONS) -> pd.DataFrame:
    """Fill empty splits patient-wise, stratified by X-ray type: the same result as
    :func:`xray_utils.manifests.assign_splits`, fast on large manifests (see :func:`grouped_split`)."""
    attrs = dict(images.attrs)
    images = images.copy()
    todo = (images["split"].astype(str) == "").to_numpy()
    if todo.any():
        sub = images[todo]
        strata = np.where(sub["is_xray"].astype(int) == 1, sub["xray_type"], "not_xray")
        images.loc[todo, "split"] = grouped_split(sub["patient_id"].astype(str).to_numpy(),
                                                  fractions, seed, strata)
    check_no_leakage(images)
    images.attrs.update(attrs)
    return images


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
                f"xray_utils.downloads.fetch_authors_split() (or copy train_list.txt, "
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
            from ..downloads import fetch_authors_split
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


def chest_sample_for_modules_i_ii(images: pd.DataFrame,
                                  fraction: float = paper.CHEST_FRACTION_MODULES_I_II,
                                  seed: int = 0,
                                  fractions: Mapping[str, float] = paper.SPLIT_FRACTIONS) -> pd.Index:
    """Index of the chest films used by Modules I-II: ``fraction`` of them, whole patients,
    drawn inside each split so the sample is split 70/20/10 like the other X-rays."""
    chest = (images["is_xray"].astype(int) == 1) & (images["xray_type"] == "chest")
    sub = images[chest]
    if (sub["split"] == "").any():
        raise DatasetError("chest films without a split; split them before sampling")
    rng = np.random.default_rng(seed)
    total = sum(fractions.values())
    target_all = fraction * len(sub)
    keep: list[pd.Index] = []
    for split in SPLITS:
        part = sub[sub["split"] == split]
        sizes = part.groupby("patient_id").size()
        order = np.array(sorted(sizes.index), dtype=object)
        rng.shuffle(order)
        cum = np.cumsum(sizes.reindex(order).to_numpy())
        target = target_all * fractions.get(split, 0.0) / total
        n_take = int(np.searchsorted(cum, target, side="left")) + 1 if len(cum) and target > 0 else 0
        chosen = set(order[:min(n_take, len(order))])
        keep.append(part.index[part["patient_id"].isin(chosen)])
    return keep[0].append(keep[1:]) if keep else pd.Index([])


def task_manifests_by_rules(images: pd.DataFrame, seed: int = 0,
                            chest_fraction: float = paper.CHEST_FRACTION_MODULES_I_II
                            ) -> dict[str, pd.DataFrame]:
    """The three task manifests (see the module docstring); every split must be filled."""
    if (images["split"] == "").any():
        raise DatasetError("image manifest has rows without a split; split it first")
    chest = (images["is_xray"].astype(int) == 1) & (images["xray_type"] == "chest")
    kept = chest_sample_for_modules_i_ii(images, chest_fraction, seed)
    first_two = images[~chest | images.index.isin(kept)]
    out = task_manifests(first_two, seed=seed, chest_fraction=1.0)
    out["chest"] = task_manifests(images[chest], seed=seed, chest_fraction=0.0)["chest"]
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
