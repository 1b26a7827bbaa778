"""The diagnosis widget of notebook 06: it starts diagnosed, always names what it shows, and a
refusal looks different from a diagnosis (untrained routed checkpoints, no training)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bad_files import pattern_image, write_tiny_checkpoints  # noqa: E402
from PIL import Image

from xray_utils.diagnose.diagnoser import Diagnoser

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def diagnosers(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    return {route: Diagnoser(write_tiny_checkpoints(root / route, route), device="cpu")
            for route in ("chest", "type_only", "not_xray")}


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    from pydicom.data import get_testdata_file

    folder = tmp_path_factory.mktemp("films")
    Image.fromarray(pattern_image()).save(folder / "pattern.png")
    return {"pattern · a test pattern": str(folder / "pattern.png"),
            "RG1_UNCR.dcm · chest film": str(get_testdata_file("RG1_UNCR.dcm"))}


def test_starts_with_the_preselected_image_diagnosed(diagnosers, films):
    from xray_utils.diagnose.widget import DiagnoseDemo

    demo = DiagnoseDemo(diagnosers["chest"], films)
    assert demo.result is not None and demo.result.file == films["pattern · a test pattern"]
    assert demo.shown == "pattern · a test pattern" and demo.figure is not None
    assert "pattern · a test pattern" in demo.verdict.value
    started = DiagnoseDemo(diagnosers["chest"], films, start="RG1_UNCR.dcm · chest film")
    assert started.result.file == films["RG1_UNCR.dcm · chest film"]
    with pytest.raises(KeyError, match="not one of the images"):
        DiagnoseDemo(diagnosers["chest"], films, start="nope")


def test_upload_is_named_and_clears_the_dropdown_and_back(diagnosers, films, tmp_path):
    from xray_utils.diagnose.widget import DiagnoseDemo

    demo = DiagnoseDemo(diagnosers["chest"], films)
    up = tmp_path / "my film.png"
    Image.fromarray(np.asarray(pattern_image())[::-1]).save(up)
    result = demo.simulate_upload(up)
    assert result.ok and result.file == "my film.png"
    assert demo.sample.value is None, "the dropdown must not name an image that is not shown"
    assert demo.shown == "my film.png (your upload)" and "my film.png" in demo.verdict.value
    assert demo.upload.value == (), "the upload's bytes are not kept once read"
    demo.sample.value = films["RG1_UNCR.dcm · chest film"]
    assert demo.shown == "RG1_UNCR.dcm · chest film"
    assert Path(demo.result.file).name == "RG1_UNCR.dcm"


def test_refusals_look_different_from_a_diagnosis(diagnosers, films, tmp_path):
    from xray_utils.diagnose.widget import VERDICT_STYLES, DiagnoseDemo

    looks = {}
    for route in ("chest", "type_only", "not_xray"):
        demo = DiagnoseDemo(diagnosers[route], films)
        looks[route] = demo.verdict.value
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    demo.simulate_upload(bad)
    looks["unreadable"] = demo.verdict.value
    assert "data-kind='diagnosis'" in looks["chest"]
    assert "data-kind='refused'" in looks["not_xray"] and "Refused: not an X-ray" in looks["not_xray"]
    assert "data-kind='other_xray'" in looks["type_only"]
    assert "data-kind='unreadable'" in looks["unreadable"] and "cannot be read" in looks["unreadable"]
    colours = {stage: style[0] for stage, style in VERDICT_STYLES.items()}
    assert len(set(colours.values())) == 4
    for stage, html in zip(("chest", "type_only", "not_xray", None), looks.values()):
        assert colours[stage] in html


def test_app_page_and_command(tmp_path, monkeypatch, capsys):
    """The app's page holds the notice and the diagnosis widget; without checkpoints it says so."""
    import argparse

    from xray_utils.cli import main
    from xray_utils.cli.app import voila_command
    from xray_utils.diagnose.app import NOTICE, build_app

    folder = write_tiny_checkpoints(tmp_path / "ckpts", "not_xray")
    page = build_app(folder, device="cpu")
    assert "not a medical device" in NOTICE and NOTICE[:30] in page.children[0].value
    assert page.demo.result.stage == "not_xray" and "Refused" in page.demo.verdict.value
    broken = build_app(tmp_path / "none", device="cpu")
    assert broken.demo is None and "cannot be loaded" in broken.children[1].value
    assert main(["app", "--checkpoints", str(tmp_path / "none")]) == 2
    assert "no trained checkpoints" in capsys.readouterr().err
    cmd = voila_command(argparse.Namespace(host="127.0.0.1", port=8866, open=False))
    assert "--Voila.ip=127.0.0.1" in cmd and "--no-browser" in cmd
    assert any(c.endswith("diagnose_app.ipynb") for c in cmd)
