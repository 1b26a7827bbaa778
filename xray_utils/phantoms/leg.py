"""The lower limb: femur, knee (condyles, patella, tibial plateau, fibular head), ankle and foot.

As for the arm, one model (:class:`Leg`) serves three X-ray types (knee, ankle, foot) and the
proximal femur of the pelvis film.  Local coordinates are centimetres, ``+y`` distal along the
limb, ``+x`` lateral (AP projections) or anterior (lateral projections).  The foot has its own
frame with ``+y`` towards the toes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .physics import (Canvas, Frame, Phantom, bone_blob, bone_tube, develop, ellipse, limb_soft_tissue,
                      sample_view, streams)

# dorsoplantar foot: metatarsal base x, angle (deg, + lateral), length, (base, shaft, head) radii
_MT = ((-1.45, -9.0, 6.3, (0.85, 0.62, 0.8)), (-0.4, -3.0, 7.6, (0.52, 0.38, 0.48)),
       (0.5, 2.0, 7.1, (0.5, 0.36, 0.46)), (1.3, 7.0, 6.7, (0.5, 0.36, 0.46)),
       (2.15, 13.0, 6.5, (0.62, 0.38, 0.46)))
_TOES = ((3.0, 0.0, 2.3), (2.5, 1.1, 0.9), (2.2, 1.0, 0.85), (2.0, 0.95, 0.8), (1.8, 0.9, 0.8))


@dataclass
class LegPose:
    """Projection and joint angles of one leg film."""

    projection: str = "ap"      # "ap" or "lat" for knee and ankle
    foot_view: str = "ap"       # "ap" (ankle AP: foot end-on), "lat", "dp", "obl"
    knee_flex: float = 0.0
    foot_sx: float = 1.0        # foreshortening of the dorsoplantar foot
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
        shank = thigh.child(0.6 * g, self.Lfem, self.pose.knee_flex * (1 if self.pose.projection == "lat" else 0))
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
    def draw(self, cv: Canvas, *, femur: bool = True, knee: bool = True, shank: bool = True,
             foot: bool = True) -> None:
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
        pts = [th.pt(1.5 * g, -3.0 * g), th.pt(1.0 * g, 15 * g), th.pt(0.6 * g, 35 * g), self.knee,
               sh.pt(0.0, 10 * g), sh.pt(0.0, 25 * g), sh.pt(0.0, self.Ltib + 1.0 * g)]
        rad = [9.0, 8.0, 6.8, 5.6, 5.4, 4.1, 3.4]
        if lat:
            pts[4] = sh.pt(-0.8 * g, 10 * g)
        limb_soft_tissue(cv, np.array(pts), np.array(rad) * g * s, depth_ratio=0.95)
        if not foot:
            return
        view = self.pose.foot_view
        if view == "ap":  # foot end-on below the ankle
            limb_soft_tissue(cv, sh.pts([(0.2 * g, self.Ltib + 1.0 * g), (0.3 * g, self.Ltib + 5.2 * g)]),
                             np.array([3.6, 3.3]) * g * s, depth_ratio=1.6, fat=0.15)
        elif view == "lat":
            f = self.frames["foot"]
            limb_soft_tissue(cv, f.pts([(3.6 * g, -3.0 * g), (3.3 * g, 1.0 * g)]), np.array([2.3, 2.5]) * g * s,
                             depth_ratio=1.4, fat=0.3)
            limb_soft_tissue(cv, f.pts([(2.5 * g, 1.5 * g), (3.2 * g, 9.0 * g), (3.9 * g, 14.0 * g),
                                        (4.2 * g, 18.3 * g)]), np.array([2.7, 2.3, 1.5, 1.0]) * g * s,
                             depth_ratio=1.5, fat=0.25)
        else:
            f = self.frames["foot"]
            limb_soft_tissue(cv, f.pts([(0.5 * g, -2.5 * g), (0.4 * g, 3.5 * g)]), np.array([3.0, 3.6]) * g * s,
                             depth_ratio=0.8, fat=0.25)
            for i in range(5):
                segs = self._foot_ray(i)
                pts = f.pts([segs[0][0]] + [q for _, q in segs])
                tip = pts[-1] + 0.3 * g * (pts[-1] - pts[-2]) / (np.linalg.norm(pts[-1] - pts[-2]) + 1e-9)
                pts = np.vstack([pts, tip])
                rad = np.linspace(1.5 if i == 0 else 1.3, 0.85 if i == 0 else 0.6, len(pts)) * g * s
                limb_soft_tissue(cv, pts, rad, depth_ratio=0.85, fat=0.3)

    def _draw_femur(self, cv: Canvas) -> None:
        g, d = self.g, self.density
        th = self.frames["thigh"]
        lat = self.pose.projection == "lat"
        # head, neck and trochanters (seen on pelvis films)
        bone_blob(cv, th.pt(0.0, 0.0), (2.4 * g, 2.4 * g), density=d, depth=2.3 * g, texture=0.4)
        bone_tube(cv, th.pts([(0.6 * g, 0.7 * g), (3.6 * g, 3.7 * g)]), np.array([1.7, 1.55]) * g, density=d,
                  shaft=[False, False], depths=np.array([1.5, 1.4]) * g)
        bone_blob(cv, th.pt(4.7 * g, 3.0 * g), (1.5 * g, 2.3 * g), density=d, depth=1.6 * g)
        bone_blob(cv, th.pt(1.6 * g, 6.3 * g), (0.8 * g, 0.9 * g), density=d, depth=0.8 * g)
        sh = self.frames["shank"]
        # shaft: from the trochanters down towards the knee (anatomical valgus)
        pts = th.pts([(3.6 * g, 4.5 * g), (3.1 * g, 10 * g), (2.0 * g, 25 * g), (1.1 * g, self.Lfem - 8 * g),
                      (0.7 * g, self.Lfem - 4.2 * g)])
        bone_tube(cv, pts, np.array([1.8, 1.45, 1.3, 1.55, 2.6]) * g, density=d,
                  shaft=[False, True, True, True, False], depths=np.array([1.6, 1.4, 1.3, 1.5, 2.2]) * g)
        if lat:
            # condyles superimposed in profile, patella anterior, slight double contour
            bone_blob(cv, sh.pt(-0.7 * g, -2.4 * g), (2.9 * g, 2.7 * g), density=d, depth=3.6 * g, texture=0.45)
            bone_blob(cv, sh.pt(-0.4 * g, -2.1 * g), (2.7 * g, 2.55 * g), density=d * 0.5, depth=3.0 * g, cortex=0.06)
            bone_blob(cv, sh.pt(3.6 * g, -4.3 * g), (1.05 * g, 2.3 * g), angle=sh.angle + 0.2, density=d,
                      depth=2.1 * g, texture=0.4)
            # Hoffa's fat pad: a lucent triangle in front of the joint
            ellipse(cv, sh.pt(2.6 * g, 0.3 * g), (1.1 * g, 1.6 * g), 2.0 * g, cv.mu("fat") - cv.mu("soft"),
                    angle=sh.angle)
        else:
            bone_blob(cv, sh.pt(1.9 * g, -2.0 * g), (1.95 * g, 2.0 * g), density=d, depth=3.0 * g, texture=0.45)
            bone_blob(cv, sh.pt(-2.0 * g, -1.9 * g), (2.05 * g, 2.1 * g), density=d, depth=3.0 * g, texture=0.45)
            # intercondylar notch: less bone between the condyles
            ellipse(cv, sh.pt(0.0, -0.9 * g), (0.75 * g, 1.1 * g), 2.4 * g, -0.8 * cv.excess("trabecular") * d,
                    angle=sh.angle)
            bone_blob(cv, sh.pt(0.35 * g, -4.6 * g), (2.1 * g, 2.4 * g), density=d * 0.9, depth=1.1 * g, texture=0.35)

    def _draw_tibia_fibula(self, cv: Canvas) -> None:
        g, d = self.g, self.density
        sh = self.frames["shank"]
        lat = self.pose.projection == "lat"
        Lt = self.Ltib
        if lat:
            bone_blob(cv, sh.pt(0.0, 1.4 * g), (3.2 * g, 1.3 * g), density=d, depth=3.0 * g, power=2.6,
                      angle=sh.angle, texture=0.45)
            bone_blob(cv, sh.pt(2.3 * g, 3.4 * g), (0.9 * g, 1.5 * g), density=d, depth=1.5 * g)
            tib = [(0.0, 1.2), (0.3, 4.5), (0.6, 12.0), (0.4, 28.0), (0.0, Lt / g - 2.6), (0.0, Lt / g - 0.2)]
            fib = [(-1.9, 3.2), (-1.6, 10.0), (-1.2, 25.0), (-0.9, Lt / g - 1.5), (-0.8, Lt / g + 1.4)]
        else:
            bone_blob(cv, sh.pt(0.0, 1.45 * g), (3.8 * g, 1.2 * g), density=d, depth=2.6 * g, power=3.0,
                      angle=sh.angle, texture=0.45)
            for x in (-0.45, 0.45):  # tibial spines
                bone_blob(cv, sh.pt(x * g, 0.45 * g), (0.32 * g, 0.4 * g), density=d * 0.7, depth=0.8 * g)
            tib = [(0.0, 1.2), (0.0, 4.5), (0.1, 12.0), (0.1, 28.0), (0.0, Lt / g - 2.6), (-0.1, Lt / g - 0.2)]
            fib = [(3.0, 3.1), (2.85, 10.0), (2.55, 25.0), (2.5, Lt / g - 1.5), (2.6, Lt / g + 1.9)]
        bone_tube(cv, sh.pts([(x * g, y * g) for x, y in tib]), np.array([3.3, 2.2, 1.35, 1.2, 1.7, 2.3]) * g,
                  density=d, shaft=[False, False, True, True, False, False],
                  depths=np.array([2.4, 1.9, 1.3, 1.15, 1.5, 1.8]) * g)
        bone_blob(cv, sh.pt(fib[0][0] * g, 2.9 * g), (1.0 * g, 1.1 * g), density=d, depth=1.0 * g)
        bone_tube(cv, sh.pts([(x * g, y * g) for x, y in fib]), np.array([0.8, 0.55, 0.5, 0.65, 0.8]) * g,
                  density=d, shaft=[False, True, True, False, False])
        if not lat:  # medial malleolus
            bone_blob(cv, sh.pt(-2.0 * g, Lt + 0.6 * g), (0.8 * g, 1.2 * g), density=d, depth=1.0 * g)

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
            bone_blob(cv, sh.pt(0.1 * g, Lt + 1.55 * g), (1.95 * g, 1.3 * g), density=d, depth=2.2 * g,
                      power=2.4, angle=sh.angle, texture=0.45)
            bone_blob(cv, sh.pt(0.3 * g, Lt + 3.9 * g), (2.3 * g, 1.6 * g), density=d, depth=2.5 * g, texture=0.4)
            bone_blob(cv, sh.pt(-0.3 * g, Lt + 3.3 * g), (2.5 * g, 1.1 * g), density=d * 0.6, depth=2.0 * g)
            for k in range(5):  # forefoot end-on: foreshortened metatarsals fanning below
                x = (-1.6 + 0.85 * k) * g
                bone_tube(cv, sh.pts([(x * 0.8, Lt + 3.6 * g), (x * 1.25, Lt + 5.6 * g)]),
                          np.array([0.55, 0.45]) * g, density=d * 0.8, shaft=[False, False])
            return
        f = self.frames["foot"]
        if view == "lat":
            bone_blob(cv, f.pt(1.2 * g, 0.1 * g), (1.35 * g, 1.9 * g), angle=f.angle, density=d, depth=2.4 * g)
            bone_blob(cv, f.pt(1.9 * g, 2.6 * g), (1.0 * g, 1.2 * g), angle=f.angle, density=d, depth=1.6 * g)
            bone_blob(cv, f.pt(3.4 * g, -0.9 * g), (1.75 * g, 3.9 * g), angle=f.angle - 0.22, density=d,
                      depth=2.2 * g, texture=0.45)
            bone_blob(cv, f.pt(3.7 * g, -3.9 * g), (1.5 * g, 1.2 * g), angle=f.angle, density=d, depth=1.8 * g)
            bone_blob(cv, f.pt(1.8 * g, 4.2 * g), (1.2 * g, 0.6 * g), angle=f.angle, density=d, depth=2.0 * g)
            bone_blob(cv, f.pt(3.8 * g, 3.7 * g), (1.0 * g, 1.2 * g), angle=f.angle, density=d, depth=1.8 * g)
            bone_blob(cv, f.pt(2.0 * g, 5.7 * g), (1.3 * g, 1.0 * g), angle=f.angle, density=d, depth=2.2 * g)
            for k in range(5):
                xb, xh = (1.7 + 0.45 * k) * g, (3.95 + 0.12 * k) * g
                yh = (13.9 - 0.35 * abs(k - 1)) * g
                bone_tube(cv, f.pts([(xb, 6.6 * g), (xb + 0.5 * (xh - xb), 6.6 * g + 0.5 * (yh - 6.6 * g)), (xh, yh)]),
                          np.array([0.55, 0.38, 0.5]) * g * (1.3 if k == 0 else 1.0), density=d,
                          shaft=[False, True, False])
                bone_tube(cv, f.pts([(xh + 0.1 * g, yh + 0.3 * g), (xh + 0.25 * g, yh + 3.2 * g)]),
                          np.array([0.42, 0.3]) * g * (1.4 if k == 0 else 1.0), density=d * 0.8,
                          shaft=[False, False])
            return
        # dorsoplantar / oblique foot, with the shank projected foreshortened above the hindfoot
        fs = self.pose.leg_foreshorten
        bone_tube(cv, f.pts([(-0.3 * g, -1.4 * g), (-0.3 * g, -(1.4 + 4 * fs) * g), (-0.2 * g, -(1.4 + 30 * fs) * g)]),
                  np.array([2.1, 1.5, 1.2]) * g, density=d, shaft=[False, True, True])
        bone_tube(cv, f.pts([(2.3 * g, -0.6 * g), (2.4 * g, -(1.0 + 5 * fs) * g), (2.6 * g, -(1.0 + 30 * fs) * g)]),
                  np.array([0.8, 0.6, 0.5]) * g, density=d, shaft=[False, True, True])
        bone_blob(cv, f.pt(-0.3 * g, 0.1 * g), (1.6 * g, 2.1 * g), angle=f.angle + 0.15, density=d, depth=1.8 * g)
        bone_blob(cv, f.pt(0.8 * g, -1.3 * g), (1.5 * g, 2.8 * g), angle=f.angle - 0.1, density=d, depth=2.0 * g)
        bone_blob(cv, f.pt(-0.8 * g, 2.85 * g), (1.6 * g, 0.75 * g), angle=f.angle + 0.2, density=d, depth=1.2 * g)
        bone_blob(cv, f.pt(1.6 * g, 3.6 * g), (1.0 * g, 1.3 * g), angle=f.angle, density=d, depth=1.4 * g)
        for (x, y), (ax, ay) in (((-1.4, 4.7), (0.8, 1.1)), ((-0.35, 4.65), (0.55, 0.8)), ((0.55, 4.6), (0.6, 0.9))):
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
                bone_tube(cv, f.pts([tuple(p + t * (q - p)) for t in ts]), rad * g, density=d,
                          shaft=[False, True, True, False, False], texture=0.3)
            if i == 0:
                q = np.array(segs[0][1])
                for dx in (-0.35, 0.35):
                    bone_blob(cv, f.pt(q[0] + dx * g, q[1] - 0.4 * g), (0.3 * g, 0.35 * g), density=d)


def sample_leg(rng: np.random.Generator, root: Frame, pose: LegPose) -> Leg:
    """A patient's leg: size, bone density, soft-tissue girth."""
    return Leg(root=root, pose=pose, g=float(rng.uniform(0.85, 1.1)), density=float(rng.uniform(0.8, 1.15)),
               soft_scale=float(rng.uniform(0.8, 1.25)))


# ------------------------------------------------------------------------------------------
# films of the lower limb
# ------------------------------------------------------------------------------------------
_NAMES = ("anatomy", "pose", "view", "texture", "detector")


def render_knee(seed, size: int = 128, *, return_attenuation: bool = False) -> Phantom:
    """Knee AP or lateral; most films are tight joint crops, some show the whole region or both knees."""
    r = streams(seed, _NAMES)
    lateral = r["pose"].random() < 0.35
    pose = LegPose(projection="lat" if lateral else "ap", foot_view="ap",
                   knee_flex=float(r["pose"].uniform(0.15, 0.7)) if lateral else 0.0)
    leg = sample_leg(r["anatomy"], Frame((0.0, 0.0), 0.0), pose)
    zoom = r["view"].random()
    fov = float(r["view"].uniform(12.0, 17.0) if zoom < 0.55 else r["view"].uniform(18.0, 28.0) if zoom < 0.85
                else r["view"].uniform(34.0, 48.0)) * leg.g
    center = np.array(leg.knee) + np.array(leg.frames["shank"].pt(0, -1.0)) - np.array(leg.knee)
    view = sample_view(r["view"], size, center, fov, angle_sd=0.08 if fov < 20 else 0.15, shift=0.05,
                       aspect=(0.8, 1.2))
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.15, 0.5)))
    leg.draw(cv, foot=False)
    if fov > 30 and not lateral and r["pose"].random() < 0.5:  # both knees standing
        gap = float(r["anatomy"].uniform(15.0, 19.0)) * leg.g
        other = Leg(root=Frame((-gap, 0.0), 0.0, -1.0), pose=pose, g=leg.g, density=leg.density,
                    soft_scale=leg.soft_scale)  # the mirror image (sx = -1) of the same patient's leg
        other.draw(cv, foot=False)
    return develop(cv, r["detector"], "knee", meta={"projection": pose.projection, "fov_cm": fov},
                   return_attenuation=return_attenuation)


def render_ankle(seed, size: int = 128, *, return_attenuation: bool = False) -> Phantom:
    """Ankle AP/mortise (talus in the tibiofibular mortise) or lateral (talus over the calcaneus)."""
    r = streams(seed, _NAMES)
    lateral = r["pose"].random() < 0.45
    pose = LegPose(projection="lat" if lateral else "ap", foot_view="lat" if lateral else "ap",
                   toe_curl=float(r["pose"].uniform(0, 0.5)))
    leg = sample_leg(r["anatomy"], Frame((0.0, 0.0), 0.0), pose)
    fov = float(r["view"].uniform(16.0, 27.0)) * leg.g
    center = np.array(leg.ankle)
    if lateral:
        center = center + (np.array(leg.foot_point(1.5, 2.0)) - center) * 0.4
    view = sample_view(r["view"], size, center, fov, angle_sd=0.15, shift=0.06)
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.05, 0.35)))
    leg.draw(cv, femur=False, knee=False)
    return develop(cv, r["detector"], "ankle", meta={"projection": pose.projection},
                   return_attenuation=return_attenuation)


def render_foot(seed, size: int = 128, *, return_attenuation: bool = False) -> Phantom:
    """Foot dorsoplantar, oblique or lateral, with some of the leg in view."""
    r = streams(seed, _NAMES)
    kind = str(r["pose"].choice(["dp", "obl", "lat"], p=[0.45, 0.3, 0.25]))
    pose = LegPose(projection="lat" if kind == "lat" else "ap", foot_view=kind,
                   foot_sx=float(r["pose"].uniform(0.85, 1.0) if kind == "dp" else r["pose"].uniform(0.5, 0.7)),
                   leg_foreshorten=float(r["pose"].uniform(0.25, 0.9)), toe_curl=float(r["pose"].uniform(0, 0.6)))
    leg = sample_leg(r["anatomy"], Frame((0.0, 0.0), 0.0), pose)
    fov = float(r["view"].uniform(24.0, 38.0)) * leg.g
    if kind == "lat":
        center = leg.foot_point(2.5, r["view"].uniform(2.0, 7.0))
        up = None
        base = float(r["view"].uniform(-0.3, 0.3))
    else:
        center = leg.foot_point(0.3, r["view"].uniform(3.0, 8.0))
        toes = np.subtract(leg.foot_point(0.0, 10.0), leg.foot_point(0.0, 0.0))
        up = toes if r["view"].random() < 0.5 else -toes
        base = 0.0
    view = sample_view(r["view"], size, center, fov, up=up, base_angle=base, angle_sd=0.25, shift=0.08)
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.0, 0.3)))
    leg.draw(cv, femur=False, knee=False)
    return develop(cv, r["detector"], "foot", meta={"projection": kind}, return_attenuation=return_attenuation)
