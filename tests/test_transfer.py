"""The transfer score on real films: computed from the real samples, schema and sanity."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fixtures_real import shared_dir

from xray_utils.config import paper
from xray_utils.evaluate.transfer import score_transfer
from xray_utils.models import build_model, checkpoint_meta, save_checkpoint


def test_transfer_scores_on_the_real_samples(tmp_path):
    shared = shared_dir()
    if shared is None or not (shared / "real-samples" / "labels.csv").is_file():
        pytest.skip("../shared/real-samples is absent: no real films to score transfer on")
    for task in ("xray_or_not", "xray_type"):
        save_checkpoint(build_model(task), tmp_path / task / "best", checkpoint_meta(task, 32))
    out = tmp_path / "transfer.json"
    done = subprocess.run([sys.executable, "-m", "xray_utils", "transfer", "--checkpoints",
                           str(tmp_path), "--samples", str(shared / "real-samples"),
                           "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    scores = json.loads(out.read_text())
    assert scores["n_films"] + scores["n_photos"] + len(scores["skipped"]) == 1307
    x = scores["xray_or_not"]
    assert 0 <= x["auc"] <= 1
    # the best threshold is at least as good (Youden) as 0.5 on the same images
    j = lambda s: s["films_accepted"] + s["photos_rejected"]
    assert j(x["at_best"]) >= j(x["at_0.5"]) - 1e-9
    assert set(scores["xray_type"]["per_type"]) <= set(paper.XRAY_TYPES)
    assert "balanced accuracy" in done.stdout


def test_transfer_without_samples_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAY_REAL_SAMPLES", str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        score_transfer(tmp_path, tmp_path / "nothing")


def test_transfer_on_the_held_out_split_only(tmp_path):
    shared = shared_dir()
    if shared is None or not (shared / "real-samples" / "labels.csv").is_file():
        pytest.skip("../shared/real-samples is absent: no real films to score transfer on")
    import pandas as pd

    samples = shared / "real-samples"
    labels = pd.read_csv(samples / "labels.csv", dtype=str, keep_default_na=False)
    held_out = labels.iloc[::25]  # a few films and photographs
    manifest = tmp_path / "xray_or_not.csv"
    pd.DataFrame({"path": [str(samples / f) for f in held_out["file"]], "label": "xray",
                  "patient_id": "p", "split": "test", "source": "real-samples", "boxes": "",
                  "width": 0, "height": 0}).to_csv(manifest, index=False)
    for task in ("xray_or_not", "xray_type"):
        save_checkpoint(build_model(task), tmp_path / task / "best", checkpoint_meta(task, 32))
    from xray_utils.evaluate.transfer import held_out_files

    scores = score_transfer(tmp_path, samples, progress=False, only_files=held_out_files(manifest))
    assert scores["n_films"] + scores["n_photos"] == len(held_out)
