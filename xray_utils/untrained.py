"""Untrained checkpoints of the three modules whose heads force a route through the chain.

A benchmarking tool (and a test helper): the compute is that of real models, the predictions
mean nothing.  The bench uses them when no trained checkpoints exist; the tests use them to
drive ``diagnose()`` down each route without training.
"""
from __future__ import annotations

from pathlib import Path

import torch

from xray_utils.config import paper
from xray_utils.config.paths import best_checkpoint
from xray_utils.models import build_model, checkpoint_meta, save_checkpoint

#: Where untrained checkpoints written by :func:`write_routed_checkpoints` send every image.
ROUTES: tuple[str, ...] = ("not_xray", "type_only", "chest")


def write_routed_checkpoints(folder: str | Path, route: str = "chest", image_size: int = 32,
                             seed: int = 0, type_only_as: str = "hand",
                             note: str = "untrained, head forces a route",
                             findings_low: bool = False) -> Path:
    """Untrained checkpoints of the three modules in ``<folder>/<task>/best.*``; returns ``folder``.

    The heads of Modules I and II get zero weights and a bias that forces ``route`` for every
    image: ``"not_xray"`` (Module I says photo), ``"type_only"`` (an X-ray of type
    ``type_only_as``) or ``"chest"`` (a chest film, so all three modules run).  Module III keeps
    its random head (P about 0.5 for every finding), or with ``findings_low`` a head scaled down
    with a bias of -5, so that no finding reaches P = 0.5 (about 0.007).  For tests and
    benchmarks: the compute is that of real models, the predictions mean nothing.
    """
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    folder = Path(folder)
    torch.manual_seed(seed)
    forced = {"xray_or_not": "not_xray" if route == "not_xray" else "xray",
              "xray_type": "chest" if route == "chest" else type_only_as}
    for task in paper.TASKS:
        model = build_model(task)
        if task in forced:
            classes = list(paper.classes_for(task))
            with torch.no_grad():
                model.classifier.weight.zero_()
                model.classifier.bias.fill_(-10.0)
                model.classifier.bias[classes.index(forced[task])] = 10.0
        elif findings_low:
            with torch.no_grad():
                model.classifier.weight.mul_(0.01)
                model.classifier.bias.fill_(-5.0)
        meta = checkpoint_meta(task, image_size, training={"note": note})
        save_checkpoint(model, best_checkpoint(folder, task).with_suffix(""), meta)
    return folder
