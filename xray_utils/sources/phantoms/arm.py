"""The upper limb: humerus, elbow, radius and ulna, carpus, metacarpals and phalanges.

One kinematic arm model (:class:`Arm`) is drawn for six X-ray types; what differs between
finger, hand, wrist, forearm, elbow and humerus films is what real films differ in: the part
centred, the field of view, the projection (PA, oblique, lateral) and the joint angles.  Local
coordinates are centimetres with ``+y`` running distally along the limb and ``+x`` to the
radial (thumb) side.
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

# metacarpal base (x, y) on the distal carpal row, direction (deg, + = radial), length (cm)
_MC = (
    (2.4, 3.0, 38.0, 4.4),
    (1.35, 3.7, 10.0, 6.6),
    (0.15, 3.8, 0.0, 6.3),
    (-0.95, 3.6, -10.0, 5.7),
    (-1.9, 3.3, -19.0, 5.2),
)
# phalanx lengths (proximal, middle, distal); the thumb has no middle phalanx
_PH = ((3.1, 0.0, 2.4), (4.2, 2.5, 1.8), (4.6, 2.9, 2.0), (4.3, 2.7, 1.9), (3.5, 2.0, 1.7))
# carpal bones: centre (x, y), semi-axes, angle (rad)
_CARPALS = (
    ((1.55, 1.05), (0.72, 1.2), 0.55),  # scaphoid
    ((0.15, 0.85), (0.85, 0.75), 0.0),  # lunate
    ((-1.25, 1.1), (0.7, 0.72), -0.2),  # triquetrum
    ((-1.5, 1.35), (0.48, 0.48), 0.0),  # pisiform (over the triquetrum)
    ((2.15, 2.6), (0.75, 0.8), 0.3),  # trapezium
    ((1.15, 2.8), (0.55, 0.7), 0.1),  # trapezoid
    ((0.05, 2.55), (0.72, 1.2), 0.0),  # capitate
    ((-1.2, 2.45), (0.78, 1.05), -0.15),  # hamate
)


@dataclass
class ArmPose:
    """Joint angles and projection of one arm film."""

    projection: str = "ap"  # "ap" (PA for the hand) or "lat"
    elbow_flex: float = 0.0  # radians, 0 = straight
    wrist_dev: float = 0.0  # radial (+) / ulnar deviation or flexion in the lateral view
    hand_sx: float = 1.0  # foreshortening of the hand: 1 PA, ~0.55 oblique, ~0.3 lateral
    fore_sx: float = 1.0  # foreshortening of the forearm (radius/ulna overlap)
    spread: float = 0.0  # extra finger spread (radians per ray)
    curls: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)
    thumb_abd: float = 0.0  # extra thumb abduction (radians)


@dataclass
class Arm:
    """An arm attached at ``root`` (the shoulder joint, limb pointing along the frame's +y).

    ``g`` scales the whole limb (patient size), ``density`` the bone mineral density,
    ``soft_scale`` the soft-tissue girth.
    """

    root: Frame
    pose: ArmPose
    g: float = 1.0
    density: float = 1.0
    soft_scale: float = 1.0
    ulnar_variance: float = 0.0
    frames: dict[str, Frame] = field(default_factory=dict)

    def __post_init__(self) -> None:
        g = self.g
        self.Lh, self.Lf = 30.0 * g, 24.5 * g
        arm = self.root
        flex = self.pose.elbow_flex
        fore = arm.child(0.0, self.Lh, flex, sx=self.pose.fore_sx)
        hand = Frame(
            fore.pt(0.25 * g, self.Lf + 0.35 * g), fore.angle + self.pose.wrist_dev, self.pose.hand_sx
        )
        self.frames = {"arm": arm, "fore": fore, "hand": hand}

    # ---------------------------------------------------------------- landmarks (body coords)
    @property
    def elbow(self) -> tuple[float, float]:
        return self.frames["arm"].pt(0.0, self.Lh)

    @property
    def wrist(self) -> tuple[float, float]:
        return self.frames["hand"].pt(0.0, 1.5 * self.g)

    def hand_point(self, x: float, y: float) -> tuple[float, float]:
        return self.frames["hand"].pt(x * self.g, y * self.g)

    def fore_point(self, x: float, y: float) -> tuple[float, float]:
        return self.frames["fore"].pt(x * self.g, y * self.g)

    def arm_point(self, x: float, y: float) -> tuple[float, float]:
        return self.frames["arm"].pt(x * self.g, y * self.g)

    def finger_axis(self, i: int) -> tuple[tuple[float, float], tuple[float, float]]:
        """Body coordinates of the base and the tip of ray ``i`` (0 = thumb)."""
        segs = self._ray_segments(i)
        hand = self.frames["hand"]
        return hand.pt(*segs[0][0]), hand.pt(*segs[-1][1])

    # ---------------------------------------------------------------- geometry of the hand
    def _ray_segments(self, i: int) -> list[tuple[tuple[float, float], tuple[float, float], float]]:
        """(start, end, length) of metacarpal and phalanges of ray ``i`` in hand-local cm."""
        g = self.g
        bx, by, deg, lmc = _MC[i]
        ang = np.radians(deg) + self.pose.spread * (2 - i) * (-1.0) + (self.pose.thumb_abd if i == 0 else 0.0)
        # direction: +y distal, rotated towards radial (+x) by ang
        p = np.array([bx * g, by * g])
        out = []
        lengths = [lmc] + [l for l in _PH[i] if l > 0]
        curl = self.pose.curls[i]
        bend_sign = -1.0 if i > 0 else 1.0
        for j, length in enumerate(lengths):
            flex = curl * (0.6 + 0.4 * j) if j > 0 else 0.15 * curl
            proj = length * g * max(np.cos(flex), 0.25)
            ang += bend_sign * flex * (1.0 - self.pose.hand_sx) * 0.8
            d = np.array([np.sin(ang), np.cos(ang)])
            q = p + proj * d
            out.append((tuple(p), tuple(q), proj))
            p = q + 0.16 * g * d
        return out

    # ---------------------------------------------------------------- drawing
    def draw(self, cv: Canvas, *, upper: bool = True, lower: bool = True, hand: bool = True) -> None:
        """Soft tissue first, then bones (order does not matter physically, only for speed)."""
        if upper or lower:
            self._draw_limb_soft(cv, upper)
        if hand:
            self._draw_hand_soft(cv)
        if upper:
            self._draw_humerus(cv)
        if lower:
            self._draw_forearm_bones(cv)
        if hand:
            self._draw_hand_bones(cv)

    def _draw_limb_soft(self, cv: Canvas, upper: bool) -> None:
        """Upper arm and forearm as one soft-tissue chain (no double counting at the elbow)."""
        g, s = self.g, self.soft_scale
        arm, fore = self.frames["arm"], self.frames["fore"]
        pts = [] if not upper else [arm.pt(0.6 * g, -1.5 * g), arm.pt(0.3 * g, 8 * g), arm.pt(0.0, 20 * g)]
        rad = [] if not upper else [5.2, 4.6, 4.2]
        pts += [
            self.elbow,
            fore.pt(0.1 * g, 6 * g),
            fore.pt(0.2 * g, 15 * g),
            fore.pt(0.25 * g, self.Lf + 0.8 * g),
        ]
        rad += [4.0, 3.9, 3.3, 2.75]
        limb_soft_tissue(cv, np.array(pts), np.array(rad) * g * s, depth_ratio=0.8)

    def _draw_hand_soft(self, cv: Canvas) -> None:
        g, s = self.g, self.soft_scale
        hand = self.frames["hand"]
        # palm (one flat slab per metacarpal, following the fan of the rays), thenar eminence,
        # wrist and fingers, all merged with the forearm by maximum in the limb's union layer
        for i in range(1, 5):
            (b0, h0, _) = self._ray_segments(i)[0]
            pts = hand.pts([(b0[0] * 0.8, b0[1] - 1.6 * g), b0, h0])
            limb_soft_tissue(cv, pts, np.array([1.6, 1.35, 1.25]) * g * s, depth_ratio=0.72, fat=0.25)
        limb_soft_tissue(
            cv,
            hand.pts([(1.2 * g, 1.6 * g), (2.4 * g, 4.2 * g)]),
            np.array([1.5, 1.3]) * g * s,
            depth_ratio=0.8,
            fat=0.25,
        )
        limb_soft_tissue(
            cv,
            hand.pts([(0.2 * g, -2.0 * g), (0.2 * g, 2.3 * g)]),
            np.array([2.7, 2.8]) * g * s,
            depth_ratio=0.62,
            fat=0.2,
        )
        for i in range(5):
            segs = self._ray_segments(i)
            b0, h0, _ = segs[0]
            pts = [tuple(0.5 * (np.array(b0) + np.array(h0)))] + [p for p, _, _ in segs[1:]] + [segs[-1][1]]
            pts = hand.pts(pts)
            tip = pts[-1] + 0.35 * g * (pts[-1] - pts[-2]) / (np.linalg.norm(pts[-1] - pts[-2]) + 1e-9)
            pts = np.vstack([pts, tip])
            r0 = (1.05 if i == 0 else 0.95) * g * s
            rad = np.linspace(r0, 0.7 * g * s, len(pts))
            rad[0] = 1.2 * g * s
            limb_soft_tissue(cv, pts, rad, depth_ratio=0.9, fat=0.3)

    def _draw_humerus(self, cv: Canvas) -> None:
        g, d = self.g, self.density
        arm = self.frames["arm"]
        Lh = self.Lh
        P = lambda x, y: arm.pt(x * g, y * g)  # noqa: E731
        parts = [
            E(P(0.5, 0.2), (2.35 * g, 2.45 * g), 2.3 * g),  # head
            E(P(2.3, 1.5), (1.2 * g, 1.7 * g), 1.3 * g),  # greater tubercle
            T(
                [
                    P(1.2, 1.0),
                    P(0.8, 4.5),
                    P(0.2, 9.0),
                    P(0.0, 18.0),
                    P(0.0, Lh / g - 6.0),
                    P(0.1, Lh / g - 3.3),
                ],
                np.array([1.9, 1.35, 1.12, 1.02, 1.1, 1.6]) * g,
            ),
        ]
        if self.pose.projection == "lat" and self.pose.elbow_flex > 0.7:
            # distal humerus in profile: anteriorly angled condyles seen as one rounded mass
            parts += [
                T([P(0.0, Lh / g - 6.0), P(0.25, Lh / g - 2.6)], np.array([1.1, 1.5]) * g),
                E(P(0.85, Lh / g - 0.75), (1.3 * g, 1.3 * g), 1.3 * g),
            ]
        else:
            parts += [
                E(P(0.0, Lh / g - 1.7), (2.9 * g, 1.3 * g), 1.2 * g, power=2.6, angle=arm.angle),
                E(P(-2.95, Lh / g - 2.2), (0.8 * g, 0.9 * g), 0.8 * g),  # medial epicondyle
                E(P(2.75, Lh / g - 2.0), (0.6 * g, 0.8 * g), 0.7 * g),  # lateral epicondyle
                E(P(1.3, Lh / g - 0.6), (1.0 * g, 0.85 * g), 1.0 * g),  # capitulum
                E(P(-0.9, Lh / g - 0.55), (1.25 * g, 0.9 * g), 1.0 * g),
            ]  # trochlea
        bone_union(cv, parts, density=d, texture=0.3)
        # olecranon fossa: thin bone, a lucent window above the trochlea
        lat = self.pose.projection == "lat" and self.pose.elbow_flex > 0.7
        ellipse(
            cv,
            P(-0.2, Lh / g - 2.6),
            ((0.55 if lat else 0.95) * g, 1.0 * g),
            0.8 * g,
            -0.6 * cv.excess("trabecular") * d,
            angle=arm.angle,
            soft_edge=0.2,
        )

    def _draw_forearm_bones(self, cv: Canvas) -> None:
        g, d = self.g, self.density
        fore = self.frames["fore"]
        Lf = self.Lf / g
        lat = self.pose.projection == "lat"
        uv = self.ulnar_variance
        P = lambda x, y: fore.pt(x * g, y * g)  # noqa: E731
        # ulna: olecranon proximal (beyond the joint), tapering shaft, small distal head + styloid
        if lat:
            upts = [(-1.3, -0.6), (-0.6, 1.5), (-0.4, 6.0), (-0.5, 14.0), (-0.7, 21.0), (-0.9, 23.3 + uv)]
            olec = E(P(-1.5, -1.6), (1.0 * g, 1.3 * g), 1.0 * g, angle=fore.angle + 0.3)
        else:
            upts = [(-1.15, 0.4), (-1.05, 3.0), (-0.95, 10.0), (-1.1, 18.0), (-1.3, 22.5), (-1.4, 23.3 + uv)]
            olec = E(P(-1.1, -0.8), (1.15 * g, 1.4 * g), 1.0 * g)
        ulna = [
            olec,
            T(
                [P(x, y) for x, y in upts],
                np.array([1.3, 0.95, 0.72, 0.6, 0.6, 0.7]) * g,
                np.array([0.95, 0.85, 0.7, 0.6, 0.6, 0.65]) * g,
            ),
            E(P(upts[-1][0] - 0.05, 23.7 + uv), (0.8 * g, 0.65 * g), 0.7 * g),
            E(P(upts[-1][0] - 0.55, 24.2 + uv), (0.28 * g, 0.45 * g), 0.3 * g),
        ]
        bone_union(cv, ulna, density=d, texture=0.3)
        # radius: head + neck, tuberosity, lateral bowing, wide flat distal end with the styloid
        if lat:
            rpts = [(0.9, 1.1), (0.9, 2.0), (1.1, 6.0), (1.2, 13.0), (0.9, 19.0), (0.5, Lf - 2.4)]
        else:
            rpts = [(1.35, 1.1), (1.35, 2.0), (1.65, 5.5), (2.05, 12.0), (1.9, 18.5), (1.5, Lf - 2.4)]
        xr = rpts[-1][0]
        radius = [
            E(
                P(rpts[0][0], 0.55),
                ((1.15 if not lat else 1.0) * g, 0.55 * g),
                0.9 * g,
                power=3.0,
                angle=fore.angle,
            ),
            T(
                [P(x, y) for x, y in rpts],
                np.array([0.72, 0.7, 0.82, 0.76, 0.82, 1.2]) * g,
                np.array([0.72, 0.7, 0.8, 0.72, 0.75, 0.8]) * g,
            ),
            E(
                P(xr - (0.1 if lat else 0.4), Lf - 0.9),
                ((1.2 if lat else 1.65) * g, 0.9 * g),
                0.8 * g,
                power=2.4,
                angle=fore.angle,
            ),
        ]
        if not lat:
            radius.append(E(P(xr + 1.15, Lf - 0.55), (0.45 * g, 0.7 * g), 0.5 * g))  # radial styloid
        bone_union(cv, radius, density=d, texture=0.3)

    def _draw_hand_bones(self, cv: Canvas) -> None:
        g, d = self.g, self.density
        hand = self.frames["hand"]
        for (cx, cy), (ax, ay), ang in _CARPALS:
            bone_blob(
                cv,
                hand.pt(cx * g, cy * g),
                (ax * g * 0.92, ay * g * 0.92),
                angle=hand.angle + ang,
                density=d,
                depth=0.55 * g,
                texture=0.45,
            )
        bone_blob(cv, hand.pt(-1.15 * g, 2.05 * g), (0.28 * g, 0.32 * g), density=d)  # hook of hamate
        for i in range(5):
            segs = self._ray_segments(i)
            for j, (p, q, length) in enumerate(segs):
                p, q = np.array(p), np.array(q)
                if j == 0:  # metacarpal: base, shaft, head
                    rad = np.array([0.6, 0.46, 0.42, 0.52, 0.52]) * (1.12 if i == 0 else 1.0)
                elif j == len(segs) - 1:  # distal phalanx with its tuft
                    rad = np.array([0.42, 0.28, 0.24, 0.32, 0.32]) * (1.2 if i == 0 else 1.0)
                else:
                    rad = (
                        np.array([0.55, 0.41, 0.37, 0.46, 0.48])
                        * (1.15 if i == 0 else 1.0)
                        * (0.88 if j == 2 else 1.0)
                    )
                ts = np.array([0.0, 0.2, 0.6, 0.88, 1.0])
                pts = hand.pts([tuple(p + t * (q - p)) for t in ts])
                bone_tube(cv, pts, rad * g, density=d, shaft=[False, True, True, False, False], texture=0.3)
            if i == 0:  # thumb sesamoids
                q = np.array(segs[0][1])
                bone_blob(cv, hand.pt(*(q + np.array([0.35, -0.2]) * g)), (0.22 * g, 0.22 * g), density=d)


def sample_arm_pose(rng: np.random.Generator, projection: str | None = None) -> ArmPose:
    """Typical positioning: PA / oblique / lateral with natural joint angles."""
    if projection is None:
        projection = str(rng.choice(["ap", "obl", "lat"], p=[0.45, 0.3, 0.25]))
    hand_sx = {"ap": rng.uniform(0.85, 1.0), "obl": rng.uniform(0.45, 0.7), "lat": rng.uniform(0.22, 0.38)}[
        projection
    ]
    fore_sx = {"ap": rng.uniform(0.8, 1.0), "obl": rng.uniform(0.55, 0.85), "lat": rng.uniform(0.3, 0.5)}[
        projection
    ]
    curl_base = {"ap": 0.1, "obl": 0.5, "lat": 0.6}[projection]
    curls = tuple(float(np.clip(rng.normal(curl_base, 0.25), 0.0, 1.3)) for _ in range(5))
    return ArmPose(
        projection="lat" if projection == "lat" else "ap",
        elbow_flex=0.0,
        wrist_dev=float(rng.normal(0.0, 0.12)),
        hand_sx=float(hand_sx),
        fore_sx=float(fore_sx),
        spread=float(rng.uniform(-0.02, 0.1)),
        curls=curls,
        thumb_abd=float(rng.uniform(-0.15, 0.35)),
    )


def sample_arm(rng: np.random.Generator, root: Frame, pose: ArmPose) -> Arm:
    """A patient's arm: size, bone density, soft-tissue girth."""
    return Arm(
        root=root,
        pose=pose,
        g=float(rng.uniform(0.82, 1.1)),
        density=float(rng.uniform(0.8, 1.15)),
        soft_scale=float(rng.uniform(0.85, 1.2)),
        ulnar_variance=float(rng.normal(0.0, 0.2)),
    )


# ------------------------------------------------------------------------------------------
# films of the upper limb
# ------------------------------------------------------------------------------------------
_NAMES = ("anatomy", "pose", "view", "texture", "detector", "extras")


def _hand_up_arm(r: dict[str, np.random.Generator], projection: str | None = None, **pose_kw) -> Arm:
    """An arm whose hand points up on the film (how hand, finger and wrist films are hung)."""
    pose = sample_arm_pose(r["pose"], projection)
    for k, v in pose_kw.items():
        setattr(pose, k, v)
    return sample_arm(r["anatomy"], Frame((0.0, 0.0), np.pi), pose)


def _arm_extras(cv: Canvas, arm: Arm, rng: np.random.Generator) -> list[str]:
    """Cast over the distal forearm, a plate on the radius, a bracelet at the wrist (sometimes)."""
    g, s = arm.g, arm.soft_scale
    seg = ([arm.fore_point(0.1, 9.0), arm.fore_point(0.25, arm.Lf / g + 2.5)], np.array([3.8, 3.0]) * g * s)
    bone = (arm.fore_point(1.9, 9.0), arm.fore_point(1.8, 19.0))
    wrist = (arm.fore_point(0.2, arm.Lf / g - 1.8), 2.9 * g * s, arm.frames["fore"].angle)
    return limb_extras(cv, rng, seg, bone, wrist)


def render_hand(seed, size: int = 128, *, return_attenuation: bool = False) -> Phantom:
    """Hand PA / oblique / lateral: a small hand and distal forearm on a wide dark field."""
    r = streams(seed, _NAMES)
    arm = _hand_up_arm(r)
    fov = float(r["view"].uniform(26.0, 44.0))
    center = arm.hand_point(0.0, r["view"].uniform(1.5, 5.0))
    view = sample_view(
        r["view"], size, center, fov, base_angle=np.pi * (r["view"].random() < 0.4), angle_sd=0.25, shift=0.1
    )
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.0, 0.3)))
    arm.draw(cv, upper=False)
    extras = _arm_extras(cv, arm, r["extras"])
    return develop(
        cv,
        r["detector"],
        "hand",
        meta={"extras": extras, "projection": arm.pose.projection},
        return_attenuation=return_attenuation,
    )


def render_finger(seed, size: int = 128, *, return_attenuation: bool = False) -> Phantom:
    """One finger (sometimes the thumb) centred and coned down; neighbours partly in view."""
    r = streams(seed, _NAMES)
    arm = _hand_up_arm(r, str(r["pose"].choice(["ap", "obl", "lat"], p=[0.45, 0.25, 0.3])))
    ray = int(r["view"].choice(5, p=[0.15, 0.25, 0.22, 0.18, 0.2]))
    base, tip = arm.finger_axis(ray)
    base, tip = np.array(base), np.array(tip)
    t = r["view"].uniform(0.35, 0.75)
    center = base + t * (tip - base)
    fov = float(r["view"].uniform(8.5, 14.0)) * arm.g
    # film hung with the finger roughly vertical, tip up
    up = (tip - base) * (1 if r["view"].random() < 0.6 else -1)
    view = sample_view(r["view"], size, center, fov, up=up, angle_sd=0.2, shift=0.05)
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.0, 0.3)))
    arm.draw(cv, upper=False)
    extras = _arm_extras(cv, arm, r["extras"])
    return develop(
        cv,
        r["detector"],
        "finger",
        meta={"extras": extras, "projection": arm.pose.projection, "ray": ray},
        return_attenuation=return_attenuation,
    )


def render_wrist(seed, size: int = 128, *, return_attenuation: bool = False) -> Phantom:
    """Wrist PA / oblique / lateral: carpus centred, distal forearm and metacarpal bases in view."""
    r = streams(seed, _NAMES)
    arm = _hand_up_arm(r)
    center = arm.hand_point(0.3, r["view"].uniform(0.2, 2.0))
    # dedicated wrist films are coned down; trauma series often show half the forearm too
    fov = (
        float(r["view"].uniform(12.0, 18.0) if r["view"].random() < 0.7 else r["view"].uniform(20.0, 30.0))
        * arm.g
    )
    view = sample_view(
        r["view"], size, center, fov, base_angle=np.pi * (r["view"].random() < 0.4), angle_sd=0.2, shift=0.06
    )
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.0, 0.3)))
    arm.draw(cv, upper=False)
    extras = _arm_extras(cv, arm, r["extras"])
    return develop(
        cv,
        r["detector"],
        "wrist",
        meta={"extras": extras, "projection": arm.pose.projection},
        return_attenuation=return_attenuation,
    )


def render_forearm(seed, size: int = 128, *, return_attenuation: bool = False) -> Phantom:
    """Forearm AP / lateral: radius and ulna with both the elbow and the wrist at the ends.

    Lateral films are taken with the elbow flexed, so some show an L-shaped arm.
    """
    r = streams(seed, _NAMES)
    lateral = r["pose"].random() < 0.45
    arm = _hand_up_arm(r, "lat" if lateral else "ap")
    if lateral and r["pose"].random() < 0.6:
        arm.pose.elbow_flex = float(r["pose"].uniform(1.2, 1.7))
        arm.__post_init__()
    center = arm.fore_point(0.2, arm.Lf / arm.g * r["view"].uniform(0.4, 0.6))
    fov = float(r["view"].uniform(32.0, 42.0)) * arm.g
    axis = np.subtract(arm.wrist, arm.elbow)
    # hang the film with the forearm along the long axis (the hand may be at either end)
    view = sample_view(
        r["view"], size, center, fov, up=axis if r["view"].random() < 0.5 else -axis, angle_sd=0.3, shift=0.06
    )
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.0, 0.3)))
    arm.draw(cv)
    extras = _arm_extras(cv, arm, r["extras"])
    return develop(
        cv,
        r["detector"],
        "forearm",
        meta={"extras": extras, "projection": arm.pose.projection},
        return_attenuation=return_attenuation,
    )


def render_elbow(seed, size: int = 128, *, return_attenuation: bool = False) -> Phantom:
    """Elbow AP (extended) or lateral (flexed about 90 degrees)."""
    r = streams(seed, _NAMES)
    lateral = r["pose"].random() < 0.5
    pose = sample_arm_pose(r["pose"], "lat" if lateral else "ap")
    pose.elbow_flex = float(r["pose"].uniform(1.3, 1.8) if lateral else abs(r["pose"].normal(0.0, 0.12)))
    arm = sample_arm(r["anatomy"], Frame((0.0, 0.0), 0.0), pose)
    center = arm.elbow
    fov = (
        float(r["view"].uniform(15.0, 24.0) if r["view"].random() < 0.8 else r["view"].uniform(24.0, 32.0))
        * arm.g
    )
    view = sample_view(
        r["view"], size, center, fov, base_angle=float(r["view"].uniform(-0.5, 0.5)), angle_sd=0.2, shift=0.06
    )
    cv = Canvas(view, r["texture"], hardness=float(r["view"].uniform(0.0, 0.3)))
    arm.draw(cv, hand=False)
    extras = _arm_extras(cv, arm, r["extras"])
    return develop(
        cv,
        r["detector"],
        "elbow",
        meta={"extras": extras, "projection": pose.projection},
        return_attenuation=return_attenuation,
    )
