"""The project's foundation: notebooks are clean chapters, the two install routes agree, CI runs
the README's test command, the runner reports failures by notebook and cell, one source of facts."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from xray_utils.cli.run import list_notebooks, parse_value
from xray_utils.config import paper
from xray_utils.config.paths import REPO_ROOT, project_paths
from xray_utils.config.profiles import settings

NOTEBOOKS = list_notebooks()


def test_notebooks_exist_in_order():
    names = [nb.name[:2] for nb in NOTEBOOKS]
    assert names[:4] == ["00", "01", "02", "03"], names
    assert names == sorted(names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_a_clean_chapter(path: Path):
    nb = nbformat.read(str(path), as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: committed with outputs"
            assert cell.execution_count is None, f"{path.name}: committed with execution counts"
    opening = nb.cells[0]
    assert opening.cell_type == "markdown" and opening.source.startswith("# ")
    for part in ("What you will learn", "Prerequisites", "Runtime"):
        assert part in opening.source, f"{path.name}: opening cell lacks '{part}'"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    assert nb.cells.index(tagged[0]) == 1, "the parameters cell comes right after the opening"
    names = [t.id for node in ast.parse(tagged[0].source).body if isinstance(node, ast.Assign)
             for t in node.targets]
    assert {"PROFILE", "SEED", "DATA_DIR", "RUN_DIR", "FIGURES_DIR"} <= set(names)
    assert all(n.isupper() for n in names), f"{path.name}: parameter names must be upper-case"


def _requirements_of_environment() -> tuple[str, set[str]]:
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return python, {r.replace(" ", "") for r in pip if not r.startswith("-")}


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = {r.replace(" ", "") for r in project["dependencies"]}
    wanted |= {r.replace(" ", "") for r in project["optional-dependencies"]["test"]}
    python, have = _requirements_of_environment()
    assert have == wanted, (f"only in environment.yml: {sorted(have - wanted)}; "
                            f"only in pyproject.toml: {sorted(wanted - have)}")
    assert python.split("=")[-1] == "3.11" and "3.11" in project["requires-python"]
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]


def test_constraints_pin_every_dependency():
    pins = {}
    for line in (REPO_ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"]:
        name = re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0].lower()
        assert name in pins, f"{name} has no exact version in requirements/constraints.txt"
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert pins["accelerate"].split(".")[0] == "0"


def test_ci_runs_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"^Test command: `([^`]+)`", readme, flags=re.M)
    assert match, "README must state its test command as: Test command: `...`"
    command = match.group(1)
    ci = [ln.strip() for ln in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.strip().startswith("#")]
    assert command in ci, f".ci/run must run `{command}`; it runs {ci}"
    assert f"    {command}" in readme or f"\n{command}\n" in readme


def test_parse_value():
    assert parse_value("1") == 1 and parse_value("1e-3") == 1e-3
    assert parse_value("None") is None and parse_value("True") is True
    assert parse_value("hello") == "hello" and parse_value("[1, 2]") == [1, 2]


def test_paths_defaults_and_overrides(monkeypatch, tmp_path):
    p = project_paths("demo")
    assert p.run_dir == REPO_ROOT / "runs" / "demo" and p.figures_dir == REPO_ROOT / "figures" / "demo"
    monkeypatch.setenv("XRAY_RUN_DIR", str(tmp_path / "env"))
    assert project_paths("demo").run_dir == tmp_path / "env"
    assert project_paths("demo", run_dir=tmp_path / "arg").run_dir == tmp_path / "arg"


def test_full_profile_uses_the_papers_settings():
    for task in paper.TASKS:
        cfg, hp = settings("full", task), paper.HYPERPARAMETERS[task]
        assert (cfg["LR"], cfg["EPOCHS"], cfg["WEIGHT_DECAY"], cfg["IMAGE_SIZE"]) == (
            hp["lr"], hp["epochs"], hp["weight_decay"], hp["image_size"])
        assert cfg["PRETRAINED"] == hp["pretrained"]
    assert settings("demo", "chest", EPOCHS=1)["EPOCHS"] == 1
    with pytest.raises(ValueError, match="unknown profile"):
        settings("nope")


def _retyped_lists(source: str) -> list[list[str]]:
    """String-literal lists/tuples/sets holding 8 or more names of one of the class lists."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            names = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            for classes in (paper.FINDINGS, paper.XRAY_TYPES):
                if len(set(names) & set(classes)) >= 8:
                    found.append(names)
    return found


def test_class_lists_are_typed_once():
    """Notebooks and helper modules import the class lists; they never retype them."""
    offenders = []
    for path in (REPO_ROOT / "xray_utils").rglob("*.py"):
        if path.name != "paper.py" and _retyped_lists(path.read_text()):
            offenders.append(str(path.relative_to(REPO_ROOT)))
    for path in NOTEBOOKS:
        nb = nbformat.read(str(path), as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        if _retyped_lists(code):
            offenders.append(path.name)
    assert not offenders, f"class lists retyped in {offenders}; import them from xray_utils.config.paper"
    assert _retyped_lists(repr(list(paper.FINDINGS))), "the check itself must find a retyped list"


def _write_nb(path: Path, sources: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cells = [nbformat.v4.new_code_cell(s) for s in sources]
    cells[0].metadata["tags"] = ["parameters"]
    nb.cells = cells
    nbformat.write(nb, str(path))


def test_runner_names_the_failing_notebook_and_cell(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _write_nb(nbs / "00_ok.ipynb", ['PROFILE = "demo"\nSEED = 0', "x = SEED + 1", "print(x)"])
    _write_nb(nbs / "01_broken.ipynb", ['PROFILE = "demo"', "y = 1", "raise ValueError('boom')"])
    cmd = [sys.executable, "-m", "xray_utils", "run", "--notebooks", str(nbs), "--out",
           str(tmp_path / "out"), "-p", "SEED", "1", "-p", "RUN_DIR", str(tmp_path / "run"),
           "-p", "FIGURES_DIR", str(tmp_path / "fig")]
    ok = subprocess.run(cmd + ["--only", "00"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "00_ok.ipynb" in ok.stdout and " s " in ok.stdout  # wall time printed
    executed = nbformat.read(str(tmp_path / "out" / "00_ok.ipynb"), as_version=4)
    assert any("SEED = 1" in c.source for c in executed.cells), "parameter not injected"
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0
    assert "01_broken.ipynb" in bad.stderr and "ValueError: boom" in bad.stderr
    # numbered as in the source notebook (papermill's injected cells are not counted)
    assert "cell 3 (`raise ValueError('boom')`)" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr


def test_full_profile_without_datasets_fails_at_once_naming_the_folders(tmp_path):
    cmd = [sys.executable, "-m", "xray_utils", "run", "--profile", "full", "-p", "EPOCHS", "1",
           "-p", "DATA_DIR", str(tmp_path / "data"), "-p", "RUN_DIR", str(tmp_path / "run"),
           "-p", "FIGURES_DIR", str(tmp_path / "fig")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "00_data_preparation.ipynb" in done.stderr  # stops at the first notebook
    assert str(tmp_path / "data" / "raw") in done.stderr and "data/README.md" in done.stderr
    assert "01_train" not in done.stdout


def test_records_show_paths_inside_the_repository_relative_to_it(tmp_path):
    from xray_utils.config.paths import shown_path

    assert shown_path(REPO_ROOT / "runs" / "demo" / "checkpoints" / "chest" / "best.json") == \
        "runs/demo/checkpoints/chest/best.json"
    outside = tmp_path / "best.json"
    assert shown_path(outside) == str(outside)
