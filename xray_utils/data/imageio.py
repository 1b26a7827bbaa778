"""The project's one image reader: PNG, JPEG, TIFF, BMP and DICOM -> 8-bit grayscale NumPy array.

Every notebook, the preprocessing cache and ``diagnose()`` read images through :func:`read_gray`,
so a radiograph looks the same to training and to inference.  The result is always a 2-D
``uint8`` array with 0 = black and dense bone bright (the radiologist's convention).

What the reader does, and why
-----------------------------
* **DICOM** (detected by the ``DICM`` marker at byte 128, or by a ``.dcm``/``.dicom``/``.dic``
  name for preamble-less files) is decoded with pydicom: modality LUT (rescale slope /
  intercept), then the file's own VOI LUT or window (``apply_voi_lut``) -- the contrast the
  radiographer chose.  Without a window the grey values are stretched between the 0.5th and
  99.5th percentiles (:data:`WINDOW_PERCENTILES`), which ignores a few hot or dead pixels and
  burnt-in labels.  ``MONOCHROME1`` images (low values = white, as on film) are inverted so
  that bone is bright.  Multi-frame DICOM: the **first frame** is used (a radiograph series
  rarely has more than one; tomosynthesis or cine loops are out of scope).
* **16-bit and float images** (PNG, TIFF) get the same percentile window to 8 bit.
* **Colour** (RGB, CMYK, YCbCr, palette) becomes luma (ITU-R 601: 0.299 R + 0.587 G +
  0.114 B, Pillow's ``convert("L")``).
* **Transparency** (RGBA, LA, palette or grey with a transparent colour) is composited **on
  black** (:data:`ALPHA_BACKGROUND`): black is "no attenuation, nothing there" on a radiograph,
  so a transparent margin around a cut-out film reads as empty background, not as bone.
* **EXIF orientation** of photographs and phone captures is applied
  (``PIL.ImageOps.exif_transpose``); some FracAtlas films need it.

Limits (module constants, also keyword arguments of :func:`read_gray`)
----------------------------------------------------------------------
* :data:`MAX_PIXELS` -- decompression-bomb guard: larger images are refused *before* decoding
  (Pillow's ``Image.MAX_IMAGE_PIXELS`` is set to the same value).
* :data:`MIN_SIDE` -- an image narrower than this on either side is too small to mean anything.
* :data:`MAX_ASPECT_RATIO` -- a very thin strip (e.g. 4000 x 40) is refused: squeezed to the
  square model input it would be meaningless.  Real radiographs stay within about 1:4
  (long-leg and whole-spine films).
* :data:`MAX_FILE_BYTES` -- larger files are refused without being read.
* :data:`MAX_DECODED_BYTES` -- the memory a decoded image may take: the size the header
  declares (rows x columns x frames x samples x bytes per sample) is checked against it before
  any pixel is decoded, and a deflated DICOM (Deflated Explicit VR Little Endian) is inflated
  in chunks against the same limit (a small file that inflates to gigabytes is refused after
  reading at most the limit, without keeping it in memory).
* :data:`MAX_DICOM_ELEMENTS`, :data:`MAX_DICOM_DEPTH` -- the encoded DICOM data set is walked
  (tags and lengths only) before pydicom parses it; compressed frames (RLE, JPEG, JPEG 2000) are
  checked against the header before decoding, segmented palettes refused, TIFF tiles bounded
  (:mod:`xray_utils.data.dicom_guard`).
* :data:`DECODE_MEMORY_BYTES`, :data:`DECODE_TIMEOUT_S` -- the budget of
  :class:`xray_utils.data.decode_worker.DecodeWorker`, which decodes in a child process under
  an address-space limit and a time limit (``diagnose``, the app and the widget read files so).

DICOM modality
--------------
Only radiograph modalities are diagnosed: a DICOM whose ``Modality`` (or SOP class) says CT,
MR, ultrasound, nuclear medicine or PET (:data:`NON_RADIOGRAPH_MODALITIES`), secondary captures
that say so included, is refused with a sentence naming the modality.  For teaching (e.g. to
show what the models make of a CT slice), pass ``any_modality=True``
(``python -m xray_utils diagnose --any-modality``).

Every failure is an :class:`ImageReadError` whose message names the file and says, in a
sentence, what is wrong and what to do: missing, a folder, empty, truncated, not an image
(e.g. a text file named ``x.png``), DICOM without pixel data, compressed DICOM without a
decoder, too small, too large, unsupported colour mode.  Truncated files are detected
(Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays ``False``), never silently padded.
"""
from __future__ import annotations

import io
import os
import stat
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from xray_utils.data.read_errors import ImageReadError, _Refused, _UnrecognisedImage

#: Changes whenever the reader's output for some file changes (caches of decoded images should
#: include it in their key).
READER_VERSION = "2"
#: Refuse images with more pixels than this (about 8000 x 8000; a 50-megapixel phone photo
#: still passes).  Checked from the header, before any pixel is decoded.
MAX_PIXELS = 64_000_000
#: Refuse images narrower than this on either side.
MIN_SIDE = 32
#: Refuse images whose long side is more than this many times the short side.
MAX_ASPECT_RATIO = 8.0
#: Refuse files larger than this (bytes) without reading them.
MAX_FILE_BYTES = 512 * 1024 ** 2
#: Refuse images whose decoded pixels (as declared in the header: rows x columns x frames x
#: samples x bytes per sample) would take more memory than this; also the most a deflated
#: DICOM may inflate to.
MAX_DECODED_BYTES = 256 * 1024 ** 2
#: What decoding one image may add to the memory of the process that decodes it, when it is
#: decoded under a budget (:class:`xray_utils.data.decode_worker.DecodeWorker`, used by
#: ``diagnose`` and the app): an address-space limit, so it covers what a file really expands
#: to, whatever its header declares.
DECODE_MEMORY_BYTES = 768 * 1024 ** 2
#: Seconds the decoding of one image may take under a budget (same worker).
DECODE_TIMEOUT_S = 20.0
#: A DICOM data set may hold at most this many data elements and sequence items in all (a
#: radiograph has a few hundred); counted before pydicom parses it.
MAX_DICOM_ELEMENTS = 100_000
#: DICOM sequences may be nested at most this deep.
MAX_DICOM_DEPTH = 12
#: DICOM Modality codes that are not radiographs, with the name used in messages.
NON_RADIOGRAPH_MODALITIES = {
    "CT": "computed tomography (CT)", "MR": "magnetic resonance (MR)", "US": "ultrasound (US)",
    "NM": "nuclear medicine (NM)", "PT": "positron emission tomography (PET)",
    "IVUS": "intravascular ultrasound", "OCT": "optical coherence tomography",
    "OP": "ophthalmic photography", "XC": "external camera photography",
    "ES": "endoscopy", "SM": "slide microscopy", "GM": "general microscopy",
}
#: SOP class name fragments (pydicom's UID names) that mark non-radiograph images.
_NON_RADIOGRAPH_SOP = (("CT Image", "CT"), ("Enhanced CT", "CT"), ("MR Image", "MR"),
                       ("Enhanced MR", "MR"), ("Ultrasound", "US"), ("Nuclear Medicine", "NM"),
                       ("Positron Emission", "PT"), ("PET Image", "PT"))
_DEFLATED_SYNTAX = "1.2.840.10008.1.2.1.99"
_INFLATE_CHUNK = 1 << 20
#: Percentiles used to window 10-16-bit and float data to 8 bit when no window is given.
WINDOW_PERCENTILES = (0.5, 99.5)
#: Grey value that transparent pixels are composited on (0 = black).
ALPHA_BACKGROUND = 0
#: File name endings that mark DICOM files written without the 128-byte preamble.
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")

# The decompression-bomb guard of Pillow itself, at the same limit (Pillow warns above it and
# raises above twice it; the reader turns both into an ImageReadError).
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False

_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
_DICOM_PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL",
                       "YBR_FULL_422", "YBR_ICT", "YBR_RCT")




# --------------------------------------------------------------------------- public API


def read_gray(path: str | os.PathLike, *, min_side: int = MIN_SIDE, max_pixels: int = MAX_PIXELS,
              max_aspect: float = MAX_ASPECT_RATIO, max_bytes: int | None = None,
              any_modality: bool = False) -> np.ndarray:
    """Read ``path`` (PNG, JPEG, TIFF, BMP, DICOM, ...) as a 2-D ``uint8`` array (0 = black).

    The limits default to the module constants; pass smaller ``min_side`` for datasets of
    thumbnails (e.g. 28 px MedMNIST).  ``any_modality=True`` accepts DICOM files of
    non-radiograph modalities (CT, MR, ...; for teaching).  Raises :class:`ImageReadError` for
    anything that is not a usable image.
    """
    path = Path(path)
    name = display_name(path)
    limits = _Limits(min_side, max_pixels, max_aspect, max_bytes, any_modality)
    try:
        if path.is_dir():
            raise ImageReadError(f"{name}: is a folder, not an image file. Pass the image files "
                                 "inside it instead.")
        st = path.stat()
        size, mode = st.st_size, st.st_mode
    except FileNotFoundError:
        raise ImageReadError(f"{name}: file not found. Check the path (and the working folder: "
                             f"{Path.cwd()}).") from None
    except PermissionError:
        raise ImageReadError(f"{name}: permission denied; make the file readable.") from None
    except OSError as exc:  # e.g. name too long, broken symlink loop
        raise ImageReadError(f"{name}: cannot be accessed ({exc}).") from None
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
                "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise ImageReadError(f"{name}: is {kind}, not an image file; pass a saved image file "
                             "instead.")
    _check_file_size(name, size)
    try:
        with open(path, "rb") as fp:
            return _decode(fp, name, path.suffix.lower(), limits)
    except PermissionError:
        raise ImageReadError(f"{name}: permission denied; make the file readable.") from None
    except IsADirectoryError:
        raise ImageReadError(f"{name}: is a folder, not an image file.") from None


def display_name(path: str | os.PathLike) -> str:
    """``path`` as text that can always be printed: undecodable bytes of a file name (not
    UTF-8) become ``\\xNN`` escapes, other control characters are escaped too."""
    text = os.fsdecode(path) if not isinstance(path, str) else path
    if isinstance(path, Path):
        text = str(path)
    out = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if not out.isprintable():
        out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in out)
    return out


class _Limits:
    __slots__ = ("min_side", "max_pixels", "max_aspect", "max_bytes", "any_modality")

    def __init__(self, min_side: int = MIN_SIDE, max_pixels: int = MAX_PIXELS,
                 max_aspect: float = MAX_ASPECT_RATIO, max_bytes: int | None = None,
                 any_modality: bool = False) -> None:
        self.min_side, self.max_pixels, self.max_aspect = min_side, max_pixels, max_aspect
        # None: the module constant at call time (so it can be lowered for a whole program)
        self.max_bytes = int(MAX_DECODED_BYTES if max_bytes is None else max_bytes)
        self.any_modality = bool(any_modality)


def read_gray_bytes(data: bytes | bytearray | memoryview, name: str = "<bytes>", *,
                    min_side: int = MIN_SIDE, max_pixels: int = MAX_PIXELS,
                    max_aspect: float = MAX_ASPECT_RATIO, max_bytes: int | None = None,
                    any_modality: bool = False) -> np.ndarray:
    """Like :func:`read_gray` for an image held in memory (e.g. a notebook upload).

    ``name`` is used in error messages and its ending decides whether a preamble-less file is
    tried as DICOM.
    """
    data = bytes(data)
    _check_file_size(name, len(data))
    return _decode(io.BytesIO(data), name, Path(name).suffix.lower(),
                   _Limits(min_side, max_pixels, max_aspect, max_bytes, any_modality))


def read_gray_resized(path: str | os.PathLike, size: int, **limits) -> np.ndarray:
    """:func:`read_gray` followed by :func:`resize_gray` (``size`` x ``size``, uint8)."""
    return resize_gray(read_gray(path, **limits), size)


def resize_gray(img: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D uint8 image to ``size`` x ``size`` (the paper rescales, it does not crop)."""
    if img.shape == (size, size):
        return img
    return np.array(Image.fromarray(img).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def to_uint8(values: np.ndarray, low: float | None = None, high: float | None = None,
             percentiles: tuple[float, float] = WINDOW_PERCENTILES) -> np.ndarray:
    """Window any numeric 2-D array linearly to ``uint8``: ``low`` -> 0, ``high`` -> 255.

    Without ``low``/``high`` the window is the given percentiles of the finite values; when
    that window is empty (a nearly constant image) the full min-max range is used, and a
    constant image becomes all zeros.  NaNs become 0.
    """
    a = np.asarray(values)
    if low is None or high is None:
        finite = a.ravel() if np.issubdtype(a.dtype, np.integer) else a[np.isfinite(a)]
        if finite.size == 0:
            return np.zeros(a.shape, dtype=np.uint8)
        low, high = (float(v) for v in np.percentile(finite, percentiles))
        if high <= low:
            low, high = float(finite.min()), float(finite.max())
    if not high > low:
        return np.zeros(a.shape, dtype=np.uint8)
    # float32 is exact for integers below 2**24, more than any 16-bit image needs
    out = a.astype(np.float32)
    np.nan_to_num(out, copy=False, nan=low, posinf=high, neginf=low)
    out -= np.float32(low)
    out *= np.float32(255.0 / (high - low))
    np.clip(out, 0, 255, out=out)
    return np.rint(out, out=out).astype(np.uint8)


def is_dicom(path: str | os.PathLike) -> bool:
    """True when the file carries the DICOM ``DICM`` marker at byte 128."""
    try:
        with open(path, "rb") as fp:
            return fp.read(132)[128:132] == b"DICM"
    except OSError:
        return False


# --------------------------------------------------------------------------- decoding


def _check_file_size(name: str, size: int) -> None:
    if size == 0:
        raise ImageReadError(f"{name}: the file is empty (0 bytes); the download or copy "
                             "probably failed. Fetch it again.")
    if size > MAX_FILE_BYTES:
        raise ImageReadError(f"{name}: the file is {size / 2**20:.0f} MiB, more than the "
                             f"{MAX_FILE_BYTES / 2**20:.0f} MiB this reader accepts "
                             "(xray_utils.data.imageio.MAX_FILE_BYTES). Export a single, smaller "
                             "image.")


def _decode(fp: BinaryIO, name: str, suffix: str, limits: _Limits) -> np.ndarray:
    """Decode, and hand back an array the caller owns (writable, C-contiguous uint8)."""
    img = _decode_any(fp, name, suffix, limits)
    if not (img.flags.writeable and img.flags.c_contiguous and img.dtype == np.uint8):
        img = np.array(img, dtype=np.uint8, order="C")
    return img


def _decode_any(fp: BinaryIO, name: str, suffix: str, limits: _Limits) -> np.ndarray:
    """Route to the DICOM or the Pillow decoder; wrap any unexpected failure in a clear error."""
    head = fp.read(132)
    fp.seek(0)
    try:
        if head[128:132] == b"DICM":
            return _read_dicom(fp, name, False, limits)
        if suffix in DICOM_SUFFIXES:
            try:
                return _read_dicom(fp, name, True, limits)
            except _Refused:
                raise
            except ImageReadError as dicom_error:
                fp.seek(0)
                try:  # a PNG or JPEG that was merely given a .dcm name
                    return _read_pil(fp, name, head, limits)
                except _UnrecognisedImage:
                    raise dicom_error from None
        return _read_pil(fp, name, head, limits)
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageReadError(f"{name}: not enough memory to decode this image; use a smaller "
                             "export of it.") from None
    except Exception as exc:  # any other decoder failure is still bad input, not a crash
        raise ImageReadError(f"{name}: cannot be decoded as an image ({type(exc).__name__}: "
                             f"{exc}). The file is probably corrupt; try exporting it "
                             "again.") from exc


def _check_geometry(name: str, width: int, height: int, limits: _Limits,
                    bytes_per_pixel: float = 1, frames: int = 1) -> None:
    """Refuse images that are too large, too small or too thin (see the module limits)."""
    min_side, max_pixels, max_aspect = limits.min_side, limits.max_pixels, limits.max_aspect
    declared = int(width) * int(height) * max(int(frames), 1) * bytes_per_pixel
    if declared > limits.max_bytes:
        what = f"{frames} frames of " if frames > 1 else ""
        raise _Refused(
            f"{name}: the image declares {what}{width} x {height} pixels, "
            f"{declared / 2**20:,.0f} MiB once decoded, more than the "
            f"{limits.max_bytes / 2**20:,.0f} MiB this reader accepts "
            "(xray_utils.data.imageio.MAX_DECODED_BYTES). Export a single, smaller image.")
    if width * height > max_pixels:
        raise ImageReadError(
            f"{name}: the image claims {width} x {height} = {width * height:,} pixels, more than "
            f"the {max_pixels:,} accepted (a guard against 'decompression bombs'). If it is a "
            "genuine image, downscale it first.")
    if min(width, height) < min_side:
        raise ImageReadError(
            f"{name}: the image is only {width} x {height} pixels; at least {min_side} px on each "
            "side are needed, smaller is too small to mean anything.")
    if max(width, height) > max_aspect * min(width, height):
        raise ImageReadError(
            f"{name}: the image is {width} x {height} pixels, a strip more than {max_aspect:g} "
            "times longer than wide; squeezed to the square model input it would be "
            "meaningless. Crop it to the region of interest.")


def _not_an_image(name: str, head: bytes) -> _UnrecognisedImage:
    """The error for content no decoder recognises; says when the file is really text."""
    sample = head[:128]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text and all(c.isprintable() or c in "\r\n\t"
                                                       for c in text.rstrip("\ufffd")):
        start = " ".join(text.split())[:40]
        hint = (" It looks like a web page (an error page from a failed download?)."
                if start.lower().startswith(("<!doctype", "<html")) else "")
        return _UnrecognisedImage(
            f"{name}: the file contains text (it starts with {start!r}), not image data, despite "
            f"its name.{hint} Fetch or export the real image.")
    return _UnrecognisedImage(
        f"{name}: not a recognised image: the content is not PNG, JPEG, TIFF, BMP or DICOM "
        "(whatever its name says). Check that the file is really an image.")


def _read_pil(fp: BinaryIO, name: str, head: bytes, limits: _Limits) -> np.ndarray:
    """Decode with Pillow (PNG, JPEG, TIFF, BMP, GIF, WebP, ...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(fp)
        except UnidentifiedImageError:
            raise _not_an_image(name, head) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageReadError(f"{name}: refused as a possible decompression bomb ({exc}). If "
                                 "it is a genuine image, downscale it first.") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageReadError(f"{name}: the image header is damaged ({exc}); the file is "
                                 "truncated or corrupt. Fetch or export it again.") from None
        with im:
            width, height = im.size
            bands = len(im.getbands()) if im.mode else 1
            depth = 4 if im.mode in ("I", "F", "RGBX", "RGBA", "CMYK") else (
                2 if im.mode.startswith("I;16") else 1)
            _check_geometry(name, width, height, limits, max(bands, depth))  # first frame only
            _check_tiles(im, name, limits, max(bands, depth))
            try:
                im.load()
            except (OSError, SyntaxError, ValueError) as exc:
                raise ImageReadError(
                    f"{name}: the {im.format or 'image'} file is truncated or corrupt ({exc}); "
                    "only part of it could be decoded. Fetch or export it again.") from None
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # a broken EXIF block: keep the stored orientation
                pass
            return pil_to_gray(im, name)


def _check_tiles(im: Image.Image, name: str, limits: _Limits, bytes_per_pixel: int) -> None:
    """Refuse a TIFF whose tiles or strips are larger than the budget, whatever the image size
    (the decoder allocates a whole tile: a 1 MB file can declare a gigabyte tile)."""
    extents = [(t[1][2] - t[1][0], t[1][3] - t[1][1]) for t in (im.tile or [])[:4096]
               if len(t) > 1 and t[1] and len(t[1]) == 4]
    tags = getattr(im, "tag_v2", None)
    if tags is not None:
        tile = (tags.get(322), tags.get(323))  # TileWidth, TileLength
        if all(isinstance(v, int) for v in tile):
            extents.append(tile)
        strip = tags.get(278)  # RowsPerStrip
        if isinstance(strip, int) and not all(isinstance(v, int) for v in tile):
            extents.append((im.size[0], min(strip, im.size[1])))
    samples = int(tags.get(277, 1) or 1) if tags is not None else 1  # SamplesPerPixel
    bits = tags.get(258) if tags is not None else None  # BitsPerSample
    per_pixel = max(bytes_per_pixel, samples * max(int(b) for b in bits) // 8
                    if isinstance(bits, tuple) and bits else bytes_per_pixel)
    for w, h in extents:
        need = int(w) * int(h) * per_pixel
        if need > limits.max_bytes or w < 0 or h < 0:
            raise _Refused(
                f"{name}: the {im.format or 'image'} file stores its pixels in a tile or strip "
                f"of {w} x {h} pixels, {need / 2**20:,.0f} MiB once decoded, more than the "
                f"{limits.max_bytes / 2**20:,.0f} MiB this reader accepts "
                "(xray_utils.data.imageio.MAX_DECODED_BYTES); refused before decoding. Save the "
                "image again (untiled, or with ordinary tiles).")


def pil_to_gray(im: Image.Image, name: str = "<image>") -> np.ndarray:
    """An opened Pillow image of any mode -> 2-D uint8 (rules in the module docstring).

    Used by the reader after decoding; call it directly for images already in memory (no
    limits or EXIF rotation are applied here).  ``name`` appears in error messages.
    """
    mode = im.mode
    if mode == "L" and "transparency" not in im.info:
        return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))
    if mode in _HIGH_DEPTH_MODES:
        return to_uint8(np.asarray(im))
    if mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in im.info):
        try:
            rgba = im.convert("RGBA")
        except ValueError as exc:
            raise _unsupported_mode(name, mode, exc) from None
        background = Image.new("RGBA", rgba.size, (ALPHA_BACKGROUND,) * 3 + (255,))
        return np.asarray(Image.alpha_composite(background, rgba).convert("L"), dtype=np.uint8)
    if mode == "LAB":
        return np.asarray(im.getchannel("L"), dtype=np.uint8)
    if mode in ("1", "P", "RGB", "CMYK", "YCbCr", "HSV", "RGBX"):
        rgb = im if mode in ("1", "RGB", "CMYK", "YCbCr") else im.convert("RGB")
        return np.asarray(rgb.convert("L"), dtype=np.uint8)
    raise _unsupported_mode(name, mode)


def _unsupported_mode(name: str, mode: str, exc: Exception | None = None) -> ImageReadError:
    why = f" ({exc})" if exc else ""
    return ImageReadError(f"{name}: unsupported pixel format {mode!r}{why}. Save the image as an "
                          "ordinary grayscale or RGB PNG/JPEG.")


def _inflate_bounded(fp: BinaryIO, name: str, limit: int, keep: bool) -> bytes | None:
    """Inflate the rest of ``fp`` (raw deflate) in chunks; refuse once it passes ``limit`` bytes.

    With ``keep=False`` only counts (constant memory), so a deflate bomb is refused without
    ever holding its output; with ``keep=True`` returns the inflated bytes.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    parts: list[bytes] = []
    while True:
        chunk = fp.read(_INFLATE_CHUNK)
        data = chunk
        while data:
            try:
                out = inflater.decompress(data, _INFLATE_CHUNK)
            except zlib.error as exc:
                raise ImageReadError(f"{name}: the deflated DICOM data is corrupt ({exc}); fetch "
                                     "or export the file again.") from None
            total += len(out)
            if total > limit:
                raise _Refused(
                    f"{name}: the deflated DICOM data inflates to more than "
                    f"{limit / 2**20:,.0f} MiB, more than this reader accepts "
                    "(xray_utils.data.imageio.MAX_DECODED_BYTES); refused before decoding (a "
                    "guard against 'decompression bombs'). Export the image uncompressed or "
                    "smaller.")
            if keep:
                parts.append(out)
            data = inflater.unconsumed_tail
            if inflater.eof:
                break
        if not chunk or inflater.eof:
            break
    if keep:
        try:
            parts.append(inflater.flush())
        except zlib.error:
            pass
        return b"".join(parts)
    return None


def _dcmread_bounded(fp: BinaryIO, name: str, force: bool, limits: _Limits):
    """``pydicom.dcmread``, except that a deflated data set is inflated against the limit."""
    import pydicom
    from pydicom.filereader import _read_file_meta_info, read_preamble
    from pydicom.uid import ExplicitVRLittleEndian

    start = fp.tell()
    try:
        read_preamble(fp, force)
        meta = _read_file_meta_info(fp)
    except Exception:
        meta = None
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if syntax != _DEFLATED_SYNTAX:
        body = fp.tell() if meta is not None else start
        _scan_file(fp, name, body, syntax)
        fp.seek(start)
        return pydicom.dcmread(fp, force=force)
    body = fp.tell()
    _inflate_bounded(fp, name, limits.max_bytes, keep=False)  # count first: no big buffer
    fp.seek(body)
    inflated = _inflate_bounded(fp, name, limits.max_bytes, keep=True)
    from xray_utils.data.dicom_guard import scan_dataset

    scan_dataset(inflated, 0, name, implicit=False, max_elements=MAX_DICOM_ELEMENTS,
                 max_depth=MAX_DICOM_DEPTH)
    ds = pydicom.dcmread(io.BytesIO(inflated), force=True)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def _scan_file(fp: BinaryIO, name: str, body: int, syntax: str) -> None:
    """Count the data set's elements and items from ``body`` on, before pydicom parses them
    (:func:`xray_utils.data.dicom_guard.scan_dataset`); the file is mapped, not read."""
    import mmap

    from xray_utils.data.dicom_guard import scan_dataset

    implicit = {"1.2.840.10008.1.2": True}.get(syntax, None if not syntax else False)
    little = syntax != "1.2.840.10008.1.2.2"
    bounds = {"max_elements": MAX_DICOM_ELEMENTS, "max_depth": MAX_DICOM_DEPTH}
    if isinstance(fp, io.BytesIO):
        buf = fp.getbuffer()
        try:
            scan_dataset(buf, body, name, implicit=implicit, little=little, **bounds)
        finally:
            buf.release()
        return
    try:
        mapped = mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        fp.seek(0)
        scan_dataset(fp.read(), body, name, implicit=implicit, little=little, **bounds)
        return
    with mapped:
        scan_dataset(mapped, body, name, implicit=implicit, little=little, **bounds)


def _modality_refusal(ds, name: str) -> str | None:
    """A sentence when the DICOM's Modality or SOP class says it is not a radiograph."""
    modality = str(ds.get("Modality", "") or "").strip().upper()
    sop = ds.get("SOPClassUID")
    sop_name = str(getattr(sop, "name", "") or "")
    code = modality if modality in NON_RADIOGRAPH_MODALITIES else None
    if code is None:
        code = next((c for frag, c in _NON_RADIOGRAPH_SOP if frag in sop_name), None)
    if code is None:
        return None
    what = NON_RADIOGRAPH_MODALITIES[code]
    capture = " (a secondary capture of it)" if "Secondary Capture" in sop_name else ""
    return (f"{name}: this DICOM image is {what}{capture}, not a radiograph (Modality "
            f"{modality or 'not set'}); the models were trained on X-ray films only, so the "
            "result would be meaningless. For teaching, pass any_modality=True "
            "(command line: --any-modality) to diagnose it anyway.")


def _read_dicom(fp: BinaryIO, name: str, force: bool, limits: _Limits) -> np.ndarray:
    """Decode a DICOM image with pydicom: first frame, modality + VOI LUT, MONOCHROME1 inverted."""
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    try:
        ds = _dcmread_bounded(fp, name, force, limits)
    except ImageReadError:
        raise
    except MemoryError:
        raise
    except InvalidDicomError as exc:
        raise ImageReadError(f"{name}: not a valid DICOM file ({exc}).") from None
    except Exception as exc:  # EOF inside the header, bad lengths, ...
        raise ImageReadError(f"{name}: the DICOM header cannot be parsed ({type(exc).__name__}: "
                             f"{exc}); the file is truncated or corrupt.") from None
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        sop = ds.get("SOPClassUID")
        kind = f" ({getattr(sop, 'name', sop)})" if sop else ""
        raise ImageReadError(
            f"{name}: this DICOM file{kind} has no pixel data; it is not an image. Export the "
            "image series instead of the report or header.")
    if not limits.any_modality:
        refusal = _modality_refusal(ds, name)
        if refusal:
            raise _Refused(refusal)
    try:
        rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        frames = int(ds.get("NumberOfFrames") or 1)
        samples_declared = int(ds.get("SamplesPerPixel") or 1)
        bits = int(ds.get("BitsAllocated") or 8)
    except (TypeError, ValueError) as exc:
        raise ImageReadError(f"{name}: the DICOM image geometry is unreadable ({exc}); the file "
                             "is corrupt.") from None
    if not rows or not cols:
        raise ImageReadError(f"{name}: the DICOM file has pixel data but no Rows/Columns; it is "
                             "corrupt.")
    if rows < 0 or cols < 0 or frames < 1 or bits < 1 or samples_declared < 1:
        raise ImageReadError(f"{name}: the DICOM image geometry is invalid ({rows} x {cols}, "
                             f"{frames} frames, {bits} bits); the file is corrupt.")
    # the whole declared pixel data (all frames), and the decoded first frame (as float64
    # after the modality LUT) must both fit the limit
    _check_geometry(name, cols, rows, limits, samples_declared * max(bits, 8) / 8, frames)
    _check_geometry(name, cols, rows, limits, samples_declared * 8)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = int(ds.get("SamplesPerPixel") or 1)
    if photometric not in _DICOM_PHOTOMETRICS or samples not in (1, 3):
        raise ImageReadError(f"{name}: unsupported DICOM pixel format (photometric "
                             f"interpretation {photometric!r}, {samples} samples per pixel). "
                             "Export the image as grayscale.")
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        # Preamble-less files (pre-DICOM-3 style) often carry no transfer syntax: derive it
        # from how the data set was actually encoded.
        implicit, little = getattr(ds, "original_encoding", (True, True))
        if little is False:
            raise ImageReadError(f"{name}: big-endian DICOM without a transfer syntax is not "
                                 "supported; convert it with a DICOM tool.")
        ds.ensure_file_meta()
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit is not False
                                          else ExplicitVRLittleEndian)
    syntax = ds.file_meta.TransferSyntaxUID
    from xray_utils.data import dicom_guard

    dicom_guard.check_frame(ds, name, syntax, rows, cols, frames, samples, bits)
    if photometric == "PALETTE COLOR":
        dicom_guard.check_palette(ds, name, rows, cols, limits.max_bytes)
    try:
        arr = pixel_array(ds, index=0)
    except (NotImplementedError, RuntimeError) as exc:
        raise ImageReadError(
            f"{name}: the DICOM pixel data is compressed as {getattr(syntax, 'name', syntax)} "
            f"and no installed decoder can read it ({exc}). Install a pydicom decoder plugin "
            "(e.g. pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg) or export the "
            "image uncompressed.") from None
    except (ValueError, EOFError, OSError) as exc:
        raise ImageReadError(f"{name}: the DICOM pixel data cannot be decoded ({exc}); the file "
                             "is truncated or corrupt.") from None

    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return _rgb_array_to_gray(rgb)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        return _rgb_array_to_gray(arr)
    if arr.ndim != 2 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageReadError(f"{name}: unsupported DICOM pixel format (photometric "
                             f"interpretation {photometric!r}, array shape {arr.shape}). Export "
                             "the image as grayscale.")
    values = apply_modality_lut(arr, ds)
    gray = _dicom_window(values, ds, apply_voi_lut)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return np.ascontiguousarray(gray)


def _dicom_window(values: np.ndarray, ds, apply_voi_lut) -> np.ndarray:
    """The file's VOI LUT or window -> uint8; percentile window when none (or an invalid one)."""
    has_lut = bool(ds.get("VOILUTSequence"))
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    if has_lut or has_window:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = apply_voi_lut(values, ds, index=0)
                if has_lut:
                    low, high = float(np.min(out)), float(np.max(out))
                else:  # the window's output range: where -inf and +inf are mapped
                    low, high = (float(v) for v in apply_voi_lut(np.array([-np.inf, np.inf]),
                                                                 ds, index=0))
            if high > low:
                return to_uint8(out, low, high)
        except (ValueError, IndexError, NotImplementedError, TypeError):
            pass  # e.g. a window width of 0: fall back to the percentile window
    return to_uint8(values)


def _rgb_array_to_gray(rgb: np.ndarray) -> np.ndarray:
    """An (H, W, 3) array of any integer depth -> uint8 luma."""
    if rgb.dtype != np.uint8:
        top = 2 ** (8 * rgb.dtype.itemsize) - 1 if np.issubdtype(rgb.dtype, np.integer) else 1.0
        rgb = np.clip(np.rint(rgb.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb), "RGB").convert("L"),
                      dtype=np.uint8)
