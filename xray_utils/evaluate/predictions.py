"""Run saved checkpoints over images and keep the probabilities in prediction files.

Evaluation (:mod:`xray_utils.evaluate.metrics`) never touches a model: it reads the CSV files this
module writes, so every number in ``metrics.json`` can be recomputed from files on disk.

* :func:`predict_split` -- one module's checkpoint over one split of its task manifest.
  Columns: ``id`` (row index in the task manifest), ``path``, ``split``, ``source``, ``truth``
  (class name for modules I-II; findings joined by ``|`` for module III) and one probability
  column ``p_<class>`` per class (softmax for I-II, sigmoid for III).
* :func:`end_to_end_images` + :func:`predict_chain` -- all three checkpoints over every image of
  the mixed test set (module I's test split, X-rays and photos, plus the chest test films).
  Columns: ``id``, ``path``, ``source``, the truths ``is_xray``, ``xray_type``, ``findings`` and
  the probabilities ``p_xray``, ``p_type_<type>`` (14) and ``p_finding_<finding>`` (14).
  Every model sees every image, so the chain's rule (:mod:`xray_utils.diagnose.rule`) can be applied
  afterwards with any threshold.
* :func:`save_predictions` / :func:`load_predictions` -- CSV files (Parquet would need pyarrow).

Images go through the same preprocessing cache (:func:`xray_utils.data.cache.build_cache`) and the
same input transform (:func:`xray_utils.models.to_model_input`) as training.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from xray_utils.config import paper
from xray_utils.config.paths import best_checkpoint
from xray_utils.data.cache import build_cache
from xray_utils.data.manifests import SPLITS, ManifestError, findings_to_vector, read_task_manifest
from xray_utils.models import load_checkpoint, predict_probabilities, resolve_device

#: Prefix of the probability columns of :func:`predict_split`.
PROB_PREFIX = "p_"
#: Column prefixes of :func:`predict_chain`.
CHAIN_XRAY_COLUMN = "p_xray"
CHAIN_TYPE_PREFIX = "p_type_"
CHAIN_FINDING_PREFIX = "p_finding_"
#: File name of the end-to-end predictions inside ``predictions_dir``.
END_TO_END_FILE = "end_to_end_test.csv"
#: Truth columns :func:`predict_chain` needs in its ``images`` table.
CHAIN_TRUTH_COLUMNS: tuple[str, ...] = ("is_xray", "xray_type", "findings")
#: Text columns of prediction files (everything else is numeric).
_TEXT_COLUMNS = ("path", "split", "source", "truth", "xray_type", "findings", "patient_id")


#: Images per forward pass when predicting: inference only (the probabilities do not depend on
#: it to about 1e-6), and larger batches than training's run faster on the CPU.
INFERENCE_BATCH_SIZE = 64


def prediction_path(predictions_dir: str | Path, task: str, split: str) -> Path:
    """Stable file name of one module's predictions: ``<predictions_dir>/<task>_<split>.csv``."""
    paper.classes_for(task)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return Path(predictions_dir) / f"{task}_{split}.csv"


def prob_columns(classes: Sequence[str], prefix: str = PROB_PREFIX) -> list[str]:
    """Names of the probability columns for ``classes`` (same order)."""
    return [f"{prefix}{c}" for c in classes]


def _default_cache_dir() -> Path:
    from xray_utils.config.paths import project_paths

    return project_paths().cache_dir


def _predict_paths(model: torch.nn.Module, meta: Mapping, paths: Sequence[str], batch_size: int,
                   cache_dir: str | Path, device: torch.device, desc: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities ``(n_readable, n_classes)`` of ``model`` over ``paths``, and the readable mask.

    Unreadable images are dropped with a warning that counts them and says where the cache
    folder lists the reasons.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    cache = build_cache(list(paths), int(meta["image_size"]), cache_dir, desc=f"caching ({desc})")
    ok = np.asarray(cache.ok, dtype=bool)
    n_bad = int((~ok).sum())
    if n_bad:
        msg = (f"{desc}: {n_bad} of {len(ok)} image(s) could not be read and are left out of the "
               f"predictions; the reasons are listed in {cache.folder / 'index.json'}")
        warnings.warn(msg, stacklevel=3)
        print("WARNING:", msg)
    index = np.flatnonzero(ok)
    if len(index) == 0:
        raise ManifestError(f"{desc}: none of the {len(ok)} images could be read; see "
                            f"{cache.folder / 'index.json'} for the reasons")
    out = predict_probabilities(model.to(device), meta, cache.images, batch_size, rows=index,
                                desc=f"predicting ({desc})")
    return out.astype(np.float64), ok


def _check_labels(task: str, classes: Sequence[str], labels: pd.Series, where: Path) -> None:
    """Fail early, naming the file, when the manifest's labels do not fit the checkpoint."""
    if paper.is_multilabel(task):
        try:
            findings_to_vector(labels)
        except ManifestError as exc:
            raise ManifestError(f"{where}: {exc}") from None
        return
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ManifestError(f"{where}: label(s) {unknown} are not classes of the {task!r} "
                            f"checkpoint ({list(classes)}); is this the manifest of another task?")


def predict_split(checkpoint_json: str | Path, task_manifest_csv: str | Path, split: str = "test",
                  batch_size: int = INFERENCE_BATCH_SIZE, cache_dir: str | Path | None = None,
                  device: str | torch.device = "auto") -> pd.DataFrame:
    """Probabilities of a checkpoint over one split of its task manifest.

    ``cache_dir`` defaults to the project's ``data/cache`` (``XRAY_DATA_DIR`` respected).  The
    returned frame carries ``attrs["task"]``, ``attrs["split"]`` and ``attrs["n_dropped"]``
    (unreadable images left out).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    model, meta = load_checkpoint(checkpoint_json, device="cpu")
    task, classes = meta["task"], list(meta["classes"])
    manifest_path = Path(task_manifest_csv)
    manifest = read_task_manifest(manifest_path)
    rows = manifest[manifest["split"] == split]
    if rows.empty:
        raise ManifestError(f"task manifest {manifest_path} has no rows in split {split!r} "
                            f"(splits present: {sorted(set(manifest['split']))})")
    _check_labels(task, classes, rows["label"], manifest_path)
    probs, ok = _predict_paths(model, meta, rows["path"].tolist(), batch_size,
                               cache_dir or _default_cache_dir(), resolve_device(device),
                               f"{task} {split}")
    kept = rows[ok]
    df = pd.DataFrame({"id": kept.index.to_numpy(), "path": kept["path"].to_numpy(),
                       "split": kept["split"].to_numpy(), "source": kept["source"].to_numpy(),
                       "truth": kept["label"].to_numpy()})
    df = pd.concat([df, pd.DataFrame(probs, columns=prob_columns(classes))], axis=1)
    df.attrs.update(task=task, split=split, n_dropped=int((~ok).sum()),
                    weights_sha256=str(meta.get("weights_sha256", "")))
    return df


def end_to_end_images(manifests_dir: str | Path, split: str = "test") -> pd.DataFrame:
    """The mixed test set of the chained pipeline, from the three task manifests.

    Rows: module I's ``split`` (X-rays and non-X-rays) plus module III's ``split`` chest films
    not already among them.  Truths: ``is_xray`` (0/1); ``xray_type`` looked up in module II's
    manifest (``""`` for non-X-rays); ``findings`` looked up in module III's manifest (``""``
    when a chest film has no known findings, and for every other image).
    """
    manifests_dir = Path(manifests_dir)
    m1, m2, m3 = (read_task_manifest(manifests_dir / f"{t}.csv") for t in paper.TASKS)
    types = dict(zip(m2["path"], m2["label"]))
    findings = dict(zip(m3["path"], m3["label"]))
    part1 = m1[m1["split"] == split]
    is_xray = (part1["label"] == "xray").astype(int).to_numpy()
    t = np.array([types.get(p, "") if x else "" for p, x in zip(part1["path"], is_xray)],
                 dtype=object)
    missing = [p for p, x, ty in zip(part1["path"], is_xray, t) if x and not ty]
    if missing:
        raise ManifestError(
            f"{len(missing)} X-ray(s) of {manifests_dir / 'xray_or_not.csv'} have no type in "
            f"{manifests_dir / 'xray_type.csv'} (e.g. {missing[0]}); rebuild the task manifests "
            "from one image manifest (manifests.write_task_manifests)")
    a = pd.DataFrame({"path": part1["path"].to_numpy(), "source": part1["source"].to_numpy(),
                      "patient_id": part1["patient_id"].to_numpy(), "is_xray": is_xray,
                      "xray_type": t,
                      "findings": [findings.get(p, "") if ty == "chest" else ""
                                   for p, ty in zip(part1["path"], t)]})
    part3 = m3[(m3["split"] == split) & ~m3["path"].isin(set(a["path"]))]
    b = pd.DataFrame({"path": part3["path"].to_numpy(), "source": part3["source"].to_numpy(),
                      "patient_id": part3["patient_id"].to_numpy(), "is_xray": 1,
                      "xray_type": "chest", "findings": part3["label"].to_numpy()})
    out = pd.concat([a, b], ignore_index=True)
    if out.empty:
        raise ManifestError(f"the task manifests in {manifests_dir} have no {split!r} rows")
    return out


def predict_chain(checkpoints_dir: str | Path, images: pd.DataFrame,
                  batch_size: int = INFERENCE_BATCH_SIZE,
                  cache_dir: str | Path | None = None,
                  device: str | torch.device = "auto",
                  known: Sequence[pd.DataFrame] = ()) -> pd.DataFrame:
    """Run all three modules on every image of ``images`` (columns ``path`` + the truths).

    ``images`` needs ``path``, ``is_xray``, ``xray_type`` and ``findings`` (see
    :func:`end_to_end_images`).  Checkpoints are read from
    ``<checkpoints_dir>/<task>/best.json``.  ``known``: frames of :func:`predict_split` made
    with these same checkpoints (``attrs["weights_sha256"]`` says whose weights); an image a
    module has already scored there is not run through it again (the test splits of the three modules
    are most of the chain's images).
    """
    missing = [c for c in ("path", *CHAIN_TRUTH_COLUMNS) if c not in images.columns]
    if missing:
        raise ValueError(f"images table lacks column(s) {missing}; build it with "
                         "predict.end_to_end_images(paths.manifests_dir)")
    if images.empty:
        raise ValueError("images table is empty: nothing to predict")
    checkpoints_dir = Path(checkpoints_dir)
    device_ = resolve_device(device)
    cache_dir = cache_dir or _default_cache_dir()
    paths = images["path"].astype(str).tolist()
    probs: dict[str, pd.DataFrame] = {}
    ok = np.ones(len(paths), dtype=bool)
    for task in paper.TASKS:
        model, meta = load_checkpoint(best_checkpoint(checkpoints_dir, task), device="cpu")
        if meta["task"] != task:
            raise ValueError(f"{best_checkpoint(checkpoints_dir, task)} holds a {meta['task']!r} "
                             f"model, not {task!r}")
        full, ok_t = _known_probabilities(known, meta, paths)
        todo = np.flatnonzero(~ok_t)
        if len(todo):
            p, ok_new = _predict_paths(model, meta, [paths[i] for i in todo], batch_size,
                                       cache_dir, device_, f"end to end, {task}")
            full[todo[ok_new]] = p
            ok_t[todo[ok_new]] = True
        probs[task] = pd.DataFrame(full, columns=list(meta["classes"]))
        ok &= ok_t
    kept = images[ok].reset_index(drop=True)
    out = pd.DataFrame({"id": images.index.to_numpy()[ok], "path": kept["path"].astype(str)})
    if "source" in kept.columns:
        out["source"] = kept["source"].astype(str)
    out["is_xray"] = kept["is_xray"].astype(int).to_numpy()
    out["xray_type"] = kept["xray_type"].fillna("").astype(str).to_numpy()
    out["findings"] = kept["findings"].fillna("").astype(str).to_numpy()
    out[CHAIN_XRAY_COLUMN] = probs["xray_or_not"]["xray"].to_numpy()[ok]
    cols = {f"{CHAIN_TYPE_PREFIX}{c}": probs["xray_type"][c].to_numpy()[ok]
            for c in paper.XRAY_TYPES}
    cols.update({f"{CHAIN_FINDING_PREFIX}{c}": probs["chest"][c].to_numpy()[ok]
                 for c in paper.FINDINGS})
    out = pd.concat([out, pd.DataFrame(cols)], axis=1)
    out.attrs.update(n_dropped=int((~ok).sum()))
    return out


def _known_probabilities(known: Sequence[pd.DataFrame], meta: Mapping, paths: Sequence[str]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of ``paths`` found in those ``known`` frames made by the module and the
    weights of ``meta`` (NaN elsewhere), and the mask of those found."""
    classes = list(meta["classes"])
    full = np.full((len(paths), len(classes)), np.nan)
    where = {p: i for i, p in enumerate(paths)}
    for df in known:
        digest = df.attrs.get("weights_sha256")
        if not digest or (df.attrs.get("task"), digest) != (meta["task"], meta.get("weights_sha256")):
            continue
        rows = [(where[p], k) for k, p in enumerate(df["path"].astype(str)) if p in where]
        if rows:
            dst, src = (np.asarray(r) for r in zip(*rows))
            full[dst] = df[prob_columns(classes)].to_numpy(dtype=np.float64)[src]
    return full, ~np.isnan(full).any(axis=1)


def checkpoint_table(checkpoints_dir: str | Path) -> pd.DataFrame:
    """One row per module: what its ``best.json`` says (weights are not loaded).

    Fails with the missing file's name (and how to make it) when a module was not trained.
    """
    rows = []
    for task in paper.TASKS:
        info = best_checkpoint(checkpoints_dir, task)
        if not info.is_file():
            raise FileNotFoundError(f"checkpoint missing: {info}. Train the module first "
                                    "(notebooks 01-03) or pass the RUN_DIR of a trained run.")
        meta = json.loads(info.read_text())
        training = meta.get("training", {})
        rows.append({"task": task, "classes": len(meta["classes"]),
                     "multilabel": meta["multilabel"], "image_size": meta["image_size"],
                     "epochs": training.get("EPOCHS"), "best_epoch": training.get("best_epoch"),
                     "checkpoint": str(info)})
    return pd.DataFrame(rows).set_index("task")


def save_predictions(df: pd.DataFrame, path: str | Path) -> Path:
    """Write predictions as CSV (atomically: a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def load_predictions(path: str | Path) -> pd.DataFrame:
    """Read a prediction file written by :func:`save_predictions` (text stays text)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"prediction file not found: {path}. Run the prediction cells of "
            "notebooks/04_evaluation.ipynb (or predict.predict_split / predict_chain) first.")
    dtypes = {c: str for c in _TEXT_COLUMNS}
    try:
        df = pd.read_csv(path, dtype=dtypes, keep_default_na=False)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable prediction CSV: {exc}") from exc
    probs = [c for c in df.columns if c.startswith(PROB_PREFIX)]
    if "path" not in df.columns or not probs:
        raise ValueError(f"{path} is not a prediction file: it needs a 'path' column and "
                         f"'p_<class>' probability columns; found {list(df.columns)}")
    df[probs] = df[probs].astype(float)
    return df
