"""Servers and the browser of the browser tests (``make browser-test``; pytest -m browser).

Chromium is Debian's (``apt-get install -y chromium``): Playwright drives it through
``executable_path``, since Playwright's own browser download is not possible offline.  Every
server listens on 127.0.0.1, is started and stopped by its PID, and every wait is bounded.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from xray_utils.config.paths import project_paths

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
TASKS = ("xray_or_not", "xray_type", "chest")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Wait (at most ``timeout`` s) until ``url`` answers 200; fail with the server's log."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Stop the server started by this test (its process group, by PID), bounded."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        except ProcessLookupError:  # it exited meanwhile
            pass


def start(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(cmd, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                            start_new_session=True)


@pytest.fixture(scope="session")
def shots() -> Path:
    """Screenshots go to runs/<profile>/browser/."""
    folder = project_paths("demo").run_dir / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory) -> tuple[Path, bool]:
    """A temporary run folder for the servers, and whether its models are trained.

    With the demo run's trained checkpoints (``make demo``: runs/demo/checkpoints), the folder
    links to them and to the demo run's manifests (read only: notebook 06 writes its record into
    the temporary folder, never into runs/demo).  Without them (a fresh clone, CI after ``make
    test``, whose notebook runs go to a temporary folder), it holds untrained checkpoints whose
    heads route every image to the chest model (xray_utils.untrained): the pages work the
    same, their verdicts mean nothing.
    """
    run = tmp_path_factory.mktemp("browser_run")
    demo = project_paths("demo")
    if all((demo.checkpoints_dir / t / "best.json").is_file() for t in TASKS):
        (run / "checkpoints").symlink_to(demo.checkpoints_dir.resolve(), target_is_directory=True)
        if demo.manifests_dir.is_dir():
            (run / "manifests").symlink_to(demo.manifests_dir.resolve(), target_is_directory=True)
        trained = True
    else:
        from xray_utils.untrained import write_routed_checkpoints

        write_routed_checkpoints(run / "checkpoints", "chest")
        trained = False
    print(f"\nbrowser tests: {'trained demo' if trained else 'UNTRAINED routed'} checkpoints "
          f"({demo.checkpoints_dir if trained else run / 'checkpoints'})")
    return run, trained


@pytest.fixture(scope="session")
def checkpoints(run_folder) -> tuple[Path, bool]:
    """The checkpoints folder the servers use, and whether its models are trained."""
    run, trained = run_folder
    return run / "checkpoints", trained


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium "
                    "(or set CHROMIUM=/path/to/chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                              timeout=60_000)
        yield b
        b.close()


def _real_film(tmp_path_factory, name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = tmp_path_factory.mktemp("upload") / name
    shutil.copy(get_testdata_file(name), path)
    return path


@pytest.fixture(scope="session")
def film(tmp_path_factory) -> Path:
    """The real film uploaded on the app page: pydicom-data's RG3_UNCR.dcm (an ankle)."""
    return _real_film(tmp_path_factory, "RG3_UNCR.dcm")


@pytest.fixture(scope="session")
def chest_film(tmp_path_factory) -> Path:
    """The real film uploaded in notebook 06: pydicom-data's RG1_UNCR.dcm (a chest PA film).
    Not RG3: Run All leaves the widget showing RG3 as an upload, so a second RG3 would change
    neither the verdict nor the figure."""
    return _real_film(tmp_path_factory, "RG1_UNCR.dcm")


class Server:
    """A server started by a test: its URL and process (whose kernels the tests count)."""

    def __init__(self, url: str, proc: subprocess.Popen, log: Path) -> None:
        self.url, self.proc, self.log = url, proc, log

    def kernels(self) -> list[int]:
        """PIDs of the kernels this server runs now (its ipykernel child processes)."""
        import psutil

        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        out = []
        for child in children:
            try:
                if "ipykernel" in " ".join(child.cmdline()):
                    out.append(child.pid)
            except psutil.Error:  # it exited meanwhile
                pass
        return out


def _app(folder: Path, tmp_path: Path, name: str):
    port = free_port()
    log = tmp_path / f"{name}.log"
    proc = start([sys.executable, "-m", "xray_utils", "app", "--checkpoints", str(folder),
                  "--port", str(port), "--device", "cpu"], log)
    try:
        wait_http(f"http://127.0.0.1:{port}/voila/static/voila.js", proc, log)
        yield Server(f"http://127.0.0.1:{port}/", proc, log)
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def app_server(checkpoints, tmp_path_factory):
    """``python -m xray_utils app`` on the browser tests' checkpoints (one server per module)."""
    yield from _app(checkpoints[0], tmp_path_factory.mktemp("app"), "app")


@pytest.fixture(scope="module")
def quiet_app_server(tmp_path_factory):
    """The app on untrained chest-routed checkpoints whose findings all stay far below 0.5."""
    from xray_utils.untrained import write_routed_checkpoints

    tmp = tmp_path_factory.mktemp("quiet_app")
    folder = write_routed_checkpoints(tmp / "checkpoints", "chest", findings_low=True)
    yield from _app(folder, tmp, "quiet_app")


@pytest.fixture(scope="session")
def big_film(tmp_path_factory) -> Path:
    """A 20 MB PNG (random noise, which PNG cannot compress): above Tornado's default 10 MiB."""
    import numpy as np
    from PIL import Image

    path = tmp_path_factory.mktemp("big") / "big_film.png"
    noise = np.random.default_rng(0).integers(0, 256, (2600, 2600, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, compress_level=1)
    assert path.stat().st_size > 20 * 10**6
    return path


@pytest.fixture
def lab_server(run_folder, tmp_path):
    """JupyterLab on 127.0.0.1 with a token, serving a copy of notebook 06 (so that autosave never
    writes outputs into the committed notebook); XRAY_RUN_DIR is the temporary run folder, and
    figures go to a temporary folder."""
    run, _ = run_folder
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / "06_diagnose_demo.ipynb", root)
    port, token = free_port(), "browser-test-token"
    log = tmp_path / "lab.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
           "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    # every cell stays in the page (no windowed rendering), so the widget can be found
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    # the upload limit make setup gives the JupyterLab of .venv (written here into the test's
    # own configuration folder, so that the test does not depend on the installation's)
    from xray_utils.diagnose.uploads import write_jupyter_config

    write_jupyter_config(str(tmp_path / "jupyter-config"))
    proc = start(cmd, log, env={"JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
                                "XRAY_RUN_DIR": str(run),
                                "XRAY_FIGURES_DIR": str(tmp_path / "figures"),
                                "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config")})
    try:
        wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", proc, log)
        yield f"http://127.0.0.1:{port}", token
    finally:
        stop(proc)
