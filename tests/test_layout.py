"""The package's plan: rooms by stage, no import cycle, lazy commands, lint clean."""
from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "xray_utils"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports, at module level or inside functions
    (a lazy import is still an arrow); ``if TYPE_CHECKING:`` blocks are left out on purpose."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    for n in ast.walk(tree):
        if id(n) in skipped:
            continue
        if isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] in ("xray_utils", "tools"):
            found.add(n.module)
            for alias in n.names:
                found.add(f"{n.module}.{alias.name}")
        elif isinstance(n, ast.Import):
            found.update(a.name for a in n.names if a.name.split(".")[0] in ("xray_utils", "tools"))
    return found


def test_no_import_cycle():
    modules = {_module_name(p): p for root in (PKG, REPO / "tools") for p in root.rglob("*.py")}
    graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    # importing a.b.c from m also runs the __init__ of a.b (unless m lives inside a.b, whose
    # __init__ is then already running): count those packages as edges too
    def ancestors(name: str) -> set[str]:
        parts = name.split(".")
        return {".".join(parts[:k]) for k in range(2, len(parts))}

    for m in list(graph):
        for target in list(graph[m]):
            graph[m] |= {a for a in ancestors(target) - ancestors(m) - {m} if a in modules}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_diagnose_help_does_not_import_catalyst():
    code = ("import sys\n"
            "from xray_utils.cli import main\n"
            "try:\n    main(['diagnose', '--help'])\nexcept SystemExit:\n    pass\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('catalyst', 'papermill'))\n"
            "print('IMPORTED', bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--checkpoints" in out.stdout
    assert "IMPORTED []" in out.stdout


def test_every_command_follows_the_cli_convention():
    from xray_utils.cli import COMMANDS, build_parser

    for name, (module, _) in COMMANDS.items():
        assert module.startswith("xray_utils.cli."), module
        mod = importlib.import_module(module)  # bench: its run is the harness's
        assert name == "bench" or (callable(getattr(mod, "run", None)) and not hasattr(mod, "main")), module
        parser = build_parser([name])
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([name, "--help"])
        assert exc.value.code == 0


def test_front_door_exports_resolve():
    import xray_utils

    for name in xray_utils.__all__:
        assert getattr(xray_utils, name) is not None, name



def test_ruff_passes():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed: pip install -e '.[test]'")
    out = subprocess.run([ruff, "check", "xray_utils", "tools", "tests", "scripts", "notebooks"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
