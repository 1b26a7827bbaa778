"""The notebooks' git filter (tools/nbclean.py): a chapter run in place shows no change to git."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.nbclean import clean_text

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("**/*.ipynb"))


def executed(text: str) -> str:
    """What JupyterLab's autosave writes after Run All: outputs, counts, versions, widgets."""
    nb = json.loads(text)
    for i, cell in enumerate(nb["cells"]):
        cell["metadata"]["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
        if cell["cell_type"] == "code":
            cell["execution_count"] = i + 1
            cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["x\n"]},
                               {"data": {"image/png": "iVBORw0KGgo=" * 1000}, "metadata": {},
                                "output_type": "display_data"}]
            cell["metadata"]["scrolled"] = True
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.2",
                                       "mimetype": "text/x-python"}
    nb["metadata"]["kernelspec"]["display_name"] = "Python 3 (ipykernel)"
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return json.dumps(nb, indent=2)  # another layout than the committed one, too


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_are_what_the_filter_writes(path):
    text = path.read_text(encoding="utf-8")
    assert clean_text(text) == text, f"{path.name}: commit it as tools/nbclean.py writes it"
    assert clean_text(executed(text)) == text


def test_not_a_notebook_passes_through():
    assert clean_text("not json") == "not json" and clean_text("[1]") == "[1]"


def test_a_run_chapter_shows_no_change_to_git(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    chapter = REPO / "notebooks" / "06_diagnose_demo.ipynb"
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "tools").mkdir()
    shutil.copy(chapter, tmp_path / "notebooks")
    shutil.copy(REPO / "tools" / "nbclean.py", tmp_path / "tools")
    shutil.copy(REPO / ".gitattributes", tmp_path)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("config", "filter.nbclean.clean", f"{sys.executable} tools/nbclean.py")
    git("add", ".")
    git("commit", "-qm", "chapters")
    ran = tmp_path / "notebooks" / chapter.name
    ran.write_text(executed(chapter.read_text(encoding="utf-8")), encoding="utf-8")
    assert '"output_type"' in ran.read_text()  # the file on disk keeps its outputs
    # git diff compares contents (through the filter); git status may still flag the file by its
    # changed size until the index is refreshed, so git add: it stages nothing
    assert git("diff", "--stat") == "", "a run chapter must show no change"
    git("add", "-A")
    assert git("status", "--porcelain") == "", "a run chapter must leave nothing to commit"
    edited = json.loads(ran.read_text())
    edited["cells"][0]["source"].append("\nA student's note.")
    ran.write_text(json.dumps(edited))
    assert "06_diagnose_demo.ipynb" in git("status", "--porcelain")  # a real edit still shows
