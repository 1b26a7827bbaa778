"""Things on real limb films that are not anatomy: casts, fixation plates and screws, jewellery.

Trauma films (MURA, FracAtlas, LERA) often show a plaster or fibreglass cast, orthopaedic
hardware or a ring or bracelet.  A model that has never seen them may take a real film with a
cast for "not an X-ray", so a small share of limb phantoms carries them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from xray_utils.sources.phantoms.physics import Canvas, tube


def cast(
    cv: Canvas, points: Sequence[Sequence[float]], radii: Sequence[float], rng: np.random.Generator
) -> None:
    """A cast around a limb segment: a shell of plaster (dense, with a faint mesh texture)."""
    r = np.asarray(radii, dtype=np.float64)
    thick = float(rng.uniform(0.5, 1.3))
    mu = cv.mu("soft") * float(rng.uniform(1.3, 2.4))
    outer, inner = r + 0.15 + thick, r + 0.15
    tube(cv, points, outer, mu, depth_ratio=1.0, end_cap=0.3)
    tube(cv, points, inner, -mu, depth_ratio=1.0, end_cap=0.3)


def plate(cv: Canvas, p0: Sequence[float], p1: Sequence[float], rng: np.random.Generator) -> None:
    """A fixation plate along a bone with screws across it."""
    p0, p1 = np.asarray(p0, dtype=float), np.asarray(p1, dtype=float)
    mu = cv.mu("metal")
    tube(cv, [p0, p1], 0.55, mu, depth_ratio=0.3, end_cap=0.6)
    d = (p1 - p0) / (np.linalg.norm(p1 - p0) + 1e-9)
    nrm = np.array([-d[1], d[0]])
    n = int(rng.integers(3, 7))
    for t in np.linspace(0.12, 0.88, n):
        c = p0 + t * (p1 - p0)
        tube(cv, [c - 1.3 * nrm, c + 1.3 * nrm], 0.17, mu, depth_ratio=1.0)


def ring(
    cv: Canvas, center: Sequence[float], axes: Sequence[float], angle: float, thickness: float = 0.15
) -> None:
    """A ring, bracelet or watch band: a metal loop seen obliquely (an ellipse outline)."""
    t = np.linspace(0, 2 * np.pi, 25)
    c, s = np.cos(angle), np.sin(angle)
    x, y = axes[0] * np.cos(t), axes[1] * np.sin(t)
    pts = np.stack([center[0] + c * x - s * y, center[1] + s * x + c * y], 1)
    tube(cv, pts, thickness, cv.mu("metal") * 0.6, depth_ratio=1.5)


def limb_extras(
    cv: Canvas,
    rng: np.random.Generator,
    segment: tuple[Sequence[Sequence[float]], Sequence[float]],
    bone: tuple[Sequence[float], Sequence[float]] | None = None,
    wrist: tuple[tuple[float, float], float, float] | None = None,
) -> list[str]:
    """Randomly add a cast around ``segment`` (points, radii), a plate along ``bone`` (two
    points) and a bracelet at ``wrist`` (centre, half-width, limb angle); returns what was added."""
    added = []
    if rng.random() < 0.08:
        cast(cv, segment[0], segment[1], rng)
        added.append("cast")
    if bone is not None and rng.random() < 0.04:
        plate(cv, bone[0], bone[1], rng)
        added.append("plate")
    if wrist is not None and rng.random() < 0.08:
        (cx, cy), half, ang = wrist
        ring(cv, (cx, cy), (half * 1.15, half * 0.35), ang)
        added.append("bracelet")
    return added
