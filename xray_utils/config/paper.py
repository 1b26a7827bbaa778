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
    "diagnosis with DenseNet-121 and Grad-CAM; models at https://issai.nu.edu.kz/xray; chest "
    "split released in the IS2AI/Chest-X-ray-module repository (commit e92af4a, MIT)."
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

#: Table III: per-finding test AUC of the ChestX-ray14 paper, CheXNet and the reproduced paper.
TABLE_III: Mapping[str, Mapping[str, float]] = MappingProxyType({
    "Atelectasis": {"ChestX-ray14": 0.71, "CheXNet": 0.80, "paper": 0.81},
    "Cardiomegaly": {"ChestX-ray14": 0.80, "CheXNet": 0.92, "paper": 0.91},
    "Effusion": {"ChestX-ray14": 0.78, "CheXNet": 0.86, "paper": 0.87},
    "Infiltration": {"ChestX-ray14": 0.60, "CheXNet": 0.73, "paper": 0.72},
    "Mass": {"ChestX-ray14": 0.70, "CheXNet": 0.86, "paper": 0.85},
    "Nodule": {"ChestX-ray14": 0.67, "CheXNet": 0.78, "paper": 0.78},
    "Pneumonia": {"ChestX-ray14": 0.63, "CheXNet": 0.76, "paper": 0.74},
    "Pneumothorax": {"ChestX-ray14": 0.80, "CheXNet": 0.88, "paper": 0.90},
    "Consolidation": {"ChestX-ray14": 0.70, "CheXNet": 0.79, "paper": 0.79},
    "Edema": {"ChestX-ray14": 0.83, "CheXNet": 0.88, "paper": 0.91},
    "Emphysema": {"ChestX-ray14": 0.81, "CheXNet": 0.93, "paper": 0.92},
    "Fibrosis": {"ChestX-ray14": 0.76, "CheXNet": 0.80, "paper": 0.81},
    "Pleural_Thickening": {"ChestX-ray14": 0.70, "CheXNet": 0.80, "paper": 0.79},
    "Hernia": {"ChestX-ray14": 0.76, "CheXNet": 0.91, "paper": 0.99},
})

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

#: Training settings per module, exactly as the paper states them (the `full` profile).
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

#: Known differences between the paper and the authors' released code (we follow the paper).
AUTHORS_CODE_DIFFERENCES = (
    "The released chest training code weights the BCE loss per class (pos_weight) and trains "
    "20 epochs; the paper states plain BCE and 15 epochs."
)


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
