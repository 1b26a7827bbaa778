"""The `public` profile end to end on CI's stand-in for the downloads: the real samples.

CI has no internet, so the labelled folder ``../shared/real-samples`` (real radiographs and
photographs) replaces the public archives; manifests, the three trainings (tiny settings) and
the evaluation run through the same notebooks as any other profile.
"""
from __future__ import annotations

import json

import pytest
from fixtures_real import shared_dir
from test_notebooks_records import check_evaluation_records

from xray_utils.cli.run import run_all
from xray_utils.config import paper
from xray_utils.config.paths import project_paths
from xray_utils.models import load_checkpoint

pytestmark = pytest.mark.notebooks


def test_public_profile_runs_on_the_stand_in(tmp_path):
    shared = shared_dir()
    if shared is None or not (shared / "real-samples" / "labels.csv").is_file():
        pytest.skip("../shared/real-samples is absent: nothing to stand in for the public downloads")
    run, figures = tmp_path / "run", tmp_path / "figures"
    params = {"RUN_DIR": str(run), "FIGURES_DIR": str(figures),
              "PUBLIC_STAND_IN": str(shared / "real-samples"), "IMAGE_SIZE": 32, "EPOCHS": 1,
              "MAX_TRAIN": 64, "BATCH_SIZE": 16, "PRETRAINED": False, "NUM_WORKERS": 0,
              "AMP": False}
    runs = run_all("public", only=["00", "01", "02", "03", "04"], parameters=params)
    assert [r.notebook.name[:2] for r in runs] == ["00", "01", "02", "03", "04"]
    paths = project_paths("public", run_dir=run, figures_dir=figures)
    for task in paper.TASKS:
        _, meta = load_checkpoint(paths.checkpoint_dir(task) / "best.json")
        assert meta["image_size"] == 32
    metrics = json.loads((figures / "metrics.json").read_text())
    assert metrics["profile"] == "public"
    assert 0 <= metrics["xray_or_not"]["accuracy"] <= 1
    check_evaluation_records(paths, "public")  # chapter 04's records, as in the demo run
