"""``python -m xray_utils export-web``: the three checkpoints and a static page that runs them.

::

    python -m xray_utils export-web [--checkpoints DIR] [--out DIR] [--fp32]

Writes a folder (default ``site/``) that any static host serves: ``index.html``, the page's
JavaScript, ``models.json``, the three ONNX models and onnxruntime-web's files (from
``web/node_modules``: ``npm ci`` in ``web/`` first; ``make web`` does both).  Exit status 0 when
the site was written, 2 when the checkpoints or onnxruntime-web are missing or the export fails
its check against PyTorch.
"""
from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from xray_utils.config.paths import project_paths
    from xray_utils.models import CheckpointInvalid
    from xray_utils.web.export import WebExportError, export_site

    checkpoints = args.checkpoints or project_paths("demo").checkpoints_dir
    try:
        export_site(checkpoints, args.out, fp16=not args.fp32, ort_dist=args.ort_dir)
    except (WebExportError, CheckpointInvalid, FileNotFoundError) as exc:
        print(f"export-web: {exc}")
        return 2
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export-web", help="export the three models to ONNX with a static page that runs them")
    p.add_argument("--checkpoints", metavar="DIR", default=None,
                   help="folder with xray_or_not/, xray_type/ and chest/ checkpoints "
                        "(default: the demo run's, runs/demo/checkpoints)")
    p.add_argument("--out", metavar="DIR", default="site",
                   help="the folder to write the site to (default: site)")
    p.add_argument("--fp32", action="store_true",
                   help="keep float32 weights (default: float16 when the outputs stay within "
                        "tolerance, which halves the download)")
    p.add_argument("--ort-dir", metavar="DIR", default=None,
                   help="onnxruntime-web's dist folder (default: web/node_modules/onnxruntime-web/dist)")
    p.set_defaults(func=run)
