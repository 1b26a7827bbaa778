"""Simple image statistics: the trivial cues a shortcut learner could use.

Used by tests/test_phantoms.py and scripts/trivial_cue_check.py (which puts this folder on its
import path); a measuring tool of the tests, not part of the package.
"""
from __future__ import annotations

import numpy as np


def simple_image_stats(img: np.ndarray) -> list[float]:
    """The trivial cues a shortcut learner could use: brightness, contrast, histogram
    percentiles, border and centre means.  The phantoms must not be separable by these (the
    tests and ``scripts/trivial_cue_check.py`` fit a logistic regression on them)."""
    img = img.astype(np.float32)
    n = img.shape[0]
    b = max(1, n // 8)
    border = np.concatenate([img[:b].ravel(), img[-b:].ravel(), img[:, :b].ravel(),
                             img[:, -b:].ravel()])
    centre = img[n // 4 : 3 * n // 4, n // 4 : 3 * n // 4]
    return [img.mean(), img.std(), *np.percentile(img, [5, 25, 50, 75, 95]), border.mean(),
            centre.mean()]
