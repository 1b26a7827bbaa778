"""Every notebook, executed headlessly in the demo profile, in order, as `make demo` does.

The run folders are described in ``tests/notebook_run.py``; what the notebooks recorded
(metrics.json, figures, predictions) is checked in ``tests/test_notebooks_records.py``.
"""
from __future__ import annotations

import json

import pytest
from notebook_run import NOTEBOOKS, shared_demo_run

from xray_utils.config import paper
from xray_utils.models import load_checkpoint

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    return shared_demo_run(tmp_path_factory)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_demo_profile(notebook, demo_run):
    demo_run.run(notebook)
    print(f"{notebook.name}: ran")


def test_demo_run_outputs(demo_run):
    """After the chain: checkpoints rebuild from their JSON alone; metrics.json has the sections."""
    paths = demo_run.through("99")
    for task in paper.TASKS:
        model, meta = load_checkpoint(paths.checkpoint_dir(task) / "best.json")
        assert meta["classes"] == list(paper.classes_for(task))
        assert meta["task"] == task
    metrics = json.loads((paths.figures_dir / "metrics.json").read_text())
    assert metrics["profile"] == "demo"
    assert set(metrics["training"]) == set(paper.TASKS)


def test_diagnose_demo_record(demo_run):
    """What notebook 06 recorded: films, widget and command line agree (tests/diagnose_record.py)."""
    from diagnose_record import check_diagnose_record

    paths = demo_run.through("06")
    check_diagnose_record(paths.run_dir / "diagnose_demo.json")
