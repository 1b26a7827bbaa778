"""The trunk: body outline, lungs, heart, mediastinum, ribs, spine, shoulder girdle and pelvis.

One :class:`Torso` per patient serves the chest, spine, hip, shoulder and humerus films (the
latter two with an :class:`~xray_utils.sources.phantoms.arm.Arm` attached at the glenoid).  Body
coordinates are centimetres with the origin at the sternal notch, ``+x`` to the patient's left
(the image's right on a PA film) and ``+y`` down.

The lungs are defined implicitly: :meth:`Torso.lung_depth_field` gives, for every pixel, a
signed "distance inside the lung" built from the apex, the lateral chest wall, the
mediastinum and heart, and the diaphragmatic dome.  Air replaces soft tissue in proportion to
it, so the heart, the domes and the costophrenic angles appear as the borders of the dark lung
fields -- exactly how they appear on a real film -- and chest findings can act on the same
field (fluid filling the base, a collapsed rim, a band along the wall).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from xray_utils.sources.phantoms.arm import Arm, ArmPose, sample_arm
from xray_utils.sources.phantoms.leg import Leg, LegPose
from xray_utils.sources.phantoms.physics import (
    Canvas,
    E,
    Frame,
    Phantom,
    T,
    View,
    bone_blob,
    bone_tube,
    bone_union,
    develop,
    ellipses,
    line_bundle,
    sample_view,
    slab,
    soft,
    soft_tube,
    streams,
    tube,
)

SIDES = (-1, 1)  # -1: patient's right (image left on a PA film), +1: patient's left


def softmin(terms: list[np.ndarray], tau: float) -> np.ndarray:
    """Smooth minimum ``-tau * log(sum(exp(-t / tau)))`` (rounded corners where borders meet)."""
    stack = np.stack(terms)
    m = stack.min(0)
    return m - tau * np.log(np.exp(-(stack - m) / tau).sum(0))


@dataclass
class Heart:
    """The cardiac silhouette as a tilted ellipse, parameterised by its two horizontal extents."""

    right: float  # extent to the patient's right of the midline (cm, positive)
    left: float  # extent to the patient's left
    bottom: float  # y of its lowest point (on the diaphragm)
    tilt: float = 0.6
    ratio: float = 0.78  # short / long semi-axis

    def axes(self) -> tuple[float, float, float, float]:
        """Centre x, centre y, long and short semi-axes (cm)."""
        half_w = 0.5 * (self.right + self.left)
        c, s = np.cos(self.tilt), np.sin(self.tilt)
        a = half_w / np.sqrt(c * c + (self.ratio * s) ** 2)
        b = self.ratio * a
        half_h = np.sqrt((a * s) ** 2 + (b * c) ** 2)
        return 0.5 * (self.left - self.right), self.bottom - half_h, a, b

    def rho(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        cx, cy, a, b = self.axes()
        c, s = np.cos(self.tilt), np.sin(self.tilt)
        x, y = u - cx, v - cy
        return np.sqrt(((c * x + s * y) / a) ** 2 + ((-s * x + c * y) / b) ** 2)

    def bbox(self) -> tuple[float, float, float, float]:
        cx, cy, a, b = self.axes()
        c, s = np.cos(self.tilt), np.sin(self.tilt)
        hw, hh = np.hypot(a * c, b * s), np.hypot(a * s, b * c)
        return cx - hw, cy - hh, cx + hw, cy + hh


@dataclass
class Torso:
    """One patient's trunk.  All lengths in cm; ``g`` scales the whole body."""

    g: float = 1.0
    base_half_width: float = 14.5  # inner thoracic half-width at the costophrenic angles
    apex_y: float = -3.3
    apex_x: float = 4.6
    dome_y: tuple[float, float] = (19.0, 20.3)  # right, left
    dome_peak_x: float = 6.5
    cp_drop: tuple[float, float] = (3.6, 3.6)  # costophrenic angle below the dome top
    heart: Heart = field(default_factory=lambda: Heart(4.3, 8.5, 22.0))
    lung_depth: float = 14.0
    body_half_width: float = 17.0
    body_half_depth: float = 11.0
    mediastinum: float = 2.7
    aortic_knob: float = 1.4
    hilum_y: float = 9.5
    spine_amp: float = 0.3
    spine_wavelength: float = 40.0
    spine_phase: float = 0.0
    spine_amp2: float = 0.0
    female: bool = False
    breast: float = 1.0
    soft_scale: float = 1.0
    density: float = 1.0
    rib_width: float = 0.62
    shoulder_height: float = 0.0
    scapula_in: float = 0.0  # 0 = retracted (PA), 1 = projected over the lungs (AP)
    stomach_bubble: float = 1.0
    vessel_seed: int = 0
    wall_bottom: float = 23.0  # y where the chest wall reaches its full width (fixed per patient)
    vessel_contrast: float = 2.2

    # ---------------------------------------------------------------- derived geometry
    @property
    def cp_y(self) -> tuple[float, float]:
        return (self.dome_y[0] + self.cp_drop[0], self.dome_y[1] + self.cp_drop[1])

    def spine_x(self, y: np.ndarray | float) -> np.ndarray:
        """Lateral offset of the spinous line (scoliosis, two harmonics)."""
        y = np.asarray(y, dtype=np.float64)
        return self.spine_amp * np.sin(
            2 * np.pi * (y - self.spine_phase) / self.spine_wavelength
        ) + self.spine_amp2 * np.sin(4 * np.pi * (y - self.spine_phase) / self.spine_wavelength + 1.0)

    def spine_tilt(self, y: float) -> float:
        return float(np.arctan((self.spine_x(y + 0.5) - self.spine_x(y - 0.5))))

    def lateral_wall(self, side: int, y: np.ndarray) -> np.ndarray:
        """Inner chest wall (|x|) at height ``y``; it widens from the apex to the bases."""
        top, bottom = self.apex_y, self.wall_bottom
        t = np.clip((y - top) / (0.72 * (bottom - top)), 0.0, 1.0)
        return self.apex_x + (self.base_half_width - self.apex_x) * np.sin(0.5 * np.pi * t) ** 0.6

    def dome(self, side: int, xs: np.ndarray) -> np.ndarray:
        """y of the diaphragm at |x| = ``xs`` (a parabola through the top and the costophrenic angle)."""
        i = 0 if side < 0 else 1
        c = self.cp_drop[i] / max((self.base_half_width - self.dome_peak_x) ** 2, 1e-6)
        return self.dome_y[i] + c * (xs - self.dome_peak_x) ** 2

    def medial_border(self, side: int, y: np.ndarray) -> np.ndarray:
        """|x| of the mediastinal border above the heart (with the aortic knob on the left)."""
        m = self.mediastinum + 0.0 * y
        if side > 0:
            m = m + self.aortic_knob * np.exp(-0.5 * ((y - 4.5) / 1.6) ** 2)
        else:
            m = m + 0.5 * np.exp(-0.5 * ((y - 9.0) / 3.0) ** 2)  # right hilum / SVC bulge
        return m

    def lung_field(self, side: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Signed depth (cm) inside one lung: > 0 inside, growing away from every border."""
        xs = side * (u - 0.0)
        t_apex = v - (self.apex_y + 0.09 * (xs - self.apex_x) ** 2)
        t_base = self.dome(side, xs) - v
        t_lat = self.lateral_wall(side, v) - xs
        t_med = xs - self.medial_border(side, v)
        _, _, a, b = self.heart.axes()
        t_heart = (self.heart.rho(u, v) - 1.0) * b
        return softmin([t_apex, t_base, t_lat, t_med, t_heart], 0.35)

    def lung_bbox(self, side: int) -> tuple[float, float, float, float]:
        """Body-coordinate box of one lung (x0, y0, x1, y1)."""
        x_out = side * (self.base_half_width + 0.3)
        x_in = side * (self.mediastinum - 0.5)
        return min(x_out, x_in), self.apex_y - 0.5, max(x_out, x_in), self.cp_y[0 if side < 0 else 1] + 0.5

    def air_fraction(self, s: np.ndarray, ramp: float = 1.3) -> np.ndarray:
        """0 at the pleura, 1 deep inside: smooth fill of air across a lung's edge."""
        t = np.clip(s / ramp, 0.0, 1.0)
        return t * t * (3 - 2 * t)

    def ctr(self) -> float:
        """Cardiothoracic ratio: heart width / internal thoracic width at the bases."""
        return (self.heart.right + self.heart.left) / (2.0 * self.base_half_width)

    # ---------------------------------------------------------------- drawing: soft tissue
    def body_points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        g, s = self.g, self.soft_scale
        # neck, shoulders, chest, waist, hips, down to the crotch (the thighs are the legs' job)
        ys = np.array([-16.0, -7.0, -3.0, 2.0, 12.0, 22.0, 32.0, 42.0, 52.0, 58.0, 62.0]) * g
        w = np.array([5.5, 6.5, 15.0, 17.5, 17.0, 16.5, 15.5, 16.5, 17.5, 14.0, 5.0]) * g
        w[3:] *= self.body_half_width / 17.0 * (0.5 + 0.5 * s)
        d = np.array([5.5, 6.0, 8.0, 10.0, 10.5, 11.0, 11.5, 11.5, 11.0, 9.0, 5.0]) * g
        d[2:] *= self.body_half_depth / 11.0 * s
        return np.stack([np.zeros_like(ys), ys], 1), w, d

    def draw_body(self, cv: Canvas) -> None:
        pts, w, d = self.body_points()
        # same union layers as the limbs: arms and thighs merge with the trunk by maximum
        slab(cv, pts[:, 1], w, d, cv.mu("fat"), layer="union_limb_fat")
        slab(cv, pts[:, 1], w * 0.86, d * 0.9, cv.mu("soft") - cv.mu("fat"), layer="union_limb_muscle")
        g, s = self.g, self.soft_scale
        if self.female and self.breast > 0:
            for side in SIDES:
                soft(
                    cv,
                    (side * 10.0 * g, 21.5 * g),
                    (7.0 * g * self.breast, 5.2 * g * self.breast),
                    2.4 * g * self.breast * s,
                    power=2.0,
                    soft_edge=0.35,
                )

    def draw_lungs(
        self, cv: Canvas, modifiers: list | None = None
    ) -> dict[int, tuple[tuple[slice, slice], np.ndarray]]:
        """Remove soft tissue where the lungs hold air; returns each lung's window and field.

        ``modifiers`` are callables ``f(side, u, v, s, air) -> air`` that chest findings use to
        change the amount of air (fluid, consolidation, hyperinflation, collapse).
        """
        out = {}
        for side in SIDES:
            win = cv.window(*self.lung_bbox(side))
            if win is None:
                continue
            u, v = cv.u[win].astype(np.float64), cv.v[win].astype(np.float64)
            s = self.lung_field(side, u, v)
            air = self.air_fraction(s) * self.lung_depth * self.g
            # lung thickness shrinks towards the apex; parenchyma and blood keep ~15 % tissue
            air = air * (0.55 + 0.45 * np.clip((v - self.apex_y) / 8.0, 0, 1)) * 0.85
            air = air * (1.0 + 0.025 * cv.texture("lung")[win])  # parenchymal mottling
            for f in modifiers or []:
                air = f(side, u, v, s, air)
            cv.atten[win] -= (cv.mu("soft") * air).astype(np.float32)
            out[side] = (win, s)
        return out

    def draw_airways(self, cv: Canvas) -> None:
        g = self.g
        sx = float(self.spine_x(0.0))
        soft_tube(
            cv,
            [(sx, -12 * g), (sx + 0.2, 2 * g), (0.3 * g, 7.5 * g)],
            0.85 * g,
            depth_ratio=1.0,
            density=-1.0,
        )
        for side in SIDES:
            soft_tube(cv, [(0.3 * g, 7.5 * g), (side * 2.6 * g, 9.6 * g)], 0.6 * g, density=-1.0)

    def vessel_tree(self) -> list[np.ndarray]:
        """Pulmonary vessels branching from both hila: one (N, 2, 2) array of segments per
        generation (5 generations, each branch splitting in two)."""
        rng = np.random.default_rng(self.vessel_seed)
        g = self.g
        bases = np.array([-85.0, -55.0, -25.0, 5.0, 35.0, 60.0, 85.0, 105.0])
        side = np.repeat(np.array(SIDES, dtype=float), len(bases))
        ang = np.radians(np.tile(bases, 2) + rng.normal(0, 8, 2 * len(bases)))
        p = np.stack([side * (self.mediastinum + 1.8) * g, np.full(side.shape, self.hilum_y * g)], 1)
        length = 3.6 * g * rng.uniform(0.85, 1.15, side.shape)
        out = []
        for gen in range(5):
            q = p + length[:, None] * np.stack([side * np.cos(ang), np.sin(ang)], 1)
            out.append(np.stack([p, q], 1))
            m = len(ang)
            spread = np.radians(rng.uniform(15, 35, (m, 2))) * np.array([-1.0, 1.0])
            ang = (ang[:, None] + spread).ravel()
            p = np.repeat(q, 2, axis=0)
            side = np.repeat(side, 2)
            length = np.repeat(length, 2) * rng.uniform(0.6, 0.8, 2 * m)
        return out

    def draw_vessels(self, cv: Canvas, lungs: dict, mask_fn=None) -> None:
        """Vessels (blood inside the air spaces): visible only where there is lung."""
        layer = cv.layer("vessels")
        layer[:] = 0
        tree = self.vessel_tree()
        segs = np.concatenate(tree)
        radii = np.concatenate([np.full(len(t), 0.42 * self.g * 0.74**gen) for gen, t in enumerate(tree)])
        line_bundle(cv, segs, radii, cv.mu("soft") * self.vessel_contrast, layer="vessels")
        for side, (win, s) in lungs.items():
            frac = self.air_fraction(s - 0.6, 1.5)
            if mask_fn is not None:
                frac = frac * mask_fn(side, cv.u[win], cv.v[win], s)
            cv.atten[win] += layer[win] * frac.astype(np.float32)

    def draw_abdomen(self, cv: Canvas, rng: np.random.Generator, gas: float = 1.0) -> None:
        """Stomach bubble under the left dome and a few bowel gas pockets."""
        g = self.g
        if self.stomach_bubble > 0:
            x = 7.0 * g
            top = float(self.dome(1, np.array(x))) + 1.0 * g
            soft(
                cv,
                (x, top + 1.6 * g),
                (2.6 * g * self.stomach_bubble, 1.5 * g * self.stomach_bubble),
                2.5 * g * self.stomach_bubble,
                density=-1.0,
                soft_edge=0.1,
            )
        n = int(rng.integers(2, 9) * gas)
        for _ in range(n):
            c = (rng.uniform(-11, 11) * g, rng.uniform(27, 45) * g)
            ax = (rng.uniform(0.8, 2.6) * g, rng.uniform(0.6, 1.8) * g)
            soft(
                cv,
                c,
                ax,
                rng.uniform(0.8, 2.0) * g,
                density=-1.0,
                angle=float(rng.uniform(0, np.pi)),
                soft_edge=0.3,
            )

    # ---------------------------------------------------------------- drawing: skeleton
    def vertebra_levels(self) -> list[tuple[str, float, float, float]]:
        """(name, centre y, body height, body width) from C3 to L5."""
        cached = self.__dict__.get("_levels")
        if cached is not None and cached[0] == self.g:
            return cached[1]
        g = self.g
        out = []
        y = -9.2 * g
        for k in range(3, 8):
            out.append((f"C{k}", y, 1.25 * g, (1.7 + 0.12 * (k - 3)) * g))
            y += 1.75 * g
        for k in range(1, 13):
            h = (1.55 + 0.07 * k) * g
            out.append((f"T{k}", y + 0.1 * g, h, (2.5 + 0.13 * k) * g))
            y += h + 0.55 * g
        for k in range(1, 6):
            h = 2.65 * g
            out.append((f"L{k}", y + 0.6 * g, h, (4.2 + 0.12 * k) * g))
            y += h + 1.0 * g
        self.__dict__["_levels"] = (self.g, out)
        return out

    def level_y(self, name: str) -> float:
        for n, y, _, _ in self.vertebra_levels():
            if n == name:
                return y
        raise KeyError(name)

    def draw_spine(self, cv: Canvas, *, pelvis: bool = True, density: float = 1.0) -> None:
        d = self.density * density
        g = self.g
        levels = self.vertebra_levels()
        bodies, b_ax, b_d, b_ang, rings, r_ax, r_ang, procs, p_ax, p_ang = (
            [],
            [],
            [],
            [],
            [],
            [],
            [],
            [],
            [],
            [],
        )
        for name, y, h, w in levels:
            x = float(self.spine_x(y))
            tilt = self.spine_tilt(y)
            fr = Frame((x, y), tilt)
            bodies.append((x, y))
            b_ax.append((0.5 * w, 0.5 * h))
            b_d.append(0.4 * w)
            b_ang.append(tilt)
            for sgn in (-1, 1):  # pedicles: cortical rings seen end-on
                rings.append(fr.pt(sgn * 0.34 * w, -0.12 * h))
                r_ax.append((0.14 * w, 0.3 * h))
                r_ang.append(tilt)
                if name.startswith("L"):  # transverse processes (thoracic ones hide under the rib heads)
                    bone_tube(
                        cv,
                        [fr.pt(sgn * 0.42 * w, -0.05 * h), fr.pt(sgn * (0.5 * w + 1.9 * g), -0.12 * h)],
                        np.array([0.42, 0.34]) * g,
                        density=d * 0.8,
                        shaft=[False, False],
                        depth_ratio=0.8,
                    )
            procs.append(fr.pt(0.0, 0.45 * h))
            p_ax.append((0.22 * w, 0.42 * h))
            p_ang.append(tilt)
        ellipses(
            cv,
            np.array(bodies),
            np.array(b_ax),
            np.array(b_d),
            cv.excess("cortex") * d,
            angles=np.array(b_ang),
            power=3.2,
            cortex=0.07,
            mu_in=cv.excess("trabecular") * d,
            texture=0.2,
        )
        ellipses(
            cv,
            np.array(rings),
            np.array(r_ax),
            np.full(len(rings), 0.4 * g),
            cv.excess("cortex") * d * 0.7,
            angles=np.array(r_ang),
            cortex=0.3,
            mu_in=cv.excess("trabecular") * d,
        )
        ellipses(
            cv,
            np.array(procs),
            np.array(p_ax),
            np.full(len(procs), 0.6 * g),
            cv.excess("cortex") * d * 0.8,
            angles=np.array(p_ang),
            cortex=0.25,
            mu_in=cv.excess("trabecular") * d * 0.8,
        )
        if pelvis:
            self.draw_pelvis(cv)

    def rib_path(self, side: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Posterior and anterior polylines of rib ``k`` (1-12) on ``side``."""
        g = self.g
        y0 = self.level_y(f"T{k}")
        x0 = float(self.spine_x(y0))
        w = float(self.lateral_wall(side, np.array(y0 + 3.0 * g))) + 0.6 * g
        if k <= 2:
            w = (self.apex_x + (2.5 if k == 1 else 5.0)) * g
        rise = (0.7 - 0.03 * k) * g
        drop = (4.2 + 0.2 * k) * g
        xs = np.array([1.2, 3.2, 0.45 * w / g, 0.7 * w / g, 0.9 * w / g, w / g]) * g
        ys = np.array([0.0, -rise, -0.2 * rise, 0.3 * drop, 0.68 * drop, drop])
        post = np.stack([x0 + side * xs, y0 + ys], 1)
        if k <= 10:
            end_x = max(2.0, 7.5 - 0.3 * k) * g
            ant_xs = np.array([w / g, 0.94 * w / g, 0.7 * w / g, end_x / g]) * g
            ant_ys = np.array(
                [drop, drop + (2.2 + 0.1 * k) * g, drop + (3.8 + 0.15 * k) * g, drop + (4.4 + 0.15 * k) * g]
            )
            if k == 1:
                ant_ys = np.array([drop, drop + 0.6 * g, drop + 1.0 * g, drop + 1.1 * g])
            ant = np.stack([side * ant_xs, y0 + ant_ys], 1)
        else:
            ant = post[-1:]
        return post, ant

    def draw_ribs(self, cv: Canvas, sides: tuple[int, ...] = SIDES) -> None:
        d = self.density
        g = self.g
        anterior: list[tuple[np.ndarray, np.ndarray]] = []
        for side in sides:
            for k in range(1, 13):
                post, ant = self.rib_path(side, k)
                r = self.rib_width * g * (0.75 if k in (1, 11, 12) else 1.0)
                # a rib is cut obliquely by the beam: long paths through a cortical shell
                tube(
                    cv,
                    post,
                    np.array([0.8, 0.95, 1.0, 1.0, 1.0, 1.0]) * r,
                    cv.excess("cortex") * d,
                    depth_ratio=1.2,
                    cortex=0.22,
                    mu_in=cv.excess("trabecular") * d * 1.2,
                    texture=0.15,
                )
                if len(ant) > 1:  # anterior ribs: thinner bone, further from the film (fainter, blurred)
                    anterior.extend((ant[j], ant[j + 1]) for j in range(len(ant) - 1))
        if anterior:
            line_bundle(cv, anterior, self.rib_width * g * 0.8, cv.excess("cortex") * d * 0.5)

    def clavicle_path(self, side: int) -> np.ndarray:
        g = self.g
        h = self.shoulder_height
        return np.array(
            [
                (side * 1.9, 0.6),
                (side * 6.0, -0.3 + 0.2 * h),
                (side * 11.0, -1.3 + 0.6 * h),
                (side * 15.0, -2.5 + 0.9 * h),
                (side * 17.6, -2.3 + h),
            ]
        ) * np.array([g, 1.0])

    def draw_clavicles(self, cv: Canvas, sides: tuple[int, ...] = SIDES) -> None:
        for side in sides:
            bone_tube(
                cv,
                self.clavicle_path(side),
                np.array([0.9, 0.75, 0.68, 0.7, 0.8]) * self.g,
                density=self.density * 1.2,
                shaft=[False, True, True, True, False],
                depth_ratio=1.0,
                end_cap=0.6,
            )

    def glenoid(self, side: int) -> tuple[float, float]:
        return (side * (17.2 - 2.5 * self.scapula_in) * self.g, 0.9 * self.g + self.shoulder_height)

    def draw_scapulae(self, cv: Canvas, sides: tuple[int, ...] = SIDES) -> None:
        g, d = self.g, self.density
        for side in sides:
            gx, gy = self.glenoid(side)
            sh = 3.0 * self.scapula_in  # AP films: the scapula moves over the lung
            sup = (side * (10.5 - sh) * g, -1.8 * g + self.shoulder_height)
            inf = (side * (12.0 - sh) * g, 15.0 * g + self.shoulder_height)
            neck = (gx - side * 0.9 * g, gy + 1.2 * g)
            # thin triangular blade with thick lateral border, spine, acromion, coracoid and glenoid
            bone_union(
                cv,
                [
                    T([neck, inf], np.array([0.6, 0.45]) * g, np.array([0.9, 0.5]) * g, cortex=0.35),
                    T([sup, inf], np.array([0.35, 0.4]) * g, np.array([0.4, 0.4]) * g, cortex=0.35),
                    E(
                        ((neck[0] + inf[0] + sup[0]) / 3, (neck[1] + inf[1] + sup[1]) / 3),
                        (2.4 * g, 6.0 * g),
                        0.22 * g,
                        angle=-side * 0.2,
                        cortex=0.3,
                    ),
                    E((gx, gy), (0.65 * g, 1.7 * g), 1.2 * g, cortex=0.2),
                ],
                density=d,
                texture=0.2,
                blend=0.12,
            )
            acr = (side * (18.6 - 1.5 * self.scapula_in) * g, -1.7 * g + self.shoulder_height)
            bone_union(
                cv,
                [
                    T(
                        [
                            (side * (10.8 - sh) * g, 1.2 * g + self.shoulder_height),
                            (acr[0] - side * 1.0 * g, acr[1] + 0.2 * g),
                        ],
                        np.array([0.35, 0.55]) * g,
                        np.array([0.5, 0.6]) * g,
                        cortex=0.3,
                    ),
                    E(acr, (1.5 * g, 0.7 * g), 0.7 * g, angle=side * 0.1),
                ],
                density=d,
                texture=0.2,
            )
            bone_blob(cv, (gx - side * 1.9 * g, gy - 0.3 * g), (0.9 * g, 0.6 * g), density=d, depth=0.7 * g)

    def draw_pelvis(self, cv: Canvas) -> None:
        """Sacrum, iliac wings with their crests, pelvic brim, pubic rami around the obturator
        foramina, acetabular roofs and the symphysis."""
        g, d = self.g, self.density
        ys = self.level_y("L5") + 1.9 * g
        sx = float(self.spine_x(ys))
        # sacrum: a tapered shield with four pairs of foramina, coccyx below
        bone_union(
            cv,
            [
                E((sx, ys + 3.2 * g), (4.4 * g, 3.4 * g), 1.0 * g, power=2.2, cortex=0.06),
                E((sx, ys + 7.3 * g), (2.0 * g, 2.6 * g), 0.9 * g, cortex=0.08),
            ],
            density=d,
            texture=0.2,
        )
        for k in range(4):
            for sgn in (-1, 1):
                soft(
                    cv,
                    (sx + sgn * (1.8 - 0.15 * k) * g, ys + (1.9 + 1.7 * k) * g),
                    (0.42 * g, 0.38 * g),
                    0.5 * g,
                    density=-(cv.excess("trabecular") / cv.mu("soft")) * 1.2,
                )
        for side in SIDES:
            ac = self.acetabulum(side)
            # iliac wing: a thin fan-shaped plate with a dense crest, thickened pillar and the
            # acetabular body below, all one bone
            th = np.linspace(0.05, 0.95, 10) * np.pi
            crest = np.stack(
                [side * (9.0 - 5.2 * np.cos(th)) * g, (ys + 0.5 * g) - 6.2 * g * np.sin(th) ** 0.8], 1
            )
            bone_union(
                cv,
                [
                    E(
                        (side * 9.3 * g, ys - 1.0 * g),
                        (5.0 * g, 4.6 * g),
                        0.5 * g,
                        angle=side * 0.25,
                        cortex=0.18,
                    ),
                    T(crest, np.linspace(0.5, 0.6, 10) * g, np.linspace(0.55, 0.8, 10) * g, cortex=0.4),
                    T(
                        [(ac[0], ac[1] - 1.0 * g), (side * 11.0 * g, ys - 3.5 * g)],
                        np.array([1.4, 0.9]) * g,
                        np.array([1.3, 0.8]) * g,
                        cortex=0.3,
                        inner="trabecular",
                    ),
                    E((ac[0] - side * 0.3 * g, ac[1] - 0.6 * g), (2.7 * g, 2.6 * g), 1.5 * g, cortex=0.12),
                ],
                density=d,
                texture=0.25,
                blend=0.1,
            )
            # pelvic brim (arcuate line) sweeping round to the pubis, the superior ramus
            tt = np.linspace(0.0, 1.0, 8)
            brim = np.stack(
                [
                    side * (sx * side + 3.8 * g + (6.9 * g - 3.8 * g) * np.sin(np.pi * tt) - 5.5 * g * tt**2),
                    ys + 0.8 * g + 12.0 * g * tt,
                ],
                1,
            )
            brim[-1] = (side * 1.1 * g, ys + 12.8 * g)
            bone_tube(
                cv,
                brim,
                np.linspace(0.55, 0.95, 8) * g,
                density=d,
                shaft=[True] * 8,
                depth_ratio=1.1,
                end_cap=0.5,
            )
            # inferior pubic ramus and ischium around the obturator foramen
            ring = [
                (side * 1.2 * g, ys + 14.4 * g),
                (side * 3.2 * g, ys + 16.0 * g),
                (side * 6.0 * g, ys + 16.2 * g),
                (side * 7.6 * g, ys + 14.0 * g),
                (ac[0] - side * 0.8 * g, ac[1] + 1.8 * g),
            ]
            bone_tube(
                cv,
                ring,
                np.array([0.9, 0.8, 1.2, 1.1, 1.2]) * g,
                density=d,
                shaft=[False, True, True, True, False],
                depth_ratio=1.0,
                end_cap=0.5,
            )
            bone_blob(cv, (side * 1.3 * g, ys + 13.6 * g), (0.8 * g, 1.3 * g), density=d, depth=1.2 * g)

    def acetabulum(self, side: int) -> tuple[float, float]:
        ys = self.level_y("L5") + 1.9 * self.g
        return (side * 9.2 * self.g, ys + 9.6 * self.g)

    def femur(self, side: int, abduct: float = 0.0) -> Leg:
        """A femur seated in the acetabulum (the leg model, mirrored for the right side)."""
        ax, ay = self.acetabulum(side)
        return Leg(
            root=Frame((ax, ay + 0.3 * self.g), -side * abduct, float(side)),
            pose=LegPose(foot_view="none"),
            g=self.g * 0.95,
            density=self.density,
            soft_scale=self.soft_scale,
        )

    def arm(
        self, side: int, rng: np.random.Generator, abduct: float = 0.15, pose: ArmPose | None = None
    ) -> Arm:
        """An arm hanging from the glenoid (abducted by ``abduct`` radians)."""
        gx, gy = self.glenoid(side)
        root = Frame((gx + side * 1.6 * self.g, gy + 0.3 * self.g), -side * abduct, float(side))
        arm = sample_arm(rng, root, pose or ArmPose())
        arm.g = self.g
        arm.density = self.density
        arm.__post_init__()
        return arm


def sample_torso(rng: np.random.Generator) -> Torso:
    """Draw one patient's trunk: size, chest shape, heart (normal), habitus, spine, sex."""
    g = float(rng.uniform(0.88, 1.1))
    base = float(rng.uniform(13.3, 15.5))
    dome_r = float(rng.uniform(17.5, 20.5))
    ctr = float(rng.uniform(0.38, 0.48))
    width = ctr * 2 * base
    right_share = float(rng.uniform(0.3, 0.38))
    female = bool(rng.random() < 0.45)
    t = Torso(
        g=g,
        base_half_width=base * g,
        apex_y=float(rng.uniform(-4.0, -2.6)) * g,
        apex_x=float(rng.uniform(4.0, 5.2)) * g,
        dome_y=(dome_r * g, (dome_r + rng.uniform(0.6, 2.2)) * g),
        dome_peak_x=float(rng.uniform(5.5, 7.5)) * g,
        cp_drop=(float(rng.uniform(2.8, 4.2)) * g, float(rng.uniform(2.8, 4.2)) * g),
        heart=Heart(
            right=right_share * width * g,
            left=(1 - right_share) * width * g,
            bottom=0.0,
            tilt=float(rng.uniform(0.35, 0.6)),
            ratio=float(rng.uniform(0.62, 0.74)),
        ),
        lung_depth=float(rng.uniform(11.0, 14.5)),
        body_half_width=base + float(rng.uniform(1.2, 3.0)),
        body_half_depth=float(rng.uniform(9.5, 13.0)),
        mediastinum=float(rng.uniform(2.3, 3.0)) * g,
        aortic_knob=float(rng.uniform(0.8, 2.0)) * g,
        hilum_y=float(rng.uniform(8.5, 10.5)),
        spine_amp=float(abs(rng.normal(0.0, 0.35))) * g,
        spine_wavelength=float(rng.uniform(35, 60)) * g,
        spine_phase=float(rng.uniform(0, 60)),
        female=female,
        breast=float(rng.uniform(0.8, 1.25)),
        soft_scale=float(rng.uniform(0.85, 1.25)),
        density=float(rng.uniform(0.8, 1.15)),
        rib_width=float(rng.uniform(0.55, 0.7)),
        shoulder_height=float(rng.normal(0.0, 0.8)),
        stomach_bubble=float(rng.uniform(0.5, 1.3) if rng.random() < 0.75 else 0.0),
        vessel_seed=int(rng.integers(0, 2**31)),
    )
    # the heart sits on the left hemidiaphragm
    t.heart = replace(t.heart, bottom=float(t.dome(1, np.array(3.0 * g))) + 2.0 * g)
    t.wall_bottom = float(np.mean(t.cp_y))
    return t


# ------------------------------------------------------------------------------------------
# films of the trunk (the chest has its own module because of the findings)
# ------------------------------------------------------------------------------------------
_NAMES = ("anatomy", "pose", "view", "texture", "detector", "abdomen", "arms")


def render_spine(seed, size: int = 128, *, return_attenuation: bool = False) -> Phantom:
    """Whole-spine AP (scoliosis series): T1 to the sacrum on a tall, narrow film, so after the
    square resize the column looks stretched sideways; curves of a few degrees to severe."""
    r = streams(seed, _NAMES)
    torso = sample_torso(r["anatomy"])
    severity = r["pose"].random()
    amp = (
        r["pose"].uniform(0.3, 1.2)
        if severity < 0.35
        else r["pose"].uniform(1.2, 3.0)
        if severity < 0.8
        else r["pose"].uniform(3.0, 5.0)
    ) * torso.g
    torso = replace(
        torso,
        spine_amp=float(amp) * float(r["pose"].choice([-1, 1])),
        spine_wavelength=float(r["pose"].uniform(35, 55)) * torso.g,
        spine_phase=float(r["pose"].uniform(0, 55)) * torso.g,
        spine_amp2=float(r["pose"].normal(0.0, 0.35)) * amp,
    )
    top = torso.level_y("T1") - r["view"].uniform(1.0, 5.0) * torso.g
    bottom = torso.level_y("L5") + r["view"].uniform(4.0, 10.0) * torso.g
    height = bottom - top
    width = height * float(r["view"].uniform(0.35, 0.55))
    aspect = height / width
    scale = size / np.sqrt(width * height)
    flip = bool(r["view"].random() < 0.5)
    view = View(
        size=size,
        center=(float(r["view"].normal(0, 0.6)), 0.5 * (top + bottom)),
        scale=float(scale),
        angle=float(r["view"].normal(0, 0.03)),
        flip=flip,
        aspect=float(aspect),
    )
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.5, 0.85)))
    torso.draw_body(cv)
    lungs = torso.draw_lungs(cv)
    torso.draw_vessels(cv, lungs)
    torso.draw_abdomen(cv, r["abdomen"], gas=1.0)
    torso.draw_spine(cv, density=1.1)
    torso.draw_ribs(cv)
    torso.draw_clavicles(cv)
    return develop(
        cv, r["detector"], "spine", meta={"curve_cm": float(amp)}, return_attenuation=return_attenuation
    )


def render_hip(seed, size: int = 128, *, return_attenuation: bool = False) -> Phantom:
    """Pelvis AP (both hips) or a single hip: iliac wings, sacrum, acetabula with the femoral
    heads, obturator foramina, proximal femora; bowel gas over the sacrum."""
    r = streams(seed, _NAMES)
    torso = sample_torso(r["anatomy"])
    torso = replace(torso, spine_amp=torso.spine_amp * 0.5)
    single = r["pose"].random() < 0.3
    abduct = (
        float(r["pose"].uniform(-0.05, 0.15))
        if r["pose"].random() < 0.8
        else float(r["pose"].uniform(0.5, 0.8))
    )
    if single:
        side = int(r["pose"].choice(SIDES))
        ax, ay = torso.acetabulum(side)
        center = (ax - side * 1.5 * torso.g, ay + 3.0 * torso.g)
        fov = float(r["view"].uniform(22.0, 30.0)) * torso.g
    else:
        center = (0.0, torso.acetabulum(1)[1] - float(r["view"].uniform(0.5, 4.0)) * torso.g)
        fov = float(r["view"].uniform(34.0, 44.0)) * torso.g
    view = sample_view(r["view"], size, center, fov, angle_sd=0.03, shift=0.04, aspect=(0.9, 1.25))
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.45, 0.8)))
    torso.draw_body(cv)
    torso.draw_abdomen(cv, r["abdomen"], gas=1.5)
    torso.draw_spine(cv)
    for s in SIDES:
        torso.femur(s, abduct).draw(cv, shank=False, foot=False)
    return develop(cv, r["detector"], "hip", meta={"single": single}, return_attenuation=return_attenuation)


def render_shoulder(seed, size: int = 128, *, return_attenuation: bool = False) -> Phantom:
    """Shoulder AP: humeral head against the glenoid, scapula, clavicle and acromion, and half
    of the chest (ribs, lung) on a wide film."""
    r = streams(seed, _NAMES)
    torso = sample_torso(r["anatomy"])
    side = int(r["pose"].choice(SIDES))
    abduct = float(r["pose"].uniform(0.05, 0.35) if r["pose"].random() < 0.8 else r["pose"].uniform(0.6, 1.4))
    gx, gy = torso.glenoid(side)
    center = (
        gx - side * float(r["view"].uniform(3.0, 8.0)) * torso.g,
        gy + float(r["view"].uniform(2.0, 7.0)) * torso.g,
    )
    fov = float(r["view"].uniform(26.0, 36.0)) * torso.g
    view = sample_view(r["view"], size, center, fov, angle_sd=0.08, shift=0.04)
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.4, 0.75)))
    torso.draw_body(cv)
    lungs = torso.draw_lungs(cv)
    torso.draw_vessels(cv, lungs)
    torso.draw_spine(cv, pelvis=False)
    torso.draw_ribs(cv, (side,))
    torso.draw_clavicles(cv, (side,))
    torso.draw_scapulae(cv, (side,))
    arm = torso.arm(side, r["arms"], abduct=abduct)
    arm.draw(cv, lower=True, hand=False)
    return develop(cv, r["detector"], "shoulder", meta={"side": side}, return_attenuation=return_attenuation)


def render_humerus(seed, size: int = 128, *, return_attenuation: bool = False) -> Phantom:
    """Humerus AP or lateral: the whole shaft from the shoulder (with some chest wall) to the elbow."""
    r = streams(seed, _NAMES)
    torso = sample_torso(r["anatomy"])
    side = int(r["pose"].choice(SIDES))
    lateral = r["pose"].random() < 0.4
    pose = ArmPose(
        projection="lat" if lateral else "ap",
        elbow_flex=float(r["pose"].uniform(1.2, 1.7) if lateral else r["pose"].uniform(0.0, 0.2)),
    )
    arm = torso.arm(side, r["arms"], abduct=float(r["pose"].uniform(0.05, 0.4)), pose=pose)
    center = arm.arm_point(0.0, float(r["view"].uniform(12.0, 17.0)))
    fov = float(r["view"].uniform(36.0, 46.0)) * torso.g
    axis = np.subtract(arm.elbow, arm.arm_point(0.0, 0.0))
    view = sample_view(r["view"], size, center, fov, up=-axis, angle_sd=0.12, shift=0.05)
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.25, 0.6)))
    torso.draw_body(cv)
    lungs = torso.draw_lungs(cv)
    torso.draw_vessels(cv, lungs)
    torso.draw_ribs(cv, (side,))
    torso.draw_clavicles(cv, (side,))
    torso.draw_scapulae(cv, (side,))
    arm.draw(cv, hand=False)
    return develop(
        cv,
        r["detector"],
        "humerus",
        meta={"side": side, "projection": pose.projection},
        return_attenuation=return_attenuation,
    )
