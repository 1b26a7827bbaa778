"""``python -m xray_utils diagnose``: JSON records, the report, heatmap files, exit codes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from commands import diagnose as main
from PIL import Image

from xray_utils.config import paper

sys.path.insert(0, str(Path(__file__).parent))
from bad_files import pattern_image, write_corpus, write_tiny_checkpoints  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
JSON_KEYS = {"file", "ok", "error", "is_xray", "xray_type", "type_probs", "findings", "heatmaps"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def chest_ckpts(tmp_path_factory):
    return write_tiny_checkpoints(tmp_path_factory.mktemp("ck") / "chest", "chest")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("files")
    Image.fromarray(pattern_image()).save(folder / "a.png")
    Image.fromarray(np.rot90(pattern_image())).save(folder / "b.png")
    return [folder / "a.png", folder / "b.png"]


def _run_cli(args: list[str], env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "xray_utils", "diagnose", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


def test_json_all_ok_exit_0_and_heatmap_pngs(chest_ckpts, files, tmp_path, capsys):
    heat = tmp_path / "heat"
    code = main(["--checkpoints", str(chest_ckpts), "--json", "--heatmap-dir", str(heat),
                 "--top", "2", *map(str, files)])
    out = capsys.readouterr().out
    assert code == 0
    records = json.loads(out)
    assert [r["file"] for r in records] == [str(f) for f in files]
    for i, rec in enumerate(records):
        assert set(rec) == JSON_KEYS
        assert rec["ok"] is True and rec["error"] is None and rec["xray_type"] == "chest"
        assert list(rec["findings"]) == list(paper.FINDINGS)
        assert len(rec["type_probs"]) == len(paper.XRAY_TYPES)
        top2 = sorted(rec["findings"], key=lambda f: -rec["findings"][f])[:2]
        assert list(rec["heatmaps"]) == top2
        for finding, png in rec["heatmaps"].items():
            assert Path(png).parent == heat and Path(png).name.startswith(f"{i:03d}_")
            img = np.asarray(Image.open(png))
            h, w = np.asarray(Image.open(files[i])).shape
            assert img.shape == (h, w, 3)  # the overlay is drawn over the image itself
    assert len(list(heat.glob("*.png"))) == 4


def test_without_heatmap_dir_heatmaps_are_null(chest_ckpts, files, capsys):
    assert main(["--checkpoints", str(chest_ckpts), "--json", str(files[0])]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["heatmaps"] is None and rec["findings"] is not None


def test_bad_files_exit_1_and_every_file_reported(chest_ckpts, files, tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus")
    names = [str(files[0])] + [str(p) for p, _ in corpus]
    code = main(["--checkpoints", str(chest_ckpts), "--json", *names])
    captured = capsys.readouterr()
    assert code == 1
    records = json.loads(captured.out)
    assert [r["file"] for r in records] == names
    for (path, exp), rec in zip(corpus, records[1:]):
        if exp.readable is not None:
            assert rec["ok"] is exp.readable, (path.name, rec["error"])
        if not rec["ok"]:
            assert str(path) in rec["error"]
            assert rec["is_xray"] is None and rec["findings"] is None
    assert "Traceback" not in captured.err


def test_readable_report(chest_ckpts, files, tmp_path, capsys):
    code = main(["--checkpoints", str(chest_ckpts), "--top", "4", str(files[0]),
                 str(tmp_path / "missing.png")])
    out = capsys.readouterr().out
    assert code == 1
    assert f"[1/2] {files[0]}" in out and "type      chest" in out
    assert out.count(" | ") == 3  # four findings listed
    assert "ERROR:" in out and "file not found" in out
    assert "2 file(s): 1 diagnosed (1 chest, 0 other X-ray, 0 not X-ray), 1 could not be read." in out


def test_not_xray_route_report(tmp_path, files, capsys):
    folder = write_tiny_checkpoints(tmp_path / "photo", "not_xray")
    assert main(["--checkpoints", str(folder), "--json", str(files[0])]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["xray_type"] is None and rec["type_probs"] is None and rec["findings"] is None
    assert main(["--checkpoints", str(folder), str(files[0])]) == 0
    assert "stop: not an X-ray" in capsys.readouterr().out


def test_usage_errors_exit_2(tmp_path, files, capsys):
    assert main(["--checkpoints", str(tmp_path / "none"), str(files[0])]) == 2
    err = capsys.readouterr().err
    assert "checkpoints folder not found" in err and "notebooks 01-03" in err
    (tmp_path / "empty").mkdir()
    assert main(["--checkpoints", str(tmp_path / "empty"), str(files[0])]) == 2
    assert "xray_or_not/best.json" in capsys.readouterr().err
    assert main(["--checkpoints", str(tmp_path / "empty"), "--device", "tpu9", "x.png"]) == 2
    assert "unknown device 'tpu9'" in capsys.readouterr().err
    for argv in ([], ["--top", "0", "x.png"], ["--bogus", "x.png"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2


def test_python_m_xray_utils_diagnose_subprocess(chest_ckpts, files, tmp_path):
    """The real command line: exit status 1 with a bad file, JSON on stdout, no traceback."""
    proc = _run_cli(["--checkpoints", str(chest_ckpts), "--json", str(files[0]),
                     str(tmp_path / "nope.dcm")])
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    ok, bad = json.loads(proc.stdout)
    assert ok["ok"] and ok["xray_type"] == "chest"
    assert not bad["ok"] and "not found" in bad["error"]
    missing = _run_cli(["--checkpoints", str(tmp_path / "absent"), str(files[0])])
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "checkpoints folder not found" in missing.stderr
