"""Evaluation from saved prediction files: metrics, bootstrap CIs, thresholds, chain, figures."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import stats  # noqa: E402
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score  # noqa: E402

from xray_utils.config import paper
from xray_utils.evaluate import metrics as ev  # noqa: E402
from xray_utils.evaluate import plots  # noqa: E402
from xray_utils.evaluate.predictions import END_TO_END_FILE, prediction_path, save_predictions  # noqa: E402
from xray_utils.evaluate.record import read_metrics, update_metrics  # noqa: E402

FAST = 200  # bootstrap resamples in tests


# --------------------------------------------------------------------------- synthetic files
def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _findings_text(y: np.ndarray) -> list[str]:
    return ["|".join(f for f, v in zip(paper.FINDINGS, row) if v) or paper.NO_FINDING
            for row in y]


def _chest_frame(rng: np.random.Generator, n: int, split: str, shift: float = 1.2,
                 prevalence: np.ndarray | None = None) -> pd.DataFrame:
    prev = np.linspace(0.05, 0.35, 14) if prevalence is None else prevalence
    y = rng.random((n, 14)) < prev
    p = _sigmoid(rng.normal(size=(n, 14)) + shift * y - 1.0)
    df = pd.DataFrame({"id": range(n), "path": [f"/x/{split}{i}.png" for i in range(n)],
                       "split": split, "source": "synthetic", "truth": _findings_text(y)})
    return pd.concat([df, pd.DataFrame(p, columns=[f"p_{f}" for f in paper.FINDINGS])], axis=1)


def write_synthetic_predictions(folder, n: int = 150, seed: int = 0) -> dict[str, pd.DataFrame]:
    """The five prediction files build_metrics reads, with known, noisy, imperfect models."""
    rng = np.random.default_rng(seed)
    t1 = rng.choice(paper.XRAY_OR_NOT_CLASSES, n)
    p1 = _sigmoid(rng.normal(size=n) + 2.0 * np.where(t1 == "xray", 1, -1))
    d1 = pd.DataFrame({"id": range(n), "path": [f"/x/m1_{i}.png" for i in range(n)],
                       "split": "test", "source": "synthetic", "truth": t1, "p_xray": p1,
                       "p_not_xray": 1 - p1})
    t2 = rng.choice(paper.XRAY_TYPES, n)
    logits = rng.normal(size=(n, 14))
    logits[np.arange(n), [paper.XRAY_TYPES.index(t) for t in t2]] += 2.0
    d2 = pd.concat([pd.DataFrame({"id": range(n), "path": [f"/x/m2_{i}.png" for i in range(n)],
                                  "split": "test", "source": "synthetic", "truth": t2}),
                    pd.DataFrame(_softmax(logits), columns=[f"p_{t}" for t in paper.XRAY_TYPES])],
                   axis=1)
    d3v = _chest_frame(rng, n, "val")
    d3t = _chest_frame(rng, n, "test")
    # mixed end-to-end set: photos, other X-rays, chest films
    group = rng.choice(["photo", "other", "chest"], n, p=[0.4, 0.3, 0.3])
    types = np.where(group == "chest", "chest",
                     np.where(group == "other", rng.choice(paper.XRAY_TYPES[:13], n), ""))
    is_x = (group != "photo").astype(int)
    yc = (rng.random((n, 14)) < 0.15) & (group == "chest")[:, None]
    pc = _sigmoid(rng.normal(size=(n, 14)) + 2.0 * yc - 1.5)
    tl = rng.normal(size=(n, 14))
    for i, t in enumerate(types):
        if t:
            tl[i, paper.XRAY_TYPES.index(t)] += 2.5
    chain = pd.DataFrame({"id": range(n), "path": [f"/x/e{i}.png" for i in range(n)],
                          "source": "synthetic", "is_xray": is_x, "xray_type": types,
                          "findings": [s if g == "chest" else "" for s, g in
                                       zip(_findings_text(yc), group)],
                          "p_xray": _sigmoid(rng.normal(size=n) + 3.0 * (2 * is_x - 1))})
    chain = pd.concat([chain,
                       pd.DataFrame(_softmax(tl),
                                    columns=[f"p_type_{t}" for t in paper.XRAY_TYPES]),
                       pd.DataFrame(pc, columns=[f"p_finding_{f}" for f in paper.FINDINGS])],
                      axis=1)
    save_predictions(d1, prediction_path(folder, "xray_or_not", "test"))
    save_predictions(d2, prediction_path(folder, "xray_type", "test"))
    save_predictions(d3v, prediction_path(folder, "chest", "val"))
    save_predictions(d3t, prediction_path(folder, "chest", "test"))
    save_predictions(chain, folder / END_TO_END_FILE)
    return {"d1": d1, "d2": d2, "d3v": d3v, "d3t": d3t, "chain": chain}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predictions")
    frames = write_synthetic_predictions(folder)
    metrics = ev.build_metrics(folder, "demo", n_resamples=FAST, seed=0)
    return folder, frames, metrics


# --------------------------------------------------------------------------- bootstrap & AUC
def test_rank_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(20):
        y = rng.random(60) < 0.3
        p = np.round(rng.random(60), 1)  # many ties
        assert ev.rank_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    y = rng.random((5, 40)) < 0.4
    p = rng.random((5, 40))
    np.testing.assert_allclose(ev.rank_auc(y, p), [roc_auc_score(a, b) for a, b in zip(y, p)])
    assert np.isnan(ev.rank_auc(np.zeros(10), rng.random(10)))


def test_bootstrap_ci_agrees_with_scipy_percentile():
    rng = np.random.default_rng(2)
    x = (rng.random(300) < 0.8).astype(float)
    ours = ev.bootstrap_ci(x, n_resamples=4000, seed=0)
    ref = stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile",
                          confidence_level=0.95, rng=np.random.default_rng(0)).confidence_interval
    assert ours[0] == pytest.approx(ref.low, abs=0.01)
    assert ours[1] == pytest.approx(ref.high, abs=0.01)


def test_bootstrap_ci_contains_estimate_narrows_and_is_seeded():
    rng = np.random.default_rng(3)
    small = (rng.random(50) < 0.8).astype(float)
    large = (rng.random(5000) < 0.8).astype(float)
    ci_s, ci_l = ev.bootstrap_ci(small, FAST, 0), ev.bootstrap_ci(large, FAST, 0)
    assert ci_s[0] <= small.mean() <= ci_s[1]
    assert ci_l[0] <= large.mean() <= ci_l[1]
    assert (ci_l[1] - ci_l[0]) < (ci_s[1] - ci_s[0]) / 3
    assert ev.bootstrap_ci(small, FAST, 0) == ci_s
    np.testing.assert_array_equal(ev.bootstrap_means(small, FAST, 0),
                                  ev.bootstrap_means(small, FAST, 0))
    assert not np.array_equal(ev.bootstrap_means(small, FAST, 0),
                              ev.bootstrap_means(small, FAST, 1))


def test_vectorised_bootstrap_aucs_equal_the_ranked_resamples_and_sklearn():
    rng = np.random.default_rng(5)
    n = 120
    y = (rng.random((n, 4)) < [0.3, 0.1, 0.03, 0.5]).astype(float)
    p = np.round(rng.random((n, 4)) * 0.6 + 0.3 * y, 1)  # many ties within and across labels
    y[:, 3] = 0  # a finding without positives: NaN in every resample
    fast = ev.bootstrap_aucs(y, p, 300, seed=7)
    np.testing.assert_array_equal(fast, ev.bootstrap_aucs_by_ranks(y, p, 300, seed=7))
    assert np.isnan(fast[:, 3]).all() and np.isnan(fast[:, 2]).any()  # rare: some resamples lack it
    idx = np.concatenate(list(ev._resample_chunks(n, 300, seed=7)))
    for r in (0, 1, 150, 299):
        for c in range(3):
            yy, pp = y[idx[r], c], p[idx[r], c]
            if 0 < yy.sum() < n:
                assert fast[r, c] == pytest.approx(roc_auc_score(yy, pp), abs=1e-12)
            else:
                assert np.isnan(fast[r, c])


def test_bootstrap_draws_do_not_depend_on_chunking():
    a = np.concatenate(list(ev._resample_chunks(37, 50, seed=4, max_cells=37 * 7)))
    b = np.concatenate(list(ev._resample_chunks(37, 50, seed=4)))
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- Module I
def test_confusion_is_laid_out_like_table_ii():
    (tp, fn), (fp, tn) = paper.TABLE_II
    truth = ["xray"] * (tp + fn) + ["not_xray"] * (fp + tn)
    p = np.r_[np.full(tp, 0.9), np.full(fn, 0.1), np.full(fp, 0.8), np.full(tn, 0.2)]
    df = pd.DataFrame({"truth": truth, "p_xray": p, "p_not_xray": 1 - p})
    m = ev.xray_or_not_metrics(df, n_resamples=FAST)
    assert m["confusion"] == [list(r) for r in paper.TABLE_II]
    assert m["labels"] == ["xray", "not_xray"]
    assert m["errors"] == {"xray_as_not_xray": fn, "not_xray_as_xray": fp}
    assert m["accuracy"] == pytest.approx(paper.table_ii_accuracy())
    assert m["paper"]["accuracy_from_table_ii"] == pytest.approx(0.992, abs=5e-4)
    assert m["paper"]["accuracy_printed"] == paper.PAPER_RESULTS["xray_or_not_accuracy"]
    assert m["accuracy_ci"][0] <= m["accuracy"] <= m["accuracy_ci"][1]


def test_xray_or_not_errors_most_confident_first():
    df = pd.DataFrame({"path": list("abcd"), "truth": ["xray", "xray", "not_xray", "not_xray"],
                       "p_xray": [0.45, 0.05, 0.7, 0.2]})
    err = ev.xray_or_not_errors(df)
    assert list(err["path"]) == ["b", "c", "a"]
    assert list(err["predicted"]) == ["not_xray", "xray", "not_xray"]
    assert err["confidence"].tolist() == pytest.approx([0.95, 0.7, 0.55])


# --------------------------------------------------------------------------- recompute
def test_build_metrics_matches_independent_recompute(synthetic):
    folder, _, m = synthetic
    d1 = pd.read_csv(folder / "xray_or_not_test.csv")
    pred1 = np.where(d1["p_xray"] >= 0.5, "xray", "not_xray")
    assert m["xray_or_not"]["accuracy"] == pytest.approx((pred1 == d1["truth"]).mean())
    assert m["xray_or_not"]["confusion"] == confusion_matrix(
        d1["truth"], pred1, labels=["xray", "not_xray"]).tolist()
    assert m["xray_or_not"]["n"] == len(d1)

    d2 = pd.read_csv(folder / "xray_type_test.csv")
    probs = d2[[f"p_{t}" for t in paper.XRAY_TYPES]].to_numpy()
    pred2 = np.array(paper.XRAY_TYPES)[probs.argmax(axis=1)]
    assert m["xray_type"]["accuracy"] == pytest.approx((pred2 == d2["truth"]).mean())
    cm = confusion_matrix(d2["truth"], pred2, labels=list(paper.XRAY_TYPES))
    assert m["xray_type"]["confusion"] == cm.tolist()
    prec, rec, _, sup = precision_recall_fscore_support(d2["truth"], pred2,
                                                        labels=list(paper.XRAY_TYPES),
                                                        zero_division=0)
    for i, t in enumerate(paper.XRAY_TYPES):
        pc = m["xray_type"]["per_class"][t]
        assert pc["recall"] == pytest.approx(rec[i])
        assert (pc["precision"] or 0.0) == pytest.approx(prec[i])
        assert pc["support"] == sup[i]
        row = m["xray_type"]["confusion_normalized"][i]
        assert sum(row) == pytest.approx(1.0)
    top = m["xray_type"]["most_confused"][0]
    off = cm.copy()
    np.fill_diagonal(off, 0)
    assert top["count"] == off.max()

    d3 = pd.read_csv(folder / "chest_test.csv", keep_default_na=False)
    y = np.array([[f in s.split("|") for f in paper.FINDINGS] for s in d3["truth"]])
    aucs = [roc_auc_score(y[:, i], d3[f"p_{f}"]) for i, f in enumerate(paper.FINDINGS)]
    for f, a in zip(paper.FINDINGS, aucs):
        assert m["chest"]["auc"][f] == pytest.approx(a)
        lo, hi = m["chest"]["auc_ci"][f]
        assert lo <= hi
    assert m["chest"]["mean_auc"] == pytest.approx(np.mean(aucs))
    lo, hi = m["chest"]["mean_auc_ci"]
    assert lo <= m["chest"]["mean_auc"] <= hi
    p = d3[[f"p_{f}" for f in paper.FINDINGS]].to_numpy()
    thr = np.array([m["chest"]["thresholds"][f] for f in paper.FINDINGS])
    assert m["chest"]["accuracy"] == pytest.approx(((p >= thr) == y).mean())
    assert m["chest"]["accuracy_at_0_5"] == pytest.approx(((p >= 0.5) == y).mean())
    assert m["chest"]["accuracy_all_negative"] == pytest.approx((~y).mean())
    assert m["chest"]["exact_match"]["all_negative"] == pytest.approx((~y).all(axis=1).mean())


def _youden_j(y: np.ndarray, p: np.ndarray, t: float) -> float:
    pred = p >= t
    return pred[y].mean() + (~pred[~y]).mean() - 1


def test_youden_thresholds_are_chosen_on_validation(synthetic):
    folder, frames, m = synthetic
    d3v = frames["d3v"]
    y = np.array([[f in s.split("|") for f in paper.FINDINGS] for s in d3v["truth"]])
    for i, f in enumerate(paper.FINDINGS):
        p = d3v[f"p_{f}"].to_numpy()
        t = m["chest"]["thresholds"][f]
        assert t in set(p)  # a validation probability, not a test one
        best = max(_youden_j(y[:, i], p, c) for c in np.unique(p))
        assert _youden_j(y[:, i], p, t) == pytest.approx(best)


def test_thresholds_follow_val_not_test():
    rng = np.random.default_rng(5)
    y = np.zeros((200, 14), dtype=bool)
    y[:100, 0] = True
    # val: positives above 0.3 exactly; test: positives above 0.7
    pv = rng.uniform(0.0, 0.29, (200, 14))
    pv[:100, 0] = rng.uniform(0.3, 0.5, 100)
    pt = rng.uniform(0.0, 0.69, (200, 14))
    pt[:100, 0] = rng.uniform(0.7, 0.9, 100)
    cols = [f"p_{f}" for f in paper.FINDINGS]
    truth = _findings_text(y)
    val = pd.concat([pd.DataFrame({"truth": truth}), pd.DataFrame(pv, columns=cols)], axis=1)
    test = pd.concat([pd.DataFrame({"truth": truth}), pd.DataFrame(pt, columns=cols)], axis=1)
    m = ev.chest_metrics(test, val, n_resamples=FAST)
    atel = m["thresholds"]["Atelectasis"]
    assert atel == pytest.approx(pv[:100, 0].min())
    assert atel < 0.5
    # swapping the roles moves the threshold: it depends on val only
    m2 = ev.chest_metrics(val, test, n_resamples=FAST)
    assert m2["thresholds"]["Atelectasis"] == pytest.approx(pt[:100, 0].min())
    # findings without positives in val keep the default threshold, with a note
    assert m["thresholds"]["Hernia"] == 0.5 and "no positives" in m["threshold_notes"]["Hernia"]
    # and have no AUC on test, with a note; the mean is over defined classes only
    assert m["auc"]["Hernia"] is None and "no positive" in m["auc_notes"]["Hernia"]
    assert m["n_auc_defined"] == 1
    assert m["mean_auc"] == pytest.approx(1.0)
    assert m["auc_ci"]["Hernia"] is None


def test_accuracy_and_auc_diverge_on_imbalanced_labels():
    rng = np.random.default_rng(6)
    cols = [f"p_{f}" for f in paper.FINDINGS]
    prev = np.full(14, 0.03)
    val = _chest_frame(rng, 400, "val", shift=0.5, prevalence=prev)
    test = _chest_frame(rng, 400, "test", shift=0.5, prevalence=prev)
    test[cols] = test[cols] * 0.3  # a useless-looking calibration: never above 0.5
    m = ev.chest_metrics(test, val, n_resamples=FAST)
    # at 0.5 nothing is called: accuracy equals the all-negative baseline, high...
    assert m["accuracy_at_0_5"] == pytest.approx(m["accuracy_all_negative"])
    assert m["accuracy_all_negative"] > 0.9
    # ...while the AUC still measures the (weak) ranking
    assert 0.5 < m["mean_auc"] < 0.8


# --------------------------------------------------------------------------- end to end
def _chain_row(is_xray, xtype, findings, p_xray, type_pred, finding_pred):
    row = {"path": "p", "is_xray": is_xray, "xray_type": xtype, "findings": findings,
           "p_xray": p_xray}
    for t in paper.XRAY_TYPES:
        row[f"p_type_{t}"] = 0.9 if t == type_pred else 0.1 / 13
    for f in paper.FINDINGS:
        row[f"p_finding_{f}"] = 0.8 if f in finding_pred else 0.2
    return row


def test_end_to_end_on_a_hand_made_example():
    rows = [
        _chain_row(0, "", "", 0.1, "hand", []),                     # photo rejected: correct
        _chain_row(0, "", "", 0.9, "hand", []),                     # photo taken as X-ray: I
        _chain_row(1, "hand", "", 0.2, "hand", []),                 # X-ray rejected: I
        _chain_row(1, "hand", "", 0.9, "wrist", []),                # wrong type: II
        _chain_row(1, "hand", "", 0.9, "hand", []),                 # correct
        _chain_row(1, "knee", "", 0.9, "chest", ["Mass"]),          # sent to III wrongly: II
        _chain_row(1, "chest", "Mass", 0.9, "hand", []),            # chest typed hand: II
        _chain_row(1, "chest", "Mass|Edema", 0.9, "chest", ["Mass", "Edema"]),  # correct
        _chain_row(1, "chest", "No Finding", 0.9, "chest", ["Nodule"]),  # 13/14: III
        _chain_row(1, "chest", "", 0.9, "chest", ["Nodule"]),       # findings unknown: correct
    ]
    df = pd.DataFrame(rows)
    thr = {f: 0.5 for f in paper.FINDINGS}
    out = ev.end_to_end_outcomes(df, thr)
    assert out["outcome"].tolist() == [
        "correct", "lost_at_I", "lost_at_I", "lost_at_II", "correct", "lost_at_II",
        "lost_at_II", "correct", "lost_at_III", "correct"]
    assert out["reached"].tolist() == [
        "not_xray", "type_only", "not_xray", "type_only", "type_only", "chest", "type_only",
        "chest", "chest", "chest"]
    scores = {"xray_or_not": np.array([1, 1, 0, 1]), "xray_type": np.array([1, 0]),
              "chest": np.array([1.0, 0.5])}
    m = ev.end_to_end_metrics(df, thr, scores, n_resamples=FAST)
    assert m["accuracy"] == pytest.approx(4 / 10)
    assert m["accuracy_per_label"] == pytest.approx((4 + 13 / 14) / 10)
    prop = {r["group"]: r for r in m["propagation"]}
    assert prop["not_xray"] == {"group": "not_xray", "n": 2, "lost_at_I": 1, "lost_at_II": 0,
                                "lost_at_III": 0, "correct": 1}
    assert prop["type_only"] == {"group": "type_only", "n": 4, "lost_at_I": 1, "lost_at_II": 2,
                                 "lost_at_III": 0, "correct": 1}
    assert prop["chest"] == {"group": "chest", "n": 4, "lost_at_I": 0, "lost_at_II": 1,
                             "lost_at_III": 1, "correct": 2}
    assert prop["all"]["correct"] == 4 and prop["all"]["n"] == 10
    assert m["routing"]["matrix"] == [[1, 1, 0], [1, 2, 1], [0, 1, 3]]
    prod = m["product_of_module_accuracies"]
    assert prod["value"] == pytest.approx(0.75 * 0.5 * 0.75)
    assert prod["factors"] == {"xray_or_not": 0.75, "xray_type": 0.5, "chest": 0.75}
    assert m["paper"]["product_of_printed_accuracies"] == pytest.approx(0.987 * 0.976 * 0.947)
    assert round(m["paper"]["product_of_printed_accuracies"], 2) == \
        paper.PAPER_RESULTS["end_to_end_accuracy"]
    # a lower finding threshold turns the exact chest film into a mistake at stage III
    low = ev.end_to_end_outcomes(df, 0.1)
    assert low["outcome"].tolist()[7] == "lost_at_III"


def test_end_to_end_rejects_xrays_without_type():
    df = pd.DataFrame([_chain_row(1, "", "", 0.9, "hand", [])])
    with pytest.raises(ValueError, match="unknown type"):
        ev.end_to_end_outcomes(df, 0.5)


def test_end_to_end_matches_a_naive_loop(synthetic):
    folder, _, m = synthetic
    df = pd.read_csv(folder / END_TO_END_FILE, keep_default_na=False)
    thr = m["chest"]["thresholds"]
    correct = []
    for _, r in df.iterrows():
        said_xray = r["p_xray"] >= 0.5
        if said_xray != bool(r["is_xray"]):
            correct.append(False)
            continue
        if not said_xray:
            correct.append(True)
            continue
        typ = max(paper.XRAY_TYPES, key=lambda t: r[f"p_type_{t}"])
        if typ != r["xray_type"]:
            correct.append(False)
            continue
        if typ == "chest" and r["findings"]:
            truth = {f for f in r["findings"].split("|") if f != paper.NO_FINDING}
            called = {f for f in paper.FINDINGS if r[f"p_finding_{f}"] >= thr[f]}
            correct.append(truth == called)
        else:
            correct.append(True)
    assert m["end_to_end"]["accuracy"] == pytest.approx(np.mean(correct))
    assert m["end_to_end"]["n"] == len(df)
    assert m["end_to_end"]["propagation"][-1]["correct"] == sum(correct)


# --------------------------------------------------------------------------- schema & files
def test_metrics_schema_and_json(synthetic):
    _, _, m = synthetic
    text = json.dumps(m, allow_nan=False)  # no NaN anywhere: strict JSON
    assert json.loads(text) == m
    assert m["profile"] == "demo"
    for key in ("accuracy", "accuracy_ci", "confusion", "n", "labels", "paper", "bootstrap"):
        assert key in m["xray_or_not"]
    for key in ("accuracy", "accuracy_ci", "confusion", "confusion_normalized", "classes",
                "per_class", "most_confused"):
        assert key in m["xray_type"]
    assert m["xray_type"]["classes"] == list(paper.XRAY_TYPES)
    for key in ("auc", "auc_ci", "mean_auc", "mean_auc_ci", "thresholds", "accuracy",
                "accuracy_ci", "accuracy_at_0_5", "accuracy_all_negative", "per_class"):
        assert key in m["chest"]
    assert list(m["chest"]["auc"]) == list(paper.FINDINGS)
    for key in ("accuracy", "accuracy_ci", "definition", "accuracy_per_label",
                "product_of_module_accuracies", "propagation", "routing"):
        assert key in m["end_to_end"]
    for section in ev.SECTIONS:
        for key, value in m[section].items():
            cis = value.values() if isinstance(value, dict) else [value]
            for ci in (cis if key.endswith("_ci") else []):
                assert ci is None or (len(ci) == 2 and ci[0] <= ci[1]), (section, key)
    assert m["xray_or_not"]["bootstrap"]["n_resamples"] == FAST


def test_write_metrics_keeps_other_sections_and_recomputes_equal(synthetic, tmp_path):
    folder, _, m = synthetic
    update_metrics(tmp_path, "training", {"xray_or_not": {"epochs": 3}}, profile="demo")
    ev.write_metrics(m, tmp_path)
    stored = read_metrics(tmp_path)
    assert stored["training"] == {"xray_or_not": {"epochs": 3}}
    again = ev.build_metrics(folder, "demo", n_resamples=FAST, seed=0)
    for section in ev.SECTIONS:
        assert ev.diff_metrics(stored[section], again[section]) == []
    changed = json.loads(json.dumps(again))
    changed["chest"]["auc"]["Mass"] += 0.01
    assert ev.diff_metrics(stored["chest"], changed["chest"]) == [
        f"/auc/Mass: {stored['chest']['auc']['Mass']} != {changed['chest']['auc']['Mass']}"]


def test_build_metrics_names_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="xray_or_not_test.csv"):
        ev.build_metrics(tmp_path, "demo")


def test_most_confused_orders_off_diagonal():
    cm = np.array([[5, 3, 0], [1, 4, 6], [0, 0, 2]])
    top = ev.most_confused(cm, ["a", "b", "c"], top_k=2)
    assert [(t["actual"], t["predicted"], t["count"]) for t in top] == [("b", "c", 6),
                                                                        ("a", "b", 3)]
    assert top[0]["fraction_of_actual"] == pytest.approx(6 / 11)


def test_table3_markdown(synthetic, tmp_path):
    _, _, m = synthetic
    chest = json.loads(json.dumps(m["chest"]))
    chest["auc"]["Hernia"], chest["auc_ci"]["Hernia"] = None, None
    text = ev.table3_markdown(chest, "demo")
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert len(lines) == 1 + 14 + 1  # header, findings, mean
    assert "| Hernia | n/a |" in text
    assert "| Pleural Thickening |" in text
    assert f"{paper.TABLE_III['Edema']['paper']:.2f} | {paper.TABLE_III['Edema']['published']:.2f} |" in text
    assert "| Paper (preprint) | Paper (EMBC 2020) |" in text
    mean = ev.table3_frame(chest).loc["mean"]
    assert round(mean["published"], 3) == paper.TABLE_III_PUBLISHED_MEAN
    assert f"{m['chest']['auc']['Mass']:.2f} (" in text
    path = ev.write_table3(chest, tmp_path / "table3.md", "demo")
    assert path.read_text() == text


# --------------------------------------------------------------------------- figures
def test_figures_are_written(synthetic, tmp_path):
    _, frames, m = synthetic
    img = tmp_path / "img.png"
    Image.fromarray(np.full((20, 20), 128, np.uint8)).save(img)
    d1 = frames["d1"].assign(path=str(img))
    files = {
        "a.png": lambda p: plots.plot_xray_or_not_confusion(m["xray_or_not"], p),
        "b.png": lambda p: plots.plot_misclassified(ev.xray_or_not_errors(d1), p, max_images=4),
        "b0.png": lambda p: plots.plot_misclassified(ev.xray_or_not_errors(d1).head(0), p),
        "c.png": lambda p: plots.plot_xray_type_confusion(m["xray_type"], p),
        "d.png": lambda p: plots.plot_roc_curves(frames["d3t"], p),
        "e.png": lambda p: plots.plot_table3(m["chest"], p),
        "f.png": lambda p: plots.plot_end_to_end(m["end_to_end"], p),
    }
    try:
        for name, draw in files.items():
            fig = draw(tmp_path / name)
            assert (tmp_path / name).stat().st_size > 2000, name
            assert fig.axes
        roc = plots.plot_roc_curves(frames["d3t"], tmp_path / "roc.png")
        labels = roc.axes[0].get_legend_handles_labels()[1]
        assert labels[0] == f"Atelectasis ({m['chest']['auc']['Atelectasis']:.2f})"
        assert len(labels) == 14
    finally:
        plt.close("all")


def test_learning_curves(tmp_path):
    hist = pd.DataFrame([{"epoch": e, "loader": ld, "metric": mt, "value": v}
                         for e in (1, 2, 3) for ld in ("train", "valid")
                         for mt, v in (("loss", 1.0 / e), ("accuracy", 0.5 + 0.1 * e))])
    try:
        fig = plots.plot_learning_curves(hist, tmp_path / "lc.png")
        assert (tmp_path / "lc.png").is_file()
        used = [ax for ax in fig.axes if ax.lines]
        assert [ax.get_title() for ax in used] == ["loss", "accuracy"]
        assert [t.get_text() for t in used[0].get_legend().get_texts()] == ["train", "valid"]
        curves = [ln.get_ydata() for ln in used[0].lines if len(ln.get_ydata()) == 3]
        assert len(curves) == 2  # one line per loader (seaborn adds legend handles besides)
        np.testing.assert_allclose(curves[0], [1.0, 0.5, 1 / 3])
        with pytest.raises(ValueError, match="loader"):
            plots.plot_learning_curves(hist.drop(columns="loader"), tmp_path / "x.png")
    finally:
        plt.close("all")


# --------------------------------------------------------------------------- the paper's 0.947
def _authors_test_list():
    import os

    from xray_utils.config.paths import REPO_ROOT

    for base in (os.environ.get("XRAY_SHARED_DIR"), REPO_ROOT.parent / "shared"):
        if base:
            f = Path(base) / "reference" / "is2ai-chest-split" / "test_list.txt"
            if f.is_file():
                return f
    return None


def test_all_negative_accuracy_on_the_authors_test_split_is_the_papers_0_947():
    """The claim of notebook 04: predicting "no finding" everywhere scores the paper's 0.947."""
    f = _authors_test_list()
    if f is None:
        pytest.skip("the authors' chest split (../shared/reference/is2ai-chest-split) is absent")
    rows = [ln.split() for ln in f.read_text().splitlines() if ln.strip()]
    y = np.array([[int(v) for v in r[1:]] for r in rows], dtype=float)
    assert y.shape == (paper.AUTHORS_CHEST_SPLIT_SIZES["test"], len(paper.FINDINGS))
    acc = ev.chest_label_scores(y, np.zeros_like(y), 0.5).mean()
    assert round(acc, 3) == paper.PAPER_RESULTS["chest_accuracy"]
    assert abs(acc - (1 - y.mean())) < 1e-12


def test_rerun_differences_names_each_headline_figure():
    """Two runs compared figure by figure; a figure one run lacks shows as missing, and the
    balanced accuracies (one film can move them by 0.1 on the real types) are not headline."""
    from xray_utils.evaluate.record import headline_figures, rerun_differences

    old = {"xray_or_not": {"accuracy": 0.98}, "chest": {"mean_auc": 0.74},
           "xray_type": {"accuracy": 0.9, "balanced_accuracy": 0.88},
           "by_origin": {"xray_type": {"real": {"accuracy": 0.93, "balanced_accuracy": 0.6}}}}
    new = json.loads(json.dumps(old))
    new["chest"]["mean_auc"] = 0.70
    del new["xray_or_not"]
    assert set(headline_figures(old)) == {"Module I accuracy", "Module II accuracy", "Module III mean AUC",
                                          "Module II accuracy, real test images"}
    table = rerun_differences(new, old).set_index("figure")
    assert table.loc["Module III mean AUC", "difference"] == pytest.approx(0.04)
    assert table.loc["Module II accuracy, real test images", "difference"] == 0
    assert pd.isna(table.loc["Module I accuracy", "difference"])
    assert table.loc["Module I accuracy", "committed"] == 0.98


def test_figure_paths_and_intervals_for_sentences(tmp_path):
    from xray_utils.evaluate.plots import FIGURE_NAMES, figure_path, format_ci

    assert figure_path(tmp_path, "chest_roc") == tmp_path / FIGURE_NAMES["chest_roc"]
    assert format_ci((0.96449, 0.9921)) == "[0.964, 0.992]" and format_ci(None) == "n/a"
