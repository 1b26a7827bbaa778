"""A student's first hour in a real browser: notebook 06 in JupyterLab and the diagnosis app.

Both upload pydicom-data's real film RG3_UNCR.dcm through the page's file chooser and read the
verdict the page shows; screenshots go to runs/demo/browser/.  Run with ``make browser-test``.
"""
from __future__ import annotations

import re
import time

import pytest

pytestmark = pytest.mark.browser

VERDICT = ".xray-verdict"
FIGURE = ".jupyter-widgets-output-area img, .widget-output img"
# what any finished answer says: a diagnosis, another X-ray type, or the refusal
# an output of a cell that raised (JupyterLab renders tracebacks with this MIME type)
ERROR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
#: Run All of notebook 06 on CPU: a few model loads and diagnoses (about 1 min unloaded).
RUN_ALL_S = 420
ANSWER = re.compile(r"Diagnosis: X-ray|X-ray, no chest findings|Refused: not an X-ray")


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


def test_app_page_upload(browser, app_server, film, shots, checkpoints):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(180_000)
    try:
        page.goto(app_server, timeout=120_000)
        page.get_by_text("not a medical device").first.wait_for(timeout=180_000)
        page.locator(VERDICT).first.wait_for(timeout=180_000)  # the first film, diagnosed at start
        text = upload(page, film)
        assert ANSWER.search(text), text
        assert page.locator(".xray-app-error").count() == 0
        page.screenshot(path=str(shots / "app_after_upload.png"), full_page=True)
        if checkpoints[1]:  # trained demo models: RG3 is an ankle film, not a chest film
            assert "Diagnosis:" not in text or "chest" not in text.split("type")[1][:20]
    finally:
        page.close()


def test_notebook_06_in_jupyterlab(browser, lab_server, film, shots):
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
        text = upload(page, film, widget)
        assert ANSWER.search(text), text
        assert "Error displaying widget" not in outputs_text(page)
        widget.screenshot(path=str(shots / "notebook06_widget_after_upload.png"))
    finally:
        page.screenshot(path=str(shots / "notebook06_last_page.png"))  # for a failure's story
        page.close()
