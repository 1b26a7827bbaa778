"""The project's one image reader: PNG, JPEG, DICOM -> 8-bit grayscale NumPy array."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


class ImageReadError(ValueError):
    """An image cannot be read; the message names the file and says why in plain words."""


def read_gray(path: str | Path) -> np.ndarray:
    """Read ``path`` as a 2-D ``uint8`` array (0 = black)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"), dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except Exception as exc:
        raise ImageReadError(f"{path}: cannot be read as an image ({exc})") from exc


def resize_gray(img: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D uint8 image to ``size`` x ``size`` (the paper rescales, it does not crop)."""
    if img.shape == (size, size):
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR), dtype=np.uint8)
