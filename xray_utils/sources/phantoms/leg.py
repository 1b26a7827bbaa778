"""The lower limb: femur, knee (condyles, patella, tibial plateau, fibular head), ankle and foot.

As for the arm, one model (:class:`Leg`) serves three X-ray types (knee, ankle, foot) and the
proximal femur of the pelvis film.  Local coordinates are centimetres, ``+y`` distal along the
limb, ``+x`` lateral (AP projections) or anterior (lateral projections).  The foot has its own
frame with ``+y`` towards the toes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xray_utils.sources.phantoms.extras import limb_extras
from xray_utils.sources.phantoms.physics import (
    Canvas,
    E,
    Frame,
    Phantom,
    T,
    bone_blob,
    bone_tube,
    bone_union,
    develop,
    ellipse,
    limb_soft_tissue,
    sample_view,
    streams,
)

# dorsoplantar foot: metatarsal base x, angle (deg, + lateral), length, (base, shaft, head) radii
_MT = (
    (-1.45, -9.0, 6.3, (0.85, 0.62, 0.8)),
    (-0.4, -3.0, 7.6, (0.52, 0.38, 0.48)),
    (0.5, 2.0, 7.1, (0.5, 0.36, 0.46)),
    (1.3, 7.0, 6.7, (0.5, 0.36, 0.46)),
    (2.15, 13.0, 6.5, (0.62, 0.38, 0.46)),
)
_TOES = ((2.8, 0.0, 2.1), (2.1, 1.0, 0.8), (1.9, 0.9, 0.75), (1.7, 0.85, 0.7), (1.5, 0.8, 0.7))


@dataclass
class LegPose:
    """Projection and joint angles of one leg film."""

    projection: str = "ap"  # "ap" or "lat" for knee and ankle
    foot_view: str = "ap"  # "ap" (ankle AP: foot end-on), "lat", "dp", "obl"
    knee_flex: float = 0.0
    foot_sx: float = 1.0  # foreshortening of the dorsoplantar foot
    leg_foreshorten: float = 0.6  # projected length of the shank on a dorsoplantar foot film
    toe_curl: float = 0.0


@dataclass
class Leg:
    """A leg hanging from ``root`` (the hip joint)."""

    root: Frame
    pose: LegPose
    g: float = 1.0
    density: float = 1.0
    soft_scale: float = 1.0
    frames: dict[str, Frame] = field(default_factory=dict)

    def __post_init__(self) -> None:
        g = self.g
        self.Lfem, self.Ltib = 45.7 * g, 37.2 * g
        thigh = self.root
        shank = thigh.child(
            0.6 * g, self.Lfem, self.pose.knee_flex * (1 if self.pose.projection == "lat" else 0)
        )
        self.frames = {"thigh": thigh, "shank": shank}
        if self.pose.foot_view == "lat":
            self.frames["foot"] = Frame(shank.pt(0.0, self.Ltib), shank.angle + np.pi / 2)
        elif self.pose.foot_view in ("dp", "obl"):
            self.frames["foot"] = Frame(shank.pt(0.0, self.Ltib), shank.angle, self.pose.foot_sx)

    @property
    def knee(self) -> tuple[float, float]:
        return self.frames["shank"].pt(0.0, 0.0)

    @property
    def ankle(self) -> tuple[float, float]:
        return self.frames["shank"].pt(0.0, self.Ltib + 1.0 * self.g)

    def foot_point(self, x: float, y: float) -> tuple[float, float]:
        return self.frames["foot"].pt(x * self.g, y * self.g)

    # ---------------------------------------------------------------- drawing
    def draw(
        self, cv: Canvas, *, femur: bool = True, knee: bool = True, shank: bool = True, foot: bool = True
    ) -> None:
        self._draw_soft(cv, foot)
        if femur or knee:
            self._draw_femur(cv)
        if knee or shank:
            self._draw_tibia_fibula(cv)
        if foot:
            self._draw_foot(cv)

    def _draw_soft(self, cv: Canvas, foot: bool) -> None:
        g, s = self.g, self.soft_scale
        th, sh = self.frames["thigh"], self.frames["shank"]
        lat = self.pose.projection == "lat"
        pts = [
            th.pt(1.5 * g, -3.0 * g),
            th.pt(1.0 * g, 15 * g),
            th.pt(0.6 * g, 35 * g),
            self.knee,
            sh.pt(0.0, 10 * g),
            sh.pt(0.0, 25 * g),
            sh.pt(0.0, self.Ltib + 1.0 * g),
        ]
        rad = [9.0, 8.0, 6.8, 5.6, 5.4, 4.1, 3.4]
        if lat:
            pts[4] = sh.pt(-0.8 * g, 10 * g)
        limb_soft_tissue(cv, np.array(pts), np.array(rad) * g * s, depth_ratio=0.95)
        if not foot:
            return
        view = self.pose.foot_view
        if view == "ap":  # the foot, pointing at the tube, seen end-on below the ankle
            limb_soft_tissue(
                cv,
                sh.pts(
                    [
                        (0.2 * g, self.Ltib + 0.5 * g),
                        (0.4 * g, self.Ltib + 4.5 * g),
                        (0.9 * g, self.Ltib + 11.0 * g),
                    ]
                ),
                np.array([3.5, 4.4, 4.0]) * g * s,
                depth_ratio=1.3,
                fat=0.15,
                end_cap=0.4,
            )
        elif view == "lat":
            f = self.frames["foot"]
            limb_soft_tissue(
                cv,
                f.pts([(3.3 * g, -3.3 * g), (3.0 * g, 1.0 * g)]),
                np.array([2.5, 2.9]) * g * s,
                depth_ratio=1.3,
                fat=0.3,
                profile=0.3,
            )
            limb_soft_tissue(
                cv,
                f.pts([(2.4 * g, 1.0 * g), (2.9 * g, 8.0 * g), (3.6 * g, 13.5 * g), (4.1 * g, 17.8 * g)]),
                np.array([3.0, 2.5, 1.7, 1.0]) * g * s,
                depth_ratio=1.5,
                fat=0.25,
                profile=0.3,
            )
        else:
            f = self.frames["foot"]
            limb_soft_tissue(
                cv,
                f.pts([(0.5 * g, -2.5 * g), (0.4 * g, 3.5 * g), (0.6 * g, 11.0 * g)]),
                np.array([3.0, 3.8, 4.3]) * g * s,
                depth_ratio=0.7,
                fat=0.25,
                end_cap=0.8,
                profile=0.35,
            )
            for i in range(5):
                segs = self._foot_ray(i)
                pts = f.pts([segs[0][0]] + [q for _, q in segs])
                tip = pts[-1] + 0.3 * g * (pts[-1] - pts[-2]) / (np.linalg.norm(pts[-1] - pts[-2]) + 1e-9)
                pts = np.vstack([pts, tip])
                rad = np.linspace(1.6 if i == 0 else 1.2, 1.05 if i == 0 else 0.75, len(pts)) * g * s
                limb_soft_tissue(cv, pts, rad, depth_ratio=1.1, fat=0.3)

    def _draw_femur(self, cv: Canvas) -> None:
        """The whole femur as one compound bone: head, neck, trochanters, shaft, condyles."""
        g, d = self.g, self.density
        th, sh = self.frames["thigh"], self.frames["shank"]
        lat = self.pose.projection == "lat"
        parts = [
            E(th.pt(0.0, 0.0), (2.4 * g, 2.4 * g), 2.3 * g),  # head
            T(
                th.pts([(0.6 * g, 0.7 * g), (3.4 * g, 3.6 * g)]),
                np.array([1.6, 1.5]) * g,
                np.array([1.4, 1.4]) * g,
                cortex=0.15,
                inner="trabecular",
            ),  # neck
            E(th.pt(4.7 * g, 3.0 * g), (1.5 * g, 2.3 * g), 1.6 * g),  # greater trochanter
            E(th.pt(2.0 * g, 6.2 * g), (0.8 * g, 0.9 * g), 0.8 * g),  # lesser trochanter
            T(
                th.pts(
                    [
                        (3.6 * g, 4.5 * g),
                        (3.1 * g, 10 * g),
                        (2.0 * g, 25 * g),
                        (1.0 * g, self.Lfem - 8 * g),
                        (0.7 * g, self.Lfem - 4.5 * g),
                    ]
                ),
                np.array([1.8, 1.45, 1.3, 1.45, 1.9]) * g,
                np.array([1.6, 1.4, 1.3, 1.4, 1.7]) * g,
            ),  # shaft
        ]
        if lat:
            parts += [
                E(sh.pt(-0.1 * g, -4.9 * g), (2.4 * g, 2.9 * g), 3.0 * g, cortex=0.06),
                E(sh.pt(-0.5 * g, -2.3 * g), (2.6 * g, 2.45 * g), 3.6 * g, cortex=0.06),
            ]
        else:
            # the metaphysis flares smoothly into two broad, flat-bottomed condyles
            parts += [
                E(sh.pt(0.0, -4.2 * g), (3.5 * g, 3.2 * g), 3.0 * g, power=2.2, cortex=0.06),
                E(sh.pt(1.95 * g, -1.7 * g), (2.15 * g, 1.5 * g), 3.3 * g, power=2.4, cortex=0.07),
                E(sh.pt(-2.05 * g, -1.6 * g), (2.25 * g, 1.55 * g), 3.3 * g, power=2.4, cortex=0.07),
            ]
        bone_union(cv, parts, density=d, texture=0.25, blend=0.12)
        if lat:
            # medial condyle's slightly offset contour, patella in front, Hoffa's fat pad
            bone_blob(
                cv,
                sh.pt(-0.35 * g, -2.05 * g),
                (2.7 * g, 2.55 * g),
                density=d * 0.25,
                depth=2.0 * g,
                cortex=0.05,
                texture=0.0,
            )
            bone_blob(
                cv,
                sh.pt(2.75 * g, -3.9 * g),
                (0.9 * g, 2.1 * g),
                angle=sh.angle + 0.15,
                density=d,
                depth=2.0 * g,
                texture=0.4,
            )
            ellipse(
                cv,
                sh.pt(2.4 * g, 0.3 * g),
                (1.1 * g, 1.6 * g),
                2.0 * g,
                cv.mu("fat") - cv.mu("soft"),
                angle=sh.angle,
            )
        else:
            # intercondylar notch: less bone between the condyles; the patella projects over the femur
            ellipse(
                cv,
                sh.pt(0.0, -0.7 * g),
                (0.7 * g, 1.1 * g),
                2.6 * g,
                -0.9 * cv.excess("trabecular") * d,
                angle=sh.angle,
                soft_edge=0.2,
            )
            bone_blob(
                cv,
                sh.pt(0.35 * g, -4.4 * g),
                (2.1 * g, 2.4 * g),
                density=d * 0.45,
                depth=1.1 * g,
                texture=0.1,
            )

    def _draw_tibia_fibula(self, cv: Canvas) -> None:
        g, d = self.g, self.density
        sh = self.frames["shank"]
        lat = self.pose.projection == "lat"
        Lt = self.Ltib
        P = lambda x, y: sh.pt(x * g, y * g)  # noqa: E731
        if lat:
            tib = [
                E(P(0.0, 1.45), (3.2 * g, 1.3 * g), 3.0 * g, angle=sh.angle, power=2.6, cortex=0.06),
                E(P(0.5, 3.3), (2.4 * g, 2.0 * g), 2.4 * g, angle=sh.angle, cortex=0.07),
                E(P(2.2, 3.6), (0.9 * g, 1.5 * g), 1.4 * g, angle=sh.angle),
                T(
                    [P(0.4, 4.5), P(0.6, 12.0), P(0.4, 28.0), P(0.0, Lt / g - 2.6)],
                    np.array([2.0, 1.35, 1.2, 1.6]) * g,
                    np.array([1.9, 1.3, 1.15, 1.5]) * g,
                ),
                E(P(0.0, Lt / g - 1.2), (2.0 * g, 1.4 * g), 1.9 * g, angle=sh.angle, power=2.5),
            ]
            fib = [
                E(P(-1.9, 3.0), (0.95 * g, 1.05 * g), 1.0 * g),
                T(
                    [P(-1.8, 3.5), P(-1.6, 10.0), P(-1.2, 25.0), P(-0.9, Lt / g - 1.5)],
                    np.array([0.7, 0.55, 0.5, 0.65]) * g,
                ),
                E(P(-0.85, Lt / g + 0.3), (0.8 * g, 1.6 * g), 0.9 * g, angle=sh.angle),
            ]
        else:
            tib = [
                E(P(0.0, 1.45), (3.9 * g, 1.2 * g), 2.6 * g, angle=sh.angle, power=2.6, cortex=0.06),
                E(P(0.0, 3.7), (3.2 * g, 2.8 * g), 2.3 * g, angle=sh.angle, power=2.2, cortex=0.06),
                T(
                    [P(0.0, 4.2), P(0.1, 12.0), P(0.1, 28.0), P(0.0, Lt / g - 2.6)],
                    np.array([2.0, 1.35, 1.2, 1.6]) * g,
                    np.array([1.8, 1.3, 1.15, 1.5]) * g,
                ),
                E(P(-0.1, Lt / g - 1.2), (2.3 * g, 1.45 * g), 1.8 * g, angle=sh.angle, power=2.5),
                E(P(-2.0, Lt / g + 0.5), (0.75 * g, 1.25 * g), 1.0 * g, angle=sh.angle),
            ]
            fib = [
                E(P(3.0, 3.0), (1.0 * g, 1.1 * g), 1.0 * g),
                T(
                    [P(2.95, 3.6), P(2.85, 10.0), P(2.55, 25.0), P(2.5, Lt / g - 1.5)],
                    np.array([0.7, 0.55, 0.5, 0.65]) * g,
                ),
                E(P(2.6, Lt / g + 0.6), (0.85 * g, 1.7 * g), 0.9 * g, angle=sh.angle),
            ]
            for x in (-0.45, 0.45):  # tibial spines
                bone_blob(cv, P(x, 0.45), (0.3 * g, 0.42 * g), density=d * 0.6, depth=0.7 * g, texture=0.0)
        bone_union(cv, tib, density=d, texture=0.25, blend=0.12)
        bone_union(cv, fib, density=d, texture=0.3)

    def _foot_ray(self, i: int) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """Metatarsal and phalanges of ray ``i`` (0 = hallux) in dorsoplantar foot coordinates."""
        g = self.g
        x0, deg, length, _ = _MT[i]
        ang = np.radians(deg)
        d = np.array([np.sin(ang), np.cos(ang)])
        p = np.array([x0 * g, 5.7 * g])
        out = []
        for j, l in enumerate([length] + [t for t in _TOES[i] if t > 0]):
            proj = l * g * (np.cos(self.pose.toe_curl * 0.6) if j > 0 else 1.0)
            q = p + proj * d
            out.append((tuple(p), tuple(q)))
            p = q + 0.15 * g * d
        return out

    def _draw_foot(self, cv: Canvas) -> None:
        g, d = self.g, self.density
        view = self.pose.foot_view
        sh = self.frames["shank"]
        Lt = self.Ltib
        if view == "ap":
            bone_blob(
                cv,
                sh.pt(0.1 * g, Lt + 1.55 * g),
                (1.95 * g, 1.3 * g),
                density=d,
                depth=2.2 * g,
                power=2.4,
                angle=sh.angle,
                texture=0.45,
            )
            bone_blob(
                cv, sh.pt(0.3 * g, Lt + 3.9 * g), (2.3 * g, 1.6 * g), density=d, depth=2.5 * g, texture=0.4
            )
            bone_blob(cv, sh.pt(-0.3 * g, Lt + 3.3 * g), (2.5 * g, 1.1 * g), density=d * 0.6, depth=2.0 * g)
            for k in range(5):  # forefoot end-on: foreshortened metatarsals fanning below
                x = (-1.6 + 0.85 * k) * g
                bone_tube(
                    cv,
                    sh.pts([(x * 0.8, Lt + 4.0 * g), (x * 1.3, Lt + 8.0 * g)]),
                    np.array([0.6, 0.45]) * g,
                    density=d * 0.9,
                    shaft=[False, True],
                )
                bone_tube(
                    cv,
                    sh.pts([(x * 1.35, Lt + 8.4 * g), (x * 1.45, Lt + 10.0 * g)]),
                    np.array([0.4, 0.3]) * g,
                    density=d * 0.8,
                    shaft=[False, False],
                )
            return
        f = self.frames["foot"]
        if view == "lat":
            bone_blob(
                cv, f.pt(1.2 * g, 0.1 * g), (1.35 * g, 1.9 * g), angle=f.angle, density=d, depth=2.4 * g
            )
            bone_blob(cv, f.pt(1.9 * g, 2.6 * g), (1.0 * g, 1.2 * g), angle=f.angle, density=d, depth=1.6 * g)
            bone_blob(
                cv,
                f.pt(3.4 * g, -0.9 * g),
                (1.75 * g, 3.9 * g),
                angle=f.angle - 0.22,
                density=d,
                depth=2.2 * g,
                texture=0.45,
            )
            bone_blob(
                cv, f.pt(3.7 * g, -3.9 * g), (1.5 * g, 1.2 * g), angle=f.angle, density=d, depth=1.8 * g
            )
            bone_blob(cv, f.pt(1.8 * g, 4.2 * g), (1.2 * g, 0.6 * g), angle=f.angle, density=d, depth=2.0 * g)
            bone_blob(cv, f.pt(3.8 * g, 3.7 * g), (1.0 * g, 1.2 * g), angle=f.angle, density=d, depth=1.8 * g)
            bone_blob(cv, f.pt(2.0 * g, 5.7 * g), (1.3 * g, 1.0 * g), angle=f.angle, density=d, depth=2.2 * g)
            for k in range(5):
                xb, xh = (1.7 + 0.45 * k) * g, (3.95 + 0.12 * k) * g
                yh = (13.9 - 0.35 * abs(k - 1)) * g
                bone_tube(
                    cv,
                    f.pts([(xb, 6.6 * g), (xb + 0.5 * (xh - xb), 6.6 * g + 0.5 * (yh - 6.6 * g)), (xh, yh)]),
                    np.array([0.55, 0.38, 0.5]) * g * (1.3 if k == 0 else 1.0),
                    density=d,
                    shaft=[False, True, False],
                )
                bone_tube(
                    cv,
                    f.pts([(xh + 0.1 * g, yh + 0.3 * g), (xh + 0.25 * g, yh + 3.2 * g)]),
                    np.array([0.42, 0.3]) * g * (1.4 if k == 0 else 1.0),
                    density=d * 0.8,
                    shaft=[False, False],
                )
            return
        # dorsoplantar / oblique foot, with the shank projected foreshortened above the hindfoot
        fs = self.pose.leg_foreshorten
        bone_tube(
            cv,
            f.pts([(-0.3 * g, -1.4 * g), (-0.3 * g, -(1.4 + 4 * fs) * g), (-0.2 * g, -(1.4 + 30 * fs) * g)]),
            np.array([2.1, 1.5, 1.2]) * g,
            density=d,
            shaft=[False, True, True],
        )
        bone_tube(
            cv,
            f.pts([(2.3 * g, -0.6 * g), (2.4 * g, -(1.0 + 5 * fs) * g), (2.6 * g, -(1.0 + 30 * fs) * g)]),
            np.array([0.8, 0.6, 0.5]) * g,
            density=d,
            shaft=[False, True, True],
        )
        bone_blob(
            cv, f.pt(-0.3 * g, 0.1 * g), (1.6 * g, 2.1 * g), angle=f.angle + 0.15, density=d, depth=1.8 * g
        )
        bone_blob(
            cv, f.pt(0.8 * g, -1.3 * g), (1.5 * g, 2.8 * g), angle=f.angle - 0.1, density=d, depth=2.0 * g
        )
        bone_blob(
            cv, f.pt(-0.8 * g, 2.85 * g), (1.6 * g, 0.75 * g), angle=f.angle + 0.2, density=d, depth=1.2 * g
        )
        bone_blob(cv, f.pt(1.6 * g, 3.6 * g), (1.0 * g, 1.3 * g), angle=f.angle, density=d, depth=1.4 * g)
        for (x, y), (ax, ay) in (
            ((-1.4, 4.7), (0.8, 1.1)),
            ((-0.35, 4.65), (0.55, 0.8)),
            ((0.55, 4.6), (0.6, 0.9)),
        ):
            bone_blob(cv, f.pt(x * g, y * g), (ax * g, ay * g), angle=f.angle, density=d, depth=1.0 * g)
        for i in range(5):
            segs = self._foot_ray(i)
            rb, rs, rh = _MT[i][3]
            for j, (p, q) in enumerate(segs):
                p, q = np.array(p), np.array(q)
                if j == 0:
                    rad = np.array([rb, rs, rs * 0.95, rh, rh * 0.95])
                else:
                    k = (0.75 if i == 0 else 0.8) * (1.0 if j == 1 else 0.8)
                    rad = np.array([rh, rs, rs * 0.9, rh * 0.9, rh * 0.85]) * k
                ts = np.array([0.0, 0.2, 0.6, 0.88, 1.0])
                bone_tube(
                    cv,
                    f.pts([tuple(p + t * (q - p)) for t in ts]),
                    rad * g,
                    density=d,
                    shaft=[False, True, True, False, False],
                    texture=0.3,
                )
            if i == 0:
                q = np.array(segs[0][1])
                for dx in (-0.35, 0.35):
                    bone_blob(cv, f.pt(q[0] + dx * g, q[1] - 0.4 * g), (0.3 * g, 0.35 * g), density=d)


def sample_leg(rng: np.random.Generator, root: Frame, pose: LegPose) -> Leg:
    """A patient's leg: size, bone density, soft-tissue girth."""
    return Leg(
        root=root,
        pose=pose,
        g=float(rng.uniform(0.85, 1.1)),
        density=float(rng.uniform(0.8, 1.15)),
        soft_scale=float(rng.uniform(0.8, 1.25)),
    )


# ------------------------------------------------------------------------------------------
# films of the lower limb
# ------------------------------------------------------------------------------------------
_NAMES = ("anatomy", "pose", "view", "texture", "detector", "extras")


def _leg_extras(cv: Canvas, leg: Leg, rng: np.random.Generator, around_knee: bool) -> list[str]:
    """A cast (around the knee or the lower leg and ankle), a plate on the tibia (sometimes)."""
    g, s = leg.g, leg.soft_scale
    sh = leg.frames["shank"]
    if around_knee:
        seg = (
            [leg.frames["thigh"].pt(1.0 * g, leg.Lfem - 12 * g), sh.pt(0.0, 12 * g)],
            np.array([7.0, 5.2]) * g * s,
        )
    else:
        seg = ([sh.pt(0.0, leg.Ltib - 14 * g), sh.pt(0.0, leg.Ltib + 1.5 * g)], np.array([4.2, 3.8]) * g * s)
    bone = (
        (sh.pt(0.1 * g, 12 * g), sh.pt(0.1 * g, 27 * g))
        if not around_knee
        else (sh.pt(-1.0 * g, 2 * g), sh.pt(-0.5 * g, 14 * g))
    )
    return limb_extras(cv, rng, seg, bone)


def render_knee(seed, size: int = 128, *, return_attenuation: bool = False) -> Phantom:
    """Knee AP or lateral; most films are tight joint crops, some show the whole region or both knees."""
    r = streams(seed, _NAMES)
    lateral = r["pose"].random() < 0.35
    pose = LegPose(projection="lat" if lateral else "ap", foot_view="ap", knee_flex=0.0)
    leg = sample_leg(r["anatomy"], Frame((0.0, 0.0), 0.0), pose)
    zoom = r["view"].random()
    if lateral:  # wide lateral films are taken with the knee well flexed
        pose.knee_flex = float(r["pose"].uniform(0.15, 0.6) if zoom < 0.5 else r["pose"].uniform(0.3, 1.6))
        leg.__post_init__()
    fov = (
        float(
            r["view"].uniform(7.5, 10.5)
            if zoom < 0.5
            else r["view"].uniform(16.0, 26.0)
            if zoom < 0.75
            else r["view"].uniform(34.0, 48.0)
        )
        * leg.g
    )
    # tight crops are centred on the joint line, wider films a little above it
    center = np.array(leg.frames["shank"].pt(0.0, (0.4 if zoom < 0.5 else -1.0) * leg.g))
    view = sample_view(
        r["view"], size, center, fov, angle_sd=0.08 if fov < 20 else 0.15, shift=0.05, aspect=(0.8, 1.2)
    )
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.15, 0.5)))
    leg.draw(cv, foot=False)
    if fov > 30 and not lateral and r["pose"].random() < 0.5:  # both knees standing
        gap = float(r["anatomy"].uniform(15.0, 19.0)) * leg.g
        other = Leg(
            root=Frame((-gap, 0.0), 0.0, -1.0),
            pose=pose,
            g=leg.g,
            density=leg.density,
            soft_scale=leg.soft_scale,
        )  # the mirror image (sx = -1) of the same patient's leg
        other.draw(cv, foot=False)
    extras = _leg_extras(cv, leg, r["extras"], around_knee=True)
    return develop(
        cv,
        r["detector"],
        "knee",
        meta={"projection": pose.projection, "fov_cm": fov, "extras": extras},
        return_attenuation=return_attenuation,
    )


def render_ankle(seed, size: int = 128, *, return_attenuation: bool = False) -> Phantom:
    """Ankle AP/mortise (talus in the tibiofibular mortise) or lateral (talus over the calcaneus)."""
    r = streams(seed, _NAMES)
    lateral = r["pose"].random() < 0.45
    pose = LegPose(
        projection="lat" if lateral else "ap",
        foot_view="lat" if lateral else "ap",
        toe_curl=float(r["pose"].uniform(0, 0.5)),
    )
    leg = sample_leg(r["anatomy"], Frame((0.0, 0.0), 0.0), pose)
    fov = (
        float(r["view"].uniform(16.0, 27.0) if r["view"].random() < 0.7 else r["view"].uniform(27.0, 36.0))
        * leg.g
    )
    center = np.array(leg.ankle)
    if lateral:
        center = center + (np.array(leg.foot_point(1.5, 2.0)) - center) * 0.4
    view = sample_view(r["view"], size, center, fov, angle_sd=0.15, shift=0.06)
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.05, 0.35)))
    leg.draw(cv, femur=False, knee=False)
    extras = _leg_extras(cv, leg, r["extras"], around_knee=False)
    return develop(
        cv,
        r["detector"],
        "ankle",
        meta={"projection": pose.projection, "extras": extras},
        return_attenuation=return_attenuation,
    )


def render_foot(seed, size: int = 128, *, return_attenuation: bool = False) -> Phantom:
    """Foot dorsoplantar, oblique or lateral, with some of the leg in view."""
    r = streams(seed, _NAMES)
    kind = str(r["pose"].choice(["dp", "obl", "lat"], p=[0.45, 0.3, 0.25]))
    pose = LegPose(
        projection="lat" if kind == "lat" else "ap",
        foot_view=kind,
        foot_sx=float(r["pose"].uniform(0.85, 1.0) if kind == "dp" else r["pose"].uniform(0.5, 0.7)),
        leg_foreshorten=float(r["pose"].uniform(0.35, 1.0)),
        toe_curl=float(r["pose"].uniform(0, 0.6)),
    )
    leg = sample_leg(r["anatomy"], Frame((0.0, 0.0), 0.0), pose)
    wide = r["view"].random() < 0.5  # trauma series often show much of the leg
    fov = float(r["view"].uniform(34.0, 46.0) if wide else r["view"].uniform(24.0, 34.0)) * leg.g
    if kind == "lat":
        center = leg.foot_point(2.5 - 5.0 * wide, r["view"].uniform(4.0, 8.0) - 2.0 * wide)
        up = None
        base = float(r["view"].uniform(-0.3, 0.3))
    else:
        center = leg.foot_point(0.3, r["view"].uniform(5.0, 9.0) - 6.0 * wide)
        toes = np.subtract(leg.foot_point(0.0, 10.0), leg.foot_point(0.0, 0.0))
        up = toes if r["view"].random() < 0.5 else -toes
        base = 0.0
    view = sample_view(r["view"], size, center, fov, up=up, base_angle=base, angle_sd=0.25, shift=0.08)
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.0, 0.3)))
    leg.draw(cv, femur=False, knee=False)
    extras = _leg_extras(cv, leg, r["extras"], around_knee=False)
    return develop(
        cv,
        r["detector"],
        "foot",
        meta={"projection": kind, "extras": extras},
        return_attenuation=return_attenuation,
    )
