"""The image reader's errors (shared by :mod:`xray_utils.data.imageio` and its DICOM checks)."""
from __future__ import annotations


class ImageReadError(ValueError):
    """An image cannot be read; the message names the file and says why in plain words."""


class _UnrecognisedImage(ImageReadError):
    """No Pillow decoder recognises the content (used to prefer the DICOM error for .dcm)."""


class _Refused(ImageReadError):
    """A readable DICOM refused on purpose (modality, size): no fall-back to other decoders."""
