"""Manifests: the CSV files every dataset is turned into, and the splits inside them.

Two kinds of CSV, both plain UTF-8 with a header:

*Image manifest* (one row per image of a source; written by the demo generator and by every
real-data adapter) -- columns :data:`IMAGE_COLUMNS`:

``path``        image file, absolute or relative to the manifest's folder
``is_xray``     1 for a radiograph, 0 for anything else
``xray_type``   one of ``paper.XRAY_TYPES`` for radiographs (empty: body part unknown, Module I
                only), empty for other images
``findings``    chest films: ChestX-ray14 findings joined by ``|`` (``No Finding`` when none);
                empty for other images or when unknown
``patient_id``  patient (or study) identifier; splits never put one patient in two splits
``split``       ``train`` / ``val`` / ``test`` (empty until :func:`assign_splits`)
``source``      dataset name (``demo``, ``chestxray14``, ``mura``, ...)
``boxes``       JSON list ``[[finding, x, y, w, h], ...]`` in the file's pixel coordinates, or empty
``width``, ``height``  size of the file in pixels (empty when unknown)

*Task manifest* (one per module, written by :func:`write_task_manifests`) -- columns
:data:`TASK_COLUMNS`: ``path`` (relative to the manifest's folder for an image inside the
repository, so that a moved clone still reads its own files; absolute otherwise; readers get it
absolute), ``label`` (class name for modules I-II; findings
joined by ``|`` for module III), ``patient_id``, ``split``, ``source``, ``boxes``, ``width``,
``height``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from xray_utils.config import paper

IMAGE_COLUMNS: tuple[str, ...] = ("path", "is_xray", "xray_type", "findings", "patient_id",
                                  "split", "source", "boxes", "width", "height")
TASK_COLUMNS: tuple[str, ...] = ("path", "label", "patient_id", "split", "source", "boxes",
                                 "width", "height")
SPLITS: tuple[str, ...] = ("train", "val", "test")


class ManifestError(ValueError):
    """A manifest is missing, malformed or inconsistent; the message says which file and why."""


class LeakageError(ManifestError):
    """A patient appears in more than one split."""


#: Spellings in the NIH files that differ from paper.FINDINGS.
FINDING_ALIASES = {"Infiltrate": "Infiltration", "Pleural Thickening": "Pleural_Thickening"}


def canonical_finding(name: str) -> str:
    """A finding label as spelled in :data:`paper.FINDINGS`
    (``Pleural Thickening`` -> ``Pleural_Thickening``)."""
    name = FINDING_ALIASES.get(name.strip(), name.strip())
    return name.replace(" ", "_") if name.replace(" ", "_") in paper.FINDINGS else name


def canonical_findings(text: str) -> str | None:
    """``"Mass|Effusion"`` -> ``"Effusion|Mass"`` (Table III order); ``No Finding`` kept;
    ``None`` if unknown."""
    parts = [canonical_finding(p) for p in str(text).split("|") if p.strip()]
    if parts == [paper.NO_FINDING]:
        return paper.NO_FINDING
    if not parts or any(p not in paper.FINDINGS for p in parts):
        return None
    return "|".join(f for f in paper.FINDINGS if f in parts)


def read_csv_checked(path: str | Path, required: Sequence[str], what: str = "manifest") -> pd.DataFrame:
    """Read a CSV and fail with a clear message naming the file and any missing columns."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{what} not found: {path}. Build it first (see "
                            "notebooks/00_data_preparation.ipynb).")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises many kinds
        raise ManifestError(f"{what} {path} is not a readable CSV file: {exc}") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{what} {path} lacks the column(s) {missing}; expected columns: {list(required)}; "
            f"found: {list(df.columns)}")
    return df


def _read_with_paths(path: Path, required: Sequence[str], what: str) -> pd.DataFrame:
    """:func:`read_csv_checked`, with relative ``path`` entries resolved against the CSV's folder."""
    df = read_csv_checked(path, required, what)
    base = path.resolve().parent
    df["path"] = [str(p if Path(p).is_absolute() else (base / p)) for p in df["path"]]
    return df


def read_task_manifest(path: str | Path) -> pd.DataFrame:
    """Read a task manifest, resolving relative ``path`` entries against the manifest's folder."""
    path = Path(path)
    df = _read_with_paths(path, TASK_COLUMNS, "task manifest")
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise ManifestError(f"task manifest {path} has unknown split value(s) {bad}; expected {SPLITS}")
    return df


def read_image_manifest(path: str | Path) -> pd.DataFrame:
    """Read an image manifest with absolute paths."""
    return _read_with_paths(Path(path), IMAGE_COLUMNS, "image manifest")


def grouped_split(groups: Sequence[str], fractions: Mapping[str, float] = paper.SPLIT_FRACTIONS,
                  seed: int = 0, strata: Sequence[str] | None = None) -> np.ndarray:
    """Assign ``train``/``val``/``test`` per *group* (patient) so no group spans two splits.

    Groups are shuffled with ``seed`` and cut by cumulative image count to the requested
    fractions; with ``strata`` (e.g. the class of each row) this is done within each stratum,
    so every class is split 70/20/10.  A group's stratum is that of its first row.  Groups are
    mapped to splits with a dictionary: 112,120 films of 30,805 patients take well under a second.
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


def check_no_leakage(df: pd.DataFrame, group_column: str = "patient_id", what: str = "manifest") -> None:
    """Raise :class:`LeakageError` if any patient appears in more than one split."""
    per = df.groupby(group_column)["split"].nunique()
    leaked = per[per > 1]
    if len(leaked):
        examples = ", ".join(map(str, leaked.index[:5]))
        raise LeakageError(
            f"{what}: {len(leaked)} patient(s) appear in more than one split (e.g. {examples}); "
            "splits must be grouped by patient. Rebuild the splits with grouped_split().")


def assign_splits(images: pd.DataFrame, seed: int = 0,
                  fractions: Mapping[str, float] = paper.SPLIT_FRACTIONS) -> pd.DataFrame:
    """Fill empty ``split`` values patient-wise, stratified by X-ray type (photos: one stratum)."""
    attrs = dict(images.attrs)
    images = images.copy()
    todo = images["split"].astype(str) == ""
    if todo.any():
        sub = images[todo]
        strata = np.where(sub["is_xray"].astype(int) == 1, sub["xray_type"], "not_xray")
        images.loc[todo, "split"] = grouped_split(sub["patient_id"].astype(str).to_numpy(),
                                                  fractions, seed, strata)
    check_no_leakage(images)
    images.attrs.update(attrs)
    return images


def encode_boxes(boxes: Iterable[Sequence]) -> str:
    """``[(finding, x, y, w, h), ...]`` -> the JSON text stored in the ``boxes`` column."""
    rows = [[str(b[0])] + [round(float(v), 2) for v in b[1:5]] for b in boxes]
    return json.dumps(rows) if rows else ""


def decode_boxes(text: str) -> list[tuple[str, float, float, float, float]]:
    """The ``boxes`` column back to ``[(finding, x, y, w, h), ...]``."""
    if not text:
        return []
    return [(r[0], float(r[1]), float(r[2]), float(r[3]), float(r[4])) for r in json.loads(text)]


def findings_to_vector(labels: Iterable[str]) -> np.ndarray:
    """``"Effusion|Mass"`` strings -> an (N, 14) 0/1 matrix in ``paper.FINDINGS`` order."""
    index = {f: i for i, f in enumerate(paper.FINDINGS)}
    labels = list(labels)
    out = np.zeros((len(labels), len(paper.FINDINGS)), dtype=np.float32)
    for row, text in enumerate(labels):
        for name in str(text).split("|"):
            name = name.strip().replace(" ", "_")
            if name and name != paper.NO_FINDING.replace(" ", "_"):
                if name not in index:
                    raise ManifestError(f"unknown finding {name!r}; expected one of {paper.FINDINGS}")
                out[row, index[name]] = 1.0
    return out


def task_manifests(images: pd.DataFrame, seed: int = 0,
                   chest_fraction: float = paper.CHEST_FRACTION_MODULES_I_II,
                   balance_negatives: bool = True,
                   chest_fraction_by_source: Mapping[str, float] | None = None,
                   chest_test_only_sources: Sequence[str] = ()) -> dict[str, pd.DataFrame]:
    """The three task manifests from an image manifest, by the paper's rules (Section III).

    * Module I (``xray_or_not``): every non-chest X-ray, ``chest_fraction`` of the chest films,
      and as many non-X-ray images as X-rays (fewer if fewer exist).
    * Module II (``xray_type``): the same X-rays, labelled by type (X-rays of unknown type,
      an empty ``xray_type``, stay in Module I only).
    * Module III (``chest``): every chest film with known findings.

    The chest subsample is drawn per patient, so it never breaks the patient-wise split.
    ``chest_fraction_by_source`` maps a ``source`` prefix to its own fraction (e.g. the demo keeps
    every shipped real chest film, ``{"open-films/": 1.0}``); ``chest_test_only_sources`` lists
    source prefixes whose chest films enter Module III in the test split only (measured against,
    never trained on).
    """
    images = images.copy()
    if (images["split"] == "").any():
        raise ManifestError("image manifest has rows without a split; call assign_splits() first")
    check_no_leakage(images)
    # own random stream (not the one assign_splits used), and the sample drawn within each
    # split, so Modules I-II get ~10 % of the chest films of *every* split
    rng = np.random.default_rng([seed, 1])
    is_xray = images["is_xray"].astype(int) == 1
    chest = is_xray & (images["xray_type"] == "chest")
    keep_chest: set = set()
    by_source = dict(chest_fraction_by_source or {})
    source = images["source"].astype(str)
    group = np.full(len(images), "", dtype=object)
    for prefix in sorted(by_source, key=len):
        group[source.str.startswith(prefix).to_numpy()] = prefix
    for prefix in ["", *sorted(set(by_source) - {""})]:
        fraction = by_source.get(prefix, chest_fraction)
        for split in SPLITS:
            in_split = images[chest & (images["split"] == split) & (group == prefix)]
            per_patient = in_split.groupby("patient_id").size()
            patients = np.array(sorted(per_patient.index), dtype=object)
            rng.shuffle(patients)
            count, target = 0, fraction * len(in_split)
            for p in patients:
                if count >= target:
                    break
                keep_chest.add(p)
                count += int(per_patient[p])
    xrays = images[is_xray & (~chest | images["patient_id"].isin(keep_chest))]
    negatives = images[~is_xray]
    if balance_negatives and len(negatives) > len(xrays):
        negatives = negatives.sample(n=len(xrays), random_state=seed)

    def frame(df: pd.DataFrame, label: pd.Series, boxes: pd.Series | str = "") -> pd.DataFrame:
        out = pd.DataFrame({"path": df["path"], "label": label, "patient_id": df["patient_id"],
                            "split": df["split"], "source": df["source"], "boxes": boxes,
                            "width": df["width"], "height": df["height"]})
        return out.reset_index(drop=True)

    both = pd.concat([xrays, negatives])
    module_i = frame(both, np.where(both["is_xray"].astype(int) == 1, "xray", "not_xray"))
    typed = xrays[xrays["xray_type"].isin(paper.XRAY_TYPES)]  # unknown body part: Module I only
    module_ii = frame(typed, typed["xray_type"])
    chest_rows = images[chest & (images["findings"] != "")]
    if chest_test_only_sources:
        held = chest_rows["source"].astype(str).str.startswith(tuple(chest_test_only_sources))
        chest_rows = chest_rows[~held | (chest_rows["split"] == "test")]
    module_iii = frame(chest_rows, chest_rows["findings"], chest_rows["boxes"])
    return {"xray_or_not": module_i, "xray_type": module_ii, "chest": module_iii}


def write_task_manifests(images: pd.DataFrame, out_dir: str | Path, seed: int = 0,
                         **kwargs) -> dict[str, Path]:
    """Write ``<out_dir>/<task>.csv`` for the three tasks; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for task, df in task_manifests(images, seed=seed, **kwargs).items():
        paths[task] = out_dir / f"{task}.csv"
        df = df.assign(path=[portable_path(p, out_dir) for p in df["path"]])
        df.to_csv(paths[task], index=False)
    return paths


def portable_path(path: str | Path, folder: str | Path) -> str:
    """``path`` as a manifest in ``folder`` stores it: relative when both lie in the repository.

    A clone that is moved or copied then still reads its own images (the reader resolves the
    relative path against the manifest's folder); an image outside the repository (a dataset
    elsewhere on disk) keeps its absolute path.
    """
    import os

    from xray_utils.config.paths import REPO_ROOT

    path, folder, root = Path(path).resolve(), Path(folder).resolve(), Path(REPO_ROOT).resolve()
    if path.is_relative_to(root) and folder.is_relative_to(root):
        return os.path.relpath(path, folder)
    return str(path)
