"""``python -m xray_utils train TASK``: one training outside the notebooks (e.g. multi-GPU)."""
from __future__ import annotations

import json

from xray_utils.config import paper


def main(args) -> int:
    """``python -m xray_utils train TASK``: one training outside the notebooks (e.g. multi-GPU)."""
    from xray_utils.cli.run import parse_value
    from xray_utils.config.paths import project_paths
    from xray_utils.config.profiles import settings
    from xray_utils.train.training import train_task

    overrides = {k: parse_value(v) for k, v in (args.param or [])}
    paths = project_paths(args.profile, overrides.pop("DATA_DIR", None),
                          overrides.pop("RUN_DIR", None), overrides.pop("FIGURES_DIR", None)).ensure()
    cfg = settings(args.profile, args.task, **overrides)
    manifest = paths.manifest(args.task)
    if not manifest.is_file():
        print(f"task manifest not found: {manifest}. Run notebook 00 first "
              f"(python -m xray_utils run --profile {args.profile} --only 00).")
        return 2
    result = train_task(args.task, manifest, paths, cfg)
    print(json.dumps(result.summary(), indent=2))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train one module outside the notebooks "
                                            "(use -p DISTRIBUTED N for N processes)")
    p.add_argument("task", choices=paper.TASKS)
    p.add_argument("--profile", default="demo", choices=("demo", "public", "full"))
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"))
    p.set_defaults(func=main)
