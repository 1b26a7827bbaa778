"""One demo run of the notebooks per test session, shared by the test modules that need it.

``tests/test_notebooks.py`` executes the notebooks one test at a time; the tests that read what
the notebooks recorded (``tests/test_notebooks_records.py``) ask for the chapters they read and
run whatever has not run yet, so each module also works on its own (``pytest -k``).  The run
goes to a temporary run folder and figures folder (the committed figures are only rewritten by
``make demo``); the demo data and the preprocessing cache are shared with ``make demo`` (both
are deterministic and keyed by their parameters).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from xray_utils.cli.run import list_notebooks, run_notebook
from xray_utils.config.paths import ProjectPaths, project_paths

NOTEBOOKS = list_notebooks()


@dataclass
class DemoRun:
    """The demo-profile run folders and which notebooks ran (name -> True, or False: failed)."""

    paths: ProjectPaths
    params: dict
    results: dict[str, bool] = field(default_factory=dict)

    def run(self, notebook: Path) -> None:
        """Execute ``notebook`` unless it already ran; fail when an earlier notebook failed."""
        failed = [name for name, ok in self.results.items() if not ok]
        if failed:
            pytest.fail(f"not run because an earlier notebook failed: {failed}")
        if self.results.get(notebook.name):
            return
        self.results[notebook.name] = False
        run_notebook(notebook, self.paths.notebooks_out_dir, self.params)
        self.results[notebook.name] = True

    def through(self, number: str) -> ProjectPaths:
        """Run every notebook up to chapter ``number`` (e.g. "04") that has not run; the paths."""
        for notebook in NOTEBOOKS:
            if notebook.name[:2] <= number:
                self.run(notebook)
        return self.paths


_SESSION: dict[str, DemoRun] = {}


def shared_demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The session's demo run (created on first use in a fresh temporary folder)."""
    if "demo" not in _SESSION:
        root = tmp_path_factory.mktemp("demo_run")
        paths = project_paths("demo", run_dir=root / "run", figures_dir=root / "figures")
        params = {"PROFILE": "demo", "RUN_DIR": str(paths.run_dir),
                  "FIGURES_DIR": str(paths.figures_dir)}
        _SESSION["demo"] = DemoRun(paths, params)
    return _SESSION["demo"]
