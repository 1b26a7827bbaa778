"""``python -m xray_utils transfer``: score Modules I and II on a labelled folder of films."""
from __future__ import annotations

import json
from pathlib import Path

from xray_utils.evaluate.transfer import format_transfer_report, held_out_files, score_transfer
from xray_utils.sources.dataset_spec import DatasetError


def run(args) -> int:
    try:
        only = (set().union(*(held_out_files(m) for m in args.test_split_of))
                if args.test_split_of else None)
        scores = score_transfer(args.checkpoints, args.samples, progress=not args.json,
                                only_files=only)
    except (FileNotFoundError, DatasetError) as exc:  # no folder; a labels.csv refused
        print(f"transfer: {exc}")
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(scores, indent=2))
    print(format_transfer_report(scores))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "transfer", help="score Modules I and II on a labelled folder of films and photographs")
    p.add_argument("--checkpoints", help="checkpoints folder (default: the demo run's)")
    p.add_argument("--samples", help="a labelled folder (default: $XRAY_REAL_SAMPLES)")
    p.add_argument("--json", help="also write the scores to this JSON file")
    p.add_argument("--test-split-of", metavar="TASK_MANIFEST", action="append",
                   help="score only the images in the test split of these manifests "
                        "(repeatable; for models that trained on part of the folder, e.g. with "
                        "-p EXTRA_DATA)")
    p.set_defaults(func=run)
