"""Profiles: one name (``demo``, ``public``, ``full``) that selects every default.

A notebook's ``parameters`` cell holds ``PROFILE`` and the parameters a user may override, each
``None`` by default; :func:`settings` merges the profile's defaults, the paper's hyperparameters
(``xray_utils.config.paper``) and the overrides, so a papermill ``-p EPOCHS 1`` changes one value and
nothing else.
"""
from __future__ import annotations

from typing import Any, Mapping

from xray_utils.config import paper

PROFILES: tuple[str, ...] = ("demo", "public", "full")

#: Defaults shared by all tasks of a profile.
_COMMON: Mapping[str, Mapping[str, Any]] = {
    "demo": {
        "IMAGE_SIZE": 64, "BATCH_SIZE": 32, "NUM_WORKERS": 0, "DEVICE": "auto",
        "PRETRAINED": False, "AMP": False, "SEED": 0,
        # demo dataset generation (see xray_utils.data.demo)
        "DEMO_IMAGE_SIZE": 128, "DEMO_PER_TYPE": 200, "DEMO_CHEST": 3000,
        "DEMO_PHOTOS": 1000,
    },
    # sized for one GPU in about an hour (ChestMNIST at 128 px); on a CPU use the stand-in
    # (-p PUBLIC_STAND_IN <a labelled folder of real images>) or -p IMAGE_SIZE 64 with MAX_TRAIN caps
    "public": {
        "IMAGE_SIZE": 128, "BATCH_SIZE": 64, "NUM_WORKERS": 8, "DEVICE": "auto",
        "PRETRAINED": None, "AMP": True, "SEED": 0, "PUBLIC_STAND_IN": None,
    },
    "full": {
        "IMAGE_SIZE": paper.IMAGE_SIZE, "BATCH_SIZE": 32, "NUM_WORKERS": 8, "DEVICE": "auto",
        "PRETRAINED": None, "AMP": True, "SEED": 0,
    },
}

#: Per-task training overrides of a profile (the ``full`` profile uses the paper's settings).
#: The demo fits each training into about 2.5 CPU minutes (2 cores), with what was measured to
#: help most in that budget: a one-cycle schedule instead of the paper's plateau schedule (which
#: never fires in a few epochs) with a higher peak rate; Module II at 40 px, where 8 epochs beat
#: 4 epochs at 64 px (its 14 body parts differ in shape, not in fine detail); Module III at 64 px
#: (a 2 x 2 Grad-CAM grid; any smaller size leaves 1 x 1) starting from Module II's features,
#: since ImageNet weights cannot be downloaded.
_DEMO_SCHEDULE: Mapping[str, Any] = {"name": "OneCycleLR", "pct_start": 0.25}
_TASK: Mapping[str, Mapping[str, Mapping[str, Any]]] = {
    "demo": {
        "xray_or_not": {"EPOCHS": 4, "LR": 3e-3, "MAX_TRAIN": 1900, "SCHEDULER": _DEMO_SCHEDULE},
        "xray_type": {"EPOCHS": 8, "LR": 3e-3, "MAX_TRAIN": None, "IMAGE_SIZE": 40,
                      "SCHEDULER": _DEMO_SCHEDULE},
        "chest": {"EPOCHS": 4, "LR": 3e-3, "MAX_TRAIN": None, "IMAGE_SIZE": 64,
                  "SCHEDULER": _DEMO_SCHEDULE, "INIT_FROM": "xray_type"},
    },
    "public": {t: {} for t in paper.TASKS},  # the paper's epochs (10 / 10 / 15)
    "full": {t: {} for t in paper.TASKS},
}


def settings(profile: str, task: str | None = None, **overrides: Any) -> dict[str, Any]:
    """All settings for ``profile`` (and ``task``), with non-``None`` overrides applied.

    Keys are upper-case like the notebook parameters: ``IMAGE_SIZE``, ``EPOCHS``, ``LR``,
    ``BATCH_SIZE``, ``OPTIMIZER``, ``WEIGHT_DECAY``, ``BETAS``, ``SCHEDULER``, ``LOSS``, ...
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    out: dict[str, Any] = {"PROFILE": profile}
    out.update(_COMMON[profile])
    if task is not None:
        paper.classes_for(task)  # validates the name
        hp = paper.HYPERPARAMETERS[task]
        out.update({
            "TASK": task, "OPTIMIZER": hp["optimizer"], "LR": hp["lr"], "BETAS": tuple(hp["betas"]),
            "WEIGHT_DECAY": hp["weight_decay"], "SCHEDULER": dict(hp["scheduler"]),
            "EPOCHS": hp["epochs"], "LOSS": hp["loss"], "MAX_TRAIN": None, "INIT_FROM": None,
        })
        if out["PRETRAINED"] is None:
            out["PRETRAINED"] = hp["pretrained"]
        out.update({k: dict(v) if isinstance(v, Mapping) else v
                    for k, v in _TASK[profile][task].items()})
    for key, value in overrides.items():
        if value is not None:
            out[key.upper()] = value
    return out
