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

The front door: every name the chapters use can be imported from here, e.g.
``from xray_utils import paper, project_paths, settings, train_task``, and so can the modules a
chapter reads as a whole (``from xray_utils import gradcam as gc``); each chapter imports this
way only.  They are loaded on first use, so importing the package itself is cheap.  ``diagnose()``
is not one of them: ``xray_utils.diagnose`` is the subpackage (once it is imported, the name would
stand for it), so the function is ``Diagnoser(...)`` or ``xray_utils.diagnose.diagnoser.diagnose``.
"""
from __future__ import annotations

import importlib
from typing import Any

#: Exported name -> module that owns it.
_EXPORTS: dict[str, str] = {
    "settings": "xray_utils.config.profiles",
    "project_paths": "xray_utils.config.paths",
    "seed_everything": "xray_utils.config.seeding",
    "load_profile_images": "xray_utils.sources.profile",
    "write_profile_manifests": "xray_utils.sources.profile",
    "sample_dicom_films": "xray_utils.sources.demo",
    "is_real": "xray_utils.sources.open_films",
    "is_generated": "xray_utils.sources.demo",
    "read_gray": "xray_utils.data.imageio",
    "decode_boxes": "xray_utils.data.manifests",
    "read_task_manifest": "xray_utils.data.manifests",
    "make_loaders": "xray_utils.data.loaders",
    "show_batch": "xray_utils.data.plots",
    "finding_counts": "xray_utils.data.plots",
    "findings_gallery": "xray_utils.data.plots",
    "phantom_gallery": "xray_utils.data.plots",
    "split_sizes": "xray_utils.data.plots",
    "type_counts_vs_table_i": "xray_utils.data.plots",
    "type_gallery": "xray_utils.data.plots",
    "save_figure": "xray_utils.data.plots",
    "build_model": "xray_utils.models",
    "load_checkpoint": "xray_utils.models",
    "predict_probabilities": "xray_utils.models",
    "to_model_input": "xray_utils.models",
    "resolve_device": "xray_utils.models",
    "loaders_for": "xray_utils.train.training",
    "train_task": "xray_utils.train.training",
    "describe_settings": "xray_utils.train.lessons",
    "predict_split": "xray_utils.evaluate.predictions",
    "read_metrics": "xray_utils.evaluate.record",
    "update_metrics": "xray_utils.evaluate.record",
    "plot_learning_curves": "xray_utils.evaluate.plots",
    "figure_path": "xray_utils.evaluate.plots",
    "format_ci": "xray_utils.evaluate.plots",
    "Diagnoser": "xray_utils.diagnose.diagnoser",
    "measure_latency": "xray_utils.diagnose.diagnoser",
    "DICOM_FILMS": "xray_utils.diagnose.widget",
    "DiagnoseDemo": "xray_utils.diagnose.widget",
    "dataset_test_films": "xray_utils.diagnose.widget",
    "dicom_film": "xray_utils.diagnose.widget",
    "plot_diagnosis": "xray_utils.diagnose.widget",
    "sample_images": "xray_utils.diagnose.widget",
}
#: Exported module name -> the module (for chapters that read a module as a whole).
_MODULES: dict[str, str] = {
    "paper": "xray_utils.config.paper",
    "public": "xray_utils.sources.public",
    "manifests": "xray_utils.data.manifests",
    "lessons": "xray_utils.train.lessons",
    "predictions": "xray_utils.evaluate.predictions",
    "metrics": "xray_utils.evaluate.metrics",
    "evaluation_plots": "xray_utils.evaluate.plots",
    "by_origin": "xray_utils.evaluate.by_origin",
    "gradcam": "xray_utils.explain.gradcam",
    "localisation": "xray_utils.explain.localisation",
    "heatmap_plots": "xray_utils.explain.plots",
    "chain": "xray_utils.diagnose.rule",
}

__all__ = sorted({*_EXPORTS, *_MODULES})


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'xray_utils' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_MODULES))
