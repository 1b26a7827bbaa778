"""The preprocessing cache: same pixels as decoding, reuse, staleness, resume, unreadable files."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_real import labelled_folder_dir, write_image

from xray_utils.data import cache as cache_mod
from xray_utils.data.cache import ImageCache, build_cache, cache_key
from xray_utils.data.imageio import read_gray, resize_gray

SIZE = 24


def direct(paths, size=SIZE):
    return np.stack([resize_gray(read_gray(p), size) for p in paths])


@pytest.fixture
def files(tmp_path):
    """14 small images of different sizes and formats."""
    out = []
    for i in range(14):
        suffix = (".png", ".jpg", ".bmp")[i % 3]
        out.append(str(write_image(tmp_path / "img" / f"f{i:02d}{suffix}", size=(32 + 3 * i, 40),
                                   mode="RGB" if i % 4 == 0 else "L")))
    return out


def test_cache_equals_direct_decoding_in_parallel(tmp_path, files):
    c = build_cache(files, SIZE, tmp_path / "cache", workers=2, chunk_size=3, progress=False)
    assert isinstance(c, ImageCache) and len(c) == len(files)
    assert c.images.shape == (len(files), SIZE, SIZE) and c.images.dtype == np.uint8
    assert c.ok.all() and c.stats["decoded"] == len(files) and c.stats["reused"] == 0
    assert np.array_equal(np.asarray(c.images), direct(files))
    assert c.folder == tmp_path / "cache" / f"{SIZE}px-{cache_key(files, SIZE)}"
    report = json.loads(c.report_path.read_text())
    assert report["complete"] and report["count"] == 0 and report["ok"] == len(files)


def test_good_cache_is_reused_and_the_key_tracks_list_size_and_transform(tmp_path, files):
    first = build_cache(files, SIZE, tmp_path, workers=1, progress=False)
    second = build_cache(files, SIZE, tmp_path, workers=1, progress=False)
    assert second.stats["decoded"] == 0 and second.stats["reused"] == len(files)
    assert second.folder == first.folder
    assert np.array_equal(np.asarray(second.images), np.asarray(first.images))
    keys = {cache_key(files, SIZE), cache_key(files, SIZE + 1), cache_key(files[:-1], SIZE),
            cache_key(files[::-1], SIZE), cache_key(files, SIZE, transform="other-v2")}
    assert len(keys) == 5


def test_changed_source_file_is_stale_and_decoded_again(tmp_path, files):
    build_cache(files, SIZE, tmp_path, workers=1, progress=False)
    target = Path(files[4])
    write_image(target.with_name("other.png"), size=(50, 60))
    target.write_bytes(target.with_name("other.png").read_bytes())
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    again = build_cache(files, SIZE, tmp_path, workers=1, progress=False)
    assert again.stats["decoded"] == 1
    assert np.array_equal(again.images[4], direct([files[4]])[0])


def test_unreadable_images_are_skipped_counted_and_reported(tmp_path, files):
    broken = tmp_path / "img" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    paths = files[:5] + [str(broken), str(tmp_path / "img" / "absent.png")] + files[5:]
    c = build_cache(paths, SIZE, tmp_path / "cache", workers=2, chunk_size=4, progress=False)
    assert c.ok.sum() == len(files) and c.stats["unreadable"] == 2
    assert c.unreadable() == [str(broken), str(tmp_path / "img" / "absent.png")]
    report = json.loads((c.folder / "report.json").read_text())
    assert report["count"] == 2 and report["complete"]
    assert [e["path"] for e in report["unreadable"]] == c.unreadable()
    assert "file not found" in report["unreadable"][1]["error"]
    assert not c.images[5].any() and not c.images[6].any()
    good = [i for i in range(len(paths)) if i not in (5, 6)]
    assert np.array_equal(np.asarray(c.images)[good], direct(files))
    # the missing file appears later: only it is decoded, and the report forgets it
    write_image(tmp_path / "img" / "absent.png")
    c2 = build_cache(paths, SIZE, tmp_path / "cache", workers=1, progress=False)
    assert c2.stats["decoded"] == 1 and c2.unreadable() == [str(broken)]
    assert json.loads(c2.report_path.read_text())["count"] == 1


def test_interrupted_build_resumes_with_only_the_missing_entries(tmp_path, files, monkeypatch):
    real = cache_mod._decode_one
    calls = {"n": 0}

    def flaky(path, size):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt  # the user stops the build in chunk 4
        return real(path, size)

    monkeypatch.setattr(cache_mod, "_decode_one", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_cache(files, SIZE, tmp_path, workers=1, chunk_size=2, checkpoint_every=1, progress=False)
    folder = tmp_path / f"{SIZE}px-{cache_key(files, SIZE)}"
    assert np.load(folder / "done.npy").sum() == 6
    assert not json.loads((folder / "report.json").read_text())["complete"]
    monkeypatch.setattr(cache_mod, "_decode_one", real)
    resumed = build_cache(files, SIZE, tmp_path, workers=1, chunk_size=2, progress=False)
    assert resumed.stats["decoded"] == len(files) - 6 and resumed.stats["reused"] == 6
    assert np.array_equal(np.asarray(resumed.images), direct(files))


KILLED_BUILD = """
import sys, time
from xray_utils.data import cache
real = cache._decode_one
def slow(path, size):
    time.sleep(0.05)
    return real(path, size)
cache._decode_one = slow
cache.build_cache(sys.argv[3:], int(sys.argv[2]), sys.argv[1], workers=1, chunk_size=2,
                  checkpoint_every=1, progress=False)
"""


def test_hard_killed_build_resumes_from_its_last_checkpoint(tmp_path, files):
    """A build killed with SIGKILL (no clean-up runs) keeps what its periodic checkpoints saved."""
    import signal
    import subprocess
    import sys

    cache_dir = tmp_path / "cache"
    folder = cache_dir / f"{SIZE}px-{cache_key(files, SIZE)}"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(cache_dir), str(SIZE), *files])
    try:
        deadline = time.monotonic() + 60
        progressed = False
        while not progressed and time.monotonic() < deadline:
            assert proc.poll() is None, f"the background build ended early (exit code {proc.returncode})"
            try:
                progressed = np.load(folder / "done.npy").sum() >= 4
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        assert progressed, "the background build made no progress in 60 s"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    saved = int(np.load(folder / "done.npy").sum())
    assert 4 <= saved < len(files)
    resumed = build_cache(files, SIZE, cache_dir, workers=1, progress=False)
    assert resumed.stats["reused"] == saved and resumed.stats["decoded"] == len(files) - saved
    assert np.array_equal(np.asarray(resumed.images), direct(files))


def test_damaged_state_is_rebuilt_from_scratch(tmp_path, files):
    c = build_cache(files, SIZE, tmp_path, workers=1, progress=False)
    (c.folder / "index.json").write_text("{not json")
    again = build_cache(files, SIZE, tmp_path, workers=1, progress=False)
    assert again.stats["decoded"] == len(files)
    assert np.array_equal(np.asarray(again.images), direct(files))


def test_empty_list(tmp_path):
    c = build_cache([], SIZE, tmp_path, progress=False)
    assert len(c) == 0 and c.images.shape == (0, SIZE, SIZE)


@pytest.mark.skipif(labelled_folder_dir() is None,
                    reason="real samples absent (set XRAY_REAL_SAMPLES or <repo>/../shared/real-samples)")
def test_cache_builds_from_the_real_samples(tmp_path):
    folder = labelled_folder_dir()
    labels = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    subset = labels.groupby(labels["file"].str.split("/").str[0]).head(24)  # every sub-source
    paths = [str(folder / f) for f in subset["file"]]
    start = time.perf_counter()
    c = build_cache(paths, 64, tmp_path, workers=2, chunk_size=16, progress=False)
    seconds = time.perf_counter() - start
    print(f"real-sample cache: {len(paths)} images in {seconds:.2f} s ({len(paths) / seconds:.0f} images/s)")
    assert c.ok.all() and c.stats["unreadable"] == 0
    assert np.array_equal(np.asarray(c.images), direct(paths, 64))
