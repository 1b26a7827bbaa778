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
