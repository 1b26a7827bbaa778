"""The diagnosis app: the paper's planned online tool, served locally by ``python -m xray_utils app``.

``notebooks/app/diagnose_app.ipynb`` calls :func:`build_app`, and Voilà serves that notebook as a
standalone page (code cells hidden): :func:`header` first (title, what the page does, formats
and size limit, the teaching-tool notice; shown at once, before the models load), then the
upload button and
the :class:`~xray_utils.diagnose.widget.DiagnoseDemo` of notebook 06 (verdict, X-ray type,
findings, Grad-CAM heatmaps), backed by the same :class:`~xray_utils.diagnose.diagnoser.Diagnoser`
as the command line, so an upload gets the same answer and the same refusals as
``python -m xray_utils diagnose``.
"""
from __future__ import annotations

import html
import os
import sys
from pathlib import Path
from typing import Any

# CHECKPOINTS_ENV, DEVICE_ENV: the environment variables through which ``python -m xray_utils
# app`` configures the page (read in :mod:`xray_utils.config.paths`, like every other one)
from xray_utils.config.paths import APP_CHECKPOINTS_ENV as CHECKPOINTS_ENV
from xray_utils.config.paths import APP_DEVICE_ENV as DEVICE_ENV
from xray_utils.config.paths import app_checkpoints_override, app_device

__all__ = ["CHECKPOINTS_ENV", "DEVICE_ENV", "HOW", "NOTICE", "TITLE", "app_checkpoints_dir",
           "build_app", "header"]

TITLE = "X-ray diagnosis demo"
NOTICE = ("A teaching tool, not a medical device: never use what it says for a decision about "
          "anyone. Its small models learnt from generated phantoms plus openly licensed real "
          "films (NIH ChestX-ray14 chest films, FracAtlas and other body-part films) at 40-64 "
          "pixels; what they say about your film shows how the system works, not a diagnosis.")


def how_text() -> str:
    """What the page does, the formats and the size limit (from the widget's own constants)."""
    from xray_utils.diagnose.uploads import FORMATS, MAX_UPLOAD_MIB

    return (f"Upload an X-ray image ({FORMATS}, up to {MAX_UPLOAD_MIB} MiB) or pick one of the "
            "two real DICOM films in the list. Three models answer in turn: is it an X-ray? "
            "which kind? and, for chest films, how probable each of 14 findings is, with a "
            "heatmap of where the model looked. Nothing leaves this computer.")


HOW = how_text()


def header_html() -> str:
    """The page's title, what it does, formats and size limit, and the notice (HTML)."""
    return (f"<div class='xray-header'><h1 style='margin:4px 0;font-size:1.6em'>{TITLE}</h1>"
            f"<p style='margin:4px 0'>{html.escape(HOW)}</p>"
            f"<div class='xray-notice' style='background:#fff8e1;border:1px solid #e0b000;"
            f"padding:6px 10px;margin:4px 0'><b>{html.escape(NOTICE)}</b></div>"
            f"<p class='xray-loading' style='margin:4px 0;color:#555'>The models load when the "
            f"page opens: the first answer appears below within about a minute.</p></div>")


def header() -> Any:
    """:func:`header_html` as a plain output: it shows at once, before any widget or model loads."""
    from IPython.display import HTML

    return HTML(header_html())


def app_checkpoints_dir() -> Path:
    """The checkpoints the page uses: ``$XRAY_APP_CHECKPOINTS``, else the demo run's."""
    from xray_utils.diagnose.diagnoser import default_checkpoints_dir

    return app_checkpoints_override() or default_checkpoints_dir()


def build_app(checkpoints_dir: str | os.PathLike | None = None, device: str | None = None) -> Any:
    """The diagnosis widget (or a clear message when the models cannot be loaded)."""
    import ipywidgets as w

    from xray_utils.diagnose.diagnoser import CheckpointError, CheckpointsMissing, Diagnoser
    from xray_utils.diagnose.widget import DICOM_FILMS, DiagnoseDemo, dicom_film

    folder = Path(checkpoints_dir) if checkpoints_dir else app_checkpoints_dir()
    device = app_device(device)
    try:
        diagnoser = Diagnoser(folder, device=device)
    except (CheckpointsMissing, CheckpointError, ValueError) as exc:
        # the visitor gets a sentence; the reason (with its paths) goes to the server's log
        print(f"diagnosis app: the models cannot be loaded: {exc}", file=sys.stderr)
        error = w.HTML("<div class='xray-app-error' style='color:#a00000'><b>The models cannot "
                       "be loaded</b>, so this page cannot diagnose anything yet. Whoever runs it "
                       "finds the reason in the server's log (train the models first with make "
                       "demo, or start the app with --checkpoints DIR).</div>")
        box = w.VBox([error])
        box.demo = None
        return box
    choices = {f"{name} · {what}": str(dicom_film(name)) for name, what in DICOM_FILMS.items()}
    demo = DiagnoseDemo(diagnoser, choices)
    footer = w.HTML("<p style='font-size:85%;color:#555'>For teaching and research only; "
                    "not a medical device.</p>")
    box = w.VBox([demo.widget, footer], layout=w.Layout(width="100%"))
    box.demo = demo
    return box
