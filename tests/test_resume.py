"""Training state: a training killed at any point and resumed ends with exactly the weights of an
uninterrupted one (CPU); run folders are locked; nothing earlier is overwritten or unpickled."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pandas as pd
import pytest
import torch

from xray_utils.config.paths import project_paths
from xray_utils.config.profiles import settings

SCRIPT = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from xray_utils.config.paths import project_paths
from xray_utils.config.profiles import settings
from xray_utils.train import training

kill = os.environ.get("KILL", "")
if kill.startswith("batch:"):  # SIGKILL inside an epoch: epoch E, training batch B
    E, B = (int(v) for v in kill[6:].split(":"))
    old = training._Runner.handle_batch
    def handle_batch(self, batch):
        if self.is_train_loader and self.epoch_step == E and self.loader_batch_step == B:
            os.kill(os.getpid(), signal.SIGKILL)
        old(self, batch)
    training._Runner.handle_batch = handle_batch
elif kill.startswith("end:"):  # SIGKILL between epochs, right after epoch E was saved
    E = int(kill[4:])
    old_end = training.ResumableCheckpointCallback.on_epoch_end
    def on_epoch_end(self, runner):
        old_end(self, runner)
        if runner.epoch_step == E:
            self.wait_saved()  # the state is written by a thread: kill once it is on disk
            os.kill(os.getpid(), signal.SIGKILL)
    training.ResumableCheckpointCallback.on_epoch_end = on_epoch_end
run = sys.argv[2]
paths = project_paths("demo", data_dir=run + "/data", run_dir=run, figures_dir=run + "/fig").ensure()
cfg = settings("demo", "xray_or_not", IMAGE_SIZE=32, EPOCHS=3, BATCH_SIZE=8, NUM_WORKERS=0)
r = training.train_task(paths, cfg, sys.argv[1], verbose=False)
print("DONE", r.epochs_run, "RESUMED", r.resumed_from)
"""


def _run(script, manifest, run, kill=""):
    env = {**os.environ, "KILL": kill, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), str(manifest), str(run)],
                          capture_output=True, text=True, env=env, timeout=900)


def _final(run):
    folder = run / "checkpoints" / "xray_or_not"
    state = torch.load(folder / "last.pt", weights_only=True)
    return state["model"], pd.read_csv(folder / "history.csv")


def test_killed_anywhere_and_resumed_equals_uninterrupted(tiny_task, tmp_path):
    manifest = tiny_task("xray_or_not", n=80, size=32)
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    ref = _run(script, manifest, tmp_path / "ref")
    assert ref.returncode == 0, ref.stdout + ref.stderr
    ref_model, ref_history = _final(tmp_path / "ref")
    run = tmp_path / "run"
    # killed in the first epoch (nothing saved yet), after epoch 1, inside epoch 2, inside the
    # last epoch; each rerun resumes from what the previous one left
    for kill in ("batch:1:3", "end:1", "batch:2:2", "batch:3:5"):
        proc = _run(script, manifest, run, kill)
        assert proc.returncode == -9, (kill, proc.stdout + proc.stderr)
    done = _run(script, manifest, run)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming from epoch 3 of 3" in done.stdout and "DONE 3 RESUMED 2" in done.stdout
    model, history = _final(run)
    assert model.keys() == ref_model.keys()
    differ = [k for k in model if not torch.equal(model[k], ref_model[k])]
    assert not differ, f"{len(differ)} tensors differ from the uninterrupted run, e.g. {differ[:3]}"
    assert sorted(history["epoch"].unique()) == [1, 2, 3]
    # the learning-rate schedule (one-cycle in the demo) continued where it stopped: the history
    # compared below holds each epoch's rate
    assert settings("demo", "xray_or_not")["SCHEDULER"]["name"] == "OneCycleLR"
    assert len(history[(history["loader"] == "train") & (history["metric"] == "lr")]) == 3
    key = ["epoch", "loader", "metric"]
    pd.testing.assert_frame_equal(history.sort_values(key).reset_index(drop=True),
                                  ref_history.sort_values(key).reset_index(drop=True))


def _paths(run):
    return project_paths("demo", data_dir=run / "data", run_dir=run, figures_dir=run / "fig").ensure()


def _cfg(**kw):
    return settings("demo", "xray_or_not", **{"IMAGE_SIZE": 32, "EPOCHS": 1, "BATCH_SIZE": 16, **kw})


def test_a_locked_run_folder_is_refused(tiny_task, tmp_path):
    from filelock import FileLock

    from xray_utils.train.state import RunFolderBusy
    from xray_utils.train.training import train_task

    paths = _paths(tmp_path / "run")
    folder = paths.checkpoint_dir("xray_or_not")
    folder.mkdir(parents=True)
    with FileLock(str(folder / "train.lock")):
        with pytest.raises(RunFolderBusy, match="in use by another training"):
            train_task(paths, _cfg(), tiny_task("xray_or_not", n=40), verbose=False)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo PWNED",))


def test_a_locked_run_folder_is_one_sentence_from_the_command_line(tiny_task, tmp_path, capsys):
    import shutil

    from filelock import FileLock

    from xray_utils.cli import main
    from xray_utils.train.state import RunFolderBusy

    run = tmp_path / "run"
    paths = _paths(run)
    shutil.copy(tiny_task("xray_or_not", n=40), paths.manifest("xray_or_not"))
    folder = paths.checkpoint_dir("xray_or_not")
    folder.mkdir(parents=True)
    with FileLock(str(folder / "train.lock")):
        code = main(["train", "xray_or_not", "--profile", "demo", "-p", "DATA_DIR", str(run / "data"),
                     "-p", "RUN_DIR", str(run), "-p", "FIGURES_DIR", str(run / "fig"),
                     "-p", "IMAGE_SIZE", "32", "-p", "EPOCHS", "1"])
    out = capsys.readouterr().out
    assert code == 2 and out.startswith("refused: ") and "in use by another training" in out
    assert "Traceback" not in out
    # in a notebook, IPython shows the sentence instead of a traceback
    assert RunFolderBusy("x is in use")._render_traceback_() == ["RunFolderBusy: x is in use"]


@pytest.mark.parametrize("content", ["truncated", "unsafe", "loadable"])
def test_a_broken_or_unsafe_last_pt_is_moved_aside(tiny_task, tmp_path, capsys, content):
    from xray_utils.train.training import train_task

    torch.set_num_threads(1)
    manifest = tiny_task("xray_or_not", n=40)
    paths = _paths(tmp_path / "run")
    train_task(paths, _cfg(), manifest, verbose=False)
    last = paths.checkpoint_dir("xray_or_not") / "last.pt"
    if content == "truncated":
        last.write_bytes(last.read_bytes()[:5000])
    elif content == "unsafe":
        torch.save({"model": Payload(), "epoch": 1, "fingerprint": "{}"}, last,
                   pickle_protocol=pickle.HIGHEST_PROTOCOL)
    else:  # loads with weights_only, but its weights fit no DenseNet and its epoch is text
        torch.save({"model": {"w": torch.zeros(3)}, "epoch": "one", "fingerprint": "{}"}, last)
    capsys.readouterr()
    result = train_task(paths, _cfg(), manifest, verbose=False)
    out = capsys.readouterr().out
    assert "cannot be read safely" in out and "moved aside" in out
    assert "weights_only" not in out and "PWNED" not in out
    assert list(last.parent.glob("last.pt.broken-*")) and result.epochs_run == 1


@pytest.mark.parametrize("change,shown", [({"LR": 5e-4}, "-> 0.0005"),
                                          ({"AUGMENT": "hv_flip"}, "-> 'hv_flip'"),
                                          ({"RECIPE": "authors_code"}, "-> 'authors_code'")])
def test_changed_settings_keep_the_earlier_best(tiny_task, tmp_path, capsys, change, shown):
    """Any setting that changes what the training does (here the rate, the augmentation, the
    recipe) starts over instead of resuming, and the earlier best model is kept aside."""
    from xray_utils.train.training import train_task

    torch.set_num_threads(1)
    manifest = tiny_task("xray_or_not", n=40)
    paths = _paths(tmp_path / "run")
    train_task(paths, _cfg(), manifest, verbose=False)
    folder = paths.checkpoint_dir("xray_or_not")
    before = (folder / "best.safetensors").read_bytes()
    capsys.readouterr()
    train_task(paths, _cfg(**change), manifest, verbose=False)
    out = capsys.readouterr().out
    assert "settings changed" in out and f"{next(iter(change))}: " in out and shown in out
    kept = list(folder.glob("best.*.safetensors"))
    assert len(kept) == 1 and kept[0].read_bytes() == before
    assert kept[0].with_suffix(".json").is_file()


@pytest.mark.parametrize("epochs,steps", [(2, 2), (1, 4), (4, 1), (1, 1), (2, 1)])
def test_one_cycle_schedule_with_tiny_settings(epochs, steps):
    from xray_utils.train.training import make_scheduler

    model = torch.nn.Linear(2, 2)
    cfg = {"LR": 1e-3, "EPOCHS": epochs, "SCHEDULER": {"name": "OneCycleLR", "pct_start": 0.25}}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = make_scheduler(cfg, opt, steps_per_epoch=steps)
    for _ in range(epochs * steps):
        opt.step()
        sched.step()
    assert all(0 < g["lr"] <= 1e-3 + 1e-12 for g in opt.param_groups)
