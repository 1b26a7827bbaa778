"""Chest PA films with the 14 ChestX-ray14 findings as localised, visible changes.

:func:`render_chest` draws a :class:`~xray_utils.sources.phantoms.torso.Torso` and then applies each
requested finding to the same anatomy.  Every random choice has its own stream (patient, pose,
view, detector, and one per finding), so ``render_chest(s, findings=["Nodule"])`` and
``render_chest(s, findings=[])`` differ *only* by the nodule -- which is how the tests check that
each bounding box covers the change it describes.

How each finding looks (and why):

* **Cardiomegaly** -- the cardiac silhouette widened to a cardiothoracic ratio (CTR) of
  0.52-0.66 (normal hearts are drawn at 0.38-0.48); ``meta["ctr"]`` holds the value.
* **Effusion** -- fluid fills the lung base from the costophrenic angle up to a meniscus that
  rises laterally: a blunted angle and a basal opacity hiding the dome.
* **Pneumothorax** -- the lung pulls away from the apex and lateral wall: a dark rim without
  vessel markings, a thin bright visceral pleural line, a slightly denser collapsed lung.
* **Nodule / Mass** -- round soft-tissue opacities inside a lung, 4-6 % vs 10-18 % of the image
  width (masses lobulated).
* **Consolidation** -- a dense, well-demarcated lobar opacity with air bronchograms.
* **Pneumonia** -- a cluster of fluffy patches in one region.
* **Infiltration** -- a larger, fainter, streaky opacity (often in both lower zones).
* **Edema** -- bilateral perihilar haze fading to the periphery (bat wing).
* **Emphysema** -- large hyperlucent lungs with low, flat domes and pruned peripheral vessels.
* **Fibrosis** -- a reticular net of fine lines, upper and peripheral zones.
* **Pleural_Thickening** -- a band of opacity along the lateral chest wall or over the apex.
* **Hernia** -- a hiatal hernia: a round retrocardiac soft-tissue shadow with a gas bubble above
  the left dome.
* **Atelectasis** -- volume loss: an elevated hemidiaphragm with linear (plate) or wedge
  opacities in the lower zone.

Prevalence and co-occurrence follow ChestX-ray14 (about half "No Finding"; Effusion often with
Atelectasis or Cardiomegaly, Pneumonia with Infiltration, ...), flattened so rare findings such
as Hernia still appear often enough for a small demo to learn them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Sequence

import numpy as np

from xray_utils.config import paper
from xray_utils.sources.phantoms.physics import (
    Canvas,
    Phantom,
    develop,
    ellipse,
    sample_view,
    soft,
    soft_tube,
    streams,
)
from xray_utils.sources.phantoms.torso import SIDES, Torso, sample_torso

#: Label counts of ChestX-ray14 (Data_Entry_2017, 112,120 films), the basis of the prevalence model.
NIH_COUNTS: dict[str, int] = {
    "Atelectasis": 11559,
    "Cardiomegaly": 2776,
    "Effusion": 13317,
    "Infiltration": 19894,
    "Mass": 5782,
    "Nodule": 6331,
    "Pneumonia": 1431,
    "Pneumothorax": 5302,
    "Consolidation": 4667,
    "Edema": 2303,
    "Emphysema": 2516,
    "Fibrosis": 1686,
    "Pleural_Thickening": 3385,
    "Hernia": 227,
}
#: P(companion | finding) in ChestX-ray14 for the frequent pairs (>= 0.10), rounded.
COOCCURRENCE: dict[str, dict[str, float]] = {
    "Atelectasis": {"Effusion": 0.28, "Infiltration": 0.28, "Consolidation": 0.11},
    "Cardiomegaly": {"Effusion": 0.38, "Infiltration": 0.21, "Atelectasis": 0.13},
    "Effusion": {"Infiltration": 0.30, "Atelectasis": 0.25, "Consolidation": 0.10},
    "Infiltration": {"Effusion": 0.20, "Atelectasis": 0.16},
    "Mass": {
        "Effusion": 0.22,
        "Infiltration": 0.20,
        "Nodule": 0.16,
        "Atelectasis": 0.13,
        "Consolidation": 0.11,
    },
    "Nodule": {"Infiltration": 0.24, "Effusion": 0.14, "Mass": 0.14},
    "Pneumonia": {"Infiltration": 0.42, "Edema": 0.24, "Effusion": 0.19, "Atelectasis": 0.18},
    "Pneumothorax": {"Effusion": 0.19, "Infiltration": 0.18, "Atelectasis": 0.15, "Emphysema": 0.14},
    "Consolidation": {"Effusion": 0.28, "Atelectasis": 0.26, "Infiltration": 0.26, "Mass": 0.13},
    "Edema": {"Infiltration": 0.43, "Effusion": 0.26, "Pneumonia": 0.15},
    "Emphysema": {"Pneumothorax": 0.30, "Infiltration": 0.18, "Atelectasis": 0.17, "Effusion": 0.14},
    "Fibrosis": {
        "Infiltration": 0.20,
        "Atelectasis": 0.13,
        "Effusion": 0.11,
        "Pleural_Thickening": 0.10,
        "Nodule": 0.10,
    },
    "Pleural_Thickening": {
        "Effusion": 0.25,
        "Infiltration": 0.22,
        "Atelectasis": 0.15,
        "Mass": 0.13,
        "Nodule": 0.12,
    },
    "Hernia": {"Atelectasis": 0.18, "Infiltration": 0.15, "Mass": 0.11},
}
NO_FINDING_FRACTION = 0.5
#: Companion probabilities are scaled by this so the mean number of labels of an abnormal film
#: stays near ChestX-ray14's 1.57.
COMPANION_SCALE = 0.6


def finding_weights() -> dict[str, float]:
    """Primary-finding weights: square root of the ChestX-ray14 counts (flattened), with a floor
    so the rarest finding (Hernia) still gets about 2 % of abnormal films."""
    w = {f: float(np.sqrt(NIH_COUNTS[f])) for f in paper.FINDINGS}
    floor = 0.35 * float(np.mean(list(w.values())))
    w = {f: max(v, floor) for f, v in w.items()}
    total = sum(w.values())
    return {f: v / total for f, v in w.items()}


def sample_findings(rng: np.random.Generator) -> tuple[str, ...]:
    """Draw a label set: ~50 % none; else a primary finding plus typical companions."""
    if rng.random() < NO_FINDING_FRACTION:
        return ()
    w = finding_weights()
    names = list(paper.FINDINGS)
    primary = str(rng.choice(names, p=[w[n] for n in names]))
    out = {primary}
    for comp, p in COOCCURRENCE[primary].items():
        if rng.random() < p * COMPANION_SCALE:
            out.add(comp)
    return tuple(f for f in paper.FINDINGS if f in out)


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
Box = tuple[float, float, float, float]  # body coordinates x0, y0, x1, y1


def _smoothstep(x: np.ndarray) -> np.ndarray:
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _point_in_lung(
    torso: Torso,
    rng: np.random.Generator,
    side: int,
    margin: float,
    y_range: tuple[float, float] | None = None,
    x_frac: tuple[float, float] = (0.0, 1.0),
) -> tuple[float, float]:
    """A random point at least ``margin`` cm inside the lung on ``side``."""
    x0, y0, x1, y1 = torso.lung_bbox(side)
    lo, hi = (y0, y1) if y_range is None else y_range
    best, best_s = None, -1e9
    for _ in range(60):
        xs = rng.uniform(*x_frac)
        u = x0 + xs * (x1 - x0) if side > 0 else x1 - xs * (x1 - x0)
        v = rng.uniform(lo, hi)
        s = float(torso.lung_field(side, np.array(u), np.array(v)))
        if s >= margin:
            return float(u), float(v)
        if s > best_s:
            best, best_s = (float(u), float(v)), s
    return best  # type: ignore[return-value]


def _union(*boxes: Box) -> Box:
    b = np.array(boxes)
    return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


class Finding:
    """One finding instance: geometry changes, air modifiers, extra deposits and its box."""

    name = ""

    def __init__(self, torso: Torso, rng: np.random.Generator, fov: float):
        self.torso, self.rng, self.fov = torso, rng, fov
        self.side = int(rng.choice(SIDES))

    def reshape(self, torso: Torso) -> Torso:
        """Change the anatomy (heart size, domes) before drawing; default: nothing."""
        return torso

    def air(self, side: int, u: np.ndarray, v: np.ndarray, s: np.ndarray, air: np.ndarray) -> np.ndarray:
        """Change the air content of a lung; default: nothing."""
        return air

    def vessels(self, side: int, u: np.ndarray, v: np.ndarray, s: np.ndarray) -> np.ndarray | float:
        """Factor on the vessel markings; default: unchanged."""
        return 1.0

    def deposit(self, cv: Canvas) -> None:
        """Extra attenuation (masses, lines); default: nothing."""

    def box(self) -> Box:
        raise NotImplementedError


class Cardiomegaly(Finding):
    name = "Cardiomegaly"

    def reshape(self, torso: Torso) -> Torso:
        self.normal = torso.heart
        ctr = float(self.rng.uniform(0.52, 0.66))
        width = ctr * 2 * torso.base_half_width
        share = torso.heart.right / (torso.heart.right + torso.heart.left)
        big = replace(
            torso.heart,
            right=share * width,
            left=(1 - share) * width,
            ratio=min(0.9, torso.heart.ratio + 0.05),
        )
        self.heart = big
        return replace(torso, heart=big)

    def box(self) -> Box:
        x0, y0, x1, y1 = _union(self.heart.bbox(), self.normal.bbox())
        m = 1.0 * self.torso.g
        return x0 - m, y0 - m, x1 + m, y1 + 0.3 * m


class Effusion(Finding):
    name = "Effusion"

    def __init__(self, torso, rng, fov):
        super().__init__(torso, rng, fov)
        self.sides = (self.side,) if rng.random() < 0.7 else SIDES
        self.height = {s: float(rng.uniform(1.5, 6.5)) * torso.g for s in SIDES}

    def _top(self, side: int, u: np.ndarray) -> np.ndarray:
        """Upper border of the fluid: above the dome everywhere, rising laterally (meniscus)."""
        t = self.torso
        xs = np.abs(u)
        frac = np.clip((xs - t.mediastinum) / (t.base_half_width - t.mediastinum), 0, 1)
        return (
            t.dome(side, np.minimum(xs, t.base_half_width))
            - self.height[side] * (0.35 + 0.65 * frac**1.5)
            - 0.8 * t.g
        )

    def air(self, side, u, v, s, air):
        if side not in self.sides:
            return air
        fluid = _smoothstep((v - self._top(side, u)) / (1.0 * self.torso.g))
        return air * (1.0 - 0.97 * fluid)

    def vessels(self, side, u, v, s):
        if side not in self.sides:
            return 1.0
        return 1.0 - _smoothstep((v - self._top(side, u)) / (1.0 * self.torso.g))

    def box(self) -> Box:
        t = self.torso
        boxes = []
        for side in self.sides:
            x0, y0, x1, y1 = t.lung_bbox(side)
            xs = np.linspace(t.mediastinum, t.base_half_width, 24) * side
            top = float(self._top(side, xs).min()) - 0.3 * t.g
            boxes.append((x0, max(y0, top), x1, y1 + 0.3))
        return _union(*boxes)


class Pneumothorax(Finding):
    name = "Pneumothorax"

    def __init__(self, torso, rng, fov):
        super().__init__(torso, rng, fov)
        self.rim = float(rng.uniform(1.2, 3.2)) * torso.g
        self.low = float(rng.uniform(0.35, 0.8))  # how far down the lateral wall the rim reaches

    def _collapse(self, side: int, v: np.ndarray) -> np.ndarray:
        t = self.torso
        top, bottom = t.apex_y, t.cp_y[0 if side < 0 else 1]
        frac = np.clip((v - top) / (bottom - top), 0, 1)
        return self.rim * np.clip(1.0 - frac / self.low, 0.0, 1.0) ** 0.7

    def _s_lung(self, side, v, s):
        return s - self._collapse(side, v)

    def air(self, side, u, v, s, air):
        if side != self.side:
            return air
        s2 = self._s_lung(side, v, s)
        in_space = (s > 0) & (s2 < 0)
        full = (
            self.torso.lung_depth
            * self.torso.g
            * (0.55 + 0.45 * np.clip((v - self.torso.apex_y) / 8.0, 0, 1))
        )
        collapsed = _smoothstep(s2 / 0.4)
        space = _smoothstep(s / 0.5) * (1 - collapsed)
        denser = 1.0 - 0.18 * np.clip(self._collapse(side, v) / self.rim, 0.0, 1.0)  # the collapsing lung
        return np.where(in_space | (s2 >= 0), space * full * 1.02 + collapsed * air * denser, air)

    def vessels(self, side, u, v, s):
        if side != self.side:
            return 1.0
        return _smoothstep(self._s_lung(side, v, s) / 0.5)

    def deposit(self, cv: Canvas) -> None:
        t = self.torso
        win = cv.window(*t.lung_bbox(self.side))
        if win is None:
            return
        u, v = cv.u[win].astype(np.float64), cv.v[win].astype(np.float64)
        s = t.lung_field(self.side, u, v)
        s2 = self._s_lung(self.side, v, s)
        line = np.exp(-((s2 / (0.09 * t.g)) ** 2)) * (s > 0.2) * (self._collapse(self.side, v) > 0.3)
        cv.atten[win] += (cv.mu("soft") * 1.6 * t.g * line).astype(np.float32)

    def box(self) -> Box:
        t = self.torso
        x0, y0, x1, y1 = t.lung_bbox(self.side)
        bottom = t.apex_y + self.low * (t.cp_y[0 if self.side < 0 else 1] - t.apex_y) + 0.8 * t.g
        return x0, y0, x1, min(y1, bottom)


class _Round(Finding):
    """Nodule and mass: round soft-tissue opacities inside a lung."""

    size_range = (0.04, 0.06)
    lobes = 0

    def __init__(self, torso, rng, fov):
        super().__init__(torso, rng, fov)
        self.r = 0.5 * float(rng.uniform(*self.size_range)) * fov
        self.c = _point_in_lung(torso, rng, self.side, margin=0.6 * self.r)
        self.parts = [(self.c, self.r)]
        for _ in range(self.lobes):
            a = rng.uniform(0, 2 * np.pi)
            rr = self.r * rng.uniform(0.45, 0.65)
            off = (self.r - 0.6 * rr) * np.array([np.cos(a), np.sin(a)])
            self.parts.append(((self.c[0] + off[0], self.c[1] + off[1]), rr))
        self.density = float(rng.uniform(1.1, 1.5)) * (
            1.5 if (self.lobes == 0 and rng.random() < 0.12) else 1.0
        )

    def deposit(self, cv: Canvas) -> None:
        for c, r in self.parts:
            soft(
                cv,
                c,
                (r, r * self.rng.uniform(0.85, 1.0)),
                r * 1.1,
                density=self.density,
                angle=float(self.rng.uniform(0, np.pi)),
                soft_edge=0.12,
            )

    def box(self) -> Box:
        x0 = min(c[0] - r for c, r in self.parts)
        x1 = max(c[0] + r for c, r in self.parts)
        y0 = min(c[1] - r for c, r in self.parts)
        y1 = max(c[1] + r for c, r in self.parts)
        m = 0.15 * self.r
        return x0 - m, y0 - m, x1 + m, y1 + m


class Nodule(_Round):
    name = "Nodule"


class Mass(_Round):
    name = "Mass"
    size_range = (0.10, 0.18)
    lobes = 2


class _Airspace(Finding):
    """Airspace opacities: a mask m(u, v) in [0, 1] that replaces a fraction of the air."""

    strength = 0.8

    def mask(self, side: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def sides(self) -> tuple[int, ...]:
        return (self.side,)

    def air(self, side, u, v, s, air):
        if side not in self.sides():
            return air
        return air * (1.0 - self.strength * np.clip(self.mask(side, u, v), 0, 1))

    def vessels(self, side, u, v, s):
        if side not in self.sides():
            return 1.0
        return 1.0 - 0.7 * np.clip(self.mask(side, u, v), 0, 1)


class Consolidation(_Airspace):
    name = "Consolidation"
    strength = 0.9

    def __init__(self, torso, rng, fov):
        super().__init__(torso, rng, fov)
        zone = rng.choice(["upper", "lower", "middle"], p=[0.3, 0.5, 0.2])
        x0, y0, x1, y1 = torso.lung_bbox(self.side)
        h = y1 - y0
        yr = {
            "upper": (y0 + 0.2 * h, y0 + 0.4 * h),
            "middle": (y0 + 0.45 * h, y0 + 0.6 * h),
            "lower": (y0 + 0.62 * h, y0 + 0.78 * h),
        }[zone]
        self.c = _point_in_lung(torso, rng, self.side, 1.5, yr, (0.3, 0.8))
        self.ax = (float(rng.uniform(3.0, 5.0)) * torso.g, float(rng.uniform(2.5, 4.5)) * torso.g)
        self.ang = float(rng.uniform(-0.5, 0.5))
        self.fissure = float(rng.uniform(-0.4, 0.4))  # a straight edge (fissure) on the upper side
        self.bronchi = [
            (self.c, float(rng.uniform(-2.5, -0.6)) if self.side < 0 else float(rng.uniform(0.6, 2.5)))
            for _ in range(int(rng.integers(1, 4)))
        ]

    def mask(self, side, u, v):
        c, s = np.cos(self.ang), np.sin(self.ang)
        x, y = u - self.c[0], v - self.c[1]
        rho = np.sqrt(((c * x + s * y) / self.ax[0]) ** 2 + ((-s * x + c * y) / self.ax[1]) ** 2)
        ang = np.arctan2(y, x)
        rho = rho * (1.0 + 0.12 * np.sin(3 * ang + self.fissure * 7) + 0.08 * np.sin(5 * ang + 1.3))
        edge = _smoothstep((1.0 - rho) / 0.3)
        cut = _smoothstep((y - self.fissure * x + 0.55 * self.ax[1]) / 0.4)
        return edge * cut

    def deposit(self, cv: Canvas) -> None:
        # air bronchograms: dark branching tubes visible inside the opacity
        g = self.torso.g
        for (cx, cy), ang in self.bronchi:
            d = np.array([np.cos(ang), np.sin(ang)])
            p0 = np.array([cx, cy]) - 0.6 * self.ax[0] * d
            p1 = np.array([cx, cy]) + 0.6 * self.ax[0] * d
            soft_tube(cv, [p0, p1], 0.22 * g, density=-0.9, profile=0.7, layer="bronchogram")
        win = cv.window(*self.box())
        if win is not None and "bronchogram" in cv.layers:
            m = self.mask(self.side, cv.u[win], cv.v[win])
            cv.atten[win] += cv.layers["bronchogram"][win] * m.astype(np.float32)
            cv.layers["bronchogram"][:] = 0

    def box(self) -> Box:
        r = max(self.ax) * 1.05
        x0, y0, x1, y1 = self.torso.lung_bbox(self.side)
        return max(x0, self.c[0] - r), max(y0, self.c[1] - r), min(x1, self.c[0] + r), min(y1, self.c[1] + r)


class Pneumonia(_Airspace):
    name = "Pneumonia"
    strength = 0.6

    def __init__(self, torso, rng, fov):
        super().__init__(torso, rng, fov)
        x0, y0, x1, y1 = torso.lung_bbox(self.side)
        h = y1 - y0
        self.c = _point_in_lung(torso, rng, self.side, 1.5, (y0 + 0.3 * h, y0 + 0.8 * h), (0.2, 0.8))
        spread = float(rng.uniform(2.5, 4.5)) * torso.g
        n = int(rng.integers(5, 10))
        self.blobs = [
            (
                self.c[0] + rng.normal(0, 0.5) * spread,
                self.c[1] + rng.normal(0, 0.5) * spread,
                float(rng.uniform(0.9, 2.0)) * torso.g,
                float(rng.uniform(0.5, 1.0)),
            )
            for _ in range(n)
        ]

    def mask(self, side, u, v):
        m = np.zeros_like(u, dtype=np.float64)
        for x, y, r, a in self.blobs:
            m = m + a * np.exp(-((u - x) ** 2 + (v - y) ** 2) / (2 * (0.6 * r) ** 2))
        return 1.0 - np.exp(-1.3 * m)

    def box(self) -> Box:
        xs = [x - 1.6 * r for x, y, r, a in self.blobs] + [x + 1.6 * r for x, y, r, a in self.blobs]
        ys = [y - 1.6 * r for x, y, r, a in self.blobs] + [y + 1.6 * r for x, y, r, a in self.blobs]
        x0, y0, x1, y1 = self.torso.lung_bbox(self.side)
        return max(x0, min(xs)), max(y0, min(ys)), min(x1, max(xs)), min(y1, max(ys))


class Infiltration(_Airspace):
    name = "Infiltration"
    strength = 0.42

    def __init__(self, torso, rng, fov):
        super().__init__(torso, rng, fov)
        self.both = rng.random() < 0.4
        self.zone = {}
        for side in SIDES:
            x0, y0, x1, y1 = torso.lung_bbox(side)
            h = y1 - y0
            c = _point_in_lung(torso, rng, side, 2.0, (y0 + 0.35 * h, y0 + 0.8 * h), (0.2, 0.8))
            self.zone[side] = (
                c,
                float(rng.uniform(3.5, 6.0)) * torso.g,
                float(rng.uniform(3.0, 5.5)) * torso.g,
            )
        self.seed = int(rng.integers(0, 2**31))
        self._streaks: dict = {}

    def sides(self):
        return SIDES if self.both else (self.side,)

    def _streak(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Streaky texture: noise stretched along lines radiating from the hila."""
        rng = np.random.default_rng(self.seed)
        k = rng.standard_normal((6, 2)) * 1.2
        ph = rng.uniform(0, 2 * np.pi, 6)
        ang = np.arctan2(v - self.torso.hilum_y, np.abs(u) + 1e-6)
        r = np.hypot(u, v - self.torso.hilum_y)
        val = sum(np.cos(k[i, 0] * 9 * ang + k[i, 1] * 0.25 * r + ph[i]) for i in range(6))
        return np.clip(0.5 + 0.25 * val, 0, 1)

    def mask(self, side, u, v):
        (cx, cy), a, b = self.zone[side]
        rho2 = ((u - cx) / a) ** 2 + ((v - cy) / b) ** 2
        region = np.exp(-1.5 * rho2) * (rho2 < 1.2)
        return region * (0.35 + 0.65 * self._streak(u, v))

    def box(self) -> Box:
        boxes = []
        for side in self.sides():
            (cx, cy), a, b = self.zone[side]
            x0, y0, x1, y1 = self.torso.lung_bbox(side)
            boxes.append(
                (max(x0, cx - 1.1 * a), max(y0, cy - 1.1 * b), min(x1, cx + 1.1 * a), min(y1, cy + 1.1 * b))
            )
        return _union(*boxes)


class Edema(_Airspace):
    name = "Edema"

    def __init__(self, torso, rng, fov):
        super().__init__(torso, rng, fov)
        self.sigma = float(rng.uniform(4.5, 6.0)) * torso.g
        self.strength = float(rng.uniform(0.75, 0.9))

    def sides(self):
        return SIDES

    def mask(self, side, u, v):
        hx = side * (self.torso.mediastinum + 1.5 * self.torso.g)
        d2 = ((u - hx) / (1.2 * self.sigma)) ** 2 + ((v - self.torso.hilum_y - 1.0) / self.sigma) ** 2
        m = np.exp(-d2)
        return m * (d2 < 4.0)

    def box(self) -> Box:
        t = self.torso
        boxes = []
        for side in SIDES:
            hx = side * (t.mediastinum + 1.5 * t.g)
            x0, y0, x1, y1 = t.lung_bbox(side)
            boxes.append(
                (
                    max(x0, hx - 2.4 * self.sigma),
                    max(y0, t.hilum_y + 1 - 2 * self.sigma),
                    min(x1, hx + 2.4 * self.sigma),
                    min(y1, t.hilum_y + 1 + 2 * self.sigma),
                )
            )
        return _union(*boxes)


class Emphysema(Finding):
    name = "Emphysema"

    def reshape(self, torso: Torso) -> Torso:
        g = torso.g
        low = float(self.rng.uniform(2.5, 4.0)) * g
        out = replace(
            torso,
            dome_y=(torso.dome_y[0] + low, torso.dome_y[1] + low * 0.9),
            cp_drop=(float(self.rng.uniform(1.0, 1.8)) * g,) * 2,
            lung_depth=torso.lung_depth * float(self.rng.uniform(1.15, 1.3)),
        )
        self.before, self.after = torso, out
        return out

    def vessels(self, side, u, v, s):
        return 0.35 + 0.65 * np.exp(-np.clip(s - 1.0, 0, None) / 3.0)

    def box(self) -> Box:
        boxes = [t.lung_bbox(s) for t in (self.before, self.after) for s in SIDES]
        return _union(*boxes)


class Fibrosis(_Airspace):
    name = "Fibrosis"

    def __init__(self, torso, rng, fov):
        super().__init__(torso, rng, fov)
        self.both = rng.random() < 0.6
        self.seed = int(rng.integers(0, 2**31))
        self.strength = float(rng.uniform(0.65, 0.85))
        self.bottom = torso.hilum_y + float(rng.uniform(-1.0, 3.0)) * torso.g
        self._net: np.ndarray | None = None

    def sides(self):
        return SIDES if self.both else (self.side,)

    def _netfield(self, u, v):
        # a reticular net: zero crossings of band-pass noise, in body coordinates
        rng = np.random.default_rng(self.seed)
        k = rng.standard_normal((10, 2)) * 1.5
        ph = rng.uniform(0, 2 * np.pi, 10)
        n = sum(np.cos(k[i, 0] * u + k[i, 1] * v + ph[i]) for i in range(10)) / np.sqrt(5.0)
        return np.exp(-((n / 0.55) ** 2))

    def mask(self, side, u, v):
        t = self.torso
        s = t.lung_field(side, u, v)
        upper = _smoothstep((self.bottom - v) / 2.0)
        periph = np.exp(-np.clip(s, 0, None) / 3.5)
        return self._netfield(u, v) * upper * (0.4 + 0.6 * periph)

    def box(self) -> Box:
        t = self.torso
        boxes = []
        for side in self.sides():
            x0, y0, x1, y1 = t.lung_bbox(side)
            boxes.append((x0, y0, x1, min(y1, self.bottom + 1.5 * t.g)))
        return _union(*boxes)


class PleuralThickening(_Airspace):
    name = "Pleural_Thickening"
    strength = 0.92

    def __init__(self, torso, rng, fov):
        super().__init__(torso, rng, fov)
        self.apical = rng.random() < 0.4
        self.width = float(rng.uniform(1.0, 2.0)) * torso.g
        x0, y0, x1, y1 = torso.lung_bbox(self.side)
        if self.apical:
            self.y = (y0, y0 + float(rng.uniform(3.0, 5.0)) * torso.g)
        else:
            top = float(rng.uniform(y0 + 4, y1 - 10))
            self.y = (top, top + float(rng.uniform(5.0, 10.0)) * torso.g)

    def mask(self, side, u, v):
        t = self.torso
        s = t.lung_field(side, u, v)
        band = 1.0 - _smoothstep((s - self.width) / 0.5)
        lateral = _smoothstep((side * u - (t.mediastinum + 3.5 * t.g)) / 1.0) if not self.apical else 1.0
        inside_y = _smoothstep((v - self.y[0]) / 0.8) * _smoothstep((self.y[1] - v) / 0.8)
        return band * lateral * inside_y

    def box(self) -> Box:
        t = self.torso
        x0, y0, x1, y1 = t.lung_bbox(self.side)
        if not self.apical:
            inner = self.side * (t.mediastinum + 3.0 * t.g)
            if self.side > 0:
                x0 = max(x0, inner)
            else:
                x1 = min(x1, inner)
        return x0, max(y0, self.y[0] - 0.6), x1, min(y1, self.y[1] + 0.6)


class Hernia(Finding):
    name = "Hernia"

    def __init__(self, torso, rng, fov):
        super().__init__(torso, rng, fov)
        g = torso.g
        self.r = (float(rng.uniform(2.2, 3.6)) * g, float(rng.uniform(1.8, 3.0)) * g)
        x = float(rng.uniform(0.5, 2.5)) * g
        self.c = (x, float(torso.dome(1, np.array(x + 2.0))) - 0.6 * self.r[1])
        self.gas = float(rng.uniform(0.6, 1.0))

    def deposit(self, cv: Canvas) -> None:
        soft(cv, self.c, self.r, 3.2 * self.torso.g, density=0.6, soft_edge=0.05)
        gx, gy = self.c[0], self.c[1] - 0.35 * self.r[1]
        soft(
            cv,
            (gx, gy),
            (0.75 * self.r[0], 0.45 * self.r[1]),
            2.4 * self.torso.g * self.gas,
            density=-1.0,
            power=3.0,
        )

    def box(self) -> Box:
        m = 0.3 * self.torso.g
        return (
            self.c[0] - self.r[0] - m,
            self.c[1] - self.r[1] - m,
            self.c[0] + self.r[0] + m,
            self.c[1] + self.r[1] + m,
        )


class Atelectasis(_Airspace):
    name = "Atelectasis"
    strength = 0.85

    def __init__(self, torso, rng, fov):
        super().__init__(torso, rng, fov)
        g = torso.g
        self.rise = float(rng.uniform(1.2, 3.0)) * g
        x0, y0, x1, y1 = torso.lung_bbox(self.side)
        self.plates = []
        for _ in range(int(rng.integers(1, 3))):
            c = _point_in_lung(torso, rng, self.side, 1.2, (y1 - 9 * g, y1 - 4.5 * g), (0.25, 0.85))
            self.plates.append(
                (
                    c,
                    float(rng.uniform(2.0, 3.5)) * g,
                    float(rng.uniform(0.3, 0.55)) * g,
                    float(rng.uniform(-0.35, 0.35)),
                )
            )
        self.wedge = rng.random() < 0.35
        if self.wedge:
            self.wc = _point_in_lung(torso, rng, self.side, 2.0, (y1 - 10 * g, y1 - 5 * g), (0.1, 0.5))

    def reshape(self, torso: Torso) -> Torso:
        i = 0 if self.side < 0 else 1
        dome = list(torso.dome_y)
        dome[i] -= self.rise
        self.before = torso
        out = replace(torso, dome_y=tuple(dome))
        self.after = out
        return out

    def mask(self, side, u, v):
        m = np.zeros_like(u, dtype=np.float64)
        for (cx, cy), half_len, half_w, ang in self.plates:
            c, s = np.cos(ang), np.sin(ang)
            x, y = u - cx, v - cy
            along, across = c * x + s * y, -s * x + c * y
            m = np.maximum(
                m, np.exp(-((across / half_w) ** 2)) * _smoothstep((half_len - np.abs(along)) / 0.6)
            )
        if self.wedge:
            cx, cy = self.wc
            x, y = self.side * (u - cx), v - cy
            tri = (
                _smoothstep((x + 0.5) / 0.5)
                * _smoothstep((3.5 * self.torso.g - x) / 1.0)
                * _smoothstep((0.6 * x + 0.8 - np.abs(y)) / 0.5)
            )
            m = np.maximum(m, 0.85 * tri)
        return m

    def box(self) -> Box:
        t = self.torso
        xs, ys = [], []
        for (cx, cy), half_len, half_w, ang in self.plates:
            xs += [cx - half_len - 0.6, cx + half_len + 0.6]
            ys += [
                cy - half_len * abs(np.sin(ang)) - 1.5 * half_w - 0.5,
                cy + half_len * abs(np.sin(ang)) + 1.5 * half_w + 0.5,
            ]
        if self.wedge:
            cx, cy = self.wc
            xs += [cx - 4.2 * t.g, cx + 4.2 * t.g]
            ys += [cy - 3.5 * t.g, cy + 3.5 * t.g]
        x0, y0, x1, y1 = t.lung_bbox(self.side)
        i = 0 if self.side < 0 else 1
        dome_top = self.after.dome_y[i] - 0.8 * t.g
        box = (max(x0, min(xs)), max(y0, min(min(ys), dome_top)), min(x1, max(xs)), y1 + 0.3)
        # the raised hemidiaphragm: the whole base of that side changes
        return _union(box, (x0, dome_top, x1, y1 + 0.3))


FINDING_CLASSES: dict[str, type[Finding]] = {
    c.name: c
    for c in (
        Atelectasis,
        Cardiomegaly,
        Effusion,
        Infiltration,
        Mass,
        Nodule,
        Pneumonia,
        Pneumothorax,
        Consolidation,
        Edema,
        Emphysema,
        Fibrosis,
        PleuralThickening,
        Hernia,
    )
}
if set(FINDING_CLASSES) != set(paper.FINDINGS):  # pragma: no cover - a wrong edit above
    raise ImportError("FINDING_CLASSES must name exactly paper.FINDINGS")


# ------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------
_NAMES = (
    "patient",
    "pose",
    "view",
    "texture",
    "detector",
    "findings",
    "devices",
    "abdomen",
    "arms",
    "finding_params",
)


def render_chest(
    seed,
    size: int = 128,
    *,
    findings: Iterable[str] | None = None,
    patient: int | Sequence[int] | None = None,
    return_attenuation: bool = False,
) -> Phantom:
    """A chest PA film.

    ``findings``: ChestX-ray14 names to show (``None`` = draw them from the prevalence model,
    ``[]`` = a normal film).  ``patient``: seed of the patient's anatomy (follow-up films of one
    patient share it); by default the image seed.  ``meta`` carries ``ctr`` and the normal-heart
    CTR; ``boxes`` one ``(finding, x, y, w, h)`` per finding, in pixels.
    """
    r = streams(seed, _NAMES)
    anatomy_rng = streams(patient, ("patient",))["patient"] if patient is not None else r["patient"]
    torso = sample_torso(anatomy_rng)
    # per-image breathing and positioning
    breath = float(r["pose"].normal(0.0, 0.8)) * torso.g
    torso = replace(
        torso,
        dome_y=(torso.dome_y[0] + breath, torso.dome_y[1] + breath),
        scapula_in=float(
            r["pose"].uniform(0.0, 0.25) if r["pose"].random() < 0.75 else r["pose"].uniform(0.5, 1.0)
        ),
    )
    base_torso = torso
    names = sample_findings(r["findings"]) if findings is None else tuple(findings)
    unknown = [n for n in names if n not in FINDING_CLASSES]
    if unknown:
        raise ValueError(
            f"unknown finding(s) {unknown}; expected names from xray_utils.config.paper.FINDINGS"
        )
    names = tuple(f for f in paper.FINDINGS if f in set(names))
    fov = float(r["view"].uniform(37.0, 45.0)) * torso.g
    fkey = r["finding_params"].integers(0, 2**32, size=4).tolist()
    objs: list[Finding] = []
    for name in names:
        frng = np.random.default_rng([*fkey, paper.FINDINGS.index(name)])
        objs.append(FINDING_CLASSES[name](torso, frng, fov))
    # geometry changes first (order: paper.FINDINGS), then every finding sees the final anatomy
    for f in objs:
        torso = f.reshape(torso)
    for f in objs:
        f.torso = torso
    center = (0.0, float(r["view"].uniform(9.5, 12.5)) * torso.g)
    view = sample_view(
        r["view"], size, center, fov, angle_sd=0.035, flip_p=0.08, shift=0.03, aspect=(0.9, 1.12)
    )
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.75, 1.0)))
    torso.draw_body(cv)
    lungs = torso.draw_lungs(cv, [f.air for f in objs])

    def vessel_mask(side, u, v, s):
        m = 1.0
        for f in objs:
            m = m * f.vessels(side, u, v, s)
        return m

    torso.draw_vessels(cv, lungs, vessel_mask)
    torso.draw_airways(cv)
    # the abdomen keeps the patient's normal anatomy (findings do not move the stomach)
    base_torso.draw_abdomen(cv, r["abdomen"], gas=0.4)
    torso.draw_spine(cv, pelvis=False, density=0.7)
    torso.draw_ribs(cv)
    torso.draw_clavicles(cv)
    torso.draw_scapulae(cv)
    for side in SIDES:
        arm = torso.arm(side, r["arms"], abduct=float(r["arms"].uniform(0.05, 0.35)))
        arm.draw(cv, lower=False, hand=False)
    _devices(cv, r["devices"], torso)
    for f in objs:
        f.deposit(cv)
    boxes = []
    for f in objs:
        x, y, w, h = view.box_to_pixels(*f.box())
        boxes.append((f.name, x, y, w, h))
    meta = {
        "ctr": float(torso.ctr()),
        "normal_ctr": float(base_torso.ctr()),
        "patient": None if patient is None else [int(p) for p in np.atleast_1d(patient)],
    }
    return develop(
        cv,
        r["detector"],
        "chest",
        meta=meta,
        findings=names,
        boxes=boxes,
        return_attenuation=return_attenuation,
    )


def _devices(cv: Canvas, rng: np.random.Generator, torso: Torso) -> None:
    """ECG electrodes and leads on some films (independent of the findings)."""
    if rng.random() > 0.2:
        return
    g = torso.g
    for _ in range(int(rng.integers(2, 5))):
        c = (float(rng.uniform(-14, 14)) * g, float(rng.uniform(-3, 24)) * g)
        ellipse(cv, c, (0.7 * g, 0.7 * g), 0.15, cv.mu("metal") * 0.5, power=2.0)
        end = (c[0] + rng.uniform(-10, 10) * g, c[1] + rng.uniform(-12, 0) * g)
        mid = (0.5 * (c[0] + end[0]) + rng.uniform(-3, 3), 0.5 * (c[1] + end[1]) + rng.uniform(-3, 3))
        soft_tube(cv, [c, mid, end], 0.09 * g, density=6.0)
