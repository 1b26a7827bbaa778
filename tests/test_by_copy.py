"""Module III within each public copy of the shipped NIH films, and the copy-only baseline."""
from __future__ import annotations

import numpy as np
import pandas as pd

from xray_utils.config import paper
from xray_utils.config.paths import OPEN_FILMS_DIR
from xray_utils.evaluate import by_origin
from xray_utils.evaluate.predictions import prediction_path, save_predictions
from xray_utils.sources.open_films import load_open_films


def _write(tmp_path, cheat_by_copy: bool):
    """Prediction files for the real NIH films: scores that read the truth (a good model), or
    that know only the copy each film came from (a pure source shortcut)."""
    films = load_open_films(seed=0, verify=False)
    nih = films[films["source"] == "open-films/nih_cxr14"].reset_index(drop=True)
    copy = by_origin.nih_copy_of(nih["path"])
    rng = np.random.default_rng(0)
    from xray_utils.data.manifests import findings_to_vector

    y = findings_to_vector(nih["findings"])
    if cheat_by_copy:
        prev = pd.DataFrame(y).groupby(copy.to_numpy()).transform("mean").to_numpy()
        scores = prev  # constant within a copy
    else:
        scores = 0.6 * y + rng.uniform(0, 0.5, y.shape)
    for split in ("val", "test"):
        part = (nih["split"] == split).to_numpy()
        df = pd.DataFrame({"id": np.flatnonzero(part), "path": nih["path"][part], "split": split,
                           "source": nih["source"][part], "truth": nih["findings"][part]})
        for i, f in enumerate(paper.FINDINGS):
            df[f"p_{f}"] = scores[part, i]
        save_predictions(df, prediction_path(tmp_path, "chest", split))
    manifest = pd.DataFrame({"path": nih["path"], "label": nih["findings"],
                             "patient_id": nih["patient_id"], "split": nih["split"],
                             "source": nih["source"], "boxes": "", "width": nih["width"],
                             "height": nih["height"]})
    manifest.to_csv(tmp_path / "chest.csv", index=False)
    return tmp_path / "chest.csv"


def test_every_shipped_nih_film_has_its_copy():
    films = load_open_films(seed=0, verify=False)
    copy = by_origin.nih_copy_of(films["path"], OPEN_FILMS_DIR)
    nih = (films["source"] == "open-films/nih_cxr14").to_numpy()
    assert (copy[nih] != "").all() and (copy[~nih] == "").all()
    assert "dinbe0527/kcr2019d1" in set(copy)


def test_a_model_that_reads_the_films_beats_the_copy_only_baseline(tmp_path):
    manifest = _write(tmp_path, cheat_by_copy=False)
    out = by_origin.chest_by_copy(tmp_path, manifest, n_resamples=20)
    assert out["all"]["mean_auc"] > 0.85
    assert out["all"]["n_test"] == 1075
    assert sum(m["n_test"] for m in out["copies"].values()) == out["all"]["n_test"]
    assert all(m["mean_auc"] > 0.8 for m in out["copies"].values())
    assert out["copy_only_baseline"]["mean_auc"] < out["all"]["mean_auc"] - 0.1
    table = by_origin.copy_table(out)
    assert table.index[0] == "all real NIH test films" and "copy-only baseline (all films)" in table.index


def test_a_source_shortcut_shows_as_chance_within_each_copy(tmp_path):
    manifest = _write(tmp_path, cheat_by_copy=True)
    out = by_origin.chest_by_copy(tmp_path, manifest, n_resamples=20)
    within = [m["mean_auc"] for name, m in out["copies"].items() if name != "other copies"]
    assert max(abs(a - 0.5) for a in within) < 1e-9      # constant within a copy: chance
    assert out["all"]["mean_auc"] > max(within) + 0.03   # overall it ranks by copy alone


def test_without_nih_films_there_is_nothing_to_split_by_copy(tmp_path):
    """The public and full profiles ship no NIH copy among their test films: an empty record and
    an empty table, not an error."""
    for split in ("val", "test"):
        df = pd.DataFrame({"id": [0, 1], "path": [f"/elsewhere/{split}{i}.png" for i in range(2)],
                           "split": split, "source": "chestmnist", "truth": ["Mass", ""]})
        for f in paper.FINDINGS:
            df[f"p_{f}"] = [0.7, 0.2]
        save_predictions(df, prediction_path(tmp_path, "chest", split))
    out = by_origin.chest_by_copy(tmp_path, n_resamples=5)
    assert out == {"min_films": by_origin.MIN_COPY_FILMS, "copies": {}, "all": {"n_test": 0}}
    assert by_origin.copy_table(out).empty
