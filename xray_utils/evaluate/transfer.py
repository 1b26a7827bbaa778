"""Transfer: does what the models learned carry over to films from elsewhere?  Scored on a labelled
folder.

The demo models train on the real films shipped in ``data/open-films`` (and on phantoms where no
open film exists); a labelled folder from elsewhere is what they have not seen.
:func:`score_transfer` runs Modules I and II on a labelled folder of real images (real chest,
hand, knee, ... films and ImageNet photographs with a ``labels.csv``; set ``XRAY_REAL_SAMPLES``
or pass ``--samples``) and reports:

* ROC AUC of "X-ray or not";
* the share of real films called X-rays and of photographs called not X-rays, at the pipeline's
  threshold (0.5) and at the single best threshold (Youden's J; an optimistic figure, since the
  threshold is chosen on the same images);
* body-part (X-ray type) accuracy per type, and balanced accuracy beside plain accuracy (chest
  is about half of the films, so plain accuracy flatters a chest-heavy model).

Command line: ``python -m xray_utils transfer [--checkpoints DIR] [--samples DIR] [--json OUT]
[--test-split-of TASK_MANIFEST]``; the last option scores only the held-out part of the folder,
for models trained with the folder mixed in (``-p EXTRA_DATA``).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from xray_utils.config import paper
from xray_utils.config.paths import (
    LABELLED_FOLDER_ENV,
    best_checkpoint,
    labelled_folder_dir,
    project_paths,
)
from xray_utils.data.imageio import ImageReadError, read_gray, resize_gray
from xray_utils.diagnose import rule as chain
from xray_utils.models import load_checkpoint, predict_probabilities


def held_out_files(task_manifest: str | Path) -> set[str]:
    """Resolved paths of a task manifest's test split (for models that trained on part of the
    real folder: score them on its held-out part only)."""
    from xray_utils.data.manifests import read_task_manifest

    df = read_task_manifest(task_manifest)
    return {str(Path(p).resolve()) for p in df.loc[df["split"] == "test", "path"]}


def score_transfer(checkpoints_dir: str | Path | None = None,
                   samples_dir: str | Path | None = None,
                   progress: bool = True, only_files: set[str] | None = None) -> dict[str, Any]:
    """Scores of the Module I and II checkpoints on a labelled folder of real images
    (``only_files``: resolved paths to keep, e.g. :func:`held_out_files` a mixed run)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score, roc_curve

    checkpoints_dir = Path(checkpoints_dir or project_paths("demo").checkpoints_dir)
    found = labelled_folder_dir(samples_dir)
    if found is None:
        where = f" ({samples_dir} has no labels.csv)" if samples_dir else ""
        raise FileNotFoundError(
            f"no labelled folder of real images{where}: pass samples_dir (a folder with "
            f"labels.csv, see xray_utils.sources.labelled_folder) or set {LABELLED_FOLDER_ENV}")
    samples_dir = found
    from xray_utils.sources import labelled_folder

    # the one checked reader of labelled folders: paths stay inside, labels and sizes checked,
    # missing files counted (each image is decoded below, so not twice here)
    labels = labelled_folder.load(samples_dir, drop_missing=True, decode=False,
                                  check_content=False)
    if only_files is not None:
        keep_rows = [str(Path(p).resolve()) in only_files for p in labels["path"]]
        labels = labels[keep_rows].reset_index(drop=True)
        if labels.empty:
            raise FileNotFoundError(f"none of the selected files is listed in {samples_dir}/labels.csv")
    m1, meta1 = load_checkpoint(best_checkpoint(checkpoints_dir, "xray_or_not"))
    m2, meta2 = load_checkpoint(best_checkpoint(checkpoints_dir, "xray_type"))
    size1, size2 = meta1["image_size"], meta2["image_size"]
    imgs1, imgs2, keep, skipped = [], [], [], []
    for i, row in enumerate(tqdm(labels.itertuples(), total=len(labels), desc="real images",
                                 disable=not progress, leave=False)):
        try:
            gray = read_gray(row.path)
        except ImageReadError as exc:
            skipped.append(str(exc))
            continue
        imgs1.append(resize_gray(gray, size1))
        imgs2.append(resize_gray(gray, size2))
        keep.append(i)
    df = labels.iloc[keep].reset_index(drop=True)
    is_xray = df["is_xray"].astype(int).to_numpy()
    p_xray = predict_probabilities(m1, meta1, np.stack(imgs1))[:, paper.XRAY_OR_NOT_CLASSES.index("xray")]
    fpr, tpr, thr = roc_curve(is_xray, p_xray)
    best = int(np.argmax(tpr - fpr))

    def shares(threshold: float) -> dict[str, float]:
        called = chain.is_xray(p_xray, threshold)
        return {"threshold": float(threshold),
                "films_accepted": float(called[is_xray == 1].mean()),
                "photos_rejected": float((~called[is_xray == 0]).mean())}

    films = np.flatnonzero(is_xray == 1)
    known = [i for i in films if df.loc[i, "xray_type"] in paper.XRAY_TYPES]
    type_probs = predict_probabilities(m2, meta2, np.stack([imgs2[i] for i in known]))
    truth = df.loc[known, "xray_type"].to_numpy()
    pred = chain.xray_type(type_probs)
    per_type = {}
    for t in sorted(set(truth)):
        mask = truth == t
        top = pd.Series(pred[mask]).value_counts()
        per_type[t] = {"n": int(mask.sum()), "accuracy": float((pred[mask] == t).mean()),
                       "most_called": str(top.index[0])}
    with warnings.catch_warnings():  # types never called are expected (real films lack some)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = float(balanced_accuracy_score(truth, pred))
    return {
        "samples_dir": str(samples_dir), "checkpoints_dir": str(checkpoints_dir),
        "n_images": int(len(df)), "n_films": int(is_xray.sum()),
        "n_photos": int((is_xray == 0).sum()), "skipped": skipped,
        "xray_or_not": {"auc": float(roc_auc_score(is_xray, p_xray)), "at_0.5": shares(0.5),
                        "at_best": shares(float(thr[best]))},
        "xray_type": {"accuracy": float(accuracy_score(truth, pred)),
                      "balanced_accuracy": balanced,
                      "chance": 1 / len(paper.XRAY_TYPES), "per_type": per_type},
    }


def format_transfer_report(scores: dict[str, Any]) -> str:
    """A short human-readable summary of :func:`score_transfer`'s result."""
    x, t = scores["xray_or_not"], scores["xray_type"]
    lines = [f"real images: {scores['n_films']} films, {scores['n_photos']} photographs "
             f"({len(scores['skipped'])} unreadable)",
             f"X-ray or not: ROC AUC {x['auc']:.3f}"]
    for key in ("at_0.5", "at_best"):
        s = x[key]
        lines.append(f"  threshold {s['threshold']:.3f}: films accepted {s['films_accepted']:.3f}, "
                     f"photos rejected {s['photos_rejected']:.3f}")
    lines.append(f"X-ray type: accuracy {t['accuracy']:.3f}, balanced accuracy "
                 f"{t['balanced_accuracy']:.3f} (chance {t['chance']:.3f})")
    for name, s in t["per_type"].items():
        lines.append(f"  {name:9s} n={s['n']:4d} accuracy {s['accuracy']:.3f} "
                     f"(most often called {s['most_called']})")
    return "\n".join(lines)
