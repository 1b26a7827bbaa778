"""``python -m xray_utils app``: the diagnosis demo as a standalone page (Voilà), on 127.0.0.1.

::

    python -m xray_utils app [--checkpoints DIR] [--host 127.0.0.1] [--port 8866] [--device auto]

Serves ``notebooks/app/diagnose_app.ipynb`` with Voilà: upload an image, get the verdict, the
X-ray type, the chest findings and their Grad-CAM heatmaps, from the same ``Diagnoser`` (and so
the same refusals) as ``python -m xray_utils diagnose``.  A teaching tool, not a medical device.
The process becomes the Voilà server (stop it with Ctrl-C).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from xray_utils.config import paper
from xray_utils.config.paths import best_checkpoint
from xray_utils.diagnose.app import CHECKPOINTS_ENV, DEVICE_ENV

APP_NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "app" / "diagnose_app.ipynb"
PROG = "python -m xray_utils app"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``app`` sub-command."""
    from xray_utils.diagnose.diagnoser import default_checkpoints_dir

    parser = subparsers.add_parser(
        "app", help="serve the diagnosis demo as a page on 127.0.0.1 (Voila)",
        description="Serve the diagnosis demo (upload, verdict, type, findings, heatmaps) as a "
                    "standalone page. A teaching tool, not a medical device.")
    parser.add_argument("--checkpoints", metavar="DIR", default=None,
                        help=f"folder with the three checkpoints (default: {default_checkpoints_dir()})")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8866, help="port (default 8866)")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda ...")
    parser.add_argument("--open", action="store_true", help="open the page in a browser")
    parser.set_defaults(func=run)
    return parser


def voila_command(args: argparse.Namespace) -> list[str]:
    """The Voilà command line that serves the app notebook."""
    cmd = [sys.executable, "-m", "voila", str(APP_NOTEBOOK), f"--port={args.port}",
           f"--Voila.ip={args.host}", "--Voila.port_retries=0"]
    if not args.open:
        cmd.append("--no-browser")
    return cmd


def run(args: argparse.Namespace) -> int:
    """Check the checkpoints, then replace this process with the Voilà server."""
    from xray_utils.diagnose.diagnoser import default_checkpoints_dir

    folder = Path(args.checkpoints).expanduser() if args.checkpoints else default_checkpoints_dir()
    if not (folder.is_dir() and all(best_checkpoint(folder, t).is_file()
                                    for t in paper.TASKS)):
        print(f"{PROG}: error: no trained checkpoints in {folder} (xray_or_not/, xray_type/, "
              "chest/ with best.json). Run notebooks 01-03 (make demo) first, or pass "
              "--checkpoints <run_dir>/checkpoints.", file=sys.stderr)
        return 2
    try:
        import voila  # noqa: F401
    except ImportError:
        print(f"{PROG}: error: voila is not installed: pip install -c requirements/constraints.txt "
              "-e . (or make setup)", file=sys.stderr)
        return 2
    env = {**os.environ, CHECKPOINTS_ENV: str(folder.resolve()), DEVICE_ENV: args.device}
    cmd = voila_command(args)
    print(f"Serving the diagnosis app on http://{args.host}:{args.port}/ (Ctrl-C to stop). "
          "A teaching tool, not a medical device.", flush=True)
    os.execve(cmd[0], cmd, env)
    return 0  # pragma: no cover - execve does not return
