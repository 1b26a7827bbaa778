"""Helpers of the X-ray diagnosis tutorial, laid out by the tutorial's stages.

=====================  ====================================================================
room                   what it holds
=====================  ====================================================================
``config``             the paper's facts (``paper``), profiles, folders (``paths``), seeds
``data``               what the model reads: image reader, manifests, cache, loaders, data figures
``sources``            where images come from: the profile's choice, demo and phantoms, the paper's
                       datasets, the public datasets, the downloader, the open films, labelled folders
``models``             DenseNet-121 factory, model input, checkpoints
``train``              the training (``training``), its saved state and lock (``state``), lessons
``evaluate``           predictions, metrics, figures, scoring on real films
``explain``            Grad-CAM, localisation scores, heatmap figures
``diagnose``           the decision rule, ``Diagnoser``/``diagnose()``, the widget
``cli``                ``python -m xray_utils COMMAND``
``untrained``          untrained checkpoints that force a route (tests, benchmarks)
=====================  ====================================================================

The benchmark harness behind ``python -m xray_utils bench`` is not part of the package: it lives in
``tools/bench`` at the top of the repository.

The front door: the names the notebooks use most can be imported from here, e.g.
``from xray_utils import paper, project_paths, settings, train_task``.  They are loaded on
first use, so importing the package itself is cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

#: Exported name -> module that owns it.
_EXPORTS: dict[str, str] = {
    "paper": "xray_utils.config",
    "settings": "xray_utils.config.profiles",
    "project_paths": "xray_utils.config.paths",
    "seed_everything": "xray_utils.config.seeding",
    "read_gray": "xray_utils.data.imageio",
    "make_loaders": "xray_utils.data.loaders",
    "loaders_for": "xray_utils.train.training",
    "show_batch": "xray_utils.data.plots",
    "build_model": "xray_utils.models",
    "load_checkpoint": "xray_utils.models",
    "to_model_input": "xray_utils.models",
    "resolve_device": "xray_utils.models",
    "train_task": "xray_utils.train.training",
    "describe_settings": "xray_utils.train.lessons",
    "read_metrics": "xray_utils.evaluate.record",
    "update_metrics": "xray_utils.evaluate.record",
    "plot_learning_curves": "xray_utils.evaluate.plots",
    "save_figure": "xray_utils.data.plots",
    "Diagnoser": "xray_utils.diagnose.diagnoser",
    "diagnose": "xray_utils.diagnose.diagnoser",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xray_utils' has no attribute {name!r}")
    if name == "paper":
        return importlib.import_module("xray_utils.config.paper")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
