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


#: A closed page's kernel is shut down by the page itself (its beforeunload request); one whose
#: page vanished without saying so (a crash, a phone that dropped the tab) goes once it has had
#: no page and nothing to do for this long, in seconds (checked every CULL_INTERVAL_S).
CULL_IDLE_S = 30
CULL_INTERVAL_S = 10


def server_settings() -> dict:
    """Tornado settings of the app's server (also what ``make setup`` gives JupyterLab).

    ``websocket_max_message_size``: an upload travels to the kernel as one websocket message;
    Tornado's default of 10 MiB closes the connection on a bigger film and kills the widget.
    ``disable_check_xsrf``: Voila's page shuts its kernel down when it closes with a POST that
    carries no XSRF token (Voila issue #1458: the server answers 403 and the kernel, about 1 GB,
    stays); on this local server that request needs the kernel's random id, which no other site
    knows, and kernels run no code sent from a page (Voila passes only widget messages).
    """
    from xray_utils.diagnose import uploads

    return {**uploads.server_settings(), "disable_check_xsrf": True}


def voila_command(args: argparse.Namespace) -> list[str]:
    """The Voila command line that serves the app notebook."""
    cmd = [sys.executable, "-m", "voila", str(APP_NOTEBOOK), f"--port={args.port}",
           f"--Voila.ip={args.host}", "--Voila.port_retries=0",
           f"--Voila.tornado_settings={server_settings()!r}",
           # the page's header shows as soon as its cell ran, not after the models loaded
           "--VoilaConfiguration.progressive_rendering=True",
           f"--MappingKernelManager.cull_idle_timeout={CULL_IDLE_S}",
           f"--MappingKernelManager.cull_interval={CULL_INTERVAL_S}"]
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
