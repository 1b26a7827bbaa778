"""Profiles: one name (``demo``, ``public``, ``full``) that selects every default.

A notebook's ``parameters`` cell holds ``PROFILE`` and the parameters a user may override, each
``None`` by default; :func:`settings` merges the profile's defaults, the chosen recipe's training
settings (``RECIPE``: ``paper`` / ``published`` / ``authors_code``, facts in
``xray_utils.config.paper``) and the overrides, so a papermill ``-p EPOCHS 1`` changes one value
and nothing else.  Every override is checked up front (:func:`validate`): a name the code does
not know or a value it cannot honour is refused with a clear error, never silently ignored.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from xray_utils.config import paper

PROFILES: tuple[str, ...] = ("demo", "public", "full")
#: The profile a command uses when none is named.
DEFAULT_PROFILE = PROFILES[0]
#: The profiles whose data ``python -m xray_utils download PROFILE`` fetches.
DOWNLOADED_PROFILES: tuple[str, ...] = ("public",)

#: Defaults shared by all tasks of a profile.
_COMMON: Mapping[str, Mapping[str, Any]] = {
    "demo": {
        "IMAGE_SIZE": 64, "BATCH_SIZE": 32, "NUM_WORKERS": 0, "DEVICE": "auto",
        "PRETRAINED": False, "AMP": False, "SEED": 0,
        # demo dataset generation (see xray_utils.sources.demo): real films first, so phantoms
        # only of the types no shipped film covers (dental panoramic, finger) or covers thinly
        # (wrist 16, elbow 25, shoulder 53 films); "all" for the 13 non-chest types
        "DEMO_IMAGE_SIZE": 128, "DEMO_PER_TYPE": 200,
        "DEMO_TYPES": ("dental", "finger", "wrist", "elbow", "shoulder"), "DEMO_CHEST": 600,
        "DEMO_PHOTOS": 1000,
        # PHANTOM_CHEST_TRAINING: whether the chest phantoms train Module III (False: they are
        # its generated test films only, and no module trains on them)
        "PHANTOM_CHEST_TRAINING": False,
        # the real films shipped in data/open-films (xray_utils.sources.open_films): mixed into
        # Modules I-II (the paper's 10 % of the 4,247 chest films) and tested on in every
        # module; REAL_CHEST_TRAINING: whether Module III also trains on them
        "OPEN_FILMS": True, "REAL_CHEST_FRACTION": 0.1, "REAL_CHEST_TRAINING": True,
    },
    # sized for one GPU in about an hour (ChestMNIST at 128 px); on a CPU use the stand-in
    # (-p PUBLIC_STAND_IN <a labelled folder of real images>) or -p IMAGE_SIZE 64 with MAX_TRAIN caps
    # (the recipe gives the training settings; the image size is the profile's: ChestMNIST's 128 px)
    "public": {
        "IMAGE_SIZE": 128, "NUM_WORKERS": 8, "DEVICE": "auto", "AMP": True, "PUBLIC_STAND_IN": None,
    },
    "full": {"NUM_WORKERS": 8, "DEVICE": "auto", "AMP": True},
}
#: Profile settings that are not the recipe's and where they come from (``describe_settings``).
PROFILE_SOURCES: Mapping[str, Mapping[str, str]] = {
    "demo": {},  # every demo value that differs from the paper is the demo's own choice
    "public": {"IMAGE_SIZE": paper.SOURCE_CHOICE + " (public profile: ChestMNIST at 128 px)"},
    "full": {},
}
#: Hardware and run settings (not training recipe): where they come from.
RUN_SOURCES: Mapping[str, str] = {
    "AMP": paper.SOURCE_ADDITION + " (mixed precision on a GPU)", "DEVICE": paper.SOURCE_ADDITION,
    "NUM_WORKERS": paper.SOURCE_ADDITION, "MAX_TRAIN": paper.SOURCE_ADDITION,
    "INIT_FROM": paper.SOURCE_ADDITION, "DISTRIBUTED": paper.SOURCE_ADDITION,
}

#: Per-task training overrides of a profile (the ``full`` profile uses the paper's settings).
#: The demo fits each training into 2.5-4 CPU minutes (2 cores), with what was measured to help
#: most in that budget: a one-cycle schedule instead of the paper's plateau schedule (which
#: never fires in a few epochs) with a higher peak rate; Module I at 40 px (measured against
#: 64 px on the same data: 108 s instead of about 190 s of training, real test films and
#: photographs 0.994 instead of 0.982, ImageNet photographs rejected 0.958 instead of 0.916),
#: on all 2,675 training images for 5 epochs (measured against 1,900 of them for 4 epochs: real
#: test films and photographs 0.988 instead of 0.977, ImageNet photographs refused 0.954 instead
#: of 0.938; 161 s of training instead of about 80 s);
#: Module II at 40 px, where 8 epochs beat 4 epochs at 64 px (its 14 body parts differ in
#: shape, not in fine detail) and 10 epochs beat 8 (real test films 0.942 instead of 0.927,
#: balanced 0.70 instead of 0.63; and Module III, which starts from it, 0.79 instead of 0.74
#: mean AUC on the generated test films); Module III at 64 px
#: (a 2 x 2 Grad-CAM grid; any smaller size leaves 1 x 1) starting from Module II's features,
#: since ImageNet weights cannot be downloaded.  Module III on the 1,075 real NIH test films, each
#: setting alone: this one 0.682 mean AUC, from scratch 0.687, the authors' pos-weighted BCE
#: 0.687, LR 1e-3 0.678, 96 px 0.696 for 2.2x the training time: the 2,813 training films, not
#: the settings, hold it near 0.69.
_DEMO_SCHEDULE: Mapping[str, Any] = {"name": "OneCycleLR", "pct_start": 0.25}
_TASK: Mapping[str, Mapping[str, Mapping[str, Any]]] = {
    "demo": {
        "xray_or_not": {"EPOCHS": 5, "LR": 3e-3, "MAX_TRAIN": None, "IMAGE_SIZE": 40,
                        "SCHEDULER": _DEMO_SCHEDULE},
        "xray_type": {"EPOCHS": 10, "LR": 3e-3, "MAX_TRAIN": None, "IMAGE_SIZE": 40,
                      "SCHEDULER": _DEMO_SCHEDULE},
        "chest": {"EPOCHS": 4, "LR": 3e-3, "MAX_TRAIN": None, "IMAGE_SIZE": 64,
                  "SCHEDULER": _DEMO_SCHEDULE, "INIT_FROM": "xray_type"},
    },
    "public": {t: {} for t in paper.TASKS},  # the paper's epochs (10 / 10 / 15)
    "full": {t: {} for t in paper.TASKS},
}


#: Settings a run accepts beyond the profile's and the recipe's keys.
EXTRA_KEYS: tuple[str, ...] = ("RECIPE", "MAX_TRAIN", "INIT_FROM", "DISTRIBUTED", "DIST_PORT",
                               "ALLOW_PRETRAINED_FALLBACK")
#: Values the code implements, for the settings that take a name.
LOSSES: Mapping[str, tuple[str, ...]] = {"xray_or_not": ("cross_entropy",),
                                         "xray_type": ("cross_entropy",),
                                         "chest": ("bce", "bce_pos_weight")}
OPTIMIZERS: tuple[str, ...] = ("Adam", "RAdam")
#: The schedulers the training knows, and when Catalyst steps each: per ``epoch`` or per ``batch``.
SCHEDULERS: Mapping[str, str] = {"ReduceLROnPlateau": "epoch", "OneCycleLR": "batch"}
AUGMENTS: tuple[str, ...] = ("flip_crop", "hv_flip", "none")
NORMALIZES: tuple[str, ...] = ("per_image",)


class SettingsError(ValueError):
    """An override names an unknown setting or has a value the code cannot honour."""


def known_keys(task: str | None = None) -> set[str]:
    """Every setting name :func:`settings` accepts (for ``task``, or for any task)."""
    keys = {"PROFILE", "TASK", *EXTRA_KEYS}
    for profile in PROFILES:
        keys |= set(_COMMON[profile])
        for t in paper.TASKS if task is None else (task,):
            keys |= set(_TASK[profile][t])
    keys |= set(paper.recipe(paper.DEFAULT_RECIPE, task or "chest"))
    return keys


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(key: str, v: Any, low: int, extra: str = "") -> int:
    if not _is_int(v) or v < low:
        raise SettingsError(f"{key} must be an integer >= {low}{extra}; got {v!r}")
    return v


def _number(key: str, v: Any, low: float, inclusive: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < low or (not inclusive and v == low):
        raise SettingsError(f"{key} must be a number {'>=' if inclusive else '>'} {low}; got {v!r}")
    return float(v)


def _choice(key: str, v: Any, choices: tuple[str, ...], why: str = "") -> str:
    lower = {c.lower(): c for c in choices}
    if not isinstance(v, str) or v.lower() not in lower:
        raise SettingsError(f"{key} {v!r} is not supported; choose one of {', '.join(choices)}{why}")
    return lower[v.lower()]


def check_device(value: Any) -> str:
    """The one device check (settings, ``--device`` options, :func:`xray_utils.models.resolve_device`):
    ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, lower-cased; a GPU that this machine lacks is an
    error (:class:`SettingsError`, a ``ValueError``), never a silent fall-back to the CPU."""
    text = str(value).strip().lower()
    if text in ("auto", "cpu"):
        return text
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(text[5:]) if ":" in text else 0
        if count == 0:
            raise SettingsError(f"device {value!r}: no CUDA GPU is available on this machine (torch "
                                "sees no GPU); use DEVICE auto (the GPU when there is one) or cpu")
        if index >= count:
            raise SettingsError(f"device {value!r}: this machine has {count} GPU(s) (cuda:0 ... "
                                f"cuda:{count - 1})")
        return text
    raise SettingsError(f"unknown device {value!r}: DEVICE must be auto, cpu, cuda or cuda:N "
                        "(auto: the GPU when there is one)")


def check_types(types: Sequence[str] | str) -> list[str]:
    """The generated non-chest X-ray types, checked: ``"all"``, or names from ``paper.XRAY_TYPES``
    (a list, or one comma-separated string); ``chest`` is counted by ``n_chest`` instead."""
    if isinstance(types, str):
        types = paper.XRAY_TYPES if types.strip().lower() == "all" else \
            [t.strip() for t in types.split(",") if t.strip()]
    unknown = sorted(set(types) - set(paper.XRAY_TYPES))
    if unknown:
        raise ValueError(f"DEMO_TYPES: unknown X-ray type(s) {unknown}; choose from "
                         f"{', '.join(paper.XRAY_TYPES)} or 'all'")
    return [t for t in paper.XRAY_TYPES if t in types and t != "chest"]


def validate(cfg: Mapping[str, Any], task: str | None = None) -> dict[str, Any]:
    """Check (and normalise) the values of ``cfg``; raises :class:`SettingsError` naming the
    setting, what it accepts and what it got.  Cheap: no data, cache or model is touched."""
    out = dict(cfg)
    g = out.get
    if "RECIPE" in out:
        out["RECIPE"] = _choice("RECIPE", g("RECIPE"), paper.RECIPES)
    for key in ("IMAGE_SIZE", "DEMO_IMAGE_SIZE"):
        if key in out:
            v = _int(key, g(key), 32, " and a multiple of 8 (DenseNet-121 downsamples 32-fold; "
                                      "the image reader needs 32 px)")
            if v % 8:
                raise SettingsError(f"{key} must be a multiple of 8 (e.g. {v - v % 8} or "
                                    f"{v - v % 8 + 8}); got {v}")
    for key, low in (("EPOCHS", 1), ("BATCH_SIZE", 1), ("NUM_WORKERS", 0), ("SEED", 0),
                     ("DEMO_PER_TYPE", 1), ("DEMO_CHEST", 0), ("DEMO_PHOTOS", 0), ("DIST_PORT", 1)):
        if key in out:
            _int(key, g(key), low)
    if g("MAX_TRAIN") is not None:
        _int("MAX_TRAIN", g("MAX_TRAIN"), 0, " (0 or None: all training images)")
    if g("DISTRIBUTED") is not None:
        _int("DISTRIBUTED", g("DISTRIBUTED"), 1)
    if "LR" in out:
        _number("LR", g("LR"), 0, inclusive=False)
    if "WEIGHT_DECAY" in out:
        _number("WEIGHT_DECAY", g("WEIGHT_DECAY"), 0)
    if "BETAS" in out:
        b = g("BETAS")
        if (not isinstance(b, (list, tuple)) or len(b) != 2
                or not all(_is_number(x) and 0 <= x < 1 for x in b)):
            raise SettingsError(f"BETAS must be two numbers in [0, 1), e.g. [0.9, 0.999]; got {b!r}")
        out["BETAS"] = tuple(float(x) for x in b)
    if g("DEMO_TYPES") is not None:
        try:
            out["DEMO_TYPES"] = tuple(check_types(g("DEMO_TYPES")))
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
    for key in ("AMP", "PRETRAINED", "ALLOW_PRETRAINED_FALLBACK", "PHANTOM_CHEST_TRAINING"):
        if g(key) is not None and not isinstance(g(key), bool):
            raise SettingsError(f"{key} must be True or False; got {g(key)!r}")
    if "DEVICE" in out:
        out["DEVICE"] = check_device(g("DEVICE"))
    if "OPTIMIZER" in out:
        out["OPTIMIZER"] = _choice("OPTIMIZER", g("OPTIMIZER"), OPTIMIZERS)
    if "SCHEDULER" in out:
        sch = g("SCHEDULER")
        if not isinstance(sch, Mapping) or "name" not in sch:
            raise SettingsError("SCHEDULER must be a mapping with a name, e.g. "
                                '{"name": "ReduceLROnPlateau", "mode": "min", "factor": 0.1, '
                                f'"patience": 3}}; got {sch!r}')
        name = _choice("SCHEDULER name", sch["name"], tuple(SCHEDULERS))
        sch = {**sch, "name": name}
        if name == "ReduceLROnPlateau":
            missing = [k for k in ("mode", "factor", "patience") if k not in sch]
            if missing:
                raise SettingsError(f"SCHEDULER ReduceLROnPlateau needs {missing}; got {sch!r}")
            if not 0 < float(sch["factor"]) < 1 or not _is_int(sch["patience"]) or sch["patience"] < 0:
                raise SettingsError(f"SCHEDULER: factor must be in (0, 1) and patience an integer "
                                    f">= 0; got {sch!r}")
        out["SCHEDULER"] = sch
    if "LOSS" in out:
        losses = LOSSES[task] if task else tuple(dict.fromkeys(x for v in LOSSES.values() for x in v))
        out["LOSS"] = _choice("LOSS", g("LOSS"), losses,
                              f" (implemented for {task or 'these tasks'}; bce_pos_weight uses the "
                              "authors' per-finding weights)")
    if "AUGMENT" in out:
        out["AUGMENT"] = _choice("AUGMENT", g("AUGMENT"), AUGMENTS,
                                 " (flip_crop: horizontal flip + 85-100 % crop; hv_flip: horizontal "
                                 "and vertical flips, as the authors' code)")
    if "NORMALIZE" in out:
        out["NORMALIZE"] = _choice(
            "NORMALIZE", g("NORMALIZE"), NORMALIZES,
            ": the models read one grayscale channel standardised per image; ImageNet mean/std "
            "(the authors' code, on RGB) is not implemented")
    if g("INIT_FROM") is not None and not isinstance(g("INIT_FROM"), str):
        raise SettingsError("INIT_FROM must be a task name, a checkpoint path or 'none'; "
                            f"got {g('INIT_FROM')!r}")
    return out


def _check_names(overrides: Mapping[str, Any], task: str | None) -> None:
    import difflib

    known = known_keys()
    for key in overrides:
        name = str(key).upper()
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
            raise SettingsError(
                f"unknown setting {key!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
                + f" Known settings: {', '.join(sorted(known))}")


def settings(profile: str, task: str | None = None, **overrides: Any) -> dict[str, Any]:
    """All settings for ``profile`` (and ``task``), with non-``None`` overrides applied.

    Keys are upper-case like the notebook parameters: ``IMAGE_SIZE``, ``EPOCHS``, ``LR``,
    ``BATCH_SIZE``, ``OPTIMIZER``, ``WEIGHT_DECAY``, ``BETAS``, ``SCHEDULER``, ``LOSS``,
    ``AUGMENT``, ``NORMALIZE``, ``RECIPE`` ...  ``RECIPE`` (``paper`` by default, ``published``
    or ``authors_code``; :func:`xray_utils.config.paper.recipe`) gives the training settings of
    the ``full`` and ``public`` profiles; the ``demo`` profile keeps its own fast settings and
    reports the recipe as its reference.  Every override is checked before anything runs:
    unknown names (with close matches), wrong types and out-of-range values raise
    :class:`SettingsError`.
    """
    if profile not in PROFILES:
        raise SettingsError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if task is not None and task not in paper.TASKS:
        raise SettingsError(f"unknown task {task!r}; expected one of {', '.join(paper.TASKS)}")
    given = {str(k).upper(): v for k, v in overrides.items() if v is not None}
    _check_names(given, task)
    recipe_name = _choice("RECIPE", given.get("RECIPE", paper.DEFAULT_RECIPE), paper.RECIPES)
    out: dict[str, Any] = {"PROFILE": profile, "RECIPE": recipe_name}
    base = paper.recipe(recipe_name, task or "xray_or_not")
    out.update({"SEED": base["SEED"][0]})
    if profile == "demo":
        out.update({"IMAGE_SIZE": 64, "BATCH_SIZE": 32, "PRETRAINED": False, "SEED": 0,
                    "AUGMENT": "flip_crop", "NORMALIZE": "per_image"})
    elif task is None:  # profile-wide values (notebooks 00, 04-06): the recipe's, Module I's
        out.update({k: base[k][0] for k in ("IMAGE_SIZE", "BATCH_SIZE", "AUGMENT", "NORMALIZE")})
        out["PRETRAINED"] = None
    out.update(_COMMON[profile])
    if task is not None:
        if profile != "demo":
            out.update({k: dict(v) if isinstance(v, Mapping) else v for k, (v, _) in base.items()
                        if k not in PROFILE_SOURCES[profile]})
        else:
            hp = paper.HYPERPARAMETERS[task]
            out.update({"OPTIMIZER": hp["optimizer"], "LR": hp["lr"], "BETAS": tuple(hp["betas"]),
                        "WEIGHT_DECAY": hp["weight_decay"], "SCHEDULER": dict(hp["scheduler"]),
                        "EPOCHS": hp["epochs"], "LOSS": hp["loss"]})
        out.update({"TASK": task, "MAX_TRAIN": None, "INIT_FROM": None})
        out.update({k: dict(v) if isinstance(v, Mapping) else v
                    for k, v in _TASK[profile][task].items()})
    out.update(given)
    return validate(out, task)
