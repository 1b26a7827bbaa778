"""The training entry point: it learns, resumes after an interruption, reproduces, saves safely."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from xray_utils.config import paper
from xray_utils.config.paths import project_paths
from xray_utils.config.profiles import settings
from xray_utils.models import (
    build_model,
    checkpoint_meta,
    load_checkpoint,
    save_checkpoint,
    to_model_input,
)
from xray_utils.train.lessons import describe_settings
from xray_utils.train.training import (
    init_source,
    loaders_for,
    make_optimizer,
    make_scheduler,
    sklearn_scores,
    train_task,
)


def _train(manifest, run_dir, task="xray_or_not", **overrides):
    paths = project_paths("demo", data_dir=run_dir / "data", run_dir=run_dir,
                          figures_dir=run_dir / "fig").ensure()
    cfg = settings("demo", task, **{"IMAGE_SIZE": 32, "EPOCHS": 2, "BATCH_SIZE": 16,
                                    "MAX_TRAIN": None, **overrides})
    return train_task(paths, cfg, manifest, verbose=False), paths


def test_training_learns_and_saves_a_self_describing_checkpoint(tiny_task, tmp_path):
    torch.set_num_threads(1)
    # enough steps for batch-norm running statistics to settle (validation uses them)
    # (27 steps in all: at the demo's peak rate of 3e-3 the running statistics lag behind)
    result, paths = _train(tiny_task("xray_or_not", n=240), tmp_path / "run", EPOCHS=3, LR=1e-3)
    assert result.best_score > 0.75, result.history
    model, meta = load_checkpoint(result.best_checkpoint)
    assert meta["classes"] == list(paper.XRAY_OR_NOT_CLASSES)
    assert meta["image_size"] == 32 and meta["training"]["OPTIMIZER"] == "Adam"
    out = model(to_model_input(np.zeros((2, 32, 32), dtype=np.uint8)))
    assert out.shape == (2, 2)
    # last.pt loads without unpickling arbitrary objects
    state = torch.load(paths.checkpoint_dir("xray_or_not") / "last.pt", weights_only=True)
    assert state["epoch"] == 3
    assert set(result.history["loader"]) >= {"train", "valid"}


def test_multilabel_training_reports_sklearn_auc(tiny_task, tmp_path):
    torch.set_num_threads(1)
    result, _ = _train(tiny_task("chest"), tmp_path / "run", task="chest", LR=1e-3, INIT_FROM="none")
    valid = result.history[(result.history["loader"] == "valid")]
    aucs = valid[valid["metric"].str.startswith("auc_")]
    assert len(aucs) and aucs["value"].between(0, 1).all()
    assert result.monitor == "auc_mean"


def test_same_seed_gives_same_metrics(tiny_task, tmp_path):
    torch.set_num_threads(1)
    manifest = tiny_task("xray_or_not")
    a, _ = _train(manifest, tmp_path / "a")
    b, _ = _train(manifest, tmp_path / "b")
    va = a.history.set_index(["epoch", "loader", "metric"])["value"]
    vb = b.history.set_index(["epoch", "loader", "metric"])["value"]
    assert np.allclose(va.to_numpy(), vb.reindex(va.index).to_numpy(), atol=1e-3)


def test_loaders_built_once_by_a_chapter_train_the_same(tiny_task, tmp_path):
    """A chapter builds the loaders, draws a batch to show it, then passes them to train_task:
    the training is the one train_task runs with loaders of its own."""
    torch.set_num_threads(1)
    manifest = tiny_task("xray_or_not")
    a, _ = _train(manifest, tmp_path / "a")
    run_dir = tmp_path / "b"
    paths = project_paths("demo", data_dir=run_dir / "data", run_dir=run_dir,
                          figures_dir=run_dir / "fig").ensure()
    cfg = settings("demo", "xray_or_not", IMAGE_SIZE=32, EPOCHS=2, BATCH_SIZE=16, MAX_TRAIN=None)
    loaders = loaders_for(paths, cfg, manifest)
    next(iter(loaders["train"]))
    b = train_task(paths, cfg, manifest, verbose=False, loaders=loaders)
    va = a.history.set_index(["epoch", "loader", "metric"])["value"]
    vb = b.history.set_index(["epoch", "loader", "metric"])["value"]
    assert np.allclose(va.to_numpy(), vb.reindex(va.index).to_numpy(), atol=1e-3)


def test_changed_settings_start_over(tiny_task, tmp_path):
    torch.set_num_threads(1)
    manifest = tiny_task("xray_or_not", n=40)
    _train(manifest, tmp_path / "run", EPOCHS=1)
    again, _ = _train(manifest, tmp_path / "run", EPOCHS=1, LR=5e-4)
    assert again.resumed_from == 0
    assert (tmp_path / "run" / "checkpoints" / "xray_or_not" / "last.pt.stale").exists()


def test_optimizers_follow_the_paper():
    params = [torch.nn.Parameter(torch.zeros(2))]
    cfg = settings("full", "chest")
    opt = make_optimizer(cfg, params)
    assert type(opt).__name__ == "RAdam" and type(opt).__module__.startswith("torch_optimizer")
    assert opt.defaults["lr"] == paper.HYPERPARAMETERS["chest"]["lr"]
    assert opt.defaults["weight_decay"] == paper.HYPERPARAMETERS["chest"]["weight_decay"]
    opt = make_optimizer(settings("full", "xray_type"), params)
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["betas"] == (0.9, 0.999)
    table = describe_settings(settings("full", "chest"), "chest")
    assert table.drop(index=["batch size"])["same"].all()


def test_sklearn_scores_match_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 14))
    targets = (rng.random((50, 14)) < 0.3).astype(float)
    scores = sklearn_scores("chest", logits, targets)
    assert scores["auc_Atelectasis"] == pytest.approx(roc_auc_score(targets[:, 0], logits[:, 0]))


def test_distributed_training_with_two_cpu_processes(tiny_task, tmp_path):
    """Catalyst's distributed engine, 2 processes over gloo, through `python -m xray_utils train`."""
    manifest = tiny_task("xray_or_not", n=80)
    run = tmp_path / "run"
    (run / "manifests").mkdir(parents=True)
    (run / "manifests" / "xray_or_not.csv").write_text(manifest.read_text())
    cmd = [sys.executable, "-m", "xray_utils", "train", "xray_or_not", "-p", "RUN_DIR", str(run),
           "-p", "DATA_DIR", str(tmp_path / "data"), "-p", "DISTRIBUTED", "2", "-p", "EPOCHS", "1",
           "-p", "IMAGE_SIZE", "32", "-p", "BATCH_SIZE", "8", "-p", "DIST_PORT", "29517"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert '"epochs": 1' in done.stdout
    model, meta = load_checkpoint(run / "checkpoints" / "xray_or_not" / "best.json")
    assert meta["training"]["DISTRIBUTED"] == 2 and meta["training"]["processes"] == 2


def test_one_cycle_schedule_warms_up_then_anneals():
    cfg = settings("demo", "chest", LR=3e-3, EPOCHS=4)
    assert cfg["SCHEDULER"]["name"] == "OneCycleLR"
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg["LR"])
    sched = make_scheduler(cfg, opt, steps_per_epoch=10)
    rates = []
    for _ in range(40):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = int(np.argmax(rates))
    assert rates[peak] == pytest.approx(3e-3)
    assert 5 <= peak <= 15  # pct_start 0.25 of 40 steps
    assert rates[0] < 3e-3 / 10 and rates[-1] < 3e-3 / 100
    with pytest.raises(ValueError, match="unsupported scheduler"):
        make_scheduler({**cfg, "SCHEDULER": {"name": "StepLR"}}, opt)


def test_full_profile_keeps_the_papers_schedule():
    for task in paper.TASKS:
        cfg = settings("full", task)
        assert cfg["SCHEDULER"] == paper.HYPERPARAMETERS[task]["scheduler"]
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg["LR"])
        assert isinstance(make_scheduler(cfg, opt), torch.optim.lr_scheduler.ReduceLROnPlateau)


def test_init_from_a_missing_module_says_which_notebook_to_run(tmp_path):
    paths = project_paths("demo", data_dir=tmp_path / "d", run_dir=tmp_path / "r",
                          figures_dir=tmp_path / "f")
    cfg = settings("demo", "chest")
    assert cfg["INIT_FROM"] == "xray_type"
    with pytest.raises(FileNotFoundError, match=r"02_.*INIT_FROM none") as err:
        init_source(cfg, paths)
    assert str(paths.checkpoint_dir("xray_type")) in str(err.value)
    assert init_source({**cfg, "INIT_FROM": "none"}, paths) is None
    trained = paths.checkpoint_dir("xray_type")
    save_checkpoint(build_model("xray_type"), trained / "best", checkpoint_meta("xray_type", 32))
    assert init_source(cfg, paths) == trained / "best.json"
    assert init_source({**cfg, "INIT_FROM": str(trained)}, paths) == trained / "best.json"
    by_weights = {**cfg, "INIT_FROM": str(trained / "best.safetensors")}
    assert init_source(by_weights, paths) == trained / "best.json"
    assert init_source(settings("full", "chest"), paths) is None
    table = describe_settings(cfg, "chest")
    assert table.loc["initial weights"].iloc[0] == "from xray_type"
