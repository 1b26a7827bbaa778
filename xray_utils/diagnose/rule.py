"""The decision rule of the chained pipeline (paper, Fig. 1), in one place.

Module I decides "X-ray or not"; only X-rays go to Module II; only chest films go to Module III.
``diagnose()`` (one image) and the end-to-end evaluation (whole test sets) both use these
functions, so the two can never disagree.
"""
from __future__ import annotations

import numpy as np

from xray_utils.config import paper

#: An image is called an X-ray when Module I's probability of "xray" is at least this.
XRAY_THRESHOLD = 0.5
#: A finding is called present when Module III's probability is at least this (overridable by
#: per-class thresholds chosen on the validation split).
FINDING_THRESHOLD = 0.5
CHEST = "chest"
#: An image whose grey values vary less than this (standard deviation, 0-255 scale) has no
#: content to diagnose: solid black, white or any solid colour, or nearly so (e.g. a bomb that
#: decodes to black).  A radiograph varies by tens of grey levels.
BLANK_STD = 2.0


def blank_reason(gray: np.ndarray, min_std: float = BLANK_STD) -> str | None:
    """Why a 2-D uint8 image is refused before the models ("blank or unreadable image"), or None.

    The chain decides here, before Module I: such an image is never diagnosed.
    """
    a = np.asarray(gray)
    step = max(1, int(np.ceil(max(a.shape) / 512)))  # a 512 px sample is plenty for a spread
    sample = a[::step, ::step].astype(np.float32)
    spread = float(sample.std()) if sample.size else 0.0
    if spread >= min_std:
        return None
    level = float(sample.mean()) if sample.size else 0.0
    return (f"blank or unreadable image: its grey values hardly vary (mean {level:.0f}, standard "
            f"deviation {spread:.2f} of 255, under {min_std:g}); there is nothing to diagnose. "
            "Check that the file holds the film itself.")


def is_xray(p_xray: np.ndarray | float, threshold: float = XRAY_THRESHOLD) -> np.ndarray:
    """Module I's verdict from the probability of the class ``"xray"``."""
    return np.asarray(p_xray) >= threshold


def xray_type(type_probs: np.ndarray) -> np.ndarray:
    """Module II's verdict: the most probable of ``paper.XRAY_TYPES`` (rows = images)."""
    probs = np.atleast_2d(np.asarray(type_probs))
    return np.asarray(paper.XRAY_TYPES, dtype=object)[probs.argmax(axis=1)]


def stage_reached(p_xray: np.ndarray, type_probs: np.ndarray,
                  threshold: float = XRAY_THRESHOLD) -> np.ndarray:
    """Per image: ``"not_xray"`` (stop after I), ``"type_only"`` (stop after II) or ``"chest"``."""
    xr = is_xray(p_xray, threshold)
    types = xray_type(type_probs)
    return np.where(~xr, "not_xray", np.where(types == CHEST, "chest", "type_only"))
