"""Small helpers behind the lessons of the training chapters (notebooks 01-03).

They only *look* at things the training produces -- the network, the run folder, the saved
state, the optimizer's warm-up -- so that each notebook cell stays a few lines long.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import torch
from torch import nn

from xray_utils.config import paper
from xray_utils.evaluate.record import read_metrics, update_metrics
from xray_utils.train.training import init_from_name

#: What each file of a module's run folder (``<run>/checkpoints/<task>/``) is for.
RUN_FOLDER_FILES: Mapping[str, str] = {
    "best.safetensors": "weights of the best epoch so far (validation score)",
    "best.json": "describes best.safetensors: task, classes, input size, settings, metrics",
    "last.pt": "the whole training state after the last finished epoch (resume from here)",
    "history.csv": "every metric of every epoch and loader (the learning curves)",
    "logs": "Catalyst's CSV and TensorBoard logs",
}


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable parameters of the feature extractor, of the classifier head, and in total."""
    def n(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters() if p.requires_grad)

    return {"features": n(model.features), "classifier": n(model.classifier), "total": n(model)}


def layer_table(model: nn.Module, image_size: int) -> pd.DataFrame:
    """The network block by block: output shape of one ``image_size`` image, parameters.

    Rows are the children of ``model.features`` (DenseNet-121's stem, four dense blocks, three
    transition layers, the last batch norm), then the head (ReLU + global average pooling,
    then the ``classifier`` layer).
    """
    shapes: dict[str, tuple[int, ...]] = {}

    def keep(name: str):
        return lambda module, inputs, out: shapes.update({name: tuple(out.shape[1:])})

    hooks = [m.register_forward_hook(keep(name)) for name, m in model.features.named_children()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            logits = model(torch.zeros(1, 1, image_size, image_size, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    rows = [(f"features.{name}", type(m).__name__, shapes.get(name), sum(p.numel() for p in m.parameters()))
            for name, m in model.features.named_children()]
    last = rows[-1][2]
    rows.append(("relu + average pool", "functional", (last[0],) if last else None, 0))
    rows.append(("classifier", type(model.classifier).__name__, tuple(logits.shape[1:]),
                 sum(p.numel() for p in model.classifier.parameters())))
    return pd.DataFrame(rows, columns=["block", "type", "output shape", "parameters"]).set_index("block")


def run_folder(folder: str | Path) -> pd.DataFrame:
    """The files of a module's run folder, their size and what each is for."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"run folder not found: {folder}. Run the training cell first.")
    rows = []
    for p in sorted(folder.iterdir()):
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
        rows.append((p.name + ("/" if p.is_dir() else ""), round(size / 1e6, 2),
                     RUN_FOLDER_FILES.get(p.name, "")))
    return pd.DataFrame(rows, columns=["file", "MB", "what it is"]).set_index("file")


def saved_state(last_pt: str | Path) -> dict[str, Any]:
    """What ``last.pt`` holds, without the tensors: epoch, best score, and the settings
    fingerprint a rerun compares before it resumes."""
    last_pt = Path(last_pt)
    if not last_pt.is_file():
        raise FileNotFoundError(f"no saved training state at {last_pt}. Run the training cell first.")
    state = torch.load(last_pt, map_location="cpu", weights_only=True)
    return {"keys": sorted(state), "epoch": int(state["epoch"]), "best": float(state["best"]),
            "best_epoch": int(state["best_epoch"]), "history rows": len(json.loads(state["history"])),
            "fingerprint": json.loads(state["fingerprint"])}


def record_training(figures_dir: str | Path, task: str, summary: Mapping[str, Any],
                    profile: str) -> Path:
    """Store one module's training summary in the ``training`` section of metrics.json."""
    training = read_metrics(figures_dir).get("training", {})
    training[task] = dict(summary)
    return update_metrics(figures_dir, "training", training, profile=profile)


def radam_rectification(beta2: float, steps: int) -> pd.DataFrame:
    """RAdam's warm-up (Liu et al., 2020), step by step, as torch-optimizer computes it.

    ``rho`` is the length of the approximated simple moving average of the squared gradients
    (it grows towards ``rho_inf = 2 / (1 - beta2) - 1``); while it is below 5 the second-moment
    estimate is too noisy and RAdam takes a plain momentum step; afterwards the adaptive step
    is scaled by the rectification ``r`` (0 < r < 1, rising towards 1).
    """
    rho_inf = 2 / (1 - beta2) - 1
    rows = []
    for t in range(1, steps + 1):
        b = beta2 ** t
        rho = rho_inf - 2 * t * b / (1 - b)
        adaptive = rho >= 5
        r = (math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
             if adaptive else None)
        rows.append((t, rho, "adaptive (Adam-like)" if adaptive else "momentum only", r))
    return pd.DataFrame(rows, columns=["step", "rho", "update", "rectification r"]).set_index("step")


def initial_weights(cfg: Mapping[str, Any]) -> str:
    """Where a training starts: ``"ImageNet"``, ``"random"`` or ``"from <INIT_FROM>"``."""
    value = init_from_name(cfg)
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
            key != "PRETRAINED" or init_from_name(cfg) == init_from_name(default))
        if not is_default:
            source = "override (-p)"
        elif key in PROFILE_SOURCES.get(profile, {}):
            source = PROFILE_SOURCES[profile][key]
        elif profile == "demo" and key in ref and _fmt(value) != _fmt(ref[key][0]):
            source = "demo profile (fast CPU setting)"
        elif key == "PRETRAINED" and init_from_name(cfg) is not None:
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
