"""The paper's numbers, computed from saved prediction files (never from a model).

Every function here takes prediction tables written by :mod:`xray_utils.evaluate.predictions`; metrics come
from scikit-learn, the decision rule of the chain from :mod:`xray_utils.diagnose.rule`, confidence
intervals from a seeded percentile bootstrap over test images.  :func:`build_metrics` gathers
everything into one JSON-ready dict and :func:`write_metrics` stores it in
``figures/<profile>/metrics.json`` (one section at a time, so the ``training`` and ``gradcam``
sections that other notebooks write are kept).

Prediction files read by :func:`build_metrics` (in ``predictions_dir``):
``xray_or_not_test.csv``, ``xray_type_test.csv``, ``chest_val.csv``, ``chest_test.csv`` (from
``predict.predict_split``) and ``end_to_end_test.csv`` (from ``predict.predict_chain``).

Schema of :func:`build_metrics` (``ci`` = ``[low, high]``, a 95 % percentile bootstrap interval;
undefined values are ``null``, never NaN)::

    {
      "profile": str,
      "xray_or_not": {                      # Module I, test split
        "n": int, "accuracy": float, "accuracy_ci": ci,
        "labels": ["xray", "not_xray"],     # order of rows (actual) and columns (predicted)
        "confusion": [[int, int], [int, int]],   # laid out like Table II
        "errors": {"xray_as_not_xray": int, "not_xray_as_xray": int},
        "threshold": float,                 # chain.XRAY_THRESHOLD on p_xray
        "paper": {"confusion": Table II, "accuracy_printed": 0.987,
                  "accuracy_from_table_ii": 0.992, "note": str},
        "bootstrap": {"method", "n_resamples", "seed", "level"}
      },
      "xray_type": {                        # Module II, test split
        "n": int, "accuracy": float, "accuracy_ci": ci, "balanced_accuracy": float,
        "classes": [14 types, Table I order],
        "confusion": [[int]*14]*14,          # rows actual, columns predicted
        "confusion_normalized": [[float|null]*14]*14,  # each row / its total (null: no images)
        "per_class": {type: {"precision", "recall", "f1": float|null, "support": int}},
        "most_confused": [{"actual", "predicted", "count", "fraction_of_actual"}, ...],  # top-k
        "paper": {"accuracy_printed": 0.976}, "bootstrap": {...}
      },
      "chest": {                            # Module III, test split (+ val for thresholds)
        "n_test": int, "n_val": int, "findings": [14, Table III order],
        "auc": {finding: float|null}, "auc_ci": {finding: ci|null},
        "auc_notes": {finding: str},        # why an AUC is null (no positives in test, ...)
        "mean_auc": float|null, "n_auc_defined": int,   # mean over the defined AUCs
        "mean_auc_ci": ci,                  # per resample: mean of those findings' AUCs
        "thresholds": {finding: float}, "threshold_method": str,
        "threshold_notes": {finding: str},
        "accuracy": float, "accuracy_ci": ci,                   # per-label, val thresholds
        "accuracy_at_0_5": float, "accuracy_at_0_5_ci": ci,     # per-label, 0.5
        "accuracy_all_negative": float, "accuracy_all_negative_ci": ci,
        "exact_match": {"thresholds": float, "at_0_5": float, "all_negative": float},
        "per_class": {finding: {"auc", "n_positive_test", "prevalence_test",
                               "n_positive_val", "threshold", "sensitivity", "specificity",
                               "accuracy", "accuracy_at_0_5"}},
        "paper": {"table3": Table III, "mean_auc_paper": float, "accuracy_printed": 0.947},
        "bootstrap": {...}
      },
      "end_to_end": {                       # chain I -> II -> III on the mixed test set
        "n": int, "n_by_group": {group: int}, "definition": str, "definition_per_label": str,
        "accuracy": float, "accuracy_ci": ci,                   # strict (exact match)
        "accuracy_per_label": float, "accuracy_per_label_ci": ci,
        "accuracy_at_0_5": float,           # strict, with every finding threshold at 0.5
        "product_of_module_accuracies": {"value", "ci", "factors": {task: float}, "note"},
        "propagation": [{"group", "n", "lost_at_I", "lost_at_II", "lost_at_III",
                         "correct"}, ..., {"group": "all", ...}],
        "routing": {"stages": [...], "matrix": [[int]]},   # rows truth stage, cols reached
        "xray_threshold": float, "finding_thresholds": "chest.thresholds",
        "paper": {"accuracy_printed": 0.91, "product_of_printed_accuracies": 0.912, "note"},
        "bootstrap": {...}
      }
    }

Groups of the end-to-end set are the stages of :func:`xray_utils.diagnose.rule.stage_reached` that an
image *should* reach: ``not_xray`` (photos), ``type_only`` (X-rays other than chest) and
``chest`` (chest films).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from xray_utils.config import paper
from xray_utils.config.jsonable import to_jsonable
from xray_utils.data.manifests import findings_to_vector
from xray_utils.diagnose import rule as chain
from xray_utils.evaluate.predictions import (
    CHAIN_FINDING_PREFIX,
    CHAIN_TYPE_PREFIX,
    CHAIN_XRAY_COLUMN,
    END_TO_END_FILE,
    load_predictions,
    prediction_path,
    prob_columns,
)
from xray_utils.evaluate.record import update_metrics

#: Sections of metrics.json written by this module (in this order).
SECTIONS: tuple[str, ...] = ("xray_or_not", "xray_type", "chest", "end_to_end")
DEFAULT_RESAMPLES = 1000
CI_LEVEL = 0.95
#: A threshold above every probability: "never call this finding present".
NEVER = float(np.nextafter(1.0, 2.0))
#: The stages of the chain, in the order of its modules.
STAGES: tuple[str, ...] = ("not_xray", "type_only", "chest")
STAGE_LABELS: Mapping[str, str] = {"not_xray": "not an X-ray", "type_only": "X-ray, not chest",
                                   "chest": "chest film"}

END_TO_END_DEFINITION = (
    "An image is correct end to end when every module it passes through is right: Module I "
    "says X-ray for a radiograph and not-X-ray for anything else (a non-X-ray stops there); for "
    "an X-ray, Module II names its type; for a chest film, Module III's findings at the "
    "validation-chosen thresholds equal the true findings for all 14 labels (exact match). "
    "Chest films without known findings are judged on modules I and II only.")
END_TO_END_PER_LABEL_DEFINITION = (
    "Per-label variant: as above, but a chest film that reaches Module III scores the fraction "
    "of its 14 finding labels that are right (partial credit) instead of 0 or 1.")
TABLE_II_NOTE = (
    "Table II's own matrix gives (4712 + 4928) / 9717 = {:.3f}, not the {:.3f} the paper "
    "prints; we report both and compute ours from our matrix.")
PRODUCT_NOTE = (
    "0.987 x 0.976 x 0.947 = {:.3f}, which rounds to the paper's end-to-end 0.91: this "
    "suggests (but the paper does not say) that its figure is the product of the three module "
    "accuracies rather than a measurement of the chained pipeline.")


# --------------------------------------------------------------------------- bootstrap
def _resample_chunks(n: int, n_resamples: int, seed: int,
                     max_cells: int = 4_000_000) -> Iterator[np.ndarray]:
    """Bootstrap index arrays ``(k, n)``, ``n_resamples`` rows in all, drawn from one seeded RNG.

    Chunks keep memory bounded on large test sets; the draws do not depend on the chunking.
    """
    if n < 1:
        raise ValueError("cannot bootstrap an empty sample")
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_resamples, max_cells // n))
    done = 0
    while done < n_resamples:
        k = min(chunk, n_resamples - done)
        yield rng.integers(0, n, size=(k, n))
        done += k


def percentile_ci(values: np.ndarray, level: float = CI_LEVEL) -> list[float] | None:
    """``[low, high]`` percentile interval of bootstrap ``values`` (NaN ignored, None if none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return [float(lo), float(hi)]


def bootstrap_means(scores: Sequence[float], n_resamples: int = DEFAULT_RESAMPLES,
                    seed: int = 0) -> np.ndarray:
    """Means of ``n_resamples`` bootstrap resamples of per-image ``scores`` (e.g. 0/1 correct)."""
    x = np.asarray(scores, dtype=float)
    return np.concatenate([x[idx].mean(axis=1) for idx in _resample_chunks(len(x), n_resamples,
                                                                             seed)])


def bootstrap_ci(scores: Sequence[float], n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                 level: float = CI_LEVEL) -> list[float] | None:
    """Percentile bootstrap CI of the mean of per-image ``scores`` (accuracy when 0/1)."""
    return percentile_ci(bootstrap_means(scores, n_resamples, seed), level)


def rank_auc(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """ROC AUC along the last axis via the Mann-Whitney U statistic (ties count one half).

    Equal to ``sklearn.metrics.roc_auc_score`` (a test checks it) but vectorised over many
    bootstrap resamples at once; NaN where a row has no positives or no negatives.
    """
    y = np.asarray(y, dtype=float)
    ranks = rankdata(np.asarray(p, dtype=float), axis=-1)
    n_pos = y.sum(axis=-1)
    n_neg = y.shape[-1] - n_pos
    u = (ranks * y).sum(axis=-1) - n_pos * (n_pos + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def bootstrap_aucs(y: np.ndarray, p: np.ndarray, n_resamples: int = DEFAULT_RESAMPLES,
                   seed: int = 0) -> np.ndarray:
    """Per-class AUCs of bootstrap resamples of the images: ``(n_resamples, n_classes)``.

    The resamples are those of :func:`_resample_chunks` (drawn once for all classes).  A
    resample is a count per image (how often it was drawn), so its AUC is the Mann-Whitney
    statistic with each image weighted by its count: ``AUC = sum_i c_i (N_<i + N_=i / 2) / (P N)``
    over the positive images ``i`` (count ``c_i``), where ``N_<i`` and ``N_=i`` are the counted
    negatives scored below and equal to image ``i``, read from one running sum over the
    negatives sorted by score (sorted once per class).  All the terms are integers or halves,
    so the result is the very number :func:`rank_auc` gives on the resampled images (a test
    checks both and scikit-learn), at O(resamples x images) per class instead of a sort per
    resample and class.
    """
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    n, n_classes = y.shape
    plans = []
    for c in range(n_classes):
        pos = np.flatnonzero(y[:, c] > 0)
        neg = np.flatnonzero(y[:, c] <= 0)
        neg = neg[np.argsort(p[neg, c], kind="stable")]
        scores = p[neg, c]
        plans.append((pos, neg, np.searchsorted(scores, p[pos, c], side="left"),
                      np.searchsorted(scores, p[pos, c], side="right")))
    out = []
    for idx in _resample_chunks(n, n_resamples, seed):
        k = len(idx)
        counts = np.bincount((idx + (np.arange(k) * n)[:, None]).ravel(),
                             minlength=k * n).reshape(k, n).astype(float)
        aucs = np.empty((k, n_classes))
        for c, (pos, neg, lo, hi) in enumerate(plans):
            below = np.zeros((k, len(neg) + 1))  # below[:, j]: counted negatives of the j lowest
            np.cumsum(counts[:, neg], axis=1, out=below[:, 1:])
            c_pos = counts[:, pos]
            n_pos, n_neg = c_pos.sum(axis=1), below[:, -1]
            u = (c_pos * (below[:, lo] + below[:, hi])).sum(axis=1) / 2.0
            with np.errstate(invalid="ignore", divide="ignore"):
                aucs[:, c] = np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
        out.append(aucs)
    return np.concatenate(out)


def bootstrap_aucs_by_ranks(y: np.ndarray, p: np.ndarray, n_resamples: int = DEFAULT_RESAMPLES,
                            seed: int = 0) -> np.ndarray:
    """:func:`bootstrap_aucs` the direct way (each resample's images ranked again, one class at a
    time): the reference the weighted-count version is tested against."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    out = []
    for idx in _resample_chunks(len(y), n_resamples, seed):
        out.append(np.stack([rank_auc(y[idx, c], p[idx, c]) for c in range(y.shape[1])],
                            axis=1))
    return np.concatenate(out)


def _boot_info(n_resamples: int, seed: int, level: float) -> dict[str, Any]:
    return {"method": "percentile", "n_resamples": int(n_resamples), "seed": int(seed),
            "level": float(level), "unit": "test image"}


# --------------------------------------------------------------------------- helpers
def _probs(df: pd.DataFrame, classes: Sequence[str], prefix: str, what: str) -> np.ndarray:
    cols = prob_columns(classes, prefix)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what} predictions lack the column(s) {missing[:3]}"
                         f"{'...' if len(missing) > 3 else ''}; were they written by "
                         "xray_utils.evaluate.predictions for this task?")
    return df[cols].to_numpy(dtype=float)


def _check_truth(truth: pd.Series, classes: Sequence[str], what: str) -> np.ndarray:
    bad = sorted(set(truth) - set(classes))
    if bad:
        raise ValueError(f"{what} predictions have truth value(s) {bad} that are not classes "
                         f"{list(classes)}")
    return truth.to_numpy(dtype=object)


# --------------------------------------------------------------------------- Module I
def xray_or_not_predicted(df: pd.DataFrame) -> np.ndarray:
    """Module I's verdict per image (``"xray"``/``"not_xray"``) by the chain's rule."""
    xr = chain.is_xray(df[CHAIN_XRAY_COLUMN].to_numpy(dtype=float))
    return np.where(xr, "xray", "not_xray").astype(object)


def xray_or_not_metrics(df: pd.DataFrame, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                        level: float = CI_LEVEL) -> dict[str, Any]:
    """Module I: accuracy (+ CI) and the confusion matrix laid out like Table II."""
    labels = list(paper.XRAY_OR_NOT_CLASSES)
    truth = _check_truth(df["truth"], labels, "Module I")
    _probs(df, labels, "p_", "Module I")
    pred = xray_or_not_predicted(df)
    cm = confusion_matrix(truth, pred, labels=labels)
    correct = truth == pred
    table_acc = paper.table_ii_accuracy()
    printed = paper.PAPER_RESULTS["xray_or_not_accuracy"]
    return to_jsonable({
        "n": len(df), "accuracy": accuracy_score(truth, pred),
        "accuracy_ci": bootstrap_ci(correct, n_resamples, seed, level),
        "labels": labels, "confusion": cm,
        "errors": {"xray_as_not_xray": cm[0, 1], "not_xray_as_xray": cm[1, 0]},
        "threshold": chain.XRAY_THRESHOLD,
        "paper": {"confusion": paper.TABLE_II, "accuracy_printed": printed,
                  "accuracy_from_table_ii": table_acc,
                  "note": TABLE_II_NOTE.format(table_acc, printed)},
        "bootstrap": _boot_info(n_resamples, seed, level),
    })


def xray_or_not_errors(df: pd.DataFrame) -> pd.DataFrame:
    """Module I's misclassified images, most confident mistakes first (for Fig. 2)."""
    pred = xray_or_not_predicted(df)
    out = df.assign(predicted=pred)[pred != df["truth"].to_numpy(dtype=object)].copy()
    confidence = np.where(out["predicted"] == "xray", out[CHAIN_XRAY_COLUMN],
                          1.0 - out[CHAIN_XRAY_COLUMN])
    return out.assign(confidence=confidence).sort_values("confidence", ascending=False,
                                                         kind="stable")


# --------------------------------------------------------------------------- Module II
def xray_type_predicted(df: pd.DataFrame) -> np.ndarray:
    """Module II's verdict per image by the chain's rule (most probable type)."""
    return chain.xray_type(_probs(df, paper.XRAY_TYPES, "p_", "Module II"))


def most_confused(cm: np.ndarray, classes: Sequence[str], top_k: int = 5) -> list[dict[str, Any]]:
    """The ``top_k`` largest off-diagonal cells of a confusion matrix (rows actual)."""
    cm = np.asarray(cm)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off)
    order = sorted(zip(rows, cols), key=lambda rc: (-off[rc], rc))[:top_k]
    return [{"actual": classes[r], "predicted": classes[c], "count": int(off[r, c]),
             "fraction_of_actual": float(off[r, c] / cm[r].sum())} for r, c in order]


def xray_type_metrics(df: pd.DataFrame, top_k: int = 5, n_resamples: int = DEFAULT_RESAMPLES,
                      seed: int = 0, level: float = CI_LEVEL) -> dict[str, Any]:
    """Module II: accuracy (+ CI), confusion (counts and row-normalised), per-class P/R."""
    classes = list(paper.XRAY_TYPES)
    truth = _check_truth(df["truth"], classes, "Module II")
    pred = xray_type_predicted(df)
    cm = confusion_matrix(truth, pred, labels=classes)
    totals = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(totals > 0, cm / totals, np.nan)
    prec, rec, f1, support = precision_recall_fscore_support(
        truth, pred, labels=classes, zero_division=np.nan)
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected here
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(truth, pred)
    return to_jsonable({
        "n": len(df), "accuracy": accuracy_score(truth, pred),
        "accuracy_ci": bootstrap_ci(truth == pred, n_resamples, seed, level),
        "balanced_accuracy": balanced,  # mean recall over the types present in the test split
        "classes": classes, "confusion": cm, "confusion_normalized": norm,
        "per_class": {c: {"precision": prec[i], "recall": rec[i], "f1": f1[i],
                          "support": support[i]} for i, c in enumerate(classes)},
        "most_confused": most_confused(cm, classes, top_k),
        "paper": {"accuracy_printed": paper.PAPER_RESULTS["xray_type_accuracy"]},
        "bootstrap": _boot_info(n_resamples, seed, level),
    })


# --------------------------------------------------------------------------- Module III
def youden_threshold(y: np.ndarray, p: np.ndarray) -> tuple[float, str | None]:
    """Threshold maximising Youden's J = sensitivity + specificity - 1 (``p >= t`` positive).

    Falls back to ``chain.FINDING_THRESHOLD`` (with a note) when ``y`` has one class only.
    """
    y = np.asarray(y)
    if y.min() == y.max():
        which = "positives" if y.max() == 0 else "negatives"
        return chain.FINDING_THRESHOLD, f"no {which} in validation: threshold left at " \
                                        f"{chain.FINDING_THRESHOLD}"
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    best = int(np.argmax(tpr - fpr))
    if not np.isfinite(thr[best]):
        return NEVER, "no threshold beats chance on validation: finding never called"
    return float(thr[best]), None


def chest_thresholds(val_df: pd.DataFrame) -> tuple[dict[str, float], dict[str, str]]:
    """Per-finding Youden thresholds chosen on the validation predictions, and notes."""
    y = findings_to_vector(val_df["truth"])
    p = _probs(val_df, paper.FINDINGS, "p_", "Module III (val)")
    thresholds, notes = {}, {}
    for i, f in enumerate(paper.FINDINGS):
        thresholds[f], note = youden_threshold(y[:, i], p[:, i])
        if note:
            notes[f] = note
    return thresholds, notes


def chest_label_scores(y: np.ndarray, p: np.ndarray, thresholds: Sequence[float] | float
                       ) -> np.ndarray:
    """Per image: the fraction of its 14 finding labels right at ``thresholds``."""
    return ((p >= np.asarray(thresholds, dtype=float)) == (y > 0.5)).mean(axis=1)


def roc_curves(df: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """``{finding: (fpr, tpr, auc)}`` for the findings with positives and negatives (Fig. 4)."""
    y = findings_to_vector(df["truth"])
    p = _probs(df, paper.FINDINGS, "p_", "Module III")
    out = {}
    for i, f in enumerate(paper.FINDINGS):
        if 0 < y[:, i].sum() < len(y):
            fpr, tpr, _ = roc_curve(y[:, i], p[:, i])
            out[f] = (fpr, tpr, float(roc_auc_score(y[:, i], p[:, i])))
    return out


def chest_metrics(test_df: pd.DataFrame, val_df: pd.DataFrame,
                  n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                  level: float = CI_LEVEL) -> dict[str, Any]:
    """Module III: per-finding AUC (+ CIs), mean AUC, val-chosen thresholds, accuracies."""
    findings = list(paper.FINDINGS)
    y = findings_to_vector(test_df["truth"])
    p = _probs(test_df, findings, "p_", "Module III (test)")
    n_pos = y.sum(axis=0).astype(int)
    n_pos_val = findings_to_vector(val_df["truth"]).sum(axis=0).astype(int)
    auc, notes = {}, {}
    for i, f in enumerate(findings):
        if n_pos[i] == 0:
            auc[f], notes[f] = np.nan, "no positive image in the test split: AUC undefined"
        elif n_pos[i] == len(y):
            auc[f], notes[f] = np.nan, "no negative image in the test split: AUC undefined"
        else:
            auc[f] = float(roc_auc_score(y[:, i], p[:, i]))
    defined = [i for i, f in enumerate(findings) if np.isfinite(auc[f])]
    boot = bootstrap_aucs(y, p, n_resamples, seed)
    with warnings.catch_warnings():  # a resample may lack every positive: all-NaN rows
        warnings.simplefilter("ignore", RuntimeWarning)
        boot_mean = (np.nanmean(boot[:, defined], axis=1) if defined
                     else np.full(len(boot), np.nan))
    thresholds, threshold_notes = chest_thresholds(val_df)
    thr = np.array([thresholds[f] for f in findings])
    pred = p >= thr
    pred05 = p >= chain.FINDING_THRESHOLD
    truth = y > 0.5
    scores = chest_label_scores(y, p, thr)
    scores05 = chest_label_scores(y, p, chain.FINDING_THRESHOLD)
    scores_neg = (~truth).mean(axis=1)
    per_class = {}
    for i, f in enumerate(findings):
        pos, neg = truth[:, i], ~truth[:, i]
        per_class[f] = {
            "auc": auc[f], "n_positive_test": n_pos[i], "prevalence_test": n_pos[i] / len(y),
            "n_positive_val": n_pos_val[i], "threshold": thresholds[f],
            "sensitivity": pred[pos, i].mean() if pos.any() else np.nan,
            "specificity": (~pred[neg, i]).mean() if neg.any() else np.nan,
            "accuracy": (pred[:, i] == truth[:, i]).mean(),
            "accuracy_at_0_5": (pred05[:, i] == truth[:, i]).mean(),
        }
    table3_paper = [paper.TABLE_III[f]["paper"] for f in findings]
    return to_jsonable({
        "n_test": len(test_df), "n_val": len(val_df), "findings": findings,
        "auc": auc,
        "auc_ci": {f: (percentile_ci(boot[:, i], level) if i in defined else None)
                   for i, f in enumerate(findings)},
        "auc_notes": notes,
        "mean_auc": np.mean([auc[findings[i]] for i in defined]) if defined else np.nan,
        "mean_auc_ci": percentile_ci(boot_mean, level), "n_auc_defined": len(defined),
        "thresholds": thresholds,
        "threshold_method": "Youden's J (sensitivity + specificity - 1) maximised per finding "
                            "on the validation predictions; positive when p >= threshold",
        "threshold_notes": threshold_notes,
        "accuracy": scores.mean(), "accuracy_ci": bootstrap_ci(scores, n_resamples, seed, level),
        "accuracy_at_0_5": scores05.mean(),
        "accuracy_at_0_5_ci": bootstrap_ci(scores05, n_resamples, seed, level),
        "accuracy_all_negative": scores_neg.mean(),
        "accuracy_all_negative_ci": bootstrap_ci(scores_neg, n_resamples, seed, level),
        "accuracy_definition": "per-label accuracy: the fraction of all image x finding "
                               "decisions (14 per image) that are right",
        "exact_match": {"thresholds": (pred == truth).all(axis=1).mean(),
                        "at_0_5": (pred05 == truth).all(axis=1).mean(),
                        "all_negative": (~truth).all(axis=1).mean()},
        "per_class": per_class,
        "paper": {"table3": {f: dict(paper.TABLE_III[f]) for f in findings},
                  "mean_auc_paper": float(np.mean(table3_paper)),
                  "accuracy_printed": paper.PAPER_RESULTS["chest_accuracy"]},
        "bootstrap": _boot_info(n_resamples, seed, level),
    })


# --------------------------------------------------------------------------- end to end
def end_to_end_outcomes(df: pd.DataFrame, thresholds: Mapping[str, float] | float
                        ) -> pd.DataFrame:
    """Per image of the mixed test set: truth stage, stage reached, outcome and scores.

    ``outcome`` is ``lost_at_I`` (Module I wrong), ``lost_at_II`` (an X-ray of the wrong
    type), ``lost_at_III`` (a chest film whose findings are not all right) or ``correct``;
    ``score`` is 1/0 for the strict definition, ``score_per_label`` gives partial credit to
    chest films reaching Module III (see ``END_TO_END_DEFINITION``).
    """
    is_xray_true = df["is_xray"].astype(int).to_numpy() == 1
    types_true = df["xray_type"].fillna("").astype(str).to_numpy(dtype=object)
    bad = sorted(set(types_true[is_xray_true]) - set(paper.XRAY_TYPES))
    if bad:
        raise ValueError(f"end-to-end predictions: X-rays with unknown type(s) {bad}; every "
                         "X-ray needs its type (see predict.end_to_end_images)")
    p_xray = df[CHAIN_XRAY_COLUMN].to_numpy(dtype=float)
    type_probs = _probs(df, paper.XRAY_TYPES, CHAIN_TYPE_PREFIX, "end-to-end")
    find_probs = _probs(df, paper.FINDINGS, CHAIN_FINDING_PREFIX, "end-to-end")
    if isinstance(thresholds, Mapping):
        thr = np.array([thresholds[f] for f in paper.FINDINGS], dtype=float)
    else:
        thr = np.full(len(paper.FINDINGS), float(thresholds))
    truth_stage = np.where(~is_xray_true, "not_xray",
                           np.where(types_true == chain.CHEST, "chest", "type_only"))
    reached = chain.stage_reached(p_xray, type_probs)
    xr_pred = chain.is_xray(p_xray)
    type_pred = chain.xray_type(type_probs)
    findings_text = df["findings"].fillna("").astype(str)
    known = (truth_stage == "chest") & (findings_text.str.strip() != "").to_numpy()
    y = np.zeros_like(find_probs)
    if known.any():
        y[known] = findings_to_vector(findings_text[known])
    label_scores = chest_label_scores(y, find_probs, thr)
    exact = label_scores == 1.0
    lost_i = xr_pred != is_xray_true
    lost_ii = ~lost_i & is_xray_true & (type_pred != types_true)
    lost_iii = ~lost_i & ~lost_ii & known & ~exact
    outcome = np.select([lost_i, lost_ii, lost_iii], ["lost_at_I", "lost_at_II", "lost_at_III"],
                        "correct")
    score_pl = np.where(lost_i | lost_ii, 0.0, np.where(known, label_scores, 1.0))
    return pd.DataFrame({"truth_stage": truth_stage, "reached": reached, "outcome": outcome,
                         "score": (outcome == "correct").astype(float),
                         "score_per_label": score_pl}, index=df.index)


def propagation_rows(outcomes: pd.DataFrame) -> list[dict[str, Any]]:
    """Counts of images lost at each stage, per truth group and in all."""
    rows = []
    for group in (*STAGES, "all"):
        sub = outcomes if group == "all" else outcomes[outcomes["truth_stage"] == group]
        counts = sub["outcome"].value_counts()
        rows.append({"group": group, "n": len(sub),
                     **{k: int(counts.get(k, 0))
                        for k in ("lost_at_I", "lost_at_II", "lost_at_III", "correct")}})
    return rows


def end_to_end_metrics(df: pd.DataFrame, thresholds: Mapping[str, float],
                       module_scores: Mapping[str, np.ndarray] | None = None,
                       n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                       level: float = CI_LEVEL) -> dict[str, Any]:
    """The chained pipeline on the mixed test set (definition in ``END_TO_END_DEFINITION``).

    ``module_scores`` (optional) maps each task to its per-image test scores (1/0 correct for
    modules I-II, per-label accuracy for III); their means' product is reported with a CI from
    independent bootstraps of the three test sets.
    """
    out = end_to_end_outcomes(df, thresholds)
    at05 = end_to_end_outcomes(df, chain.FINDING_THRESHOLD)
    routing = confusion_matrix(out["truth_stage"], out["reached"], labels=list(STAGES))
    printed = [paper.PAPER_RESULTS[k] for k in
               ("xray_or_not_accuracy", "xray_type_accuracy", "chest_accuracy")]
    paper_product = float(np.prod(printed))
    result: dict[str, Any] = {
        "n": len(df),
        "n_by_group": {g: int((out["truth_stage"] == g).sum()) for g in STAGES},
        "definition": END_TO_END_DEFINITION,
        "definition_per_label": END_TO_END_PER_LABEL_DEFINITION,
        "accuracy": out["score"].mean(),
        "accuracy_ci": bootstrap_ci(out["score"], n_resamples, seed, level),
        "accuracy_per_label": out["score_per_label"].mean(),
        "accuracy_per_label_ci": bootstrap_ci(out["score_per_label"], n_resamples, seed, level),
        "accuracy_at_0_5": at05["score"].mean(),
        "propagation": propagation_rows(out),
        "routing": {"stages": list(STAGES), "matrix": routing,
                    "rows": "stage the image should reach", "columns": "stage it reached"},
        "xray_threshold": chain.XRAY_THRESHOLD, "finding_thresholds": "chest.thresholds",
        "paper": {"accuracy_printed": paper.PAPER_RESULTS["end_to_end_accuracy"],
                  "product_of_printed_accuracies": paper_product,
                  "note": PRODUCT_NOTE.format(paper_product)},
        "bootstrap": _boot_info(n_resamples, seed, level),
    }
    if module_scores is not None:
        tasks = list(paper.TASKS)
        factors = {t: float(np.mean(module_scores[t])) for t in tasks}
        boots = [bootstrap_means(module_scores[t], n_resamples, seed + k)
                 for k, t in enumerate(tasks)]
        result["product_of_module_accuracies"] = {
            "value": float(np.prod(list(factors.values()))),
            "ci": percentile_ci(np.prod(boots, axis=0), level), "factors": factors,
            "note": "product of our three module test accuracies (chest: per-label accuracy "
                    "at the validation-chosen thresholds); CI from independent bootstraps of "
                    "the three test sets"}
    return to_jsonable(result)


# --------------------------------------------------------------------------- all together
def prediction_files(predictions_dir: str | Path) -> dict[str, Path]:
    """The prediction files :func:`build_metrics` reads, by role."""
    d = Path(predictions_dir)
    return {"xray_or_not_test": prediction_path(d, "xray_or_not", "test"),
            "xray_type_test": prediction_path(d, "xray_type", "test"),
            "chest_val": prediction_path(d, "chest", "val"),
            "chest_test": prediction_path(d, "chest", "test"),
            "end_to_end_test": d / END_TO_END_FILE}


def build_metrics(predictions_dir: str | Path, profile: str,
                  n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = CI_LEVEL,
                  top_k: int = 5) -> dict[str, Any]:
    """Every metric of the evaluation from the files in ``predictions_dir`` (schema above)."""
    dfs = {k: load_predictions(p) for k, p in prediction_files(predictions_dir).items()}
    kw = {"n_resamples": n_resamples, "seed": seed, "level": level}
    m1 = xray_or_not_metrics(dfs["xray_or_not_test"], **kw)
    m2 = xray_type_metrics(dfs["xray_type_test"], top_k=top_k, **kw)
    m3 = chest_metrics(dfs["chest_test"], dfs["chest_val"], **kw)
    d1, d2, d3 = dfs["xray_or_not_test"], dfs["xray_type_test"], dfs["chest_test"]
    thr = [m3["thresholds"][f] for f in paper.FINDINGS]
    scores = {
        "xray_or_not": (xray_or_not_predicted(d1) == d1["truth"].to_numpy(dtype=object)),
        "xray_type": (xray_type_predicted(d2) == d2["truth"].to_numpy(dtype=object)),
        "chest": chest_label_scores(findings_to_vector(d3["truth"]),
                                    _probs(d3, paper.FINDINGS, "p_", "Module III"), thr),
    }
    m4 = end_to_end_metrics(dfs["end_to_end_test"], m3["thresholds"], scores, **kw)
    return to_jsonable({"profile": profile, "xray_or_not": m1, "xray_type": m2, "chest": m3,
                        "end_to_end": m4})


def write_metrics(metrics: Mapping[str, Any], figures_dir: str | Path) -> Path:
    """Store each section of ``metrics`` in ``figures_dir/metrics.json`` (others kept)."""
    path = None
    for section in SECTIONS:
        path = update_metrics(figures_dir, section, metrics[section], profile=metrics["profile"])
    return path


def diff_metrics(expected: Any, actual: Any, tol: float = 1e-9, where: str = "") -> list[str]:
    """Differences between two metric trees (floats compared within ``tol``); empty if equal."""
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        out = []
        for k in sorted(set(expected) | set(actual), key=str):
            if k not in expected or k not in actual:
                out.append(f"{where}/{k}: present in only one of the two")
            else:
                out += diff_metrics(expected[k], actual[k], tol, f"{where}/{k}")
        return out
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        if len(expected) != len(actual):
            return [f"{where}: lengths {len(expected)} != {len(actual)}"]
        return [d for i, (a, b) in enumerate(zip(expected, actual))
                for d in diff_metrics(a, b, tol, f"{where}[{i}]")]
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)) \
            and not isinstance(expected, bool) and not isinstance(actual, bool):
        return [] if abs(expected - actual) <= tol else [f"{where}: {expected} != {actual}"]
    return [] if expected == actual else [f"{where}: {expected!r} != {actual!r}"]


# --------------------------------------------------------------------------- Table III
def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


#: The published columns beside ours: ChestX-ray14, CheXNet and both versions of the paper
#: (``paper``: the arXiv preprint; ``published``: EMBC 2020).
TABLE3_COLUMNS: tuple[str, ...] = ("ChestX-ray14", "CheXNet", "paper", "published")


def table3_frame(chest: Mapping[str, Any]) -> pd.DataFrame:
    """Table III beside ours: one row per finding (+ the mean), AUCs as numbers; the paper's
    own results in two columns, ``paper`` (preprint) and ``published`` (EMBC 2020)."""
    rows = []
    for f in paper.FINDINGS:
        ci = chest["auc_ci"].get(f)
        rows.append({"finding": f, "ours": chest["auc"][f],
                     "ours_ci_low": ci[0] if ci else None, "ours_ci_high": ci[1] if ci else None,
                     "positives_in_test": chest["per_class"][f]["n_positive_test"],
                     **{col: paper.TABLE_III[f][col] for col in TABLE3_COLUMNS}})
    mean_ci = chest.get("mean_auc_ci")
    rows.append({"finding": "mean", "ours": chest["mean_auc"],
                 "ours_ci_low": mean_ci[0] if mean_ci else None,
                 "ours_ci_high": mean_ci[1] if mean_ci else None,
                 "positives_in_test": None,
                 **{col: float(np.mean([paper.TABLE_III[f][col] for f in paper.FINDINGS]))
                    for col in TABLE3_COLUMNS}})
    return pd.DataFrame(rows).set_index("finding")


def table3_markdown(chest: Mapping[str, Any], profile: str | None = None) -> str:
    """Markdown of Table III with our AUCs (95 % CI) beside ChestX-ray14, CheXNet and both
    versions of the paper (preprint and EMBC 2020)."""
    head = ("| Finding | Ours (95 % CI) | Test positives | ChestX-ray14 | CheXNet | Paper (preprint) "
            "| Paper (EMBC 2020) |\n|---|---|---:|---:|---:|---:|---:|\n")
    lines = []
    for name, r in table3_frame(chest).iterrows():
        ours = _fmt(r["ours"])
        if r["ours_ci_low"] is not None and pd.notna(r["ours_ci_low"]):
            ours += f" ({r['ours_ci_low']:.2f}–{r['ours_ci_high']:.2f})"
        pos = "" if pd.isna(r["positives_in_test"]) else str(int(r["positives_in_test"]))
        label = "**Mean**" if name == "mean" else str(name).replace("_", " ")
        lines.append(f"| {label} | {ours} | {pos} | {r['ChestX-ray14']:.2f} | "
                     f"{r['CheXNet']:.2f} | {r['paper']:.2f} | {r['published']:.2f} |")
    title = f"Table III, AUC per finding ({profile} profile)" if profile else "Table III, AUC"
    note = ("\n\nOurs: scikit-learn ROC AUC on our test split, 95 % percentile bootstrap CI; "
            "n/a = no positive image in the test split. The other columns are copied from the "
            "paper's Table III: the arXiv preprint's and the published version's (EMBC 2020; "
            "its conclusion rounds the mean to 0.84).\n")
    return f"**{title}**\n\n" + head + "\n".join(lines) + note


def write_table3(chest: Mapping[str, Any], path: str | Path, profile: str | None = None) -> Path:
    """Write :func:`table3_markdown` to ``path`` (e.g. ``figures/<profile>/table3.md``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table3_markdown(chest, profile))
    return path
