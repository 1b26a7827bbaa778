"""The DICOM reader's budget checks, run before pydicom parses or decodes anything costly.

* :func:`scan_dataset` walks the encoded data set (tags and lengths only, values skipped) and
  refuses a file with more than :data:`~xray_utils.data.imageio.MAX_DICOM_ELEMENTS` data elements
  and sequence items, sequences nested deeper than
  :data:`~xray_utils.data.imageio.MAX_DICOM_DEPTH`, or an element whose declared length runs past
  the end of the file.  pydicom needs several hundred bytes per element and item, so a small file
  of many empty items (or a deflated one that inflates to them) would otherwise take gigabytes.
* :func:`check_frame` compares the first compressed frame with the header before it is decoded:
  a JPEG or JPEG 2000 code stream must declare the header's rows and columns (a 1 KB file can
  wrap a 9000 x 9000 code stream), and RLE segments are counted, without decoding, against the
  size they must decode to (RLE expands up to 64 times).
* :func:`check_palette` refuses segmented palette lookup tables (their expansion is not bounded
  by the file size) and bounds the colour image a palette produces.
"""
from __future__ import annotations

import struct

from xray_utils.data.read_errors import ImageReadError, _Refused

_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"))
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_SEGMENTED_PALETTES = (0x00281221, 0x00281222, 0x00281223)
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF,
                       0xF7))
_JPEG_SYNTAXES = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                  "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81")
_J2K_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
                 "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")
_RLE_SYNTAX = "1.2.840.10008.1.2.5"
_SQ_CACHE: dict[int, bool] = {}


def _is_sq(tag: int) -> bool:
    """True when pydicom's dictionary gives ``tag`` the VR SQ."""
    if tag not in _SQ_CACHE:
        from pydicom.datadict import dictionary_VR

        try:
            _SQ_CACHE[tag] = dictionary_VR(tag) == "SQ"
        except KeyError:
            _SQ_CACHE[tag] = False
    return _SQ_CACHE[tag]


class _Scan:
    def __init__(self, buf, name: str, little: bool, max_elements: int, max_depth: int) -> None:
        self.buf, self.name, self.end = buf, name, len(buf)
        self.tag_len = struct.Struct("<HHI" if little else ">HHI")
        self.short = struct.Struct("<H" if little else ">H")
        self.long = struct.Struct("<I" if little else ">I")
        self.max_elements, self.max_depth = max_elements, max_depth
        self.count = 0

    def tick(self) -> None:
        self.count += 1
        if self.count > self.max_elements:
            raise _Refused(
                f"{self.name}: the DICOM data set holds more than {self.max_elements:,} data "
                "elements and sequence items (a radiograph has a few hundred); refused before "
                "parsing (xray_utils.data.imageio.MAX_DICOM_ELEMENTS, a guard against files "
                "built to exhaust the parser). Export the image again with a DICOM tool.")

    def past_end(self, tag: int, length: int, pos: int) -> None:
        raise ImageReadError(
            f"{self.name}: the DICOM element ({tag >> 16:04X},{tag & 0xFFFF:04X}) declares "
            f"{length:,} bytes but only {max(self.end - pos, 0):,} follow it; the file is "
            "truncated or corrupt. Fetch or export it again.")

    def dataset(self, pos: int, end: int, implicit: bool, depth: int) -> int:
        """Walk elements from ``pos`` to ``end`` (or to an item delimiter); the position after."""
        buf = self.buf
        while pos < end:
            if pos + 8 > self.end:
                return self.end  # truncated: pydicom reports it
            group, elem, length = self.tag_len.unpack_from(buf, pos)
            tag = group << 16 | elem
            self.tick()
            if tag == _ITEM_END:
                return pos + 8
            vr = None
            if not implicit:
                vr = bytes(buf[pos + 4:pos + 6])
                if vr in _LONG_VRS:
                    if pos + 12 > self.end:
                        return self.end
                    (length,) = self.long.unpack_from(buf, pos + 8)
                    pos += 12
                elif vr.isalpha() and vr.isupper():
                    (length,) = self.short.unpack_from(buf, pos + 6)
                    pos += 8
                else:  # not explicit after all: pydicom guesses, and so do we
                    vr = None
                    pos += 8
            else:
                pos += 8
            as_implicit = implicit or vr == b"UN"
            nested = vr == b"SQ" or (vr in (None, b"UN") and _is_sq(tag))
            if length == _UNDEFINED:
                if tag == _PIXEL_DATA or vr in (b"OB", b"OW"):
                    pos = self.fragments(pos)
                else:
                    pos = self.sequence(pos, None, as_implicit, depth + 1)
                continue
            if pos + length > self.end:
                self.past_end(tag, length, pos)
            if nested:
                self.sequence(pos, pos + length, as_implicit, depth + 1)
            pos += length
        return pos

    def sequence(self, pos: int, end: int | None, implicit: bool, depth: int) -> int:
        """Walk the items of a sequence; the position after it."""
        if depth > self.max_depth:
            raise _Refused(
                f"{self.name}: the DICOM data set nests sequences more than {self.max_depth} "
                "deep (xray_utils.data.imageio.MAX_DICOM_DEPTH); refused before parsing. Export "
                "the image again with a DICOM tool.")
        while end is None or pos < end:
            if pos + 8 > self.end:
                return self.end
            group, elem, length = self.tag_len.unpack_from(self.buf, pos)
            tag = group << 16 | elem
            self.tick()
            pos += 8
            if tag == _SEQ_END:
                return pos
            if tag != _ITEM:  # malformed: pydicom reports it
                return self.end if end is None else end
            if length == _UNDEFINED:
                pos = self.dataset(pos, self.end, implicit, depth)
            else:
                if pos + length > self.end:
                    self.past_end(tag, length, pos)
                self.dataset(pos, pos + length, implicit, depth)
                pos += length
        return pos

    def fragments(self, pos: int) -> int:
        """Walk the items of encapsulated pixel data; the position after them."""
        while pos + 8 <= self.end:
            group, elem, length = self.tag_len.unpack_from(self.buf, pos)
            tag = group << 16 | elem
            self.tick()
            pos += 8
            if tag == _SEQ_END or tag != _ITEM:
                return pos
            if length == _UNDEFINED or pos + length > self.end:
                self.past_end(tag, length, pos)
            pos += length
        return pos


def scan_dataset(buf, start: int, name: str, implicit: bool | None = None, little: bool = True,
                 max_elements: int = 100_000, max_depth: int = 12) -> int:
    """Count the elements and items of the data set encoded in ``buf[start:]``; returns the count.

    ``implicit=None`` guesses the VR encoding from the first element (as pydicom does).
    Raises :class:`~xray_utils.data.ImageReadError` (a refusal) over the limits or when
    a declared length runs past the end.
    """
    if implicit is None:
        vr = bytes(buf[start + 4:start + 6])
        implicit = not (len(vr) == 2 and vr.isalpha() and vr.isupper())
    scan = _Scan(buf, name, little, max_elements, max_depth)
    scan.dataset(start, len(buf), implicit, 0)
    return scan.count


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(rows, columns) from a JPEG / JPEG-LS frame header, None when none is found."""
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _JPEG_SOF and pos + 9 <= len(data):
            rows, cols = struct.unpack_from(">HH", data, pos + 5)
            return rows, cols
        if marker == 0xDA:
            return None
        pos += 2 + length
    return None


def _j2k_size(data: bytes) -> tuple[int, int] | None:
    """(rows, columns) from a JPEG 2000 SIZ marker segment, None when none is found."""
    at = data.find(b"\xff\x4f\xff\x51", 0, 1 << 16)
    if at < 0 or at + 24 > len(data):
        return None
    xsiz, ysiz, xo, yo = struct.unpack_from(">IIII", data, at + 8)
    return ysiz - yo, xsiz - xo


def _rle_check(frame: bytes, name: str, rows: int, cols: int, segments: int) -> None:
    """Count what each RLE segment decodes to (no decoding) and refuse one that is too long."""
    if len(frame) < 64:
        raise ImageReadError(f"{name}: the RLE frame is only {len(frame)} bytes, "
                                     "shorter than its header; the file is corrupt.")
    header = struct.unpack_from("<16I", frame)
    if header[0] != segments:
        raise ImageReadError(
            f"{name}: the RLE frame has {header[0]} segments where the header's samples and bits "
            f"need {segments}; the file is corrupt. Export it again.")
    offsets = [*header[1:1 + segments], len(frame)]
    want = rows * cols
    for i in range(segments):
        pos, stop = offsets[i], min(offsets[i + 1], len(frame))
        out = 0
        while pos < stop:
            h = frame[pos]
            if h < 128:
                out += h + 1
                pos += h + 2
            elif h > 128:
                out += 257 - h
                pos += 2
            else:
                pos += 1
            if out > want + 128:
                raise _Refused(
                    f"{name}: an RLE segment of the pixel data expands beyond the {rows} x {cols} "
                    "pixels the header declares; refused before decoding (a guard against "
                    "'decompression bombs'). Export the image again.")


def check_frame(ds, name: str, syntax: str, rows: int, cols: int, frames: int, samples: int,
                bits: int) -> None:
    """Check the first compressed frame of ``ds`` against its header (see the module docstring)."""
    syntax = str(syntax)
    if syntax not in _JPEG_SYNTAXES + _J2K_SYNTAXES + (_RLE_SYNTAX,) or "PixelData" not in ds:
        return
    from pydicom.encaps import get_frame

    try:
        frame = get_frame(ds.PixelData, 0, number_of_frames=frames)
    except Exception as exc:
        raise ImageReadError(f"{name}: the compressed DICOM pixel data is damaged "
                                     f"({exc}); the file is corrupt.") from None
    if syntax == _RLE_SYNTAX:
        _rle_check(frame, name, rows, cols, samples * ((bits + 7) // 8))
        return
    size = _jpeg_size(frame) if syntax in _JPEG_SYNTAXES else _j2k_size(frame)
    if size is not None and size != (rows, cols):
        raise _Refused(
            f"{name}: the compressed image inside declares {size[1]} x {size[0]} pixels but the "
            f"DICOM header says {cols} x {rows}; refused before decoding (a guard against "
            "'decompression bombs'). Export the image again.")


def check_palette(ds, name: str, rows: int, cols: int, max_bytes: int) -> None:
    """Refuse segmented palettes and palette images whose colour copy exceeds ``max_bytes``."""
    if any(tag in ds for tag in _SEGMENTED_PALETTES):
        raise _Refused(
            f"{name}: the DICOM image uses a segmented palette colour lookup table, which this "
            "reader does not expand (its size is not bounded by the file's); export the image as "
            "grayscale.")
    need = rows * cols * 3 * 8  # RGB, converted through float64 to luma
    if need > max_bytes:
        raise _Refused(
            f"{name}: the palette colour image of {cols} x {rows} pixels needs "
            f"{need / 2**20:,.0f} MiB once expanded, more than the {max_bytes / 2**20:,.0f} MiB "
            "this reader accepts (xray_utils.data.imageio.MAX_DECODED_BYTES). Export the image "
            "as grayscale.")
