"""Dental panoramic films (orthopantomograms).

A panoramic film unrolls the jaws onto a wide strip: the teeth stand along a gentle "smile"
curve (upper crowns pointing down, lower crowns up, roots into the bone), the mandible is a
broad U-shaped band whose rami climb to the condyles at both sides, the hard palate and the
maxillary sinuses lie above the upper teeth, and the cervical spine appears as blurred ghost
shadows at both edges.  Crowns are enamel (the densest tissue in the body) around dentin
with a dark pulp; some teeth are missing, some carry metal fillings.  The film is about twice
as wide as tall, so the pipeline's square resize squeezes it horizontally (``aspect`` < 1).
"""

from __future__ import annotations

import numpy as np

from xray_utils.sources.phantoms.physics import (
    Canvas,
    E,
    Phantom,
    T,
    View,
    bone_union,
    develop,
    ellipse,
    slab,
    soft,
    soft_tube,
    streams,
    tube,
)

# mesiodistal widths (cm) from the midline outwards: central, lateral incisor, canine, 2 premolars, 3 molars
# (magnified about 1.3x, as on a panoramic film)
_WIDTH = tuple(1.3 * w for w in (0.85, 0.7, 0.8, 0.72, 0.72, 1.05, 1.0, 0.95))
_ROOT = tuple(1.3 * w for w in (1.3, 1.3, 1.7, 1.4, 1.4, 1.3, 1.25, 1.1))
_CROWN = tuple(1.3 * w for w in (1.0, 0.95, 1.0, 0.85, 0.8, 0.75, 0.72, 0.7))


def _occlusal(x: np.ndarray | float, smile: float) -> np.ndarray:
    """The bite line: a "smile", lowest at the midline and rising towards the molars (image
    y grows downwards)."""
    return -smile * np.asarray(x) ** 2


def render_dental(seed, size: int = 128, *, return_attenuation: bool = False) -> Phantom:
    """A panoramic dental film (see the module docstring)."""
    r = streams(seed, ("anatomy", "pose", "view", "texture", "detector", "teeth"))
    a, t = r["anatomy"], r["teeth"]
    g = float(a.uniform(0.9, 1.1))
    smile = float(a.uniform(0.012, 0.03))
    width_cm = float(r["view"].uniform(27.0, 32.0)) * g
    height_cm = width_cm * float(r["view"].uniform(0.45, 0.55))
    view = View(
        size=size,
        center=(float(r["view"].normal(0, 0.4)), float(r["view"].uniform(0.5, 1.5)) * g),
        scale=float(size / np.sqrt(width_cm * height_cm)),
        angle=float(r["view"].normal(0, 0.025)),
        flip=bool(r["view"].random() < 0.5),
        aspect=float(height_cm / width_cm),
    )
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.35, 0.6)))
    # head soft tissue: a broad slab, thicker in the middle (tongue, lips) than at the sides
    ys = np.array([-12, -4, 2, 7, 12]) * g
    slab(
        cv,
        ys,
        np.array([16, 17, 16, 14, 10]) * g,
        np.array([7, 7.5, 7, 6, 4]) * g,
        cv.mu("soft"),
        layer="union_limb_muscle",
    )
    # air: oral pharynx band above the tongue, airway ghosts at the sides
    soft_tube(cv, [(-7 * g, -3.2 * g), (0, -3.6 * g), (7 * g, -3.2 * g)], 0.5 * g, density=-2.5, profile=0.8)
    for side in (-1, 1):
        soft_tube(cv, [(side * 9.5 * g, -6 * g), (side * 9.0 * g, 6 * g)], 0.9 * g, density=-2.0, profile=0.8)
    # maxilla with the hard palate line and maxillary sinuses / nasal cavity
    bone_union(
        cv, [E((0, -2.6 * g), (12.0 * g, 2.4 * g), 0.8 * g, power=2.2, cortex=0.06)], density=0.6, texture=0.3
    )
    tube(
        cv,
        [(-8 * g, -4.3 * g), (0, -4.6 * g), (8 * g, -4.3 * g)],
        0.14 * g,
        cv.excess("cortex"),
        depth_ratio=2.5,
        profile=0.8,
    )
    for side in (-1, 1):
        soft(cv, (side * 4.8 * g, -6.0 * g), (3.0 * g, 1.7 * g), 1.6 * g, density=-1.2, soft_edge=0.2)
    soft(cv, (0, -6.8 * g), (1.8 * g, 1.6 * g), 1.4 * g, density=-1.0, soft_edge=0.3)
    # mandible: body along a U curve, rami up to the condyles, dense inferior cortex
    xs = np.linspace(-10.5, 10.5, 15) * g
    body_y = 3.4 * g + _occlusal(xs, smile) * 1.6
    ramus_x = float(a.uniform(11.0, 12.5)) * g
    parts = [
        T(
            np.stack([xs, body_y], 1),
            np.full(15, 2.2 * g),
            np.full(15, 0.9 * g),
            cortex=0.2,
            inner="trabecular",
        )
    ]
    for side in (-1, 1):
        parts.append(
            T(
                [
                    (side * 10.5 * g, body_y[-1]),
                    (side * ramus_x, -0.5 * g),
                    (side * (ramus_x + 0.3 * g), -4.0 * g),
                ],
                np.array([1.9, 1.6, 0.8]) * g,
                np.array([0.9, 0.7, 0.6]) * g,
                cortex=0.25,
                inner="trabecular",
            )
        )
        parts.append(E((side * (ramus_x + 0.4 * g), -4.6 * g), (0.9 * g, 0.7 * g), 0.8 * g))  # condyle
    bone_union(cv, parts, density=float(a.uniform(0.9, 1.15)), texture=0.35, blend=0.1)
    # mandibular canal: a faint lucent band below the roots
    tube(
        cv,
        np.stack([xs[2:-2], body_y[2:-2] + 0.4 * g], 1),
        0.18 * g,
        -0.5 * cv.excess("trabecular"),
        depth_ratio=3.0,
        profile=1.0,
    )
    # cervical spine ghosts at the image edges
    for side in (-1, 1):
        soft_tube(
            cv, [(side * 14.2 * g, -8 * g), (side * 13.6 * g, 8 * g)], 2.0 * g, density=3.2, profile=1.5
        )
    # the teeth
    missing = t.random(32) < float(t.uniform(0.0, 0.15))
    fillings = t.random(32) < float(t.uniform(0.0, 0.25))
    wisdom = t.random(4) < 0.5
    k = 0
    for jaw in (-1, 1):  # -1 upper (crown points down), +1 lower
        for side in (-1, 1):
            x = 0.05 * g
            for i in range(8):
                w = _WIDTH[i] * g
                cx = side * (x + w / 2)
                x += w + 0.05 * g
                if missing[k] or (i == 7 and not wisdom[(jaw + 1) + (side + 1) // 2]):
                    k += 1
                    continue
                _tooth(
                    cv,
                    cx,
                    float(_occlusal(cx, smile)) + jaw * 0.08 * g,
                    jaw,
                    i,
                    g,
                    w,
                    t,
                    bool(fillings[k]) and i >= 3,
                )
                k += 1
    return develop(cv, r["detector"], "dental", meta={"smile": smile}, return_attenuation=return_attenuation)


def _tooth(
    cv: Canvas,
    cx: float,
    occ: float,
    jaw: int,
    i: int,
    g: float,
    w: float,
    rng: np.random.Generator,
    filling: bool,
) -> None:
    """One tooth: enamel crown over dentin, pulp, one or two roots pointing away from the bite."""
    crown_h = _CROWN[i] * 1.3 * g
    root_h = _ROOT[i] * 1.05 * g
    tilt = float(rng.normal(0, 0.06)) + 0.02 * cx / g
    d = np.array([np.sin(tilt), np.cos(tilt)]) * jaw  # from the bite into the bone
    top = np.array([cx, occ])
    crown_c = top + d * (0.5 * crown_h)
    enamel = cv.excess("enamel")
    dentin = cv.excess("dentin")
    ellipse(
        cv,
        crown_c,
        (0.6 * w, 0.6 * crown_h),
        0.6 * w,
        1.3 * enamel,
        angle=tilt,
        power=2.6,
        cortex=0.22,
        mu_in=dentin,
    )
    n_roots = 2 if i >= 5 else 1
    for j in range(n_roots):
        off = (j - (n_roots - 1) / 2) * 0.45 * w
        base = top + d * crown_h + np.array([np.cos(tilt), -np.sin(tilt)]) * off * jaw
        tip = base + d * root_h + np.array([off * 0.2, 0.0])
        rw = 0.55 * w if n_roots == 1 else 0.34 * w
        tube(cv, [base, tip], [rw, rw * 0.5], 1.3 * dentin, depth_ratio=1.4, end_cap=1.0)
    # pulp chamber and canal
    tube(
        cv,
        [top + d * 0.55 * crown_h, top + d * (crown_h + 0.8 * root_h)],
        [0.12 * w, 0.03 * w],
        -0.6 * dentin,
        depth_ratio=1.0,
    )
    if filling:
        ellipse(
            cv,
            top + d * 0.3 * crown_h,
            (0.3 * w, 0.22 * crown_h),
            0.3 * w,
            cv.mu("metal"),
            angle=tilt,
            power=3.0,
        )
