"""Small generated files that expand to far more than their size ("bombs"), for the decoding
budget's tests and for measuring ``diagnose`` on them (``python tests/bombs.py FOLDER`` writes the
full-size set).  Nothing binary is committed; each file costs at most a few seconds to make."""
from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.dicom_gen import DEFLATED, DX_STORAGE

RLE = "1.2.840.10008.1.2.5"
J2K = "1.2.840.10008.1.2.4.90"
EXPLICIT = "1.2.840.10008.1.2.1"


def _dataset(rows: int, cols: int, bits: int = 8, photometric: str = "MONOCHROME2"):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.SOPClassUID = DX_STORAGE
    ds.SOPInstanceUID = "1.2.3.4.6"
    ds.Modality = "DX"
    ds.PatientID = "bomb"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    return ds


def _meta(syntax: str):
    from pydicom.dataset import FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_STORAGE
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.6"
    meta.TransferSyntaxUID = syntax
    return meta


def _ramp(rows: int, cols: int) -> np.ndarray:
    return (np.add.outer(np.arange(rows), np.arange(cols)) % 256).astype(np.uint8)


def _save(ds, syntax: str, path: Path) -> Path:
    ds.file_meta = _meta(syntax)
    ds.save_as(path, enforce_file_format=True)
    return path


def sequence_bomb(path: str | Path, items: int, deflate: bool = True, depth: int = 1) -> Path:
    """A 64 x 64 film whose data set also holds a sequence of ``items`` empty items (undefined
    lengths), nested ``depth`` deep; deflated (the whole data set compressed) by default."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    path = Path(path)
    head = DicomBytesIO()
    write_file_meta_info(head, _meta(DEFLATED if deflate else EXPLICIT), enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, _dataset(64, 64))
    sq = struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF)  # ReferencedSeriesSequence
    item, item_end = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF), b"\xfe\xff\x0d\xe0" + bytes(4)
    seq_end = b"\xfe\xff\xdd\xe0" + bytes(4)
    empty = struct.pack("<HHI", 0xFFFE, 0xE000, 0)
    opening = (sq + item) * (depth - 1) + sq
    closing = (seq_end + item_end) * (depth - 1) + seq_end
    pixels = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 64 * 64) + _ramp(64, 64).tobytes()
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS) if deflate else None
    with open(path, "wb") as f:
        f.write(b"\0" * 128 + b"DICM" + head.getvalue())

        def put(data: bytes) -> None:
            f.write(comp.compress(data) if comp else data)

        put(body.getvalue())
        put(opening)
        chunk = empty * 65536
        left = items
        while left > 0:
            put(chunk[: 8 * min(left, 65536)])
            left -= 65536
        put(closing)
        put(pixels)
        if comp:
            f.write(comp.flush())
    return path


def segmented_palette(path: str | Path, segments: int = 2000) -> Path:
    """A PALETTE COLOR film whose segmented lookup tables expand to ``segments`` x 65535
    entries (a 40 KB file with 2000 segments: about 131 million entries per colour)."""
    ds = _dataset(64, 64, photometric="PALETTE COLOR")
    ds.PixelData = _ramp(64, 64).tobytes()
    descriptor = [0, 0, 16]  # 65536 entries, first value 0, 16 bits
    data = [0, 1, 0] + [1, 65535, 65535] * segments  # a discrete entry, then linear segments
    raw = struct.pack(f"<{len(data)}H", *data)
    for colour, (desc_tag, seg_tag) in {"Red": (0x00281101, 0x00281221),
                                        "Green": (0x00281102, 0x00281222),
                                        "Blue": (0x00281103, 0x00281223)}.items():
        ds.add_new(desc_tag, "US", descriptor)
        ds.add_new(seg_tag, "OW", raw)
    return _save(ds, EXPLICIT, Path(path))


def rle_bomb(path: str | Path, mib: float, rows: int = 64, cols: int = 64) -> Path:
    """An RLE Lossless film of ``rows`` x ``cols`` whose one segment is ``mib`` MiB of runs that
    each expand 2 bytes to 128 (64 times the file size once decoded)."""
    from pydicom.encaps import encapsulate

    ds = _dataset(rows, cols)
    runs = b"\x81\x00" * int(mib * 2 ** 19)
    frame = struct.pack("<16I", 1, 64, *([0] * 14)) + runs
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    return _save(ds, RLE, Path(path))


def j2k_dicom(path: str | Path, side: int, rows: int = 64, cols: int = 64) -> Path:
    """A ``rows`` x ``cols`` film whose JPEG 2000 code stream is really ``side`` x ``side``."""
    from pydicom.encaps import encapsulate

    buf = io.BytesIO()
    Image.new("L", (side, side)).save(buf, "JPEG2000", no_jp2=True, irreversible=False,
                                      num_resolutions=1)
    ds = _dataset(rows, cols)
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    return _save(ds, J2K, Path(path))


def tiff_tile_bomb(path: str | Path, tile: int, width: int = 256, height: int = 256) -> Path:
    """A ``width`` x ``height`` grayscale TIFF stored as one deflated ``tile`` x ``tile`` tile
    of zeros (a 1 MB file declaring a 1 GiB tile for ``tile=32768``)."""
    comp = zlib.compressobj(1)
    row = bytes(tile)
    parts = [comp.compress(row) for _ in range(tile)]
    parts.append(comp.flush())
    data = b"".join(parts)
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 8),
               (262, 3, 1, 1), (277, 3, 1, 1), (322, 4, 1, tile), (323, 4, 1, tile),
               (324, 4, 1, 0), (325, 4, 1, len(data))]
    ifd_at = 8
    data_at = ifd_at + 2 + 12 * len(entries) + 4
    entries[8] = (324, 4, 1, data_at)
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_at) + struct.pack("<H", len(entries)))
    for tag, kind, count, value in entries:
        fmt = "<HHII" if kind == 4 else "<HHIHH"
        out += struct.pack(fmt, tag, kind, count, value) if kind == 4 else struct.pack(
            fmt, tag, kind, count, value, 0)
    out += struct.pack("<I", 0) + data
    Path(path).write_bytes(bytes(out))
    return Path(path)


def blank_images(folder: str | Path) -> list[Path]:
    """Solid black, white and blue PNGs, and a nearly flat grey one (noise of +-1)."""
    folder = Path(folder)
    rng = np.random.default_rng(0)
    images = {"black.png": Image.new("L", (256, 256), 0),
              "white.png": Image.new("L", (256, 256), 255),
              "blue.png": Image.new("RGB", (256, 256), (0, 0, 255)),
              "flat.png": Image.fromarray((128 + rng.integers(-1, 2, (256, 256))).astype(np.uint8))}
    out = []
    for name, im in images.items():
        im.save(folder / name)
        out.append(folder / name)
    return out


def full_set(folder: str | Path) -> dict[str, Path]:
    """The bombs at the sizes of the attacks they reproduce (for measuring ``diagnose``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "deflated sequence of 4M empty items": sequence_bomb(folder / "seq_items.dcm", 4_000_000),
        "nested sequences, 200 deep, 1M items": sequence_bomb(folder / "nested.dcm", 1_000_000,
                                                              deflate=False, depth=200),
        "segmented palette, 2000 segments": segmented_palette(folder / "palette.dcm"),
        "RLE, 16 MiB of runs": rle_bomb(folder / "rle16.dcm", 16),
        "RLE, 64 MiB of runs": rle_bomb(folder / "rle64.dcm", 64),
        "TIFF, one 32768 x 32768 tile": tiff_tile_bomb(folder / "tile.tif", 32768),
        "JPEG 2000 9000 x 9000 in a 64 x 64 DICOM": j2k_dicom(folder / "j2k.dcm", 9000),
        **{f"blank: {p.stem}": p for p in blank_images(folder)},
    }


if __name__ == "__main__":
    for what, p in full_set(sys.argv[1]).items():
        print(f"{p}\t{p.stat().st_size}\t{what}")
