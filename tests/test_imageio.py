"""The image reader: every kind of file, the real DICOM films, the bad-file corpus."""
from __future__ import annotations

import csv
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xray_utils.data import imageio
from xray_utils.data.imageio import ImageReadError, read_gray, read_gray_bytes, resize_gray

sys.path.insert(0, str(Path(__file__).parent))
from bad_files import pattern_image, write_corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return {p.name: (p, e) for p, e in write_corpus(folder)}


def _rg(name: str) -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file(name))


def test_corpus_is_big_enough(corpus):
    assert len(corpus) >= 15
    assert sum(e.readable is False for _, e in corpus.values()) >= 10
    assert sum(e.readable is True for _, e in corpus.values()) >= 10


def test_every_corpus_file_is_read_or_refused_clearly(corpus):
    """Each file: the documented result, and a refusal is an ImageReadError naming the file."""
    failures = []
    for name, (path, exp) in corpus.items():
        try:
            img = read_gray(path)
        except ImageReadError as exc:
            msg = str(exc)
            if exp.readable is True:
                failures.append(f"{name}: refused but should be read: {msg}")
            elif str(path) not in msg:
                failures.append(f"{name}: message does not name the file: {msg}")
            elif exp.error and not re.search(exp.error, msg, re.I):
                failures.append(f"{name}: message {msg!r} does not match {exp.error!r}")
            elif "Traceback" in msg or len(msg) > 800:
                failures.append(f"{name}: message is not a sentence: {msg}")
            continue
        if exp.readable is False:
            failures.append(f"{name}: read as {img.shape} but should be refused")
        elif (img.ndim != 2 or img.dtype != np.uint8 or not img.flags.c_contiguous
              or not img.flags.writeable):
            failures.append(f"{name}: result {img.dtype} {img.shape} is not a 2-D contiguous, "
                            "writable uint8 array")
        elif exp.shape is not None and img.shape != exp.shape:
            failures.append(f"{name}: shape {img.shape}, expected {exp.shape}")
    assert not failures, "\n".join(failures)


def test_rg1_chest_lungs_darker_than_mediastinum():
    """RG1_UNCR.dcm (MONOCHROME1, 15 bit) must come out with dark lungs and a bright midline."""
    img = read_gray(_rg("RG1_UNCR.dcm")).astype(np.float64)
    h, w = img.shape
    profile = img[int(0.25 * h): int(0.6 * h)].mean(axis=0)  # column means over the lung rows
    left_lung = profile[int(0.10 * w): int(0.45 * w)].min()
    right_lung = profile[int(0.55 * w): int(0.90 * w)].min()
    mediastinum = profile[int(0.40 * w): int(0.60 * w)].max()
    assert mediastinum - max(left_lung, right_lung) > 30, (left_lung, right_lung, mediastinum)
    # the darkest columns of each half lie inside the lung fields, not at the edges
    assert 0.1 * w < np.argmin(profile[: w // 2]) < 0.45 * w
    assert 0.55 * w < w // 2 + np.argmin(profile[w // 2:]) < 0.9 * w


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG3_UNCR.dcm"])
def test_monochrome1_films_are_inverted(name):
    """Our 8-bit image is the negative of pydicom's raw MONOCHROME1 values."""
    import pydicom

    ds = pydicom.dcmread(_rg(name))
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    raw = ds.pixel_array.astype(np.float64)[::8, ::8].ravel()
    ours = read_gray(_rg(name)).astype(np.float64)[::8, ::8].ravel()
    assert np.corrcoef(raw, ours)[0, 1] < -0.95


def test_monochrome1_ramp_inverted(corpus):
    img = read_gray(corpus["ramp_monochrome1.dcm"][0]).astype(int)
    row = img[0]
    assert row[0] == 255 and row[-1] == 0  # raw 0 = white in MONOCHROME1
    assert np.all(np.diff(row) <= 0)
    assert (img == img[0]).all()


def test_dicom_window_is_applied_with_pydicom(corpus):
    """Window 1024/1024 on a 0..4095 ramp: black below ~512, white above ~1536, linear between."""
    import pydicom
    from pydicom.pixels import apply_voi_lut

    path = corpus["ramp_windowed.dcm"][0]
    img = read_gray(path).astype(int)[0]
    raw = np.linspace(0, 4095, 64).astype(np.uint16)
    assert (img[raw < 500] == 0).all() and (img[raw > 1540] == 255).all()
    inside = (raw > 520) & (raw < 1530)
    assert inside.sum() >= 10 and np.all(np.diff(img[inside]) > 0)
    ds = pydicom.dcmread(path)
    expected = apply_voi_lut(ds.pixel_array.astype(np.float64), ds)[0] / 4095 * 255
    assert np.abs(img - expected).max() <= 1


def test_dicom_without_window_uses_percentile_window():
    """RG3 has a window; without it the reader falls back to the percentile window."""
    import pydicom

    ds = pydicom.dcmread(_rg("RG3_UNCR.dcm"))
    raw = ds.pixel_array.astype(np.float64)
    lo, hi = np.percentile(raw, imageio.WINDOW_PERCENTILES)
    with_window = read_gray(_rg("RG3_UNCR.dcm"))
    expected = 255 - np.clip(np.rint((raw - lo) * 255 / (hi - lo)), 0, 255)
    assert np.abs(with_window.astype(float) - expected).mean() > 1  # the file's window differs
    del ds.WindowCenter, ds.WindowWidth
    import io

    buf = io.BytesIO()
    ds.save_as(buf)
    no_window = read_gray_bytes(buf.getvalue(), "rg3-no-window.dcm")
    assert np.abs(no_window.astype(float) - expected).max() <= 1


def test_multiframe_dicom_uses_first_frame(corpus):
    img = read_gray(corpus["two_frames.dcm"][0]).astype(int)
    assert img[0, 0] < img[0, -1]  # frame 0 is the rising ramp, frame 1 the falling one


def test_dicom_without_preamble(corpus):
    assert imageio.is_dicom(corpus["ramp_windowed.dcm"][0])
    assert not imageio.is_dicom(corpus["no_preamble.dcm"][0])
    img = read_gray(corpus["no_preamble.dcm"][0]).astype(int)
    assert img[0, 0] == 0 and img[0, -1] == 255 and np.all(np.diff(img[0]) >= 0)


def test_exif_orientation_applied(corpus):
    img = read_gray(corpus["exif_rotated.jpg"][0]).astype(float)
    expected = np.rot90(pattern_image(), k=-1).astype(float)  # orientation 6 = 90 degrees clockwise
    assert img.shape == expected.shape == (64, 48)
    assert np.abs(img - expected).mean() < 4
    assert img[:10, -10:].mean() > 240 and img[:10, :10].mean() < 150  # bright block: top right


def test_png_named_dcm_and_jpeg_named_png(corpus):
    np.testing.assert_array_equal(read_gray(corpus["png_named.dcm"][0]), pattern_image())
    jpg = read_gray(corpus["jpeg_named.png"][0]).astype(float)
    assert np.abs(jpg - pattern_image()).mean() < 3


def test_16bit_png_windowed_to_8bit(corpus):
    img = read_gray(corpus["gray16.png"][0])
    src = np.asarray(Image.open(corpus["gray16.png"][0])).astype(np.float64)
    assert src.max() > 255  # really 16-bit content
    assert img.min() == 0 and img.max() == 255  # the percentile window uses the full range
    assert np.corrcoef(src.ravel(), img.ravel().astype(float))[0, 1] > 0.99
    np.testing.assert_array_equal(img, imageio.to_uint8(src))


def test_rgba_composited_on_black(corpus):
    img = read_gray(corpus["rgba.png"][0]).astype(int)
    assert imageio.ALPHA_BACKGROUND == 0
    assert (img[:, -16:] == 0).all()  # transparent margin
    assert np.abs(img[:, :-16] - pattern_image()[:, :-16].astype(int)).max() <= 1


@pytest.mark.parametrize("name,tolerance", [("gray_alpha.png", 1), ("cmyk.jpg", 6),
                                            ("palette.png", 8)])
def test_colour_modes_become_the_same_gray(corpus, name, tolerance):
    img = read_gray(corpus[name][0]).astype(float)
    assert np.abs(img - pattern_image()).mean() <= tolerance


def test_float_tiff_and_bilevel(corpus):
    f = read_gray(corpus["float.tif"][0]).astype(float)
    assert np.corrcoef(f.ravel(), pattern_image().ravel().astype(float))[0, 1] > 0.99
    b = read_gray(corpus["bilevel.bmp"][0])
    assert set(np.unique(b)) <= {0, 255}


def test_limits_are_keywords_and_module_constants(corpus):
    assert Image.MAX_IMAGE_PIXELS == imageio.MAX_PIXELS
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ImageReadError, match="too small"):
        read_gray(corpus["tiny.png"][0])
    assert read_gray(corpus["tiny.png"][0], min_side=8).shape == (8, 8)
    assert read_gray(corpus["wide.png"][0], max_aspect=200).shape == (40, 4000)
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_gray(corpus["png_named.dcm"][0], max_pixels=1000)


def test_read_gray_bytes_matches_file(corpus):
    path = corpus["gray16.png"][0]
    np.testing.assert_array_equal(read_gray_bytes(path.read_bytes(), path.name), read_gray(path))
    with pytest.raises(ImageReadError, match=r"upload\.png.*contains text"):
        read_gray_bytes(b"hello, this is not a picture at all", "upload.png")
    with pytest.raises(ImageReadError, match="empty"):
        read_gray_bytes(b"", "upload.png")


def test_resize_helpers(corpus):
    img = read_gray(corpus["png_named.dcm"][0])
    small = resize_gray(img, 32)
    assert small.shape == (32, 32) and small.dtype == np.uint8 and small.flags.writeable
    assert resize_gray(small, 32) is small
    np.testing.assert_array_equal(imageio.read_gray_resized(corpus["png_named.dcm"][0], 32), small)


def test_to_uint8_edge_cases():
    assert (imageio.to_uint8(np.full((4, 4), 1000.0)) == 0).all()  # constant image
    with_nan = np.arange(16, dtype=float).reshape(4, 4)
    with_nan[0, 0] = np.nan
    out = imageio.to_uint8(with_nan)
    assert out[0, 0] == 0 and out.max() == 255
    hot = np.tile(np.arange(100, dtype=float), (100, 1))
    hot[0, 0] = 1e9  # one hot pixel must not squash the rest into black
    assert imageio.to_uint8(hot)[50].max() == 255


def _real_samples() -> Path | None:
    env = os.environ.get("XRAY_REAL_SAMPLES")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "real-samples"]:
        if (cand / "labels.csv").is_file():
            return cand
    return None


def test_real_samples_read_at_their_size():
    root = _real_samples()
    if root is None:
        pytest.skip("real samples not found: set XRAY_REAL_SAMPLES or put them in "
                    "../shared/real-samples")
    rows = list(csv.DictReader(open(root / "labels.csv", newline="")))
    pick = rows[:: max(1, len(rows) // 25)]
    for row in pick:
        img = read_gray(root / row["file"])
        assert img.dtype == np.uint8 and img.shape == (int(row["height"]), int(row["width"]))
        assert img.std() > 5  # a real picture, not a constant
