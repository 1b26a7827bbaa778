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
    chest_kind = "diagnosis" if "data-kind='diagnosis'" in looks["chest"] else "no_finding"
    assert f"data-kind='{chest_kind}'" in looks["chest"]
    assert "data-kind='refused'" in looks["not_xray"] and "Refused: not an X-ray" in looks["not_xray"]
    assert "data-kind='other_xray'" in looks["type_only"]
    assert "data-kind='unreadable'" in looks["unreadable"] and "cannot be read" in looks["unreadable"]
    colours = {kind: style[0] for kind, style in VERDICT_STYLES.items()}
    assert len(set(colours.values())) == 5
    for kind, html in zip((chest_kind, "other_xray", "refused", "unreadable"), looks.values()):
        assert colours[kind] in html


def _chest(findings: dict[str, float]):
    from xray_utils.config import paper
    from xray_utils.diagnose.diagnoser import Diagnosis

    types = {t: (0.9 if t == "chest" else 0.1 / 13) for t in paper.XRAY_TYPES}
    probs = {f: 0.1 for f in paper.FINDINGS} | findings
    return Diagnosis(file="film.png", ok=True, is_xray=0.97, xray_type="chest",
                     type_probs=types, findings=probs)


def test_below_the_threshold_no_finding_is_presented_as_found():
    """One wording for the command line, the widget and the app: below 0.5 is no diagnosis."""
    from xray_utils.cli.diagnose import format_block
    from xray_utils.diagnose.verdict import verdict_html, verdict_kind, verdict_text

    low = _chest({"Nodule": 0.20, "Atelectasis": 0.18})
    assert verdict_kind(low) == "no_finding"
    text = verdict_text(low)
    assert not text.startswith("Diagnosis"), text
    assert "no finding reaches P = 0.5; most probable: Nodule 0.20, Atelectasis 0.18" in text
    assert low.verdict() in text and "Diagnosis" not in verdict_html(low)
    assert "no finding reaches P = 0.5; most probable: Nodule 0.20" in format_block(1, 1, low)
    high = _chest({"Effusion": 0.65, "Atelectasis": 0.73, "Nodule": 0.49})
    assert verdict_kind(high) == "diagnosis"
    assert verdict_text(high).startswith("Diagnosis: ")
    assert "findings with P >= 0.5: Atelectasis 0.73, Effusion 0.65" in verdict_text(high)
    assert "Nodule" not in verdict_text(high)
    assert "findings with P >= 0.5: Atelectasis 0.73, Effusion 0.65" in format_block(1, 1, high)


def test_an_upload_above_the_limit_gets_a_sentence_and_the_widget_goes_on(diagnosers, films,
                                                                           tmp_path):
    from xray_utils.diagnose.widget import MAX_UPLOAD_MIB, DiagnoseDemo

    assert MAX_UPLOAD_MIB >= 64
    demo = DiagnoseDemo(diagnosers["chest"], films, max_upload_mib=0.001)  # 1 KiB
    assert "up to 0.001 MiB" in demo.upload_note.value and "DICOM" in demo.upload_note.value
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(big)
    refused = demo.simulate_upload(big)
    assert not refused.ok and "above the 0.001 MiB this page accepts" in refused.error
    assert "python -m xray_utils diagnose big.png" in refused.error
    assert "data-kind='unreadable'" in demo.verdict.value and demo.upload.value == ()
    small = tmp_path / "small.png"
    Image.fromarray(pattern_image()).save(small)
    assert small.stat().st_size < 1024
    assert demo.simulate_upload(small).ok and demo.shown == "small.png (your upload)"


def test_two_quick_actions_end_with_the_second_verdict_and_picture(diagnosers, films):
    """ipykernel runs widget events on threads: the last action wins, verdict and picture agree."""
    import threading
    import time

    from xray_utils.diagnose.widget import DiagnoseDemo, picture_png

    diagnoser = diagnosers["chest"]
    seen_busy = []

    class Slow:
        def __init__(self):
            self.meta = diagnoser.meta

        def diagnose(self, sources, **kw):
            time.sleep(0.6)
            seen_busy.append(demo.status.value)
            return diagnoser.diagnose(sources, **kw)

    demo = DiagnoseDemo(diagnoser, films)
    demo.diagnoser = Slow()
    first, second = films["RG1_UNCR.dcm · chest film"], films["pattern · a test pattern"]
    t1 = threading.Thread(target=lambda: setattr(demo.sample, "value", first))
    t1.start()
    time.sleep(0.1)
    t2 = threading.Thread(target=lambda: setattr(demo.sample, "value", second))
    t2.start()
    t1.join(30)
    t2.join(30)
    assert all("diagnosing" in s for s in seen_busy) and seen_busy
    assert demo.status.value == "" and not demo.busy
    assert demo.result.file == second and demo.shown == "pattern · a test pattern"
    assert "pattern · a test pattern" in demo.verdict.value
    assert demo.picture == picture_png(diagnoser.diagnose([second])[0], demo.finding.value)


def test_the_film_is_its_own_legible_picture(diagnosers, films):
    from xray_utils.diagnose.widget import PICTURE_MIN_PX, DiagnoseDemo

    demo = DiagnoseDemo(diagnosers["chest"], films)  # a 64 x 48 test pattern
    with Image.open(__import__("io").BytesIO(demo.picture)) as img:
        assert max(img.size) >= PICTURE_MIN_PX >= 300
    assert "Grad-CAM" in demo.caption.value and demo.finding.value in demo.caption.value
    assert len(demo.figure.axes) == 3  # the charts, apart from the picture


def test_dropdown_labels_say_what_the_film_is():
    from xray_utils.diagnose.widget import _source_name, describe_film

    assert describe_film("chest", "No Finding") == "chest film, no finding"
    assert describe_film("chest", "Mass|Nodule") == "chest film, Mass, Nodule"
    assert describe_film("xray_or_not", "xray", "hand") == "hand film"
    assert describe_film("xray_or_not", "not_xray") == "photograph (not an X-ray)"
    assert describe_film("xray_type", "knee") == "knee film"
    assert _source_name("open-films/fracatlas") == "FracAtlas"
    assert _source_name("open-films/nih_cxr14") == "NIH ChestX-ray14"


def test_app_page_and_command(tmp_path, monkeypatch, capsys):
    """The app's page: its header for the visitor, the widget; without checkpoints it says so."""
    import argparse
    import json

    from xray_utils.cli import main
    from xray_utils.cli.app import APP_NOTEBOOK, voila_command
    from xray_utils.diagnose.app import NOTICE, TITLE, build_app, header_html

    head = header_html()
    assert "not a medical device" in NOTICE and "generated phantoms" in NOTICE
    assert "real films" in NOTICE and "synthetic" not in NOTICE
    assert head.count("<h1") == 1 and TITLE in head and "64 MiB" in head and "DICOM" in head
    assert "$" not in head and "/" not in head.replace("</", "")  # no variables nor paths
    nb = json.loads(APP_NOTEBOOK.read_text())
    assert nb["metadata"]["title"] == TITLE  # the browser tab's title
    assert all(c["cell_type"] == "code" for c in nb["cells"])  # no developer text on the page
    folder = write_tiny_checkpoints(tmp_path / "ckpts", "not_xray")
    page = build_app(folder, device="cpu")
    assert page.demo.result.stage == "not_xray" and "Refused" in page.demo.verdict.value
    assert str(folder) not in page.children[-1].value  # no machine path in the footer
    broken = build_app(tmp_path / "none", device="cpu")
    assert broken.demo is None and "cannot be loaded" in broken.children[0].value
    assert str(tmp_path) not in broken.children[0].value
    assert "cannot be loaded" in capsys.readouterr().err  # the reason goes to the server's log
    assert main(["app", "--checkpoints", str(tmp_path / "none")]) == 2
    assert "no trained checkpoints" in capsys.readouterr().err
    cmd = voila_command(argparse.Namespace(host="127.0.0.1", port=8866, open=False))
    assert "--Voila.ip=127.0.0.1" in cmd and "--no-browser" in cmd
    assert any(c.endswith("diagnose_app.ipynb") for c in cmd)
    settings = next(c for c in cmd if c.startswith("--Voila.tornado_settings="))
    assert str(1024 * 2**20) in settings and "disable_check_xsrf" in settings
    assert any(c.startswith("--MappingKernelManager.cull_idle_timeout=") for c in cmd)
