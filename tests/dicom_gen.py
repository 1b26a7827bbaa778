"""Small generated DICOM files for the reader's guards: deflated data sets that inflate to any
size (written by streaming, so a 0.5 GiB bomb costs a few MB to make), and other modalities."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

DEFLATED = "1.2.840.10008.1.2.1.99"
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


def _header_dataset(rows: int, cols: int, modality: str, sop_class: str, frames: int):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.Modality = modality
    ds.PatientID = "generated"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    return ds


def write_deflated_dicom(path: str | Path, rows: int, cols: int, pixels: np.ndarray | None = None,
                         modality: str = "DX", frames: int = 1,
                         pixel_bytes: int | None = None) -> Path:
    """A Deflated Explicit VR Little Endian DICOM of ``rows`` x ``cols`` 16-bit pixels.

    ``pixels`` (uint16) gives the image; without it the pixel data are zeros, streamed through
    the compressor, so the file stays small however large it inflates.  ``pixel_bytes``
    overrides the declared pixel data length (to build files whose header and data disagree).
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    path = Path(path)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_STORAGE
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    meta.TransferSyntaxUID = DEFLATED
    head = DicomBytesIO()
    write_file_meta_info(head, meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, _header_dataset(rows, cols, modality, DX_STORAGE, frames))
    n = pixel_bytes if pixel_bytes is not None else rows * cols * 2 * frames
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(path, "wb") as f:
        f.write(b"\0" * 128 + b"DICM" + head.getvalue())
        f.write(comp.compress(body.getvalue()))
        f.write(comp.compress(b"\xe0\x7f\x10\x00OW\0\0" + struct.pack("<I", n)))
        if pixels is not None:
            f.write(comp.compress(np.ascontiguousarray(pixels, dtype="<u2").tobytes()))
        else:
            zeros = bytes(1 << 20)
            left = n
            while left > 0:
                f.write(comp.compress(zeros[: min(left, len(zeros))]))
                left -= len(zeros)
        f.write(comp.flush())
    return path


def write_modality_dicom(path: str | Path, modality: str, sop_class: str = DX_STORAGE,
                         size: int = 64) -> Path:
    """An uncompressed 16-bit DICOM with the given Modality and SOP class (a ramp image)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = _header_dataset(size, size, modality, sop_class, 1)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ramp = (np.add.outer(np.arange(size), np.arange(size)) * 16).astype(np.uint16)
    ds.PixelData = ramp.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return Path(path)
