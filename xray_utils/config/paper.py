"""The paper's facts, in one place.

Reproduced paper: an end-to-end deep learning framework for X-ray image diagnosis (ISSAI):
DenseNet-121 pipeline X-ray or not -> X-ray type -> chest abnormality, explained with Grad-CAM.
Every class list, table and hyperparameter that notebooks, tests and training read lives here;
nothing else in the project types these numbers again.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

CITATION = (
    "ISSAI (Nazarbayev University): an end-to-end deep learning framework for X-ray image "
    "diagnosis with DenseNet-121 and Grad-CAM (arXiv preprint; published at EMBC 2020, IEEE "
    "Xplore document 9175208); models at https://issai.nu.edu.kz/xray; chest split and training "
    "code released in the IS2AI/Chest-X-ray-module repository (commit "
    "e92af4aeaf25e22065838d57074576c0d6e7dc80, MIT)."
)
#: The repository commit whose code and split lists the facts below were read from.
AUTHORS_COMMIT = "e92af4aeaf25e22065838d57074576c0d6e7dc80"
#: The dental panoramic set of Table I: reference [16] of the paper.
DENTAL_REFERENCE = (
    "[16] G. Jader, J. Fontineli, M. Ruiz, K. Abdalla, M. Pithon, L. Oliveira, \"Deep instance "
    "segmentation of teeth in panoramic X-ray images\", SIBGRAPI 2018 (UFBA-UESC dental images); "
    "obtained by e-mail from an institutional address, under terms that forbid redistribution."
)

#: The three tasks (modules I-III) and their short names used everywhere (folders, JSON keys).
TASKS: tuple[str, ...] = ("xray_or_not", "xray_type", "chest")

#: Module I classes, in the order of Table II (row 0 = X-ray).
XRAY_OR_NOT_CLASSES: tuple[str, ...] = ("xray", "not_xray")

#: Module II: the 14 X-ray types of Table I, in the table's order.
XRAY_TYPES: tuple[str, ...] = (
    "spine", "elbow", "finger", "forearm", "hand", "wrist", "knee",
    "foot", "ankle", "hip", "humerus", "shoulder", "dental", "chest",
)

#: Table I: number of samples per X-ray type (total 54,525).
TABLE_I: Mapping[str, int] = MappingProxyType({
    "spine": 609, "elbow": 5396, "finger": 5567, "forearm": 2126, "hand": 6003,
    "wrist": 10411, "knee": 534, "foot": 348, "ankle": 322, "hip": 94,
    "humerus": 1560, "shoulder": 9054, "dental": 1500, "chest": 11001,
})
TABLE_I_TOTAL = 54525

#: Module III: the 14 ChestX-ray14 findings, in the order of Table III (and of the authors'
#: released split files).
FINDINGS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
)
NO_FINDING = "No Finding"

#: Table II: confusion matrix of module I on its test set, rows = actual, cols = predicted,
#: order (X-ray, ImageNet).
TABLE_II: tuple[tuple[int, int], tuple[int, int]] = ((4712, 5), (72, 4928))

#: Table III: per-finding test AUC of the ChestX-ray14 paper, CheXNet and the reproduced paper
#: (``paper``: the preprint's "Our Results"; ``published``: the EMBC 2020 version's).
TABLE_III: Mapping[str, Mapping[str, float]] = MappingProxyType({
    "Atelectasis": {"ChestX-ray14": 0.71, "CheXNet": 0.80, "paper": 0.81, "published": 0.81},
    "Cardiomegaly": {"ChestX-ray14": 0.80, "CheXNet": 0.92, "paper": 0.91, "published": 0.91},
    "Effusion": {"ChestX-ray14": 0.78, "CheXNet": 0.86, "paper": 0.87, "published": 0.88},
    "Infiltration": {"ChestX-ray14": 0.60, "CheXNet": 0.73, "paper": 0.72, "published": 0.70},
    "Mass": {"ChestX-ray14": 0.70, "CheXNet": 0.86, "paper": 0.85, "published": 0.84},
    "Nodule": {"ChestX-ray14": 0.67, "CheXNet": 0.78, "paper": 0.78, "published": 0.77},
    "Pneumonia": {"ChestX-ray14": 0.63, "CheXNet": 0.76, "paper": 0.74, "published": 0.75},
    "Pneumothorax": {"ChestX-ray14": 0.80, "CheXNet": 0.88, "paper": 0.90, "published": 0.88},
    "Consolidation": {"ChestX-ray14": 0.70, "CheXNet": 0.79, "paper": 0.79, "published": 0.81},
    "Edema": {"ChestX-ray14": 0.83, "CheXNet": 0.88, "paper": 0.91, "published": 0.89},
    "Emphysema": {"ChestX-ray14": 0.81, "CheXNet": 0.93, "paper": 0.92, "published": 0.93},
    "Fibrosis": {"ChestX-ray14": 0.76, "CheXNet": 0.80, "paper": 0.81, "published": 0.83},
    "Pleural_Thickening": {"ChestX-ray14": 0.70, "CheXNet": 0.80, "paper": 0.79, "published": 0.79},
    "Hernia": {"ChestX-ray14": 0.76, "CheXNet": 0.91, "paper": 0.99, "published": 0.96},
})

#: The columns of :data:`TABLE_III` that are the reproduced paper's own results.
TABLE_III_PAPER_COLUMNS: Mapping[str, str] = MappingProxyType({
    "paper": "paper (preprint)", "published": "paper (EMBC 2020)"})
#: Mean AUC of the published column (its conclusion rounds it to 0.84).
TABLE_III_PUBLISHED_MEAN = 0.839

#: Headline results as printed in the paper (accuracy).  Note: Table II's own matrix gives
#: (4712 + 4928) / 9717 = 0.992, not the 0.987 printed; ``table_ii_accuracy()`` computes it.
PAPER_RESULTS: Mapping[str, float] = MappingProxyType({
    "xray_or_not_accuracy": 0.987,
    "xray_type_accuracy": 0.976,
    "chest_accuracy": 0.947,
    "end_to_end_accuracy": 0.91,
})

#: Data rules of Section III.
SPLIT_FRACTIONS: Mapping[str, float] = MappingProxyType({"train": 0.7, "val": 0.2, "test": 0.1})
CHEST_FRACTION_MODULES_I_II = 0.10
IMAGE_SIZE = 224
AUTHORS_CHEST_SPLIT_SIZES: Mapping[str, int] = MappingProxyType(
    {"train": 78468, "val": 11219, "test": 22433})

_SCHEDULER = {"name": "ReduceLROnPlateau", "mode": "min", "factor": 0.1, "patience": 3}

#: Training settings per module as the preprint states them, completed where it is silent
#: (:data:`RECIPE_SOURCES` says which value comes from where).  The preprint does not say
#: how Modules I-II start: training them from random weights ("from scratch") is our
#: assumption, as are the loss of Modules I-II (cross-entropy, the usual one for a softmax
#: classifier) and RAdam's betas.
HYPERPARAMETERS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "xray_or_not": {
        "optimizer": "Adam", "lr": 1e-3, "betas": (0.9, 0.999), "weight_decay": 1e-5,
        "scheduler": dict(_SCHEDULER), "epochs": 10, "loss": "cross_entropy",
        "pretrained": False, "image_size": IMAGE_SIZE,
    },
    "xray_type": {
        "optimizer": "Adam", "lr": 1e-3, "betas": (0.9, 0.999), "weight_decay": 1e-5,
        "scheduler": dict(_SCHEDULER), "epochs": 10, "loss": "cross_entropy",
        "pretrained": False, "image_size": IMAGE_SIZE,
    },
    "chest": {
        "optimizer": "RAdam", "lr": 1e-4, "betas": (0.9, 0.999), "weight_decay": 3e-4,
        "scheduler": dict(_SCHEDULER), "epochs": 15, "loss": "bce",
        "pretrained": True, "image_size": IMAGE_SIZE,
    },
})

# ----------------------------------------------------------------------------- recipes
#: Three readings of "the paper's settings", chosen with one parameter (``-p RECIPE ...``):
#:
#: * ``paper``: the arXiv preprint (the seed of this project), the default;
#: * ``published``: the EMBC 2020 version: Module III trains 20 epochs, the rest as the preprint;
#: * ``authors_code``: what the authors' training script does (IS2AI/Chest-X-ray-module at
#:   :data:`AUTHORS_COMMIT`; Module III only, Modules I-II as the preprint).
RECIPES: tuple[str, ...] = ("paper", "published", "authors_code")
DEFAULT_RECIPE = "paper"
#: Where a setting's value comes from (the ``source`` column of ``describe_settings``).
SOURCE_PAPER = "paper"
SOURCE_PUBLISHED = "published"
SOURCE_AUTHORS = "authors' code"
SOURCE_ASSUMPTION = "our assumption"
SOURCE_ADDITION = "our addition"
SOURCE_CHOICE = "our choice"

#: The authors' per-finding BCE ``pos_weight`` (Table III order, as in their train.py).
AUTHORS_POS_WEIGHT: tuple[float, ...] = (10, 100, 30, 8, 40, 40, 330, 140, 35, 155, 110, 250, 155, 200)
#: What the authors' code does for Module III: ``train.py``, ``transforms.py`` and ``model.py`` of the
#: IS2AI/Chest-X-ray-module repository at :data:`AUTHORS_COMMIT` (MIT).
AUTHORS_CODE: Mapping[str, Any] = MappingProxyType({
    "epochs": 20, "batch_size": 64, "optimizer": "RAdam", "lr": 1e-4, "weight_decay": 3e-4,
    "scheduler": {"name": "ReduceLROnPlateau", "mode": "min", "factor": 0.25, "patience": 2},
    "loss": "bce_pos_weight", "pos_weight": AUTHORS_POS_WEIGHT, "image_size": 256,
    "augment": "hv_flip", "normalize": "imagenet", "input": "RGB", "pretrained": True, "seed": 42,
    "validation_batch_size": 2,
})
#: The published version's change to the preprint's settings.
PUBLISHED_CHANGES: Mapping[str, Mapping[str, Any]] = MappingProxyType({"chest": {"epochs": 20}})


def recipe(name: str, task: str) -> dict[str, tuple[Any, str]]:
    """``{SETTING: (value, source)}`` of one recipe for one module: every training setting the
    code uses, with where its value comes from (paper / published / authors' code / our
    assumption / our addition / our choice).  Profiles add their hardware settings on top.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown RECIPE {name!r}; choose one of {', '.join(RECIPES)}")
    classes_for(task)
    hp = HYPERPARAMETERS[task]
    chest = task == "chest"
    p, a = SOURCE_PAPER, SOURCE_ASSUMPTION
    out: dict[str, tuple[Any, str]] = {
        "OPTIMIZER": (hp["optimizer"], p),
        "LR": (hp["lr"], p),
        "BETAS": (tuple(hp["betas"]), a if chest else p),
        "WEIGHT_DECAY": (hp["weight_decay"], p),
        "SCHEDULER": (dict(hp["scheduler"]), p),
        "EPOCHS": (hp["epochs"], p),
        "LOSS": (hp["loss"], p if chest else a),
        # Modules I-II: the preprint does not say; from scratch is our assumption
        "PRETRAINED": (hp["pretrained"], p if chest else a),
        # Modules I-II: "rescaled to 224x224"; Module III: not stated, the same assumed
        "IMAGE_SIZE": (hp["image_size"], a if chest else p),
        "BATCH_SIZE": (32, a),
        "AUGMENT": ("flip_crop", SOURCE_ADDITION),
        "NORMALIZE": ("per_image", SOURCE_CHOICE),
        "SEED": (0, SOURCE_ADDITION),
    }
    if name == "published":
        for key, value in PUBLISHED_CHANGES.get(task, {}).items():
            out[key.upper()] = (value, SOURCE_PUBLISHED)
    if name == "authors_code" and chest:
        c, ac = AUTHORS_CODE, SOURCE_AUTHORS
        out.update({
            "EPOCHS": (c["epochs"], ac), "BATCH_SIZE": (c["batch_size"], ac),
            "SCHEDULER": (dict(c["scheduler"]), ac), "LOSS": (c["loss"], ac),
            "IMAGE_SIZE": (c["image_size"], ac), "AUGMENT": (c["augment"], ac),
            "PRETRAINED": (c["pretrained"], ac), "SEED": (c["seed"], ac),
            "BETAS": ((0.9, 0.999), ac),  # torch-optimizer RAdam's defaults, not changed there
        })
        # ImageNet mean/std needs RGB input; our models read one grayscale channel and each
        # image is standardised on its own -- declared here, not silently changed
        out["NORMALIZE"] = ("per_image", SOURCE_CHOICE + " (authors' code: ImageNet mean/std on RGB)")
    return out


def classes_for(task: str) -> tuple[str, ...]:
    """Class names of a task, in the order of the model's outputs."""
    try:
        return {"xray_or_not": XRAY_OR_NOT_CLASSES, "xray_type": XRAY_TYPES,
                "chest": FINDINGS}[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}") from None


def is_multilabel(task: str) -> bool:
    """Module III is multi-label (sigmoid per finding); I and II are softmax classifiers."""
    classes_for(task)
    return task == "chest"


def table_ii_accuracy() -> float:
    """Accuracy implied by Table II's confusion matrix (0.992, though the paper prints 0.987)."""
    (tp, fn), (fp, tn) = TABLE_II
    return (tp + tn) / (tp + fn + fp + tn)
