"""``python -m xray_utils diagnose``: the end-to-end pipeline on image files, from a terminal.

::

    python -m xray_utils diagnose [--checkpoints DIR] [--json] [--heatmap-dir DIR] [--top K] FILE...

Prints a readable verdict per file (or, with ``--json``, one JSON array of records with the keys
``file, ok, error, is_xray, xray_type, type_probs, findings, heatmaps``).  With
``--heatmap-dir`` the Grad-CAM overlays of each chest film's top ``K`` findings are written
there as PNG files and listed in the output.  Results are printed as each batch is done, and
nothing of a file is kept after it is printed, so memory does not grow with the number of files.
File names that are not valid text (or that the terminal cannot show) are printed escaped.

Exit status: 0 when every file was diagnosed, 1 when any input was refused (unreadable, not an
image, not a radiograph; the others are still diagnosed), 2 for usage errors (bad arguments,
missing or invalid checkpoints; reported before any file is read), 3 for an unexpected failure
(reported with its cause; the JSON output is still closed, so it stays valid).

Only argument parsing happens at import: torch and the models are loaded when the command runs,
so ``--help`` is quick.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from xray_utils.config import paper

if TYPE_CHECKING:  # pragma: no cover
    from xray_utils.diagnose.diagnoser import Diagnosis

PROG = "python -m xray_utils diagnose"
DESCRIPTION = ("Diagnose X-ray images with the three trained modules chained as in the paper: "
               "X-ray or not -> X-ray type -> chest findings, with Grad-CAM heatmaps.")
EPILOG = ("exit status: 0 all files diagnosed, 1 some input refused (unreadable, not an image or\n"
          "not a radiograph), 2 usage or checkpoint error, 3 unexpected failure.\n"
          "For teaching and research only; not a medical device.")
#: Same values as xray_utils.diagnose.diagnoser's (repeated so that --help imports no torch).
DEFAULT_TOP_K = 3
DEFAULT_BATCH_SIZE = 16
#: Heatmap file names keep at most this many characters of the image's name.
MAX_STEM = 60


def default_checkpoints_dir() -> Path:
    """The demo run's checkpoints (as :func:`xray_utils.diagnose.diagnoser.default_checkpoints_dir`)."""
    from xray_utils.config.paths import project_paths

    return project_paths("demo").checkpoints_dir


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``diagnose`` arguments to ``parser``."""
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="image files: PNG, JPEG, TIFF, BMP or DICOM")
    parser.add_argument("--checkpoints", metavar="DIR", default=None,
                        help="folder with xray_or_not/, xray_type/ and chest/ checkpoints "
                             f"(default: the demo run, {default_checkpoints_dir()})")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON array of records instead of the readable report")
    parser.add_argument("--heatmap-dir", metavar="DIR", default=None,
                        help="write Grad-CAM overlays (PNG) of each chest film's top findings here")
    parser.add_argument("--top", metavar="K", type=_positive_int, default=DEFAULT_TOP_K,
                        help=f"findings to list and explain per chest film (default "
                             f"{DEFAULT_TOP_K}, at most {len(paper.FINDINGS)})")
    parser.add_argument("--device", default="auto",
                        help="torch device: auto (GPU when present), cpu, cuda, cuda:1 ...")
    parser.add_argument("--batch-size", metavar="N", type=_positive_int,
                        default=DEFAULT_BATCH_SIZE, help="images per forward pass")
    parser.add_argument("--any-modality", action="store_true",
                        help="also diagnose DICOM files of non-radiograph modalities (CT, MR, "
                             "ultrasound, ...), which are refused by default: for teaching only, "
                             "the models were trained on X-ray films")
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``diagnose`` sub-command (``run`` is its ``func``)."""
    parser = subparsers.add_parser(
        "diagnose", help="diagnose image files (X-ray? type? chest findings + heatmaps)",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(parser)
    parser.set_defaults(func=run)
    return parser


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def heatmap_prefix(index: int, file: str | None) -> str:
    """A safe, short file-name prefix for the heatmaps of input ``index``: its number and up to
    :data:`MAX_STEM` characters of its name (letters, digits, ``.-_``; a hash keeps long or
    escaped names apart)."""
    stem = Path(file).stem if file else "image"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"
    if len(safe) > MAX_STEM or safe != stem:
        digest = hashlib.sha256(stem.encode("utf-8", "backslashreplace")).hexdigest()[:8]
        safe = f"{safe[:MAX_STEM]}_{digest}"
    return f"{index:03d}_{safe}"


def _printable_stdout() -> None:
    """Never lose the report to a terminal that cannot show a character of a file name."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):  # replaced streams (tests, notebooks)
            pass


def run(args: argparse.Namespace) -> int:
    """Diagnose ``args.files``; print the report or JSON; return the exit status."""
    _printable_stdout()
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted.", file=sys.stderr)
        return 130
    except Exception as exc:  # never silent: say what failed, exit 3
        import traceback

        where = traceback.extract_tb(exc.__traceback__)[-1]
        print(f"{PROG}: unexpected failure: {type(exc).__name__}: {exc} (at "
              f"{Path(where.filename).name}:{where.lineno}). The results above are complete; "
              "please report this with the command you ran.", file=sys.stderr)
        return 3


def _run(args: argparse.Namespace) -> int:
    folder = Path(args.checkpoints).expanduser() if args.checkpoints else default_checkpoints_dir()
    if not folder.is_dir():
        return _fail(f"checkpoints folder not found: {folder}. Run notebooks 01-03 (make demo) "
                     "first, or pass --checkpoints <run_dir>/checkpoints.")
    heatmap_dir = Path(args.heatmap_dir) if args.heatmap_dir else None
    if heatmap_dir is not None:
        try:
            heatmap_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return _fail(f"cannot create the heatmap folder {heatmap_dir}: {exc}")
    top = min(args.top, len(paper.FINDINGS))
    from xray_utils.diagnose.diagnoser import CheckpointError, CheckpointsMissing, Diagnoser

    try:
        diagnoser = Diagnoser(folder, device=args.device, top_k=top,
                              batch_size=getattr(args, "batch_size", DEFAULT_BATCH_SIZE),
                              any_modality=getattr(args, "any_modality", False))
    except (CheckpointsMissing, CheckpointError, ValueError) as exc:  # ValueError: --device
        return _fail(str(exc))
    results = diagnoser.iter_diagnose(args.files, heatmaps=top if heatmap_dir else False,
                                      keep_images=False)
    return _stream(results, len(args.files), heatmap_dir, top, args.json)


def _stream(results: Iterable[Diagnosis], n: int, heatmap_dir: Path | None, top: int,
            as_json: bool) -> int:
    """Print each result as it comes, keep only counts; returns 0 or 1 (refused inputs)."""
    from xray_utils.diagnose.diagnoser import write_heatmaps

    counts = {"chest": 0, "type_only": 0, "not_xray": 0, None: 0}
    heatmap_failed = False
    if as_json:
        print("[", flush=True)
    try:
        for i, d in enumerate(results):
            paths = None
            if heatmap_dir is not None and d.heatmaps:
                try:
                    paths = write_heatmaps(d, heatmap_dir, prefix=heatmap_prefix(i, d.file))
                except OSError as exc:
                    heatmap_failed = True
                    print(f"{PROG}: warning: heatmaps of {d.file} not written: {exc}",
                          file=sys.stderr)
            d.image, d.heatmaps = None, None  # nothing of a printed file is kept
            counts[d.stage] += 1
            if as_json:
                text = json.dumps(d.to_json(paths), indent=2, allow_nan=False)
                print(("" if i == 0 else ",\n") + "\n".join("  " + line for line in
                                                          text.splitlines()), end="", flush=True)
            else:
                print(format_block(i + 1, n, d, paths, top), flush=True)
    finally:
        if as_json:
            print("\n]", flush=True)
    if not as_json:
        print(format_summary(counts))
    return 1 if counts[None] or heatmap_failed else 0


def format_block(i: int, n: int, d: Diagnosis, paths: dict[str, str] | None = None,
                 top: int = DEFAULT_TOP_K) -> str:
    """One file's block of the readable report (``[i/n] name`` and its verdict)."""
    from xray_utils.diagnose.verdict import findings_sentence

    lines = [f"[{i}/{n}] {d.file if d.file is not None else '<array>'}"]
    pad = " " * 6
    if not d.ok:
        lines.append(f"{pad}ERROR: {d.error}")
        return "\n".join(lines)
    verdict = "yes" if d.stage != "not_xray" else "no"
    lines.append(f"{pad}X-ray?    {verdict} (P(X-ray) = {d.is_xray:.3f})")
    if d.stage == "not_xray":
        lines.append(f"{pad}stop: not an X-ray, modules II-III not run")
        return "\n".join(lines)
    ranked = sorted(d.type_probs.items(), key=lambda kv: -kv[1])
    others = ", ".join(f"{t} {p:.2f}" for t, p in ranked[1:3])
    lines.append(f"{pad}type      {d.xray_type} (P = {ranked[0][1]:.3f}; next: {others})")
    if d.stage == "type_only":
        lines.append(f"{pad}stop: not a chest film, module III not run")
        return "\n".join(lines)
    tops = " | ".join(f"{f} {p:.3f}" for f, p in d.top_findings(top))
    lines.append(f"{pad}findings  top {top}: {tops}")
    lines.append(f"{pad}          {findings_sentence(d, top)}")
    if paths:
        lines.append(f"{pad}heatmaps  " + f"\n{pad}          ".join(paths.values()))
    return "\n".join(lines)


def format_summary(counts: dict) -> str:
    """The report's last lines from the counts per stage (``None``: could not be read)."""
    n = sum(counts.values())
    ok = n - counts.get(None, 0)
    return (f"\n{n} file(s): {ok} diagnosed ({counts.get('chest', 0)} chest, "
            f"{counts.get('type_only', 0)} other X-ray, {counts.get('not_xray', 0)} not X-ray), "
            f"{counts.get(None, 0)} could not be read.\n"
            "For teaching and research only; not a medical device.")
