"""Radiograph phantoms: deterministic, physics-based X-ray-like images of the 14 body types.

Every image is a pure function of its seed (an int or a tuple of ints, e.g. ``(seed, index)``):
the same seed gives the same bytes on every run and in every process.

>>> from xray_utils.sources.phantoms import render
>>> film = render("hand", seed=(0, 7), size=128)
>>> film.image.shape, film.image.dtype
((128, 128), dtype('uint8'))

Modules: :mod:`.physics` (attenuation, detector, display), :mod:`.arm` (finger, hand, wrist,
forearm, elbow), :mod:`.leg` (knee, ankle, foot), :mod:`.torso` (spine, hip, shoulder, humerus,
and the trunk the chest is drawn on), :mod:`.dental`, :mod:`.chest` (with the 14 findings and
their boxes), :mod:`.extras` (casts, plates, jewellery on limb films) and :mod:`.photos`
("not an X-ray" images).
"""

from __future__ import annotations

from typing import Callable

from xray_utils.config import paper
from xray_utils.sources.phantoms.arm import (
    render_elbow,
    render_finger,
    render_forearm,
    render_hand,
    render_wrist,
)
from xray_utils.sources.phantoms.chest import FINDING_CLASSES, render_chest, sample_findings
from xray_utils.sources.phantoms.dental import render_dental
from xray_utils.sources.phantoms.leg import render_ankle, render_foot, render_knee
from xray_utils.sources.phantoms.photos import render_photo, source_images
from xray_utils.sources.phantoms.physics import Phantom
from xray_utils.sources.phantoms.torso import render_hip, render_humerus, render_shoulder, render_spine

#: Bumped whenever a change alters the generated pixels (recorded in ``demo_info.json``).
GENERATOR_VERSION = "phantoms-1.1"

#: One renderer per X-ray type of ``paper.XRAY_TYPES``: ``fn(seed, size) -> Phantom``.
RENDERERS: dict[str, Callable[..., Phantom]] = {
    "spine": render_spine,
    "elbow": render_elbow,
    "finger": render_finger,
    "forearm": render_forearm,
    "hand": render_hand,
    "wrist": render_wrist,
    "knee": render_knee,
    "foot": render_foot,
    "ankle": render_ankle,
    "hip": render_hip,
    "humerus": render_humerus,
    "shoulder": render_shoulder,
    "dental": render_dental,
    "chest": render_chest,
}
if tuple(RENDERERS) != paper.XRAY_TYPES:  # pragma: no cover - a wrong edit of the table above
    raise ImportError("RENDERERS must list paper.XRAY_TYPES, in that order")


def render(kind: str, seed, size: int = 128, **kwargs) -> Phantom:
    """Render one image: ``kind`` is an X-ray type of ``paper.XRAY_TYPES`` or ``"photo"``.

    Extra keyword arguments go to the renderer (e.g. ``findings=[...]`` for ``"chest"``).
    """
    if kind == "photo":
        return render_photo(seed, size, **kwargs)
    try:
        fn = RENDERERS[kind]
    except KeyError:
        raise ValueError(
            f"unknown image kind {kind!r}; expected 'photo' or one of {paper.XRAY_TYPES}"
        ) from None
    return fn(seed, size, **kwargs)


__all__ = [
    "GENERATOR_VERSION",
    "RENDERERS",
    "FINDING_CLASSES",
    "Phantom",
    "render",
    "render_chest",
    "render_photo",
    "sample_findings",
    "source_images",
]

