"""One training entry point for the three modules, on Catalyst's ``SupervisedRunner``.

The notebooks 01-03 differ only in their parameters::

    cfg = settings(PROFILE, "xray_type", EPOCHS=EPOCHS, ...)
    result = train_task(paths, cfg)

What happens, in :func:`train`: loaders from the task manifest through the preprocessing cache
(:mod:`xray_utils.data.loaders`); DenseNet-121 with the task's head (:mod:`xray_utils.models`);
the loss (:func:`make_criterion`), Adam or RAdam (:func:`make_optimizer`) and the scheduler
(:func:`make_scheduler`) -- the paper's settings from :mod:`xray_utils.config.paper` unless the
profile or a parameter overrides them; validation metrics from scikit-learn (Catalyst 22.4's own
AUC is wrong: values above 1); Catalyst's CSV and TensorBoard logs in
``<run>/checkpoints/<task>/logs``.

What makes it safe to stop and rerun (resume, the run-folder lock, changed settings, random
states) is :mod:`xray_utils.train.state`; the settings table the chapters show is
:func:`xray_utils.train.lessons.describe_settings`.
"""
from __future__ import annotations

import math
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from catalyst import dl
from catalyst.core.callback import Callback, CallbackOrder

from xray_utils.config import paper
from xray_utils.config.paths import CHECKPOINT_STEM, ProjectPaths
from xray_utils.config.profiles import SCHEDULERS
from xray_utils.config.seeding import seed_everything
from xray_utils.data.loaders import make_loaders
from xray_utils.models import (
    build_model,
    init_features_from,
    resolve_device,
)
from xray_utils.train.state import (
    ResumableCheckpointCallback,
    loader_generators,
    run_folder_lock,
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
        # kept where they are (on the GPU: no copy, no synchronisation per batch); one copy
        # to the CPU and the scikit-learn scores once per loader, at its end
        self._logits.append(runner.batch["logits"].detach())
        self._targets.append(runner.batch["targets"].detach())

    def on_loader_end(self, runner: "dl.IRunner") -> None:
        logits, targets = torch.cat(self._logits), torch.cat(self._targets)
        self._logits, self._targets = [], []
        if runner.engine.is_ddp:  # every process saw a shard: score the whole split
            logits = runner.engine.gather(logits.to(runner.engine.device))
            targets = runner.engine.gather(targets.to(runner.engine.device))
        runner.loader_metrics.update(sklearn_scores(
            self.task, logits.float().cpu().numpy(), targets.cpu().numpy()))


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


def init_from_name(cfg: Mapping[str, Any]) -> str | None:
    """``cfg["INIT_FROM"]`` as a string, or ``None`` for no transfer (``None``, ``""``, ``"none"``)."""
    value = cfg.get("INIT_FROM")
    if value is None or str(value).strip().lower() in ("", "none"):
        return None
    return str(value)


def init_source(cfg: Mapping[str, Any], paths: ProjectPaths) -> Path | None:
    """The checkpoint ``cfg["INIT_FROM"]`` names: a task of this run (``"xray_type"``: its best
    checkpoint) or a checkpoint path; ``None``, ``""`` or ``"none"``: no transfer."""
    value = init_from_name(cfg)
    if value is None:
        return None
    if value in paper.TASKS:
        path = paths.best_checkpoint(value)
        hint = (f"train {value} first (notebook {paper.TASKS.index(value) + 1:02d}_...) "
                "in the same run folder")
    else:
        path = Path(value)
        path = path / f"{CHECKPOINT_STEM}.json" if path.is_dir() else path
        hint = "pass the best.json of a trained model (or its folder)"
    if path.suffix != ".json":
        path = path.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(
            f"INIT_FROM={value!r}: no checkpoint at {path}; {hint}, or set -p INIT_FROM none "
            "to train from random weights.")
    return path


def loaders_for(paths: ProjectPaths, cfg: Mapping[str, Any],
                manifest_csv: str | Path | None = None) -> "OrderedDict[str, Any]":
    """The training and validation loaders of ``cfg["TASK"]`` with the settings' image size, batch,
    workers, ``MAX_TRAIN`` and ``AUGMENT``: what :func:`train_task` trains on.  A chapter builds
    them once, looks at a batch, and passes them to :func:`train_task`."""
    task = cfg["TASK"]
    return make_loaders(paths.manifest(task) if manifest_csv is None else manifest_csv, task,
                        int(cfg["IMAGE_SIZE"]), int(cfg["BATCH_SIZE"]), paths.cache_dir,
                        num_workers=int(cfg.get("NUM_WORKERS", 0)), seed=int(cfg.get("SEED", 0)),
                        max_train=cfg.get("MAX_TRAIN"), pin_memory=device_of(cfg).startswith("cuda"),
                        augment=str(cfg.get("AUGMENT", "flip_crop")))


def train_task(paths: ProjectPaths, cfg: Mapping[str, Any], manifest_csv: str | Path | None = None,
               verbose: bool = True, loaders: Mapping[str, Any] | None = None) -> TrainResult:
    """Train (or resume, or reuse) the module ``cfg["TASK"]`` on ``paths.manifest(task)`` (or
    ``manifest_csv``); returns where the best checkpoint is.  ``loaders``: those of
    :func:`loaders_for` (built once by the chapter); their shuffling restarts from the seed, so
    the training is the same as with loaders built here."""
    cfg = dict(cfg)
    task = cfg.get("TASK")
    if task not in paper.TASKS:
        raise ValueError(f"cfg['TASK'] is {task!r}; settings(PROFILE, TASK) sets one of "
                         f"{', '.join(paper.TASKS)}")
    if str(cfg.get("NORMALIZE", "per_image")) != "per_image":
        raise ValueError(f"NORMALIZE {cfg['NORMALIZE']!r} is not implemented; the models read one "
                         "grayscale channel standardised per image (NORMALIZE per_image)")
    manifest_csv = paths.manifest(task) if manifest_csv is None else manifest_csv
    seed = int(cfg.get("SEED", 0))
    seed_everything(seed)
    on_gpu = device_of(cfg).startswith("cuda")
    if on_gpu:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.deterministic = False
    folder = paths.checkpoint_dir(task)
    folder.mkdir(parents=True, exist_ok=True)
    with run_folder_lock(folder, task):
        return train(task, manifest_csv, paths, cfg, verbose, folder, seed, on_gpu, loaders)


def train(task: str, manifest_csv: str | Path, paths: ProjectPaths, cfg: dict,
          verbose: bool, folder: Path, seed: int, on_gpu: bool,
          loaders: Mapping[str, Any] | None = None) -> TrainResult:
    """The training: loaders, model, loss, optimiser, scheduler, callbacks, Catalyst's runner."""
    if loaders is None:
        loaders = loaders_for(paths, cfg, manifest_csv)
    else:
        loaders = OrderedDict(loaders)
        for loader in loaders.values():
            for generator in loader_generators(loader):
                generator.manual_seed(seed)
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
    seconds = time.time() - started
    if ckpt.saved_epoch is not None:  # this process trained: its callback knows the outcome
        best, best_epoch, epochs = ckpt.best, ckpt.best_epoch, ckpt.saved_epoch
    else:  # DISTRIBUTED: the child processes trained; read back what the main one saved
        state = torch.load(ckpt.last_path, map_location="cpu", weights_only=True)
        best, best_epoch, epochs = state["best"], state["best_epoch"], state["epoch"]
    history = pd.read_csv(folder / "history.csv")
    return TrainResult(task=task, best_checkpoint=paths.best_checkpoint(task), history=history,
                       best_score=float(best), best_epoch=int(best_epoch), monitor=monitor,
                       epochs_run=int(epochs), resumed_from=resumed_from, seconds=seconds)
