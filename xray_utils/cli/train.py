"""``python -m xray_utils train TASK``: one training outside the notebooks (e.g. multi-GPU)."""
from __future__ import annotations

import json

from xray_utils.config import paper
from xray_utils.config.profiles import DEFAULT_PROFILE, PROFILES


def run(args) -> int:
    """``python -m xray_utils train TASK``: one training outside the notebooks (e.g. multi-GPU)."""
    from xray_utils.cli.run import parse_value
    from xray_utils.config.paths import project_paths
    from xray_utils.config.profiles import SettingsError, settings

    overrides = {k: parse_value(v) for k, v in (args.param or [])}
    folders = [overrides.pop(k, None) for k in ("DATA_DIR", "RUN_DIR", "FIGURES_DIR")]
    try:  # every setting checked before any data, cache or model work
        cfg = settings(args.profile, args.task, **overrides)
    except SettingsError as exc:
        print(f"refused: {exc}")
        return 2
    from xray_utils.train.training import train_task

    paths = project_paths(args.profile, *folders).ensure()
    manifest = paths.manifest(args.task)
    if not manifest.is_file():
        print(f"task manifest not found: {manifest}. Run notebook 00 first "
              f"(python -m xray_utils run --profile {args.profile} --only 00).")
        return 2
    from xray_utils.train.state import TrainingRefused

    try:
        result = train_task(paths, cfg)
    except TrainingRefused as exc:  # a locked run folder, a saved state that does not fit
        print(f"refused: {exc}")
        return 2
    print(json.dumps(result.summary(), indent=2))
    return 0


def add_parser(subparsers) -> None:
    import argparse
    import textwrap

    from xray_utils.config.profiles import known_keys

    keys = textwrap.fill(", ".join(sorted((known_keys() | {"DATA_DIR", "RUN_DIR", "FIGURES_DIR"})
                                          - {"PROFILE", "TASK"})), 79,
                         initial_indent="  ", subsequent_indent="  ")
    p = subparsers.add_parser(
        "train", help="train one module outside the notebooks "
                      "(use -p DISTRIBUTED N for N processes)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Train one module (TASK) as its training chapter (01-03) does, from the task "
            "manifest chapter 00 wrote, into <run>/checkpoints/TASK/; a training interrupted "
            "with the same settings resumes. -p KEY VALUE overrides a setting of the profile; "
            "every key is checked before any work.", 79) + "\n\nKeys:\n" + keys)
    p.add_argument("task", choices=paper.TASKS)
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES)
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override a setting (keys above), e.g. -p EPOCHS 2")
    p.set_defaults(func=run)
