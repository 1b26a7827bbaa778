"""Run the notebooks headlessly, in their numbered order, with papermill.

``python -m xray_utils run [--profile demo|public|full] [--only NAME]... [-p KEY VALUE]...``

Each notebook is executed into ``<run>/notebooks/`` (git-ignored) with ``PROFILE`` and the
``-p`` overrides injected after its ``parameters`` cell.  Wall times are printed per notebook;
on failure the runner names the notebook and the failing cell and exits non-zero.
"""
from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from xray_utils.config.paths import NOTEBOOKS_DIR, project_paths
from xray_utils.config.profiles import DEFAULT_PROFILE, PROFILES

NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_.+\.ipynb$")


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""

    def __init__(self, notebook: Path, cell: tuple[int, str] | None, error: str,
                 executed: Path) -> None:
        where = f"cell {cell[0]} (`{cell[1]}`)" if cell is not None else "an unknown cell"
        super().__init__(f"{notebook.name} failed in {where}: {error} (executed copy: {executed})")
        self.notebook, self.cell, self.error, self.executed = notebook, cell, error, executed


@dataclass
class NotebookRun:
    notebook: Path
    executed: Path
    seconds: float


def parse_value(text: str) -> Any:
    """``-p`` values: JSON (numbers, lists, quoted strings), True/False/None, else a string."""
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    try:
        return json.loads(text)
    except ValueError:
        return text


def list_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks of ``folder`` in order."""
    return sorted(p for p in folder.iterdir() if NOTEBOOK_PATTERN.match(p.name))


def select_notebooks(notebooks: Sequence[Path], only: Iterable[str] | None) -> list[Path]:
    """Keep the notebooks whose name starts with, or contains, one of ``only``."""
    only = [o for o in (only or []) if o]
    if not only:
        return list(notebooks)
    chosen = [nb for nb in notebooks if any(nb.name.startswith(o) or o in nb.stem for o in only)]
    if not chosen:
        names = ", ".join(nb.name for nb in notebooks)
        raise SystemExit(f"--only {' '.join(only)} matches no notebook; available: {names}")
    return chosen


#: Cells that papermill adds to the executed copy (not in the user's notebook).
_PAPERMILL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


def _failing_cell(executed: Path) -> tuple[int, str] | None:
    """The failing cell as the user sees it: 1-based number in the source notebook (markdown
    cells counted, papermill's own cells not) and its first line."""
    try:
        import nbformat

        nb = nbformat.read(str(executed), as_version=4)
    except Exception:
        return None
    number = 0
    for cell in nb.cells:
        if _PAPERMILL_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        number += 1
        if any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
            first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
            return number, first[:80]
    return None


def run_notebook(notebook: Path, out_dir: Path, parameters: dict[str, Any],
                 kernel: str = "python3") -> NotebookRun:
    """Execute one notebook with papermill; raises :class:`NotebookFailed` naming the cell."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / notebook.name
    started = time.time()
    try:
        pm.execute_notebook(str(notebook), str(executed), parameters=parameters,
                            kernel_name=kernel, cwd=str(notebook.parent), progress_bar=False,
                            log_output=False, request_save_on_cell_execute=True)
    except pm.PapermillExecutionError as exc:
        cell = _failing_cell(executed)
        raise NotebookFailed(notebook, cell, f"{exc.ename}: {exc.evalue}", executed) from None
    return NotebookRun(notebook, executed, time.time() - started)


#: Training notebooks by their number: the task whose settings they build.
_TRAINING_TASKS = {"01": "xray_or_not", "02": "xray_type", "03": "chest"}
#: Parameters the runner itself uses (the run's folders), whatever the notebooks declare.
_RUNNER_KEYS = ("PROFILE", "DATA_DIR", "RUN_DIR", "FIGURES_DIR")
_ASSIGNED = re.compile(r"^([A-Z][A-Z0-9_]*)\s*=", re.MULTILINE)


def notebook_parameters(notebook: Path) -> set[str]:
    """Names assigned in a notebook's ``parameters`` cell (what ``-p`` can set there)."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return set(_ASSIGNED.findall("".join(cell.get("source", []))))
    return set()


def check_parameters(profile: str, notebooks: Sequence[Path], parameters: dict[str, Any]) -> None:
    """Refuse, before any notebook starts, a ``-p`` that no selected notebook declares (it would
    be ignored) and any setting whose name, type or range :func:`settings` rejects."""
    import difflib

    from xray_utils.config.profiles import SettingsError, known_keys, settings

    declared = {nb.name: notebook_parameters(nb) for nb in notebooks}
    every = set().union(*declared.values()) if declared else set()
    for key in parameters:
        if key not in _RUNNER_KEYS and key not in every:
            close = difflib.get_close_matches(key, sorted(every), n=3, cutoff=0.6)
            raise SettingsError(
                f"-p {key}: no selected notebook has this parameter, so it would be ignored"
                + (f"; did you mean {', '.join(close)}?" if close else "")
                + f" Parameters of {', '.join(declared)}: {', '.join(sorted(every))}")
    keys = known_keys()
    for nb, names in declared.items():
        given = {k: v for k, v in parameters.items() if k in names and k in keys and k != "PROFILE"}
        settings(profile, _TRAINING_TASKS.get(nb[:2]), **given)


def run_all(profile: str = DEFAULT_PROFILE, only: Iterable[str] | None = None,
            parameters: dict[str, Any] | None = None, notebooks_dir: Path = NOTEBOOKS_DIR,
            out_dir: Path | None = None, echo=print) -> list[NotebookRun]:
    """Execute the selected notebooks in order; stops at the first failure (raises).

    Every ``-p`` is checked first (:func:`check_parameters`): nothing runs when one is unknown
    or has a value the settings refuse."""
    params = {"PROFILE": profile, **(parameters or {})}
    paths = project_paths(profile, params.get("DATA_DIR"), params.get("RUN_DIR"),
                          params.get("FIGURES_DIR"))
    out_dir = out_dir or paths.notebooks_out_dir
    selected = select_notebooks(list_notebooks(notebooks_dir), only)
    check_parameters(profile, selected, params)
    runs = []
    for nb in selected:
        echo(f"▶ {nb.name} (profile {profile}) ...", flush=True)
        run = run_notebook(nb, out_dir, params)
        echo(f"  ✓ {nb.name}: {run.seconds:.1f} s -> {run.executed}", flush=True)
        runs.append(run)
    total = sum(r.seconds for r in runs)
    echo(f"done: {len(runs)} notebook(s) in {total:.1f} s", flush=True)
    return runs


def run(args) -> int:
    """``python -m xray_utils run``: the notebooks in order; returns the exit status."""
    from xray_utils.config.profiles import SettingsError

    params = {key: parse_value(value) for key, value in (args.param or [])}
    try:
        run_all(args.profile, args.only, params,
                notebooks_dir=Path(args.notebooks) if args.notebooks else NOTEBOOKS_DIR,
                out_dir=Path(args.out) if args.out else None)
    except SettingsError as exc:
        print(f"✗ refused before running: {exc}", file=sys.stderr)
        return 2
    except NotebookFailed as exc:
        print(f"✗ FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


def parameters_help(folder: Path = NOTEBOOKS_DIR) -> str:
    """The ``-p`` keys of each numbered notebook, for ``run --help``."""
    import textwrap

    lines = []
    for nb in list_notebooks(folder):
        keys = sorted(notebook_parameters(nb) - {"PROFILE"})
        lines.append(textwrap.fill(f"{nb.stem}: {', '.join(keys)}", 79, initial_indent="  ",
                                   subsequent_indent="      "))
    return "\n".join(lines)


def add_parser(subparsers) -> None:
    import argparse
    import textwrap

    try:
        keys = parameters_help()
    except (OSError, ValueError):  # no notebooks folder (an installed package without them)
        keys = "  (the notebooks' parameters cells)"
    p = subparsers.add_parser(
        "run", help="execute the notebooks in order with papermill",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Execute the numbered notebooks in order with papermill, in one profile; the "
            "executed copies go to <run>/notebooks/. -p KEY VALUE sets a parameter of every "
            "notebook that has it; a key no selected notebook has is refused.", 79)
        + "\n\nKeys per notebook:\n" + keys,
        epilog="Other settings without touching the demo run: -p RUN_DIR \"$PWD/runs/seed1\" "
               "-p FIGURES_DIR \"$PWD/figures/seed1\" (with --only 00 first, which writes that "
               "run's manifests).")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES)
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run only notebooks whose name starts with/contains NAME (repeatable)")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override a notebook parameter, e.g. -p SEED 1 -p EPOCHS 2")
    p.add_argument("--out", help="folder for the executed notebooks (default: <run>/notebooks)")
    p.add_argument("--notebooks", help="folder of the numbered notebooks (default: notebooks/)")
    p.set_defaults(func=run)
