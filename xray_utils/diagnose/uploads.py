"""What the widget and the app accept as an upload (no heavy imports: the app's header uses it).

An upload travels from the browser to the kernel as one websocket message.  Tornado's default
limit of 10 MiB closes the connection on a bigger file and kills the widget, so the servers the
project starts accept messages up to :data:`SERVER_MESSAGE_MIB` (``python -m xray_utils app``;
JupyterLab through the configuration ``make setup`` installs), and the widget answers a file
above :data:`MAX_UPLOAD_MIB` with a sentence (:func:`too_large`) instead of silence.
"""
from __future__ import annotations

#: The largest upload the widget accepts, in MiB (real DICOM films are often 10-30 MB).
MAX_UPLOAD_MIB = 64
#: The websocket message limit the project's servers are started with, in MiB.
SERVER_MESSAGE_MIB = 1024
#: The formats the reader takes (:mod:`xray_utils.data.imageio`), as the pages state them.
FORMATS = "PNG, JPEG, TIFF, BMP or DICOM"


def server_settings() -> dict:
    """Tornado settings for a server that takes uploads up to :data:`SERVER_MESSAGE_MIB`."""
    return {"websocket_max_message_size": SERVER_MESSAGE_MIB * 2**20}


def too_large(name: str, size: int, limit_mib: float = MAX_UPLOAD_MIB) -> str | None:
    """The sentence for an upload above ``limit_mib`` (None when it is within the limit)."""
    if size <= limit_mib * 2**20:
        return None
    return (f"{name} is {size / 2**20:.1f} MiB, above the {limit_mib:g} MiB this page accepts: "
            f"diagnose it from a terminal instead (python -m xray_utils diagnose {name}), "
            "which has no size limit.")


def write_jupyter_config(folder: str) -> str:
    """Give the Jupyter servers that read config folder ``folder`` the app's upload limit.

    Sets ``ServerApp.tornado_settings`` in ``<folder>/jupyter_server_config.json`` (keeping what
    the file holds already; Jupyter reads its ``.d`` folders for extensions only) and returns the
    file's path.  ``make setup`` calls this for ``.venv/etc/jupyter``, which every JupyterLab
    started from ``.venv`` reads.
    """
    import json
    from pathlib import Path

    path = Path(folder) / "jupyter_server_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    config.setdefault("ServerApp", {}).setdefault("tornado_settings", {}).update(server_settings())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=1) + "\n")
    return str(path)
