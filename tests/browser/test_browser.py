"""A student's first hour in a real browser: notebook 06 in JupyterLab and the diagnosis app.

Both upload pydicom-data's real film RG3_UNCR.dcm through the page's file chooser and read the
verdict the page shows; screenshots go to runs/demo/browser/.  Run with ``make browser-test``.
"""
from __future__ import annotations

import json
import re
import time

import pytest

from tools.nbclean import clean_text

from .conftest import REPO

pytestmark = pytest.mark.browser

VERDICT = ".xray-verdict"
FIGURE = ".jupyter-widgets-output-area img, .widget-output img"
# what any finished answer says: a diagnosis, another X-ray type, or the refusal
# an output of a cell that raised (JupyterLab renders tracebacks with this MIME type)
ERROR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
#: Run All of notebook 06 on CPU: a few model loads and diagnoses (about 1 min unloaded).
RUN_ALL_S = 420
ANSWER = re.compile(r"Diagnosis: X-ray|Chest film, no finding: X-ray|X-ray, no chest findings"
                    r"|Refused: not an X-ray")


def outputs_text(page) -> str:
    """The text of every cell output of the notebook page."""
    return "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())


def upload(page, film, scope=None) -> str:
    """Choose ``film`` in the (first) upload button's file chooser; the verdict naming it."""
    where = scope or page
    figure = where.locator(FIGURE).first
    before = figure.get_attribute("src", timeout=180_000)
    with page.expect_file_chooser(timeout=30_000) as chooser:
        where.locator(".jupyter-widgets.widget-upload, button:has-text('your image')").first.click()
    chooser.value.set_files(str(film))
    verdict = where.locator(VERDICT, has_text=f"{film.name} (your upload)").first
    verdict.wait_for(timeout=180_000)
    # the figure is redrawn for the upload (its picture changes)
    deadline = time.monotonic() + 60
    while figure.get_attribute("src", timeout=30_000) == before:
        assert time.monotonic() < deadline, "the figure was not redrawn for the upload"
        time.sleep(0.5)
    return verdict.inner_text()


def _timing(shots, name: str, seconds: float) -> None:
    """Report a measured time (printed and kept in runs/<profile>/browser/timings.json)."""
    path = shots / "timings.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[name] = round(seconds, 2)
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"\n{name}: {seconds:.1f} s")


def open_app(browser, server, shots, viewport=(1400, 1000), name="app_first_content_s"):
    """A new page on the app; waits for the header (timed) and the first verdict."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.set_default_timeout(180_000)
    t0 = time.monotonic()
    page.goto(server.url, wait_until="commit", timeout=120_000)
    page.locator(".xray-header").first.wait_for(timeout=120_000)
    _timing(shots, name, time.monotonic() - t0)
    assert page.get_by_text("not a medical device").count() >= 1
    page.locator(VERDICT).first.wait_for(timeout=180_000)  # the first film, diagnosed at start
    return page


def idle(page, timeout: float = 180) -> None:
    """Wait until the widget says nothing is waiting or running ("diagnosing ..." is gone)."""
    page.wait_for_function("() => !document.querySelector('.xray-busy')", timeout=timeout * 1000,
                           polling=200)


def test_app_page_for_its_visitor_and_big_upload(browser, app_server, film, big_film, shots,
                                                 checkpoints):
    page = open_app(browser, app_server, shots)
    try:
        assert page.title() == "X-ray diagnosis demo"
        body = page.locator("body").inner_text()
        assert body.count("X-ray diagnosis demo") == 1 and "64 MiB" in body
        assert "XRAY_APP" not in body and "/checkpoints" not in body and "JupyterLab" not in body
        # a film above Tornado's default 10 MiB, then a small one: both answered
        big = upload(page, big_film)
        assert ANSWER.search(big) or "cannot be read" in big, big
        text = upload(page, film)
        assert ANSWER.search(text), text
        assert page.locator(".xray-app-error").count() == 0
        page.screenshot(path=str(shots / "app_after_upload.png"), full_page=True)
        if checkpoints[1]:  # trained demo models: RG3 is an ankle film, not a chest film
            assert "Diagnosis:" not in text or "chest" not in text.split("type")[1][:20]
    finally:
        page.close()


def test_app_last_action_wins_and_phone_width(browser, app_server, chest_film, shots):
    page = open_app(browser, app_server, shots, viewport=(390, 844),
                    name="app_first_content_phone_s")
    try:
        select = page.locator(".widget-dropdown select").first
        labels = select.locator("option").all_inner_texts()
        rg3 = next(t for t in labels if t.startswith("RG3_UNCR.dcm"))
        select.select_option(label=rg3)  # the first action: RG3 from the list
        time.sleep(0.5)
        with page.expect_file_chooser(timeout=30_000) as chooser:  # the second: upload RG1
            page.locator(".jupyter-widgets.widget-upload").first.click()
        chooser.value.set_files(str(chest_film))
        page.locator(VERDICT, has_text="RG1_UNCR.dcm (your upload)").first.wait_for(
            timeout=180_000)
        idle(page)
        assert "RG1_UNCR.dcm (your upload)" in page.locator(VERDICT).first.inner_text()
        assert "RG1_UNCR.dcm" in page.locator(".xray-caption").first.inner_text()
        picture = page.locator(".xray-picture").first
        picture.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "app_phone_390x844.png"))
        box = picture.bounding_box()
        charts = page.locator(FIGURE).first.bounding_box()
        assert box["width"] >= 300, box  # the film with its heatmap, legible on a phone
        assert box["y"] + box["height"] <= charts["y"] + 1, (box, charts)  # above the charts
    finally:
        page.close()


def test_app_frees_the_kernels_of_closed_pages(browser, app_server, shots):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    most = 0
    try:
        for i in range(10):
            page.goto(app_server.url, wait_until="commit", timeout=120_000)
            page.locator(".xray-header").first.wait_for(timeout=120_000)
            # bounded memory on a small machine: let kernels of earlier loads go first
            deadline = time.monotonic() + 60
            while len(app_server.kernels()) > 3 and time.monotonic() < deadline:
                time.sleep(1)
            most = max(most, len(app_server.kernels()))
    finally:
        page.close(run_before_unload=True)
    t0 = time.monotonic()
    while app_server.kernels() and time.monotonic() - t0 < 60:
        time.sleep(2)
    left = len(app_server.kernels())
    _timing(shots, "app_kernels_gone_after_10_loads_s", time.monotonic() - t0)
    print(f"kernels alive at most {most} during 10 loads, {left} a minute after the last page")
    assert left <= 1, app_server.log.read_text()[-3000:]


def test_app_no_finding_is_not_a_diagnosis(browser, quiet_app_server, shots):
    page = open_app(browser, quiet_app_server, shots, name="app_first_content_quiet_s")
    try:
        verdict = page.locator(VERDICT).first
        text = verdict.inner_text()
        assert verdict.get_attribute("data-kind") == "no_finding", text
        assert "Diagnosis" not in text and "no finding reaches P = 0.5; most probable:" in text
    finally:
        page.close()


def test_notebook_06_in_jupyterlab(browser, lab_server, film, big_film, shots, tmp_path):
    base, token = lab_server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)
    try:
        page.goto(f"{base}/lab/tree/06_diagnose_demo.ipynb?token={token}", timeout=120_000)
        page.locator(".jp-Notebook").first.wait_for(timeout=120_000)
        page.locator(".jp-Notebook-ExecutionIndicator, .jp-KernelStatus").first.wait_for(
            timeout=60_000)
        # Run All before the kernel is ready executes nothing (the cells stay "[ ]" and the
        # kernel idle): wait until the status bar says the kernel is idle
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-KernelStatus, .jp-StatusBar-TextItem')]"
            ".some(e => /\\|\\s*Idle/.test(e.textContent))", timeout=180_000, polling=500)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        # the first code cell is queued or done within a minute, or Run All did not start
        page.wait_for_function(
            "() => { const p = document.querySelector('.jp-CodeCell .jp-InputArea-prompt');"
            " return p && /\\[(\\*|\\d+)\\]/.test(p.textContent); }", timeout=60_000, polling=500)
        # Run All ends when the last code cell has its execution count, or stops early at a cell
        # that raised (JupyterLab then leaves the cells below unexecuted): wait for either.
        page.wait_for_function(
            """() => {
                if (document.querySelector(ERROR)) return true;
                const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
                return prompts.length > 0 && /\\[\\d+\\]/.test(prompts[prompts.length - 1].textContent);
            }""".replace("ERROR", repr(ERROR)), timeout=RUN_ALL_S * 1000, polling=1000)
        errors = page.locator(ERROR)
        assert errors.count() == 0, "a cell of notebook 06 raised:\n" + errors.first.inner_text()[-3000:]
        # the outputs only: the chapter's text itself quotes the message, to say what to do
        outputs = outputs_text(page)
        assert "Error displaying widget" not in outputs, outputs[-3000:]
        assert "Traceback" not in outputs, outputs[outputs.find("Traceback") - 200:][:3000]
        widget = page.locator(".jp-OutputArea-output", has=page.locator(VERDICT)).first
        widget.scroll_into_view_if_needed()
        # Run All's final state: the list's first entry (RG1), not an upload nobody made
        assert "your upload" not in widget.inner_text() and "RG1_UNCR.dcm" in widget.inner_text()
        big = upload(page, big_film, widget)  # above Tornado's default 10 MiB
        assert ANSWER.search(big) or "cannot be read" in big, big
        text = upload(page, film, widget)
        assert ANSWER.search(text), text
        assert "Error displaying widget" not in outputs_text(page)
        widget.screenshot(path=str(shots / "notebook06_widget_after_upload.png"))
        # saved with its outputs, the chapter is still the committed one to git's filter
        saved = tmp_path / "lab" / "06_diagnose_demo.ipynb"
        page.keyboard.press("Control+s")
        deadline = time.monotonic() + 60
        while '"output_type"' not in saved.read_text(encoding="utf-8"):
            assert time.monotonic() < deadline, "JupyterLab did not save the notebook"
            time.sleep(1)
        committed = (REPO / "notebooks" / "06_diagnose_demo.ipynb").read_text(encoding="utf-8")
        assert clean_text(saved.read_text(encoding="utf-8")) == committed
    finally:
        page.screenshot(path=str(shots / "notebook06_last_page.png"))  # for a failure's story
        page.close()
