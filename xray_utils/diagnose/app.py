"""The diagnosis app: the paper's planned online tool, served locally by ``python -m xray_utils app``.

``notebooks/app/diagnose_app.ipynb`` calls :func:`build_app`, and Voilà serves that notebook as a
standalone page (code cells hidden): a title, the teaching-tool notice, the upload button and
the :class:`~xray_utils.diagnose.widget.DiagnoseDemo` of notebook 06 (verdict, X-ray type,
findings, Grad-CAM heatmaps), backed by the same :class:`~xray_utils.diagnose.diagnoser.Diagnoser`
as the command line, so an upload gets the same answer and the same refusals as
``python -m xray_utils diagnose``.
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

# CHECKPOINTS_ENV, DEVICE_ENV: the environment variables through which ``python -m xray_utils
# app`` configures the page (read in :mod:`xray_utils.config.paths`, like every other one)
from xray_utils.config.paths import APP_CHECKPOINTS_ENV as CHECKPOINTS_ENV
from xray_utils.config.paths import APP_DEVICE_ENV as DEVICE_ENV
from xray_utils.config.paths import app_checkpoints_override, app_device

__all__ = ["CHECKPOINTS_ENV", "DEVICE_ENV", "HOW", "NOTICE", "TITLE", "app_checkpoints_dir",
           "build_app"]

TITLE = "X-ray diagnosis demo"
NOTICE = ("A teaching tool, not a medical device: do not use it to diagnose anyone. The models "
          "of the demo profile learnt from synthetic phantoms; what they say about a real film "
          "shows how far that transfers, nothing more.")
HOW = ("Upload an image (PNG, JPEG, TIFF, BMP or DICOM). Three models answer in turn: is it an "
       "X-ray? which kind? and, for chest films, which of 14 findings, with a Grad-CAM heatmap "
       "of each. Or pick one of the two real DICOM films in the list.")


def app_checkpoints_dir() -> Path:
    """The checkpoints the page uses: ``$XRAY_APP_CHECKPOINTS``, else the demo run's."""
    from xray_utils.diagnose.diagnoser import default_checkpoints_dir

    return app_checkpoints_override() or default_checkpoints_dir()


def build_app(checkpoints_dir: str | os.PathLike | None = None, device: str | None = None) -> Any:
    """The page's widget: header, notice and the diagnosis widget (or a clear error message)."""
    import ipywidgets as w

    from xray_utils.diagnose.diagnoser import CheckpointError, CheckpointsMissing, Diagnoser
    from xray_utils.diagnose.widget import DICOM_FILMS, DiagnoseDemo, dicom_film

    folder = Path(checkpoints_dir) if checkpoints_dir else app_checkpoints_dir()
    device = app_device(device)
    header = w.HTML(
        f"<h2 style='margin:4px 0'>{TITLE}</h2>"
        f"<div class='xray-notice' style='background:#fff8e1;border:1px solid #e0b000;"
        f"padding:6px 10px;margin:4px 0'><b>{html.escape(NOTICE)}</b></div>"
        f"<p style='margin:4px 0'>{html.escape(HOW)}</p>")
    try:
        diagnoser = Diagnoser(folder, device=device)
    except (CheckpointsMissing, CheckpointError, ValueError) as exc:
        error = w.HTML(f"<div class='xray-app-error' style='color:#a00000'><b>The models cannot be "
                       f"loaded:</b> {html.escape(str(exc))}<br>Train them first (make demo), or "
                       f"start the app with --checkpoints DIR.</div>")
        box = w.VBox([header, error])
        box.demo = None
        return box
    choices = {f"{name} · {what}": str(dicom_film(name)) for name, what in DICOM_FILMS.items()}
    demo = DiagnoseDemo(diagnoser, choices)
    footer = w.HTML(f"<p style='font-size:85%;color:#555'>Models: {html.escape(str(folder))} "
                    f"({html.escape(str(diagnoser.device))}). For teaching and research only; "
                    "not a medical device.</p>")
    box = w.VBox([header, demo.widget, footer])
    box.demo = demo
    return box
