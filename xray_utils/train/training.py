"""One training entry point for the three modules, on Catalyst's ``SupervisedRunner``.

The notebooks 01-03 differ only in their parameters::

    cfg = settings(PROFILE, "xray_type", EPOCHS=EPOCHS, ...)
    result = train_task("xray_type", paths.manifest("xray_type"), paths, cfg)

What happens:

* loaders from the task manifest through the preprocessing cache (:mod:`xray_utils.data.loaders`);
* DenseNet-121 with the task's head (:mod:`xray_utils.models`); Adam or RAdam
  (torch-optimizer), ``ReduceLROnPlateau`` on the validation loss -- the paper's settings
  from :mod:`xray_utils.config.paper` unless the profile or a parameter overrides them;
* validation metrics from scikit-learn (Catalyst 22.4's own AUC is wrong: values above 1);
* after every epoch the full training state goes to ``last.pt`` (model, optimizer,
  scheduler, epoch, best score, history, and every random state that decides what comes next:
  Python, NumPy, torch, and the shuffling generators of the loaders) and, when the validation
  score improves, the model to ``best.safetensors`` + ``best.json`` (self-describing);
* run again with the same run folder, an interrupted training resumes after its last
  finished epoch (and says so): a training killed inside an epoch restarts that epoch from its
  start, with the random states of that moment, so it ends with exactly the weights of a
  training that was never interrupted (on the CPU; measured in tests/test_resume.py).  A
  finished one is not retrained;
* a run folder is locked while a training uses it (``filelock``): a second training on the
  same folder is refused with a sentence;
* a rerun with changed settings starts over, but first lists the changes and keeps the earlier
  best model beside the new one (``best.<time>.json`` / ``.safetensors``); a ``last.pt`` that
  cannot be read safely (truncated, or not plain tensors) is moved aside, never unpickled.
* Catalyst's CSV and TensorBoard logs go to ``<run>/checkpoints/<task>/logs``.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from catalyst import dl
from catalyst.core.callback import Callback, CallbackOrder, ICheckpointCallback

from xray_utils.config import paper
from xray_utils.config.paths import ProjectPaths
from xray_utils.config.seeding import seed_everything
from xray_utils.data.loaders import make_loaders
from xray_utils.models import (
    build_model,
    checkpoint_meta,
    init_features_from,
    resolve_device,
    save_checkpoint,
)

# Known, harmless warnings of catalyst 22.4 with accelerate 0.34 (they would flood the notebooks).
warnings.filterwarnings("ignore", message="The `TPU` of", category=FutureWarning)
warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True",
                        category=UserWarning)

class PosWeightBCE(torch.nn.Module):
    """``BCEWithLogitsLoss`` with a per-finding ``pos_weight`` that follows the logits' device."""

    def __init__(self, pos_weight) -> None:
        super().__init__()
        self.register_buffer("pos_weight", torch.as_tensor(pos_weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits, targets, pos_weight=self.pos_weight.to(logits.device, logits.dtype))


def make_criterion(cfg: Mapping[str, Any], task: str) -> torch.nn.Module:
    """The loss ``cfg["LOSS"]`` names: ``cross_entropy`` (Modules I-II), ``bce`` (Module III, the
    paper) or ``bce_pos_weight`` (Module III, the authors' code: :data:`paper.AUTHORS_POS_WEIGHT`)."""
    from xray_utils.config.profiles import LOSSES

    loss = str(cfg.get("LOSS") or paper.HYPERPARAMETERS[task]["loss"]).lower()
    if loss not in LOSSES[task]:
        raise ValueError(f"LOSS {cfg.get('LOSS')!r} is not implemented for {task}; choose one of "
                         f"{', '.join(LOSSES[task])}")
    if loss == "cross_entropy":
        return torch.nn.CrossEntropyLoss()
    if loss == "bce":
        return torch.nn.BCEWithLogitsLoss()
    return PosWeightBCE(paper.AUTHORS_POS_WEIGHT)


#: Settings that must match for a saved state to be resumed (EPOCHS may grow, except under the
#: one-cycle schedule, which spans the planned epochs).
_RESUME_KEYS = ("TASK", "RECIPE", "IMAGE_SIZE", "BATCH_SIZE", "LR", "OPTIMIZER", "BETAS",
                "WEIGHT_DECAY", "SEED", "PRETRAINED", "MAX_TRAIN", "LOSS", "AUGMENT", "NORMALIZE",
                "SCHEDULER", "INIT_FROM")


@dataclass
class TrainResult:
    """What a training produced."""

    task: str
    best_checkpoint: Path
    history: pd.DataFrame
    best_score: float
    best_epoch: int
    monitor: str
    epochs_run: int
    resumed_from: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        valid = self.history[self.history["loader"] == "valid"]
        last = valid[valid["epoch"] == valid["epoch"].max()]
        return {
            "best_epoch": self.best_epoch, "monitor": self.monitor,
            "best_valid": self.best_score, "epochs": int(self.history["epoch"].max()),
            "seconds_this_run": round(self.seconds, 1), "resumed_from_epoch": self.resumed_from,
            "last_valid": {r.metric: float(r.value) for r in last.itertuples()},
        }


def monitor_metric(task: str) -> tuple[str, bool]:
    """The validation metric that picks the best checkpoint, and whether to minimise it."""
    return ("auc_mean", False) if paper.is_multilabel(task) else ("accuracy", False)


def sklearn_scores(task: str, logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Validation metrics with scikit-learn: accuracy (I, II) or per-finding and mean AUC (III)."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    if not paper.is_multilabel(task):
        return {"accuracy": float(accuracy_score(targets, logits.argmax(1)))}
    probs = 1 / (1 + np.exp(-logits))
    out: dict[str, float] = {}
    aucs = []
    for j, name in enumerate(paper.FINDINGS):
        y = targets[:, j]
        if 0 < y.sum() < len(y):
            out[f"auc_{name}"] = float(roc_auc_score(y, probs[:, j]))
            aucs.append(out[f"auc_{name}"])
    out["auc_mean"] = float(np.mean(aucs)) if aucs else float("nan")
    return out


class SklearnMetricsCallback(Callback):
    """Collects logits and targets of each loader and adds scikit-learn metrics at its end."""

    def __init__(self, task: str) -> None:
        super().__init__(order=CallbackOrder.Metric)
        self.task = task
        self._logits: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []

    def on_loader_start(self, runner: "dl.IRunner") -> None:
        self._logits, self._targets = [], []

    def on_batch_end(self, runner: "dl.IRunner") -> None:
        self._logits.append(runner.batch["logits"].detach().float().cpu().numpy())
        self._targets.append(runner.batch["targets"].detach().cpu().numpy())

    def on_loader_end(self, runner: "dl.IRunner") -> None:
        logits, targets = np.concatenate(self._logits), np.concatenate(self._targets)
        if runner.engine.is_ddp:  # every process saw a shard: score the whole split
            logits = runner.engine.gather(torch.as_tensor(logits, device=runner.engine.device)).cpu().numpy()
            targets = runner.engine.gather(
                torch.as_tensor(targets, device=runner.engine.device)).cpu().numpy()
        runner.loader_metrics.update(sklearn_scores(self.task, logits, targets))


class RunFolderBusy(RuntimeError):
    """Another training holds the run folder's lock."""


def _loader_generators(loader) -> list[torch.Generator]:
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
        "loaders": {k: [g.get_state() for g in _loader_generators(v)]
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
        gens = _loader_generators((loaders or {}).get(key))
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

    @property
    def last_path(self) -> Path:
        return self.folder / "last.pt"

    def _fingerprint(self) -> dict[str, Any]:
        keys = list(_RESUME_KEYS)
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
            return state
        except Exception as exc:  # truncated, corrupt, or holding objects other than tensors
            aside = self.last_path.with_name(f"last.pt.broken-{_stamp()}")
            self.last_path.replace(aside)
            print(f"{self.task}: the saved training state {self.last_path} cannot be read safely "
                  f"({type(exc).__name__}: it is truncated, corrupt or holds more than plain "
                  f"tensors); it was moved aside as {aside.name} and is not used. This training "
                  "starts from the beginning.")
            return None

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
        info = self.folder / "best.json"
        if not info.is_file():
            return
        stem = f"best.{_stamp()}"
        for suffix in (".safetensors", ".json"):
            src = self.folder / f"best{suffix}"
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
        _unwrap(runner.model).load_state_dict(state["model"])
        runner.optimizer.load_state_dict(state["optimizer"])
        if runner.scheduler is not None and state.get("scheduler"):
            runner.scheduler.load_state_dict(state["scheduler"])
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.history = json.loads(state["history"])
        if state.get("rng"):
            set_rng_state(state["rng"], runner.loaders)
        done = int(state["epoch"])
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
                                   training={**_jsonable(self.cfg), "best_epoch": epoch,
                                             "processes": int(runner.engine.num_processes),
                                             "device": str(runner.engine.device)},
                                   metrics={"valid": valid})
            save_checkpoint(_unwrap(runner.model), self.folder / "best", meta)
        state = {
            "model": _unwrap(runner.model).state_dict(),
            "optimizer": runner.optimizer.state_dict(),
            "scheduler": runner.scheduler.state_dict() if runner.scheduler is not None else {},
            "epoch": epoch, "best": self.best, "best_epoch": self.best_epoch,
            "history": json.dumps(self.history),
            "fingerprint": json.dumps(self._fingerprint()),
            # the random states at the end of this epoch are those at the start of the next
            "rng": rng_state(runner.loaders),
        }
        # history first, then last.pt, the commit point: a kill in between reruns this epoch
        self._write_history()
        tmp = self.last_path.with_suffix(".pt.tmp")
        torch.save(state, tmp)
        tmp.replace(self.last_path)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def _jsonable(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(cfg), default=str))


def make_optimizer(cfg: Mapping[str, Any], params) -> torch.optim.Optimizer:
    """Adam (modules I-II) or RAdam from torch-optimizer (module III), as the paper."""
    name = str(cfg["OPTIMIZER"]).lower()
    kwargs = dict(lr=float(cfg["LR"]), betas=tuple(cfg["BETAS"]),
                  weight_decay=float(cfg["WEIGHT_DECAY"]))
    if name == "adam":
        return torch.optim.Adam(params, **kwargs)
    if name == "radam":
        import torch_optimizer

        return torch_optimizer.RAdam(params, **kwargs)
    raise ValueError(f"unknown optimizer {cfg['OPTIMIZER']!r}; expected Adam or RAdam")


#: Schedulers :func:`make_scheduler` knows, and whether Catalyst steps them per batch.
SCHEDULERS: dict[str, str] = {"ReduceLROnPlateau": "epoch", "OneCycleLR": "batch"}


def make_scheduler(cfg: Mapping[str, Any], optimizer: torch.optim.Optimizer,
                   steps_per_epoch: int = 1):
    """The learning-rate schedule of ``cfg["SCHEDULER"]``.

    * ``ReduceLROnPlateau`` (the paper's, all profiles but demo): divides the rate by 10 when
      the validation loss has not improved for ``patience`` epochs; stepped once an epoch.
    * ``OneCycleLR`` (the demo's): warms up to ``LR`` over the first ``pct_start`` of the
      training, then anneals to nearly zero by the last batch; stepped every batch.  With a
      handful of epochs a plateau never arrives, so the paper's schedule would keep the rate
      constant to the end.
    """
    s = dict(cfg["SCHEDULER"])
    name = s.get("name")
    if name == "ReduceLROnPlateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=s["mode"], factor=s["factor"], patience=s["patience"])
    if name == "OneCycleLR":
        total = int(cfg["EPOCHS"]) * max(1, int(steps_per_epoch))
        pct = float(s.get("pct_start", 0.25))
        if not 0 < pct < 1:
            raise ValueError(f"SCHEDULER pct_start must be between 0 and 1, got {pct}")
        if abs(pct * total - 1) < 1e-9:  # a warm-up of exactly one step: torch divides by 0
            pct = 1.5 / total
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=float(cfg["LR"]), epochs=int(cfg["EPOCHS"]),
            steps_per_epoch=max(1, int(steps_per_epoch)), pct_start=pct,
            div_factor=float(s.get("div_factor", 25.0)),
            final_div_factor=float(s.get("final_div_factor", 1e3)),
            cycle_momentum=bool(s.get("cycle_momentum", False)))
    raise ValueError(f"unsupported scheduler {s!r}; expected one of {', '.join(SCHEDULERS)}")


def device_of(cfg: Mapping[str, Any]) -> str:
    """The device a training runs on: ``DEVICE`` through :func:`xray_utils.models.resolve_device`."""
    return resolve_device(cfg.get("DEVICE", "auto")).type


def make_engine(cfg: Mapping[str, Any]) -> dl.Engine:
    """Catalyst engine for the settings.

    * CPU by default on machines without a GPU;
    * on a GPU, mixed precision (bf16 where supported, else fp16) when ``AMP`` is on;
    * ``DISTRIBUTED`` = N > 1: N processes with Catalyst's distributed engine (NCCL on GPUs,
      gloo on the CPU).  Catalyst spawns the processes, so this works from a script or
      ``python -m xray_utils train``, not from inside a notebook.
    """
    cpu = device_of(cfg) == "cpu"
    precision = "no"
    if cfg.get("AMP") and not cpu:
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    world = int(cfg.get("DISTRIBUTED") or 1)
    if world > 1:
        torch.multiprocessing.set_sharing_strategy("file_system")
        return dl.DistributedDataParallelEngine(
            port=int(cfg.get("DIST_PORT", 29511)), world_size=world, num_node_workers=world,
            process_group_kwargs={"backend": "gloo" if cpu else "nccl"}, cpu=cpu,
            mixed_precision=precision)
    if cpu:
        return dl.CPUEngine()
    return dl.GPUEngine(mixed_precision=precision)


class _Runner(dl.SupervisedRunner):
    """SupervisedRunner that feeds BCE float targets (module III) and channels_last images."""

    def __init__(self, multilabel: bool) -> None:
        super().__init__(input_key="features", output_key="logits", target_key="targets",
                         loss_key="loss")
        self.multilabel = multilabel

    def handle_batch(self, batch):
        batch["features"] = batch["features"].contiguous(memory_format=torch.channels_last)
        if self.multilabel:
            batch["targets"] = batch["targets"].float()
        super().handle_batch(batch)


def _init_from(cfg: Mapping[str, Any]) -> str | None:
    """``cfg["INIT_FROM"]`` as a string, or ``None`` for no transfer (``None``, ``""``, ``"none"``)."""
    value = cfg.get("INIT_FROM")
    if value is None or str(value).strip().lower() in ("", "none"):
        return None
    return str(value)


def init_source(cfg: Mapping[str, Any], paths: ProjectPaths) -> Path | None:
    """The checkpoint ``cfg["INIT_FROM"]`` names: a task of this run (``"xray_type"``: its best
    checkpoint) or a checkpoint path; ``None``, ``""`` or ``"none"``: no transfer."""
    value = _init_from(cfg)
    if value is None:
        return None
    if value in paper.TASKS:
        path = paths.best_checkpoint(value)
        hint = (f"train {value} first (notebook {paper.TASKS.index(value) + 1:02d}_...) "
                "in the same run folder")
    else:
        path = Path(value)
        path = path / "best.json" if path.is_dir() else path
        hint = "pass the best.json of a trained model (or its folder)"
    if path.suffix != ".json":
        path = path.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(
            f"INIT_FROM={value!r}: no checkpoint at {path}; {hint}, or set -p INIT_FROM none "
            "to train from random weights.")
    return path


def train_task(task: str, manifest_csv: str | Path, paths: ProjectPaths,
               cfg: Mapping[str, Any], verbose: bool = True) -> TrainResult:
    """Train (or resume, or reuse) one module; returns where the best checkpoint is."""
    cfg = dict(cfg)
    cfg["TASK"] = task
    if str(cfg.get("NORMALIZE", "per_image")) != "per_image":
        raise ValueError(f"NORMALIZE {cfg['NORMALIZE']!r} is not implemented; the models read one "
                         "grayscale channel standardised per image (NORMALIZE per_image)")
    seed = int(cfg.get("SEED", 0))
    seed_everything(seed)
    device = device_of(cfg)
    on_gpu = device.startswith("cuda")
    if on_gpu:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.deterministic = False
    folder = paths.checkpoint_dir(task)
    folder.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock, Timeout

    lock = FileLock(str(folder / "train.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunFolderBusy(
            f"{folder} is in use by another training of {task} (its lock {lock.lock_file} is "
            "held); wait for it to finish, or train into another run folder.") from None
    try:
        return _train_locked(task, manifest_csv, paths, cfg, verbose, folder, seed, on_gpu)
    finally:
        lock.release()


def _train_locked(task: str, manifest_csv: str | Path, paths: ProjectPaths, cfg: dict,
                  verbose: bool, folder: Path, seed: int, on_gpu: bool) -> TrainResult:
    loaders = make_loaders(manifest_csv, task, int(cfg["IMAGE_SIZE"]), int(cfg["BATCH_SIZE"]),
                           paths.cache_dir, num_workers=int(cfg.get("NUM_WORKERS", 0)), seed=seed,
                           max_train=cfg.get("MAX_TRAIN"), pin_memory=on_gpu,
                           augment=str(cfg.get("AUGMENT", "flip_crop")))
    model = build_model(task, pretrained=bool(cfg.get("PRETRAINED")),
                        allow_fallback=bool(cfg.get("ALLOW_PRETRAINED_FALLBACK", False)))
    source = init_source(cfg, paths)
    if source is not None:
        n = init_features_from(model, source)
        if verbose:
            print(f"{task}: feature extractor initialised from {source} ({n} tensors)")
    # channels_last: faster convolutions on GPUs (tensor cores) and on CPUs too (oneDNN; about
    # 1.3x for a DenseNet-121 training step at 64 px on 2 cores)
    model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model.parameters())
    # with DISTRIBUTED = N, each process takes every N-th batch
    steps = math.ceil(len(loaders["train"]) / max(1, int(cfg.get("DISTRIBUTED") or 1)))
    scheduler = make_scheduler(cfg, optimizer, steps_per_epoch=steps)
    criterion = make_criterion(cfg, task)
    monitor, minimize = monitor_metric(task)
    ckpt = ResumableCheckpointCallback(folder, task, cfg, monitor, minimize)
    callbacks = [
        SklearnMetricsCallback(task),
        dl.SchedulerCallback(loader_key="valid", metric_key="loss",
                             mode=SCHEDULERS[cfg["SCHEDULER"]["name"]]),
        ckpt,
    ]
    runner = _Runner(paper.is_multilabel(task))
    resumed_from = ckpt.prepare()
    started = time.time()
    runner.train(
        model=model, engine=make_engine(cfg), criterion=criterion, optimizer=optimizer,
        scheduler=scheduler, loaders=loaders, callbacks=callbacks,
        logdir=str(folder / "logs"), num_epochs=int(cfg["EPOCHS"]), seed=seed,
        valid_loader="valid", valid_metric=monitor, minimize_valid_metric=minimize,
        verbose=verbose,
    )
    # read back what the (main) training process saved: with DISTRIBUTED the work happened in
    # child processes, so this process's callback saw nothing
    state = torch.load(ckpt.last_path, map_location="cpu", weights_only=True)
    history = pd.read_csv(folder / "history.csv")
    return TrainResult(task=task, best_checkpoint=folder / "best.json", history=history,
                       best_score=float(state["best"]), best_epoch=int(state["best_epoch"]),
                       monitor=monitor, epochs_run=int(state["epoch"]),
                       resumed_from=resumed_from, seconds=time.time() - started)


def initial_weights(cfg: Mapping[str, Any]) -> str:
    """Where a training starts: ``"ImageNet"``, ``"random"`` or ``"from <INIT_FROM>"``."""
    value = _init_from(cfg)
    if value is not None:
        return f"from {value}"
    return "ImageNet" if cfg.get("PRETRAINED") else "random"


def _fmt(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _loss_text(loss: Any) -> str:
    if str(loss) == "bce_pos_weight":
        return f"bce_pos_weight {tuple(int(w) for w in paper.AUTHORS_POS_WEIGHT)}"
    return str(loss)


#: What ``describe_settings`` lists: (setting name, label, how to show the value).
_DESCRIBED: tuple[tuple[str, str], ...] = (
    ("OPTIMIZER", "optimizer"), ("LR", "learning rate"), ("BETAS", "betas"),
    ("WEIGHT_DECAY", "weight decay"), ("SCHEDULER", "scheduler"), ("EPOCHS", "epochs"),
    ("LOSS", "loss"), ("PRETRAINED", "initial weights"), ("IMAGE_SIZE", "image size (px)"),
    ("BATCH_SIZE", "batch size"), ("AUGMENT", "augmentation (training)"),
    ("NORMALIZE", "normalisation"), ("SEED", "seed"), ("AMP", "mixed precision"),
    ("MAX_TRAIN", "training images"), ("DEVICE", "device"),
)


def describe_settings(cfg: Mapping[str, Any], task: str) -> pd.DataFrame:
    """This run's settings beside the chosen recipe's (``cfg["RECIPE"]``), each with its source.

    One row per setting the training uses.  ``source``: where this run's value comes from --
    ``paper`` (the preprint), ``published`` (EMBC 2020), ``authors' code``, ``our assumption``
    (the paper is silent), ``our addition`` / ``our choice`` (not in the paper), the demo
    profile's own value, or ``override (-p)``.  ``recipe``: the recipe's value; ``same``:
    whether this run follows it.
    """
    from xray_utils.config.profiles import PROFILE_SOURCES, RUN_SOURCES, settings

    profile = str(cfg.get("PROFILE", "full"))
    name = str(cfg.get("RECIPE") or paper.DEFAULT_RECIPE)
    ref = paper.recipe(name, task)
    default = settings(profile, task, RECIPE=name)
    rows = []
    for key, label in _DESCRIBED:
        value = cfg.get(key)
        if key == "PRETRAINED":
            shown = initial_weights(cfg)
            ref_shown = "ImageNet" if ref[key][0] else "random (from scratch)"
            shown = "random (from scratch)" if shown == "random" else shown
        elif key == "LOSS":
            shown, ref_shown = _loss_text(value), _loss_text(ref[key][0])
        elif key == "MAX_TRAIN":
            shown, ref_shown = (value or "all"), "all"
        else:
            shown = _fmt(tuple(value) if key == "BETAS" else value)
            ref_shown = _fmt(ref[key][0]) if key in ref else "not stated"
        is_default = _fmt(value) == _fmt(default.get(key)) and (
            key != "PRETRAINED" or _init_from(cfg) == _init_from(default))
        if not is_default:
            source = "override (-p)"
        elif key in PROFILE_SOURCES.get(profile, {}):
            source = PROFILE_SOURCES[profile][key]
        elif profile == "demo" and key in ref and _fmt(value) != _fmt(ref[key][0]):
            source = "demo profile (fast CPU setting)"
        elif key == "PRETRAINED" and _init_from(cfg) is not None:
            source = paper.SOURCE_ADDITION + " (transfer from another module)"
        elif key in ref:
            source = ref[key][1]
        else:
            source = RUN_SOURCES.get(key, paper.SOURCE_ADDITION)
        in_recipe = key in ref or key == "MAX_TRAIN"
        rows.append((label, shown, source, ref_shown if in_recipe else "(not part of a recipe)",
                     str(shown) == str(ref_shown) if in_recipe else True))
    columns = ["setting", f"this run ({profile})", "source", f"recipe: {name}", "same"]
    return pd.DataFrame(rows, columns=columns).set_index("setting")
