"""Command line: ``python -m xray_utils download public [--only NAME] [--offline] [--cache DIR]``.

Downloads the openly licensed datasets of the ``public`` profile (:mod:`xray_utils.sources.public`):
checksummed, resumable (run it again after an interruption), with progress bars; then extracts
the archives and writes the ChestMNIST PNGs once, so the notebooks start at once.

* ``--offline`` (or ``XRAY_OFFLINE=1``) fetches nothing: it says what is in the cache and
  lists what is missing (name, URL, size, where to put it); exit status 1 when something is.
* ``--cache DIR`` puts everything in ``DIR/public/`` (default: ``data/downloads/public``, or
  ``$XRAY_DOWNLOADS_DIR/public``).
* ``--only NAME`` (repeatable, or comma-separated): a file (``mednist``, ``chestmnist_224``) or a
  dataset (``chestmnist`` = its file for ``--image-size``).
* ``--mirror URL`` fetches every file by name from another server (e.g. a teacher's copy).
* ``--list`` shows the registry: sizes, checksums, licences, URLs.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from xray_utils.config.profiles import DOWNLOADED_PROFILES, settings
from xray_utils.sources import public


def plain_text(doc: str) -> str:
    """A docstring as a terminal shows it: reST roles and double backticks dropped."""
    import re

    text = re.sub(r":(?:mod|func|class|data|meth):`~?([^`]+)`", r"\1", doc)
    return text.replace("``", "")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``download`` sub-command."""
    p = subparsers.add_parser(
        "download", help="download the openly licensed datasets of the public profile",
        description=plain_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=DOWNLOADED_PROFILES, help="which data set: public (ChestMNIST, "
                   "MedNIST, FracAtlas, Imagenette)")
    p.add_argument("--only", action="append", metavar="NAME",
                   help=f"only these files or datasets (repeatable); files: {', '.join(public.FILES)}")
    p.add_argument("--offline", action="store_true",
                   help="fetch nothing: report what is in the cache and what is missing")
    p.add_argument("--cache", metavar="DIR", help="downloads folder (files go to DIR/public/)")
    p.add_argument("--image-size", type=int, default=None, metavar="PX",
                   help="training size that picks the ChestMNIST / Imagenette files "
                        "(default: the public profile's IMAGE_SIZE)")
    p.add_argument("--mirror", metavar="URL", help=f"fetch <URL>/<file name> instead of the "
                   f"publishers' URLs (also ${public.MIRROR_ENV})")
    p.add_argument("--no-extract", action="store_true",
                   help="only download; do not extract the archives or write the ChestMNIST PNGs")
    p.add_argument("--list", action="store_true", help="show the registry and the cache state, then exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def _table(statuses: list[public.FileStatus], out: TextIO) -> None:
    for s in statuses:
        if s.ok:
            state = "ok (checksum verified)"
        elif s.path.is_file():
            state = "corrupt"
        elif s.partial_bytes:
            state = f"partial ({s.partial_bytes / 1e6:,.1f} MB; resumes)"
        else:
            state = "missing"
        print(f"  {s.name:<16} {s.size_text:>17}  {state}", file=out)


def _list(args: argparse.Namespace, out: TextIO) -> int:
    folder = public.public_dir(args.cache)
    print(f"Public files (cache: {folder})", file=out)
    for name, spec in public.FILES.items():
        status = public.file_status([name], cache_dir=args.cache, mirror=args.mirror)[0]
        checksum = (" or ".join(spec.checksums) + f" [{spec.checksum_source}]" if spec.checksums
                    else "not published: recorded at the first download")
        size_note = "" if spec.size_exact else f" [{spec.size_source}]"
        print(f"- {name} ({public.DATASETS[spec.dataset].title}; "
              f"{public.DATASETS[spec.dataset].licence.split(';')[0]})\n"
              f"    {spec.size_text()}{size_note}; {'in the cache' if status.ok else 'not in the cache'}\n"
              f"    checksum {checksum}\n    {status.url}", file=out)
    return 0


def run(args: argparse.Namespace) -> int:
    """Download / check the public files; 0 when everything asked for is ready, 1 otherwise."""
    out = sys.stdout
    if args.list:
        return _list(args, out)
    size = args.image_size or int(settings(args.what)["IMAGE_SIZE"])
    progress = not args.no_progress
    offline = True if args.offline else None
    try:
        names = public.resolve_names(args.only, size)
        folder = public.public_dir(args.cache)
        print(f"Public datasets for {size} px training -> {folder}", file=out)
        _table(public.file_status(names, cache_dir=args.cache, mirror=args.mirror), out)
        public.require_public(args.cache, offline, names=names, mirror=args.mirror)
        paths = public.fetch_public(names, cache_dir=args.cache, offline=offline,
                                    progress=progress, mirror=args.mirror)
        if not args.no_extract:
            public.prepare_public(names, cache_dir=args.cache, progress=progress)
    except public.PublicDataError as exc:
        print(str(exc), file=out)
        return 1
    print(f"Ready: {', '.join(paths)}.", file=out)
    used = sorted({public.FILES[n].dataset for n in names})
    for name in used:
        d = public.DATASETS[name]
        print(f"  {d.title}: {d.licence.split(';')[0]}", file=out)
    print("Cite them where you show results: print(xray_utils.sources.public.citations()).", file=out)
    return 0
