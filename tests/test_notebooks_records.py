"""What the notebooks record, checked after they ran: metrics.json, the figures, the predictions.

The notebooks record their results (``figures/<profile>/metrics.json``, the figures, the
prediction files of ``runs/<profile>/predictions``) and these tests read them, the way
computervision-recipes' tests read the values its notebooks glue.  The chapters themselves
keep only checks a student reads as part of the lesson.  The demo run is the one of
``tests/test_notebooks.py`` (``tests/notebook_run.py``); run alone, these tests run the
chapters they need first.
"""
from __future__ import annotations

import ast

import nbformat
import numpy as np
import pandas as pd
import pytest
from notebook_run import NOTEBOOKS, shared_demo_run
from sklearn.metrics import roc_auc_score

from xray_utils.config import paper
from xray_utils.diagnose import rule as chain
from xray_utils.evaluate import metrics as ev
from xray_utils.evaluate.plots import FIGURE_NAMES
from xray_utils.evaluate.record import read_metrics

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    return shared_demo_run(tmp_path_factory)


def notebook_defaults(number: str) -> dict:
    """The default values of a chapter's ``parameters`` cell (what the demo run used)."""
    path = next(p for p in NOTEBOOKS if p.name.startswith(number))
    cell = next(c for c in nbformat.read(str(path), as_version=4).cells
                if "parameters" in c.metadata.get("tags", []))
    return {t.id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body
            if isinstance(node, ast.Assign) for t in node.targets}


# ------------------------------------------------------------------------ 01-03: the trainings
def test_training_records(demo_run):
    """Each training recorded its summary; the best score is the one its best.json carries."""
    import json

    paths = demo_run.through("03")
    training = read_metrics(paths.figures_dir)["training"]
    assert set(training) == set(paper.TASKS)
    chance = {"xray_or_not": 0.5, "xray_type": 1 / len(paper.XRAY_TYPES), "chest": 0.5}
    for task, summary in training.items():
        meta = json.loads(paths.best_checkpoint(task).read_text())
        assert meta["metrics"]["valid"][summary["monitor"]] == pytest.approx(summary["best_valid"])
        assert meta["training"]["best_epoch"] == summary["best_epoch"]
        assert summary["best_valid"] > chance[task], (task, summary["best_valid"])


# ------------------------------------------------------------------------ 04: the evaluation
def check_evaluation_records(paths, profile: str) -> None:
    """Chapter 04's records in ``paths``: metrics.json is what the prediction files say
    (recomputed with the library, and two numbers with pandas and scikit-learn only), and every
    figure of the chapter was written.  Also used by the public-profile run."""
    p = notebook_defaults("04")
    stored = read_metrics(paths.figures_dir)
    again = ev.build_metrics(paths.predictions_dir, profile, n_resamples=p["N_BOOTSTRAP"],
                             seed=p["SEED"], top_k=p["TOP_K"])
    diffs = [d for s in ev.SECTIONS for d in ev.diff_metrics(stored[s], again[s], where=s)]
    assert not diffs, diffs[:5]

    d1 = pd.read_csv(paths.predictions_dir / "xray_or_not_test.csv")
    acc = (np.where(d1["p_xray"] >= chain.XRAY_THRESHOLD, "xray", "not_xray") == d1["truth"]).mean()
    assert abs(acc - stored["xray_or_not"]["accuracy"]) < 1e-12
    d3 = pd.read_csv(paths.predictions_dir / "chest_test.csv", keep_default_na=False)
    for f in [f for f in paper.FINDINGS if stored["chest"]["auc"][f] is not None][:3]:
        y = d3["truth"].str.split("|").apply(lambda s, f=f: f in s)
        assert abs(roc_auc_score(y, d3[f"p_{f}"]) - stored["chest"]["auc"][f]) < 1e-12

    written = sorted(p.name for p in paths.figures_dir.iterdir() if p.name in FIGURE_NAMES.values())
    assert written == sorted(FIGURE_NAMES.values()), written


def test_evaluation_records(demo_run):
    check_evaluation_records(demo_run.through("04"), "demo")


# ------------------------------------------------------------------------ 05: Grad-CAM
def _boxed_test_films(paths, scored_set="all"):
    """The chest test films with a box of one of the 14 findings, and their boxes (``real``: of
    the real films only, as chapter 05 scores them when its metrics say ``scored_set: real``)."""
    from xray_utils.data.manifests import decode_boxes, read_task_manifest
    from xray_utils.sources.open_films import is_real

    test = read_task_manifest(paths.manifest("chest"))
    test = test[test["split"] == "test"].reset_index(drop=True)
    if scored_set == "real":
        test = test[is_real(test["source"])].reset_index(drop=True)
    boxes = [decode_boxes(b) for b in test["boxes"]]
    keep = [i for i, b in enumerate(boxes) if any(f in paper.FINDINGS for f, *_ in b)]
    return test.iloc[keep].reset_index(drop=True), [boxes[i] for i in keep]


def test_gradcam_records(demo_run):
    """Chapter 05's localisation table is consistent with the boxes of the test films: one case
    per (film, boxed finding), scores in range, no hit the model's coarse grid cannot produce."""
    from xray_utils.explain import localisation as loc

    paths = demo_run.through("05")
    g = read_metrics(paths.figures_dir)["gradcam"]
    films, boxes = _boxed_test_films(paths, g.get("scored_set", "all"))
    n_cases = sum(len({b[0] for b in bx if b[0] in paper.FINDINGS}) for bx in boxes)
    assert sum(g[f]["n"] for f in paper.FINDINGS) == g["n_cases"] == n_cases
    scored = [f for f in paper.FINDINGS if g[f]["n"] > 0]
    assert len(scored) == g["findings_scored"]
    for f in scored:
        assert g[f]["pointing"] >= 0 and 0 <= g[f]["iou"] <= 1, (f, g[f])
    _, sizes = loc.load_images(films["path"], g["image_size"], progress=False)
    ceiling = loc.pointing_ceiling(boxes, sizes, g["image_size"], tuple(g["grid"]), paper.FINDINGS,
                                   g["tolerance_px"])
    for f in scored:
        assert g[f]["pointing"] <= ceiling[f] + 1e-12, f"{f}: a hit the grid cannot produce"
    assert np.mean([ceiling[f] for f in scored]) == pytest.approx(g["baselines"]["grid_ceiling"])


def test_gradcam_fast_path_gives_the_backward_verdict(demo_run):
    """One case recomputed with the backward-based GradCAM (not the fast path the table used)
    gives the same pointing-game verdict."""
    from xray_utils.explain import gradcam as gc
    from xray_utils.explain import localisation as loc
    from xray_utils.models import load_checkpoint, to_model_input

    paths = demo_run.through("05")
    g = read_metrics(paths.figures_dir)["gradcam"]
    films, boxes = _boxed_test_films(paths, g.get("scored_set", "all"))
    if not boxes:
        pytest.skip("no boxed chest test film in this run")
    model, meta = load_checkpoint(paths.best_checkpoint("chest"))
    size, classes = meta["image_size"], list(meta["classes"])
    images, sizes = loc.load_images(films["path"][:1], size, progress=False)
    f = boxes[0][0][0]
    rec = loc.localisation_records(model, images, [boxes[0]], sizes, classes,
                                   threshold=g["threshold"], tolerance=g["tolerance_px"], progress=False)
    with gc.GradCAM(model) as cam:
        heat = cam(to_model_input(images[:1]), classes.index(f))[0]
    target = loc.scale_boxes([b[1:] for b in boxes[0] if b[0] == f], sizes[0], (size, size))
    assert loc.pointing_game(heat, target, g["tolerance_px"]) == bool(
        rec.set_index("finding").loc[f, "pointing"])


# ------------------------------------------------------------------------ the README's figures
def test_rerun_reproduces_the_committed_figures(demo_run):
    """The README's reproducibility statement, measured: this session's rerun of the chapters
    gives every headline figure of the committed ``figures/demo/metrics.json`` (the README's
    numbers) within ``RERUN_TOLERANCE``.  Fails when the code changed the results and the
    figures were not regenerated with ``make demo``, or when a rerun is less reproducible than
    the README says."""
    from xray_utils.config.paths import REPO_ROOT
    from xray_utils.evaluate.record import RERUN_TOLERANCE, rerun_differences

    committed = read_metrics(REPO_ROOT / "figures" / "demo")
    if not committed:
        pytest.skip("no committed figures/demo/metrics.json")
    paths = demo_run.through("05")
    table = rerun_differences(read_metrics(paths.figures_dir), committed)
    print(table.to_string(index=False))
    (paths.run_dir / "rerun_differences.csv").write_text(table.to_csv(index=False))
    assert table["difference"].notna().all(), f"figures missing in one of the runs:\n{table}"
    worse = table[table["difference"] > RERUN_TOLERANCE]
    assert worse.empty, (f"a rerun moved these headline figures by more than {RERUN_TOLERANCE} "
                         f"from figures/demo/metrics.json (regenerate it with `make demo` if the "
                         f"code changed the results):\n{worse.to_string(index=False)}")
