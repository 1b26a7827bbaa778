"""``python -m xray_utils upgrade-checkpoints DIR``: add the digest that binds each checkpoint's
``best.json`` to its weights (``checkpoint_sha256``) to checkpoints written before it existed.

Loading refuses a checkpoint without that digest, since an edit of its JSON (e.g. its
``image_size``) could not be detected; run this once on a folder of checkpoints you trust.
``--reseal`` also rewrites digests that no longer match (only after editing a JSON on purpose).
Exit status: 0 when every checkpoint is current or upgraded, 1 when one was refused, 2 when the
folder does not exist or holds no checkpoint.
"""
from __future__ import annotations

from pathlib import Path


def run(args) -> int:
    from xray_utils.models import upgrade_checkpoints

    folder = Path(args.folder).expanduser()
    if not folder.is_dir():
        print(f"upgrade-checkpoints: {folder} is not a folder; pass a checkpoints folder, e.g. "
              "runs/demo/checkpoints.")
        return 2
    done = upgrade_checkpoints(folder, reseal=args.reseal)
    if not done:
        print(f"upgrade-checkpoints: no checkpoint (a .json beside a .safetensors) under "
              f"{folder}.")
        return 2
    for info, what in done:
        print(f"{info}: {what}")
    return 1 if any(what.startswith("refused") for _, what in done) else 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "upgrade-checkpoints", help="add the best.json + weights digest to older checkpoints",
        description=__doc__.split("\n\n")[0])
    p.add_argument("folder", metavar="DIR", help="a checkpoints folder (searched recursively)")
    p.add_argument("--reseal", action="store_true",
                   help="also rewrite digests that no longer match (after an intended edit)")
    p.set_defaults(func=run)
