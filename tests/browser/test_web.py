"""The static page (python -m xray_utils export-web) in Chromium, against ``diagnose --json``.

The site is built from the checkpoints of the browser tests (the trained demo run's when there is
one, else untrained routed ones), served by ``python -m http.server`` on 127.0.0.1, and fed
real films and photographs of data/open-films's test split plus pydicom-data's RG1/RG3 (saved as
PNG).  Every verdict must be the command line's, every probability within 0.02 of it, every
heatmap correlate >= 0.95 with ``diagnose()``'s.  The page's arithmetic (resize, luma, Grad-CAM)
is also compared value by value with the Python it replicates.  Timings and screenshots go to
runs/demo/browser/.
"""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import REPO, free_port, start, stop, wait_http

pytestmark = pytest.mark.browser

TOLERANCE = 0.02
MIN_CORRELATION = 0.95
PER_SOURCE = 5          # films or photographs per source of the pack's test split
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def ensure_onnxruntime_web() -> None:
    """``npm ci`` in web/ when onnxruntime-web is not installed (a fresh clone)."""
    from xray_utils.web.export import ORT_DIST, ORT_FILES

    if all((ORT_DIST / f).is_file() for f in ORT_FILES):
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed: apt-get install -y npm (node 18 or later), then "
                    "make web-deps")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=REPO / "web", check=True,
                   timeout=600)


@pytest.fixture(scope="session")
def web_checkpoints(checkpoints, tmp_path_factory) -> tuple[Path, bool]:
    """The browser tests' checkpoints when trained; else untrained routed ones at 64 px (the
    chest model's last block is then 2 x 2, so the heatmaps have something to compare)."""
    folder, trained = checkpoints
    if trained:
        return folder, True
    from xray_utils.untrained import write_routed_checkpoints

    return write_routed_checkpoints(tmp_path_factory.mktemp("web_ck"), "chest", image_size=64), False


@pytest.fixture(scope="session")
def site(web_checkpoints, tmp_path_factory) -> Path:
    from xray_utils.web.export import export_site

    ensure_onnxruntime_web()
    out = tmp_path_factory.mktemp("site")
    export_site(web_checkpoints[0], out)
    return out


@pytest.fixture(scope="session")
def site_url(site, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("web_server") / "server.log"
    proc = start([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                  "--directory", str(site)], log)
    try:
        wait_http(f"http://127.0.0.1:{port}/index.html", proc, log, timeout=60)
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def films(tmp_path_factory) -> list[Path]:
    """Real films and photographs: PER_SOURCE of each source of the pack's test split, plus
    pydicom-data's RG1 (chest) and RG3 (ankle) read by the project's reader and saved as PNG."""
    from pydicom.data import get_testdata_file

    from xray_utils.data.imageio import read_gray
    from xray_utils.sources.open_films import load_open_films

    pack = load_open_films(seed=0)
    test = pack[pack["split"] == "test"].sort_values("path")
    chosen = [Path(p) for _, g in test.groupby("source") for p in g["path"].iloc[:PER_SOURCE]]
    folder = tmp_path_factory.mktemp("dicom_png")
    for name in ("RG1_UNCR.dcm", "RG3_UNCR.dcm"):
        png = folder / name.replace(".dcm", ".png")
        Image.fromarray(read_gray(get_testdata_file(name))).save(png)
        chosen.append(png)
    assert len(chosen) >= 20
    return chosen


def cli_records(checkpoints: Path, files: list[Path]) -> dict[str, dict]:
    proc = subprocess.run([sys.executable, "-m", "xray_utils", "diagnose", "--checkpoints",
                           str(checkpoints), "--json", *map(str, files)],
                          capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return {Path(r["file"]).name: r for r in json.loads(proc.stdout)}


def stage_of(record: dict) -> str:
    if record["xray_type"] is None:
        return "not_xray"
    return "chest" if record["findings"] is not None else "type_only"


def open_page(browser, url: str, viewport: dict):
    page = browser.new_page(viewport=viewport)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("document.body.dataset.state !== 'loading'", timeout=180_000)
    assert page.evaluate("document.body.dataset.state") == "ready", (
        page.locator("#status").inner_text(), errors)
    return page, errors


def upload(page, files: list[Path]) -> list[dict]:
    before = page.evaluate("xrayPage.results.length")
    page.get_by_label("PNG or JPEG file").set_input_files([str(f) for f in files])
    page.wait_for_function(f"xrayPage.results.length >= {before + len(files)}", timeout=300_000)
    return page.evaluate(f"xrayPage.results.slice({before}).map(r => ({{...r, heatmaps: "
                         "r.heatmaps && Object.fromEntries(Object.entries(r.heatmaps)"
                         ".map(([k, v]) => [k, Array.from(v)]))}))")


def test_page_gives_the_verdicts_of_diagnose(browser, site, site_url, web_checkpoints, films,
                                             shots):
    from xray_utils.diagnose.diagnoser import Diagnoser

    folder, trained = web_checkpoints
    expected = cli_records(folder, films)
    heat = {Path(d.file).name: d.heatmaps for d in Diagnoser(folder, device="cpu").diagnose(films)}
    page, errors = open_page(browser, site_url, DESKTOP)
    load_s = page.evaluate("xrayPage.loadMs") / 1000
    got = upload(page, films)
    assert not errors, errors
    worst, correlations, times, refused = 0.0, [], [], 0
    for r in got:
        e = expected[r["file"]]
        assert r["ok"] == e["ok"], (r, e)
        if not e["ok"]:  # refused by both (too small, blank, ...): the same verdict
            refused += 1
            continue
        assert r["stage"] == stage_of(e), (r["file"], r["stage"], stage_of(e))
        assert r["xray_type"] == e["xray_type"], r["file"]
        pairs = [(r["is_xray"], e["is_xray"])]
        for key in ("type_probs", "findings"):
            if e[key] is not None:
                pairs += [(r[key][k], v) for k, v in e[key].items()]
        diff = max(abs(a - b) for a, b in pairs)
        assert diff <= TOLERANCE, (r["file"], diff)
        worst = max(worst, diff)
        for finding, m in (r["heatmaps"] or {}).items():
            ref = heat[r["file"]].get(finding)
            if ref is None:  # a near tie put another finding in the top 3
                continue
            a, b = np.asarray(m, float), ref.ravel().astype(float)
            if a.std() == 0 and b.std() == 0:  # both flat (no positive evidence): the same
                assert np.abs(a - b).max() == 0
                continue
            corr = float(np.corrcoef(a, b)[0, 1])
            correlations.append(corr)
            assert corr >= MIN_CORRELATION, (r["file"], finding, corr)
        times.append(r["ms"])
    stages = sorted({r["stage"] for r in got if r["ok"]})
    report = {"files": len(got), "refused_by_both": refused, "stages": stages, "trained_checkpoints": trained,
              "largest_probability_difference": worst,
              "smallest_heatmap_correlation": min(correlations) if correlations else None,
              "first_load_s": load_s, "median_ms_per_film": statistics.median(times),
              "site_mib": sum(f.stat().st_size for f in site.rglob("*") if f.is_file()) / 2**20}
    (shots / "web_report.json").write_text(json.dumps(report, indent=2))
    print("\nweb page vs diagnose --json:", json.dumps(report))
    # heatmaps exist for the films that reach Module III: with trained checkpoints only the chest
    # films (the others stop at Module I or II), with the untrained routed ones every file
    n_chest = sum(1 for r in got if r["ok"] and r["stage"] == "chest")
    assert n_chest > 0, "no file reached Module III: the heatmaps were never compared"
    assert len(correlations) >= n_chest, "too few heatmaps with any spread were compared"
    assert len(got) - refused >= 20
    page.screenshot(path=str(shots / "web_desktop.png"), full_page=True)
    page.close()


def test_bad_files_get_their_messages_and_the_page_stays_usable(browser, site_url, films,
                                                                tmp_path, shots):
    good = films[0].read_bytes()
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(good[: len(good) // 2])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(good[:3] + bytes(range(256)) * 40 + b"\xff\xd9")
    text = tmp_path / "notes.png"
    text.write_text("not an image at all\n")
    from pydicom.data import get_testdata_file

    dicom = tmp_path / "film.dcm"
    shutil.copy(get_testdata_file("RG1_UNCR.dcm"), dicom)
    blank = tmp_path / "blank.png"
    Image.new("L", (300, 200), 128).save(blank)
    big = tmp_path / "big.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (3300, 3300, 3), dtype=np.uint8)).save(big, compress_level=0)
    assert big.stat().st_size > 30 * 2**20
    page, errors = open_page(browser, site_url, PHONE)
    cases = {corrupt: "truncated or corrupt", garbage: "cannot be decoded",
             text: "not a PNG or JPEG image", dicom: "save the film as PNG",
             big: "more than the 20 MiB this page accepts", blank: "blank or unreadable image"}
    for path, words in cases.items():
        r = upload(page, [path])[0]
        assert not r["ok"] and words in r["error"] and path.name in r["error"], (path.name, r)
        assert page.locator("#results [role=alert]").first.inner_text().endswith(r["error"])
    # still usable: a good film after every error
    assert upload(page, [films[0]])[0]["ok"]
    assert not errors, errors
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide at a phone's {PHONE['width']} px"
    page.screenshot(path=str(shots / "web_phone.png"), full_page=True)
    page.close()


def test_form_controls_are_labelled_and_keyboard_usable(browser, site_url, films):
    page, _ = open_page(browser, site_url, DESKTOP)
    for control in page.locator("input, button").all():
        name = control.evaluate(
            "el => (el.labels && el.labels.length ? el.labels[0].textContent : '') "
            "|| el.getAttribute('aria-label') || el.textContent")
        assert name.strip(), control.evaluate("el => el.outerHTML")
    focused = []
    for _ in range(12):  # Tab reaches the file chooser
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id"))
        if focused[-1] == "file":
            break
    assert "file" in focused, focused
    upload(page, [films[0]])
    page.locator("#clear").focus()
    page.keyboard.press("Enter")
    assert page.locator("#results li").count() == 0
    assert page.evaluate("document.activeElement.id") == "file"
    page.close()


def test_page_arithmetic_equals_the_python_it_replicates(browser, site_url):
    """resizeGray == imageio.resize_gray (Pillow, bit for bit, both orders of its two passes:
    (53, 37) -> 40 and (300, 40) -> 40 run the vertical pass first), rgbaToGray == convert("L"),
    gradcam == explain.gradcam.cams_from_features, on random inputs."""
    import torch

    from xray_utils.data.imageio import resize_gray
    from xray_utils.explain.gradcam import normalize_maps, upsample_maps

    page, _ = open_page(browser, site_url, DESKTOP)
    rng = np.random.default_rng(1)
    for (h, w), size in [((53, 37), 40), ((300, 500), 64), ((64, 64), 64), ((20, 100), 32),
                         ((999, 1000), 40), ((40, 41), 64), ((2048, 1536), 224), ((33, 260), 40),
                         ((40, 300), 40), ((300, 40), 40)]:
        img = rng.integers(0, 256, (h, w), dtype=np.uint8)
        got = page.evaluate("async ([a, w, h, s]) => { const m = await import('./xray.mjs'); "
                            "return Array.from(m.resizeGray(Uint8Array.from(a), w, h, s)); }",
                            [img.ravel().tolist(), w, h, size])
        diff = np.abs(np.asarray(got).reshape(size, size).astype(int) - resize_gray(img, size))
        assert diff.max() == 0, ((h, w), size, diff.max())
    rgb = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((30, 50, 1), 255, np.uint8)], axis=2)
    got = page.evaluate("async ([a, w, h]) => { const m = await import('./xray.mjs'); "
                        "return Array.from(m.rgbaToGray(Uint8Array.from(a), w, h)); }",
                        [rgba.ravel().tolist(), 50, 30])
    assert (np.asarray(got).reshape(30, 50) == np.asarray(Image.fromarray(rgb).convert("L"))).all()
    feats = rng.normal(size=(16, 3, 2)).astype(np.float32)
    weights = rng.normal(size=16)
    got = page.evaluate("async ([f, wt]) => { const m = await import('./xray.mjs'); "
                        "return Array.from(m.gradcam(Float32Array.from(f), 16, 3, 2, wt, 48)); }",
                        [feats.ravel().tolist(), weights.tolist()])
    A = torch.from_numpy(feats).double()[None]
    alpha = torch.from_numpy(weights)[None, :] * (A > 0).double().mean(dim=(2, 3)) / 6
    raw = torch.relu(torch.einsum("nk,nkij->nij", alpha, A))[:, None]
    want = normalize_maps(upsample_maps(raw, (48, 48)))[0, 0].numpy()
    assert np.abs(np.asarray(got).reshape(48, 48) - want).max() < 1e-6
    page.close()
