"""What makes a training safe to stop and rerun: its saved state, its lock, its random states.

* ``ResumableCheckpointCallback`` writes ``last.pt`` after every epoch (model, optimizer,
  scheduler, epoch, best score, history and every random state: Python, NumPy, torch and the
  loaders' shuffling generators; a copy taken at the epoch's end, written by a background
  thread while the next epoch trains) and ``best.safetensors`` + ``best.json`` on improvement; it
  resumes from ``last.pt``, starts over when the settings changed (keeping the earlier best model
  aside) and moves a ``last.pt`` that cannot be read safely aside, never unpickling it;
* ``run_folder_lock`` refuses a second training on the same run folder with a sentence.

The training itself (loss, optimiser, runner) is :mod:`xray_utils.train.training`.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import torch
from catalyst import dl
from catalyst.core.callback import CallbackOrder, ICheckpointCallback

from xray_utils.config.jsonable import to_jsonable
from xray_utils.config.paths import CHECKPOINT_STEM, LAST_STATE
from xray_utils.models import checkpoint_meta, save_checkpoint

#: The settings that must match for a training to resume from ``last.pt``.
RESUME_KEYS = ("TASK", "RECIPE", "IMAGE_SIZE", "BATCH_SIZE", "LR", "OPTIMIZER", "BETAS",
                "WEIGHT_DECAY", "SEED", "PRETRAINED", "MAX_TRAIN", "LOSS", "AUGMENT", "NORMALIZE",
                "SCHEDULER", "INIT_FROM")


class TrainingRefused(RuntimeError):
    """A training that cannot start, said in one sentence (the command line prints it; a notebook
    shows the sentence instead of a traceback)."""

    def _render_traceback_(self) -> list[str]:  # IPython: show the sentence, not a traceback
        return [f"{type(self).__name__}: {self}"]


class RunFolderBusy(TrainingRefused):
    """Another training holds the run folder's lock."""


class TrainingStateBroken(TrainingRefused):
    """``last.pt`` loaded but does not fit the training; it has been moved aside."""


def loader_generators(loader) -> list[torch.Generator]:
    """The torch generators that decide a loader's order (the loader's and its sampler's)."""
    found: list[torch.Generator] = []
    for obj in (loader, getattr(loader, "sampler", None),
                getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        g = getattr(obj, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found


def rng_state(loaders: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every random state that decides what a training does next (tensors and plain values)."""
    import random

    np_state = np.random.get_state()
    state = {
        "python": json.dumps(random.getstate()),
        "numpy": {"keys": torch.as_tensor(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "gauss": [int(np_state[3]), float(np_state[4])]},
        "torch": torch.get_rng_state(),
        "loaders": {k: [g.get_state() for g in loader_generators(v)]
                    for k, v in (loaders or {}).items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any], loaders: Mapping[str, Any] | None) -> None:
    """Restore what :func:`rng_state` saved."""
    import random

    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         *np_state["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for key, saved in state.get("loaders", {}).items():
        gens = loader_generators((loaders or {}).get(key))
        for g, s in zip(gens, saved):
            g.set_state(s)


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


class ResumableCheckpointCallback(ICheckpointCallback):
    """Saves ``last.pt`` every epoch and ``best.*`` on improvement; resumes from ``last.pt``.

    Call :meth:`prepare` once before the training: it reads ``last.pt`` (moving a broken one
    aside), and when the settings changed lists the changes, keeps the earlier best model aside
    and starts over.
    """

    def __init__(self, folder: Path, task: str, cfg: Mapping[str, Any], monitor: str,
                 minimize: bool) -> None:
        super().__init__()
        self.order = CallbackOrder.External  # after the scheduler has stepped
        self.folder, self.task, self.cfg = folder, task, dict(cfg)
        self.monitor, self.minimize = monitor, minimize
        self.best = float("inf") if minimize else -float("inf")
        self.best_epoch = 0
        self.history: list[dict[str, Any]] = []
        #: The last epoch whose state this process saved (or resumed from); None before.
        self.saved_epoch: int | None = None
        self._writer: threading.Thread | None = None
        self._write_error: BaseException | None = None

    @property
    def last_path(self) -> Path:
        return self.folder / LAST_STATE

    def _fingerprint(self) -> dict[str, Any]:
        keys = list(RESUME_KEYS)
        if self.cfg.get("SCHEDULER", {}).get("name") == "OneCycleLR":
            keys.append("EPOCHS")  # the schedule spans all epochs: more epochs, another schedule
        return {k: self.cfg.get(k) for k in keys}

    def read_state(self) -> dict[str, Any] | None:
        """``last.pt`` loaded safely (weights only), or None; a file that cannot be read so is
        renamed ``last.pt.broken-<time>`` with a sentence, and the training starts over."""
        if not self.last_path.is_file():
            return None
        try:
            state = torch.load(self.last_path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or not {"model", "epoch", "fingerprint"} <= set(state):
                raise ValueError("not a training state of this project")
            self._check_state(state)
            return state
        except Exception as exc:  # truncated, corrupt, or holding objects other than tensors
            aside = self._move_aside()
            print(f"{self.task}: the saved training state {self.last_path} cannot be read safely "
                  f"({type(exc).__name__}: it is truncated, corrupt or holds more than plain "
                  f"tensors); it was moved aside as {aside.name} and is not used. This training "
                  "starts from the beginning.")
            return None

    def _move_aside(self) -> Path:
        aside = self.last_path.with_name(f"{LAST_STATE}.broken-{_stamp()}")
        self.last_path.replace(aside)
        return aside

    def _check_state(self, state: Mapping[str, Any]) -> None:
        """Everything resuming reads must be there and of its type, and the weights must fit
        this task's model (a loadable but wrong state never reaches the training)."""
        from xray_utils.models import build_model

        json.loads(state["fingerprint"])
        int(state["epoch"]), int(state.get("best_epoch", 0)), float(state.get("best", 0.0))
        if not isinstance(json.loads(state.get("history", "[]")), list):
            raise ValueError("its history is not a list")
        if not isinstance(state.get("optimizer", {}), dict):
            raise ValueError("its optimizer state is not a mapping")
        build_model(self.task).load_state_dict(state["model"])  # strict: names and shapes

    def prepare(self) -> int:
        """Check the saved state before training; returns the epochs it will resume after."""
        state = self.read_state()
        if state is None:
            self._keep_earlier_best("no resumable training state was found")
            return 0
        old = json.loads(state["fingerprint"])
        new = json.loads(json.dumps(self._fingerprint()))
        if old != new:
            changes = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
                                for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))
            stale = self.last_path.with_suffix(".pt.stale")
            self.last_path.replace(stale)
            print(f"{self.task}: settings changed since the saved state ({changes}); starting "
                  f"over (old state kept as {stale.name}).")
            self._keep_earlier_best("the settings changed")
            return 0
        return int(state["epoch"])

    def _keep_earlier_best(self, why: str) -> None:
        """A training that starts over never overwrites an earlier best model: keep it aside."""
        info = self.folder / f"{CHECKPOINT_STEM}.json"
        if not info.is_file():
            return
        stem = f"{CHECKPOINT_STEM}.{_stamp()}"
        for suffix in (".safetensors", ".json"):
            src = self.folder / f"{CHECKPOINT_STEM}{suffix}"
            if src.is_file():
                src.replace(self.folder / f"{stem}{suffix}")
        print(f"{self.task}: {why}, so this training starts over; the earlier best model is "
              f"kept as {stem}.json / .safetensors in {self.folder}.")

    def on_experiment_start(self, runner: "dl.IRunner") -> None:
        state = self.read_state()
        if state is None:
            return
        if json.loads(state["fingerprint"]) != json.loads(json.dumps(self._fingerprint())):
            return  # prepare() has moved it aside; a state of other settings is never used
        try:
            unwrap(runner.model).load_state_dict(state["model"])
            runner.optimizer.load_state_dict(state["optimizer"])
            if runner.scheduler is not None and state.get("scheduler"):
                runner.scheduler.load_state_dict(state["scheduler"])
            self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
            self.history = json.loads(state["history"])
            if state.get("rng"):
                set_rng_state(state["rng"], runner.loaders)
        except Exception as exc:  # loadable, but not a state this training can continue
            aside = self._move_aside()
            raise TrainingStateBroken(
                f"{self.task}: the saved training state {self.last_path} does not fit this "
                f"training ({type(exc).__name__}: {str(exc)[:200]}); it was moved aside as "
                f"{aside.name}. Run the training again: it starts from the beginning.") from None
        done = int(state["epoch"])
        self.saved_epoch = done
        runner.epoch_step = min(done, runner.num_epochs)
        if runner.engine.is_main_process:  # the history of exactly the finished epochs
            self._write_history()
        if done >= runner.num_epochs:
            print(f"{self.task}: training already finished ({done} epochs) in {self.folder}; "
                  "not retraining. Delete that folder to train again.")
        else:
            print(f"{self.task}: resuming from epoch {done + 1} of {runner.num_epochs} "
                  f"(state found in {self.last_path}; an epoch that was interrupted is run again "
                  "from its start).")

    def _write_history(self) -> None:
        tmp = self.folder / "history.csv.tmp"
        pd.DataFrame(self.history, columns=["epoch", "loader", "metric", "value"]).to_csv(
            tmp, index=False)
        tmp.replace(self.folder / "history.csv")

    def on_epoch_end(self, runner: "dl.IRunner") -> None:
        if not runner.engine.is_main_process:
            return
        self.wait_saved()  # the previous epoch's state is on disk before this one is written
        epoch = runner.epoch_step
        for loader, metrics in runner.epoch_metrics.items():
            name = {"_epoch_": "epoch"}.get(loader, loader)
            for metric, value in metrics.items():
                self.history.append({"epoch": epoch, "loader": name, "metric": metric,
                                     "value": float(value)})
        score = float(runner.epoch_metrics["valid"][self.monitor])
        improved = score < self.best if self.minimize else score > self.best
        if improved or self.best_epoch == 0:
            self.best, self.best_epoch = score, epoch
            valid = {k: float(v) for k, v in runner.epoch_metrics["valid"].items()}
            meta = checkpoint_meta(self.task, int(self.cfg["IMAGE_SIZE"]),
                                   training={**to_jsonable(self.cfg, default=str), "best_epoch": epoch,
                                             "processes": int(runner.engine.num_processes),
                                             "device": str(runner.engine.device)},
                                   metrics={"valid": valid})
            save_checkpoint(unwrap(runner.model), self.folder / CHECKPOINT_STEM, meta)
        # a copy of everything now (the next steps change the live tensors in place); the file
        # is written by a thread while the next epoch trains, so a checkpoint costs the copy
        state = _snapshot({
            "model": unwrap(runner.model).state_dict(),
            "optimizer": runner.optimizer.state_dict(),
            "scheduler": runner.scheduler.state_dict() if runner.scheduler is not None else {},
            "epoch": epoch, "best": self.best, "best_epoch": self.best_epoch,
            "history": json.dumps(self.history),
            "fingerprint": json.dumps(self._fingerprint()),
            # the random states at the end of this epoch are those at the start of the next
            "rng": rng_state(runner.loaders),
        })
        self.saved_epoch = epoch
        self._writer = threading.Thread(target=self._write_state, args=(state,),
                                        name=f"save {self.last_path}", daemon=False)
        self._writer.start()

    def _write_state(self, state: dict[str, Any]) -> None:
        try:
            # history first, then last.pt, the commit point: a kill in between reruns this epoch
            self._write_history()
            tmp = self.last_path.with_suffix(".pt.tmp")
            torch.save(state, tmp)
            tmp.replace(self.last_path)
        except BaseException as exc:  # re-raised in the training's thread by wait_saved()
            self._write_error = exc

    def wait_saved(self) -> None:
        """Block until the last epoch's state is written; raise if writing it failed."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._write_error is not None:
            exc, self._write_error = self._write_error, None
            raise RuntimeError(f"{self.task}: the training state could not be written to "
                               f"{self.last_path} ({type(exc).__name__}: {exc}); check the free "
                               "disk space and the folder's permissions, then rerun to resume "
                               "from the last epoch saved.") from exc

    def on_experiment_end(self, runner: "dl.IRunner") -> None:
        self.wait_saved()

    def on_exception(self, runner: "dl.IRunner") -> None:
        if self._writer is not None:  # finish the last epoch's state; the exception goes on
            self._writer.join()
            self._writer = None


def _snapshot(obj: Any) -> Any:
    """A copy of ``obj`` whose tensors are cloned (dicts, lists and tuples copied through)."""
    if torch.is_tensor(obj):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_snapshot(v) for v in obj)
    return obj


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


@contextlib.contextmanager
def run_folder_lock(folder: Path, task: str) -> Iterator[None]:
    """Hold ``<folder>/train.lock`` while a training uses the folder; a second training on the same
    folder is refused with :class:`RunFolderBusy` (a sentence, not a timeout)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(folder / "train.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunFolderBusy(
            f"{folder} is in use by another training of {task} (its lock {lock.lock_file} is "
            "held); wait for it to finish, or train into another run folder.") from None
    try:
        yield
    finally:
        lock.release()
