"""The decoding budget: image and DICOM bombs refused with one sentence each, blank images
refused before the models, and a ``diagnose --json`` batch that survives them all.

Every file is generated small (tests/bombs.py); the peak memory and time of ``diagnose`` on the
full-size bombs are measured outside the tests (``python tests/bombs.py DIR`` writes them)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from bombs import blank_images, j2k_dicom, rle_bomb, segmented_palette, sequence_bomb, tiff_tile_bomb
from PIL import Image, features

from xray_utils.data.decode_worker import DecodeWorker
from xray_utils.data.imageio import ImageReadError, read_gray
from xray_utils.diagnose import rule


def _film(path, size=64):
    Image.fromarray((np.add.outer(np.arange(size), np.arange(size)) % 256).astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize("deflate", [True, False])
def test_sequence_of_many_empty_items_is_refused_before_parsing(tmp_path, deflate):
    path = sequence_bomb(tmp_path / "items.dcm", 150_000, deflate=deflate)
    with pytest.raises(ImageReadError, match=r"items.dcm: .*more than 100,000 data elements"):
        read_gray(path)
    # the same film with a short sequence is read
    assert read_gray(sequence_bomb(tmp_path / "few.dcm", 50, deflate=deflate)).shape == (64, 64)


def test_deeply_nested_sequences_are_refused(tmp_path):
    path = sequence_bomb(tmp_path / "nested.dcm", 10, deflate=False, depth=30)
    with pytest.raises(ImageReadError, match=r"nested.dcm: .*nests sequences more than 12 deep"):
        read_gray(path)
    assert read_gray(sequence_bomb(tmp_path / "ok.dcm", 10, deflate=False, depth=3)).shape == (64, 64)


def test_declared_length_past_the_end_is_refused(tmp_path):
    path = _film(tmp_path / "f.png")
    from bombs import EXPLICIT, _dataset, _save

    ds = _dataset(64, 64)
    ds.PixelData = np.asarray(Image.open(path)).tobytes()
    dcm = _save(ds, EXPLICIT, tmp_path / "cut.dcm")
    data = dcm.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-1000])
    with pytest.raises(ImageReadError, match=r"cut.dcm: .*\(7FE0,0010\) declares 4,096 bytes"):
        read_gray(tmp_path / "cut.dcm")


def test_segmented_palette_is_refused(tmp_path):
    path = segmented_palette(tmp_path / "palette.dcm", segments=3)
    with pytest.raises(ImageReadError, match=r"palette.dcm: .*segmented palette colour lookup"):
        read_gray(path)


def test_rle_segment_expanding_past_the_header_is_refused(tmp_path):
    path = rle_bomb(tmp_path / "rle.dcm", 0.25)  # 256 KiB of runs -> 16 MiB for a 64 x 64 image
    with pytest.raises(ImageReadError, match=r"rle.dcm: an RLE segment .* beyond the 64 x 64"):
        read_gray(path)


def test_rle_film_is_read(tmp_path):
    from bombs import RLE, _dataset, _save
    from pydicom.encaps import encapsulate

    ds = _dataset(64, 64)
    # one segment, each row one literal run of 64 bytes (header byte 63)
    segment = b"".join(bytes([63, *((np.arange(64) + r) % 256).tolist()]) for r in range(64))
    header = (1).to_bytes(4, "little") + (64).to_bytes(4, "little") + bytes(56)
    ds.PixelData = encapsulate([header + segment])
    ds["PixelData"].VR = "OB"
    img = read_gray(_save(ds, RLE, tmp_path / "rle_ok.dcm"))
    assert img.shape == (64, 64) and img[0, 0] < img[0, 50]


@pytest.mark.skipif(not features.check("jpg_2000"), reason="Pillow built without OpenJPEG")
def test_jpeg2000_larger_than_its_header_is_refused(tmp_path):
    path = j2k_dicom(tmp_path / "j2k.dcm", 512)
    with pytest.raises(ImageReadError, match=r"j2k.dcm: .*declares 512 x 512 pixels but the DICOM "
                                             r"header says 64 x 64"):
        read_gray(path)


def test_tiff_with_a_huge_tile_is_refused(tmp_path):
    path = tiff_tile_bomb(tmp_path / "tile.tif", 4096)  # a 16 MiB tile for a 256 x 256 image
    with pytest.raises(ImageReadError, match=r"tile.tif: .*tile or strip of 4096 x 4096 pixels"):
        read_gray(path, max_bytes=8 * 2**20)


def test_worker_bounds_memory_and_time(tmp_path):
    big = tmp_path / "big.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 65535, (3000, 3000), dtype=np.uint16)).save(big)
    small = _film(tmp_path / "small.png")
    with DecodeWorker(memory_bytes=40 * 2**20) as worker:
        with pytest.raises(ImageReadError, match=r"big.png: (not enough memory|.*than the 40 MiB)"):
            worker.read_gray(big)
        assert worker.read_gray(small).shape == (64, 64)  # restarted, the next file is read
    with DecodeWorker(timeout_s=0.01) as worker:  # less than the child needs to start
        with pytest.raises(ImageReadError, match=r"big.png: decoding took longer than 0.01 s"):
            worker.read_gray(big)
    with DecodeWorker() as worker:
        assert np.array_equal(worker.read_gray(small), read_gray(small))
        with pytest.raises(ImageReadError, match="file not found"):
            worker.read_gray(tmp_path / "missing.png")
        assert worker.read_gray_bytes(small.read_bytes(), "up.png").shape == (64, 64)


def test_blank_images_are_refused_by_the_rule(tmp_path):
    for path in blank_images(tmp_path):
        assert rule.blank_reason(read_gray(path)).startswith("blank or unreadable image"), path
    assert rule.blank_reason(read_gray(_film(tmp_path / "film.png"))) is None


def test_diagnose_json_survives_every_bomb(tmp_path, capsys):
    from bad_files import write_tiny_checkpoints
    from commands import diagnose as main

    ckpts = write_tiny_checkpoints(tmp_path / "ckpt")
    bombs = [sequence_bomb(tmp_path / "items.dcm", 150_000),
             segmented_palette(tmp_path / "palette.dcm", segments=3),
             rle_bomb(tmp_path / "rle.dcm", 0.25), *blank_images(tmp_path)]
    good = _film(tmp_path / "film.png")
    files = [str(p) for p in bombs[:2]] + [str(good)] + [str(p) for p in bombs[2:]]
    code = main(["--checkpoints", str(ckpts), "--json", "--device", "cpu", *files])
    records = json.loads(capsys.readouterr().out)
    assert code == 1 and len(records) == len(files)
    assert [r["ok"] for r in records] == [f == str(good) for f in files]
    for r in records:
        if not r["ok"]:
            assert r["error"].startswith(r["file"]) and r["error"].count(". ") <= 4
    assert sum("blank or unreadable image" in (r["error"] or "") for r in records) == 4


def test_file_names_are_text_never_mathtext_in_figures(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from bad_files import write_tiny_checkpoints

    from xray_utils.diagnose.diagnoser import Diagnoser, Diagnosis
    from xray_utils.diagnose.widget import plot_charts, plot_diagnosis

    film = _film(tmp_path / "film_$x_1_2$.png")  # as mathtext: a double subscript, an error
    diagnoser = Diagnoser(write_tiny_checkpoints(tmp_path / "ckpt"), device="cpu")
    good = diagnoser.diagnose([film], heatmaps=1)[0]
    bad = Diagnosis(file=str(film), ok=False, error=f"{film}: blank or unreadable image")
    assert good.ok

    def drawn_texts(fig) -> list[str]:
        fig.canvas.draw()  # mathtext would raise here
        texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
        plt.close(fig)
        return texts

    shown = "film_\\$x_1_2\\$.png"  # escaped: drawn as the literal name
    for d in (good, bad):
        assert any(shown in t for t in drawn_texts(plot_diagnosis(d)))
    assert any(shown in t for t in drawn_texts(plot_charts(bad)))
    drawn_texts(plot_charts(good))
