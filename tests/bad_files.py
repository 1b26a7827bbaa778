"""Test helpers: a corpus of bad and awkward image files, and tiny checkpoints, written at test time.

``write_corpus(folder)`` creates every file (nothing binary is committed) and returns
``[(path, Expectation), ...]``.  An :class:`Expectation` says whether the project's reader must
accept the file (``readable``) or refuse it with an :class:`~xray_utils.data.imageio.ImageReadError`
whose message matches ``error`` (a case-insensitive regular expression), and, for accepted
files, the expected ``shape`` of the 2-D result when it is known.

``write_tiny_checkpoints(folder, route)`` saves untrained 32 px checkpoints of the three
modules whose heads force the chain down one route (for the plumbing tests of ``diagnose()``).
"""
from __future__ import annotations

import io
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from xray_utils import untrained


@dataclass(frozen=True)
class Expectation:
    """What reading one corpus file must give."""

    readable: bool | None  # None: depends on optional decoders installed (either is fine)
    error: str | None = None  # regex the ImageReadError message must match when refused
    shape: tuple[int, int] | None = None  # (H, W) of the result when readable
    note: str = ""


def pattern_image(h: int = 48, w: int = 64) -> np.ndarray:
    """An asymmetric 8-bit test picture: a bright block in the top-left corner on a ramp."""
    img = np.tile(np.linspace(20, 200, w, dtype=np.float64), (h, 1))
    img[: h // 4, : w // 4] = 255
    return img.astype(np.uint8)


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _dicom(arr: np.ndarray | None, photometric: str = "MONOCHROME2", bits_stored: int = 12,
           window: tuple[float, float] | None = None, frames: int = 1) -> "object":
    """A minimal secondary-capture DICOM data set (pixel data optional)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.PatientID = "corpus"
    if arr is not None:
        ds.set_pixel_data(arr, photometric, bits_stored)
        if frames > 1:
            ds.NumberOfFrames = frames
        if window is not None:
            ds.WindowCenter, ds.WindowWidth = window
    return ds


def write_corpus(folder: str | Path) -> list[tuple[Path, Expectation]]:
    """Write the bad/awkward file corpus into ``folder``; returns (path, expectation) pairs."""
    from pydicom.data import get_testdata_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: list[tuple[Path, Expectation]] = []

    def add(name: str, data: bytes | None, exp: Expectation) -> Path:
        p = folder / name
        if data is not None:
            p.write_bytes(data)
        out.append((p, exp))
        return p

    def encode(img: Image.Image, fmt: str, **kw) -> bytes:
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        return buf.getvalue()

    pat = pattern_image()
    png = encode(Image.fromarray(pat), "PNG")
    jpg = encode(Image.fromarray(pat), "JPEG", quality=90)

    # --- refused: broken or not an image ------------------------------------------------
    add("truncated.png", png[: len(png) // 2], Expectation(False, r"truncated|corrupt"))
    add("truncated.jpg", jpg[: len(jpg) // 2], Expectation(False, r"truncated|corrupt"))
    add("empty.png", b"", Expectation(False, r"empty \(0 bytes\)"))
    add("notes.png", b"patient 12, chest PA, see report\n" * 20,
        Expectation(False, r"contains text"))
    add("error_page.jpg", b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n",
        Expectation(False, r"web page"))
    add("random.jpg", np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        Expectation(False, r"not a recognised image"))
    add("bomb_huge.png", _png_header_only(200_000, 200_000),
        Expectation(False, r"decompression bomb"))
    add("bomb_moderate.png", _png_header_only(9_000, 8_000),
        Expectation(False, r"decompression bomb"))
    add("tiny.png", encode(Image.fromarray(pat[:8, :8]), "PNG"), Expectation(False, r"too small"))
    wide = np.tile(pat[:40, :1], (1, 4000))
    add("wide.png", encode(Image.fromarray(wide), "PNG"),
        Expectation(False, r"strip", note="4000 x 40: refused, more than 8:1"))
    (folder / "folder.png").mkdir(exist_ok=True)
    add("folder.png", None, Expectation(False, r"is a folder"))
    add("missing.png", None, Expectation(False, r"not found"))

    # --- DICOM ---------------------------------------------------------------------------
    buf = io.BytesIO()
    _dicom(None).save_as(buf, enforce_file_format=True)
    add("no_pixels.dcm", buf.getvalue(), Expectation(False, r"no pixel data"))
    shutil.copyfile(get_testdata_file("RG1_UNCR.dcm"), folder / "rg1_monochrome1.dcm")
    add("rg1_monochrome1.dcm", None, Expectation(True, shape=(1955, 1841),
                                                 note="real chest CR, MONOCHROME1, 15 bit"))
    ramp = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (64, 1))
    buf = io.BytesIO()
    _dicom(ramp, "MONOCHROME1", 12).save_as(buf, enforce_file_format=True)
    add("ramp_monochrome1.dcm", buf.getvalue(),
        Expectation(True, shape=(64, 64), note="12-bit ramp, no window: inverted"))
    buf = io.BytesIO()
    _dicom(ramp, "MONOCHROME2", 12, window=(1024.0, 1024.0)).save_as(
        buf, enforce_file_format=True)
    add("ramp_windowed.dcm", buf.getvalue(),
        Expectation(True, shape=(64, 64), note="window 512-1536: clipped outside"))
    buf = io.BytesIO()
    ds = _dicom(ramp, "MONOCHROME2", 12)
    del ds.file_meta  # no preamble, no file meta: an old-style bare data set
    ds.save_as(buf, implicit_vr=True, little_endian=True)
    add("no_preamble.dcm", buf.getvalue(), Expectation(True, shape=(64, 64)))
    two = np.stack([ramp, ramp[:, ::-1]])
    buf = io.BytesIO()
    _dicom(two, "MONOCHROME2", 12, frames=2).save_as(buf, enforce_file_format=True)
    add("two_frames.dcm", buf.getvalue(),
        Expectation(True, shape=(64, 64), note="first frame used"))
    whole = (folder / "ramp_monochrome1.dcm").read_bytes()
    add("truncated.dcm", whole[: len(whole) - 3000], Expectation(False, r"truncated|corrupt"))
    cmyk = np.zeros((40, 40, 4), dtype=np.uint8)
    buf = io.BytesIO()
    ds = _dicom(None)
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PlanarConfiguration = 40, 40, 4, 0
    ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored = "CMYK", 8, 8
    ds.HighBit, ds.PixelRepresentation, ds.PixelData = 7, 0, cmyk.tobytes()
    ds.save_as(buf, enforce_file_format=True)
    add("cmyk_retired.dcm", buf.getvalue(), Expectation(False, r"unsupported|cannot be decoded"))
    import pydicom

    jls = pydicom.dcmread(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
    jls.Modality = "DX"  # an MR slice would be refused for its modality before decoding
    jls.SOPClassUID = jls.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    jls.save_as(folder / "jpeg_ls.dcm")
    add("jpeg_ls.dcm", None, Expectation(None, r"decoder", shape=(64, 64),
                                         note="JPEG-LS: needs an optional pydicom plugin"))

    # --- accepted: awkward but valid ---------------------------------------------------------
    g16 = (pat.astype(np.uint16) * 257 // 4 + 1000).astype(np.uint16)  # 1000..17383 of 65535
    add("gray16.png", encode(Image.fromarray(g16), "PNG"), Expectation(True, shape=(48, 64)))
    rgba = np.dstack([np.dstack([pat] * 3), np.full(pat.shape, 255, np.uint8)])
    rgba[:, -16:, 3] = 0  # right margin transparent -> composited on black
    add("rgba.png", encode(Image.fromarray(rgba, "RGBA"), "PNG"), Expectation(True, shape=(48, 64)))
    la = Image.fromarray(np.dstack([pat, np.full(pat.shape, 255, np.uint8)]), "LA")
    add("gray_alpha.png", encode(la, "PNG"), Expectation(True, shape=(48, 64)))
    add("cmyk.jpg", encode(Image.fromarray(np.dstack([pat] * 3)).convert("CMYK"), "JPEG"),
        Expectation(True, shape=(48, 64)))
    add("palette.png", encode(Image.fromarray(np.dstack([pat] * 3)).convert(
        "P", palette=Image.Palette.ADAPTIVE, colors=32), "PNG"), Expectation(True, shape=(48, 64)))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    add("exif_rotated.jpg", encode(Image.fromarray(pat), "JPEG", quality=95, exif=exif),
        Expectation(True, shape=(64, 48), note="EXIF orientation 6 applied"))
    add("png_named.dcm", png, Expectation(True, shape=(48, 64), note="PNG content, .dcm name"))
    add("jpeg_named.png", jpg, Expectation(True, shape=(48, 64), note="JPEG content, .png name"))
    add("float.tif", encode(Image.fromarray(pat.astype(np.float32) / 255.0, "F"), "TIFF"),
        Expectation(True, shape=(48, 64)))
    add("bilevel.bmp", encode(Image.fromarray(pat > 100), "BMP"), Expectation(True, shape=(48, 64)))
    return out


ROUTES = untrained.ROUTES


def write_tiny_checkpoints(folder: str | Path, route: str = "chest", image_size: int = 32,
                           seed: int = 0, type_only_as: str = "hand") -> Path:
    """Untrained checkpoints forcing ``route`` (see
    :func:`xray_utils.untrained.write_routed_checkpoints`)."""
    return untrained.write_routed_checkpoints(folder, route, image_size, seed, type_only_as)
