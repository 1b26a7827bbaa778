"""Every notebook, executed headlessly in the demo profile, in order, as `make demo` does.

The run goes to a temporary run folder and figures folder (the committed figures are only
rewritten by `make demo`); the demo data and the preprocessing cache are shared with `make demo`
(both are deterministic and keyed by their parameters).
"""
from __future__ import annotations

import json

import pytest

from xray_utils.cli.run import list_notebooks, run_notebook
from xray_utils.config import paper
from xray_utils.config.paths import project_paths
from xray_utils.models import load_checkpoint

NOTEBOOKS = list_notebooks()
pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_run")
    paths = project_paths("demo", run_dir=root / "run", figures_dir=root / "figures")
    params = {"PROFILE": "demo", "RUN_DIR": str(paths.run_dir),
              "FIGURES_DIR": str(paths.figures_dir)}
    return paths, params, {}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_demo_profile(notebook, demo_run):
    paths, params, results = demo_run
    failed = [name for name, ok in results.items() if not ok]
    if failed:
        pytest.fail(f"skipped because an earlier notebook failed: {failed}")
    results[notebook.name] = False
    run_notebook(notebook, paths.notebooks_out_dir, params)
    results[notebook.name] = True
    print(f"{notebook.name}: ran")


def test_demo_run_outputs(demo_run):
    """After the chain: checkpoints rebuild from their JSON alone; metrics.json has the sections."""
    paths, _, results = demo_run
    if not results or not all(results.values()):
        pytest.fail("the notebooks did not all run")
    for task in paper.TASKS:
        model, meta = load_checkpoint(paths.checkpoint_dir(task) / "best.json")
        assert meta["classes"] == list(paper.classes_for(task))
        assert meta["task"] == task
    metrics = json.loads((paths.figures_dir / "metrics.json").read_text())
    assert metrics["profile"] == "demo"
    assert set(metrics["training"]) == set(paper.TASKS)
