"""Guards against hostile-but-fair input: bounded decoding, non-radiograph DICOM, odd files."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dicom_gen import write_deflated_dicom, write_modality_dicom

from xray_utils.data.imageio import ImageReadError, read_gray, read_gray_bytes

ROOT = Path(__file__).resolve().parents[1]
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"


def _ramp(n: int = 64) -> np.ndarray:
    return (np.add.outer(np.arange(n), np.arange(n)) * 16).astype(np.uint16)


def test_deflated_dicom_is_read(tmp_path):
    path = write_deflated_dicom(tmp_path / "ok.dcm", 64, 64, _ramp())
    img = read_gray(path)
    assert img.shape == (64, 64) and img.dtype == np.uint8
    assert img[0, 0] < img[-1, -1]  # the ramp survived inflation


def test_deflate_bomb_is_refused_against_the_limit(tmp_path):
    # 1024 x 1024 x 2 bytes = 2 MiB inflated, the limit is 1 MiB: refused while inflating
    path = write_deflated_dicom(tmp_path / "bomb.dcm", 1024, 1024)
    assert path.stat().st_size < 20_000
    with pytest.raises(ImageReadError, match=r"bomb.dcm.*inflates to more than 1 MiB"):
        read_gray(path, max_bytes=2**20)
    # the same data declared as a small image: the inflated size alone decides
    path = write_deflated_dicom(tmp_path / "liar.dcm", 64, 64, pixel_bytes=2 * 2**20)
    with pytest.raises(ImageReadError, match="inflates to more than"):
        read_gray(path, max_bytes=2**20)


def test_declared_size_is_checked_before_decoding(tmp_path):
    # 40 frames of 256 x 256 x 2 bytes = 5 MiB declared (one frame stored); refused from the header
    path = write_deflated_dicom(tmp_path / "frames.dcm", 256, 256, frames=40, pixel_bytes=256 * 512)
    with pytest.raises(ImageReadError, match=r"40 frames of 256 x 256 pixels.*MAX_DECODED_BYTES"):
        read_gray(path, max_bytes=4 * 2**20)


def test_corrupt_deflate_stream_is_a_clear_error(tmp_path):
    path = write_deflated_dicom(tmp_path / "ok.dcm", 64, 64, _ramp())
    data = bytearray(path.read_bytes())
    data[-40:] = b"\xff" * 40
    with pytest.raises(ImageReadError, match=r"<mem>|corrupt|truncated"):
        read_gray_bytes(bytes(data), "<mem>.dcm")


@pytest.mark.parametrize("modality,sop,words", [
    ("CT", CT_STORAGE, "computed tomography"), ("MR", "1.2.840.10008.5.1.4.1.1.4", "magnetic"),
    ("US", "1.2.840.10008.5.1.4.1.1.6.1", "ultrasound"), ("NM", SC_STORAGE, "nuclear"),
    ("PT", SC_STORAGE, "positron"), ("", CT_STORAGE, "computed tomography"),
])
def test_non_radiograph_modalities_are_refused(tmp_path, modality, sop, words):
    path = write_modality_dicom(tmp_path / "slice.dcm", modality, sop)
    with pytest.raises(ImageReadError, match=rf"slice.dcm: .*{words}.*not a radiograph"):
        read_gray(path)
    assert read_gray(path, any_modality=True).shape == (64, 64)  # teaching override


def test_secondary_capture_saying_ct_names_it(tmp_path):
    path = write_modality_dicom(tmp_path / "sc.dcm", "CT", SC_STORAGE)
    with pytest.raises(ImageReadError, match="secondary capture"):
        read_gray(path)


@pytest.mark.parametrize("modality", ["CR", "DX", "OT", "RF", "MG"])
def test_radiograph_modalities_pass(tmp_path, modality):
    assert read_gray(write_modality_dicom(tmp_path / "film.dcm", modality)).shape == (64, 64)


def test_fifo_and_devices_are_named(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageReadError, match="named pipe"):
        read_gray(fifo)  # must not block
    with pytest.raises(ImageReadError, match="a device"):
        read_gray("/dev/zero")


def test_deflate_bomb_through_the_command_line_stays_small(tmp_path):
    """diagnose on a deflated DICOM that inflates to 8 MiB with a 1 MiB limit: refused, exit 1."""
    from bad_files import write_tiny_checkpoints

    ckpt = write_tiny_checkpoints(tmp_path / "ckpt")
    bomb = write_deflated_dicom(tmp_path / "bomb.dcm", 2048, 2048)
    code = ("import resource, sys; from xray_utils.data import imageio; "
            "imageio.MAX_DECODED_BYTES = 2**20; from xray_utils.cli import main; rc = main(sys.argv[1:]); "
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "diagnose", "--checkpoints", str(ckpt),
                           "--device", "cpu", str(bomb)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    assert "inflates to more than" in proc.stdout
