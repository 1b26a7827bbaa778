"""Radiograph physics shared by every phantom: geometry, attenuation, detector, display.

A phantom is built in three steps, the way a real film comes about:

1. **Anatomy -> attenuation.**  Body parts are projected primitives (ellipsoids, tubes along
   polylines) drawn in *body coordinates* (centimetres, ``x`` to the image's right, ``y`` down).
   Each primitive adds ``mu * chord`` to the attenuation map ``A`` of a :class:`Canvas`, where
   ``chord`` is the path length of a ray through the solid (``2 * depth * sqrt(1 - r**2)`` for an
   ellipsoid).  Bone is a dense cortical shell around a lighter trabecular interior with its own
   texture, so shafts show two bright cortical lines; compound bones (a distal femur, a
   pelvis) are one smooth shell (:func:`bone_union`); soft tissue of trunk and limbs merges by
   maximum (``union`` layers); separate overlapping parts simply add up, and air (lungs,
   bowel gas) *removes* soft tissue.  Coefficients depend on the beam (:data:`MU_SOFT_BEAM`
   for extremities, :data:`MU_HARD_BEAM` for the chest), so bone contrast is realistic.
2. **Detector.**  The transmitted intensity ``I = exp(-A)`` is blurred a little (scintillator),
   gets some scatter (a blurred copy of itself), quantum noise whose variance follows the photon
   count (so dense, bright regions are noisier), optional collimation and lead side markers.
3. **Display.**  ``-log(I)`` is post-processed like a digital radiography console does it
   (multi-scale contrast equalisation plus unsharp masking), windowed to the percentiles of the
   exposed field and passed through a gamma curve, so dense = bright.

Every random choice of the detector and the display comes from the same distributions for all
body types: brightness, noise level, borders and markers carry no information about the class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage as ndi

#: Linear attenuation coefficients (1/cm) for a soft beam (extremities, ~35 keV effective) and a
#: hard one (chest, ~60 keV).  A canvas interpolates between them with its ``hardness``: bone
#: stands out far more on a hand film than on a chest film, as in real radiography.  Bone is
#: embedded in soft tissue and displaces it, so bone primitives deposit the *excess*
#: ``mu - mu_soft``: cancellous bone (a sparse lattice in marrow) is only a little denser than
#: the muscle around it, which is why epiphyses look grey inside a bright cortical rim.
MU_SOFT_BEAM: dict[str, float] = {
    "soft": 0.32,
    "fat": 0.27,
    "cortex": 1.55,
    "trabecular": 0.52,
    "marrow": 0.33,
    "enamel": 2.6,
    "dentin": 1.5,
    "metal": 8.0,
}
MU_HARD_BEAM: dict[str, float] = {
    "soft": 0.205,
    "fat": 0.18,
    "cortex": 0.60,
    "trabecular": 0.29,
    "marrow": 0.215,
    "enamel": 1.0,
    "dentin": 0.6,
    "metal": 4.0,
}


def seed_sequence(seed: int | Sequence[int] | np.random.SeedSequence) -> np.random.SeedSequence:
    """A NumPy ``SeedSequence`` from an int, a tuple of ints (e.g. ``(seed, index)``) or itself."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, (int, np.integer)):
        return np.random.SeedSequence(int(seed))
    return np.random.SeedSequence([int(s) for s in seed])


def streams(
    seed: int | Sequence[int] | np.random.SeedSequence, names: Sequence[str]
) -> dict[str, np.random.Generator]:
    """Independent named generators derived from one seed.

    Each name gets its own child stream, so drawing more numbers in one part of the generator
    (say, for an extra finding) never shifts the numbers another part (pose, detector) sees.
    """
    ss = seed_sequence(seed)
    return {
        n: np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=ss.spawn_key + (i,)))
        for i, n in enumerate(names)
    }


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class View:
    """How body coordinates (cm) map onto the square detector image.

    ``center`` is the body point shown at the image centre, ``scale`` the pixels per cm,
    ``angle`` the in-plane rotation of the body (radians, counter-clockwise on screen),
    ``flip`` mirrors left-right, and ``aspect`` > 1 widens the image horizontally -- what the
    pipeline's square resize does to a tall, narrow film (spine) or a wide one (panoramic).
    """

    size: int
    center: tuple[float, float]
    scale: float
    angle: float = 0.0
    flip: bool = False
    aspect: float = 1.0

    @property
    def sx(self) -> float:
        return self.scale * float(np.sqrt(self.aspect))

    @property
    def sy(self) -> float:
        return self.scale / float(np.sqrt(self.aspect))

    @cached_property
    def affine(self) -> tuple[float, float, float, float, float, float]:
        """``px = a*x + b*y + c``, ``py = d*x + e*y + f`` as plain floats (fast scalar use)."""
        c, s = float(np.cos(self.angle)), float(np.sin(self.angle))
        fx = -1.0 if self.flip else 1.0
        h = (self.size - 1) / 2.0
        a, b = self.sx * c * fx, self.sx * s
        d, e = -self.sy * s * fx, self.sy * c
        cx, cy = self.center
        return a, b, h - a * cx - b * cy, d, e, h - d * cx - e * cy

    def to_pixel(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Body (cm) -> pixel coordinates (x = column, y = row; pixel centres at integers)."""
        x = np.asarray(x, dtype=np.float64) - self.center[0]
        y = np.asarray(y, dtype=np.float64) - self.center[1]
        if self.flip:
            x = -x
        c, s = np.cos(self.angle), np.sin(self.angle)
        xr, yr = c * x + s * y, -s * x + c * y
        h = (self.size - 1) / 2.0
        return h + self.sx * xr, h + self.sy * yr

    def to_body(self, px: np.ndarray | float, py: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Pixel -> body coordinates (inverse of :meth:`to_pixel`)."""
        h = (self.size - 1) / 2.0
        xr = (np.asarray(px, dtype=np.float64) - h) / self.sx
        yr = (np.asarray(py, dtype=np.float64) - h) / self.sy
        c, s = np.cos(self.angle), np.sin(self.angle)
        x, y = c * xr - s * yr, s * xr + c * yr
        if self.flip:
            x = -x
        return x + self.center[0], y + self.center[1]

    def box_to_pixels(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        """Axis-aligned pixel box (x, y, w, h) enclosing a body-coordinate box, clipped to the image."""
        px, py = self.to_pixel(np.array([x0, x1, x0, x1]), np.array([y0, y0, y1, y1]))
        lo_x, hi_x = np.clip([px.min() - 0.5, px.max() + 0.5], 0, self.size)
        lo_y, hi_y = np.clip([py.min() - 0.5, py.max() + 0.5], 0, self.size)
        return float(lo_x), float(lo_y), float(hi_x - lo_x), float(hi_y - lo_y)


@dataclass
class Frame:
    """A 2-D rigid frame for building anatomy: local (cm) -> body (cm).  Used for limb chains."""

    origin: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0  # radians; local +y is the frame's "down the limb" axis
    sx: float = 1.0  # foreshortening of local x (oblique and lateral projections)

    def pt(self, x: float, y: float) -> tuple[float, float]:
        c, s = np.cos(self.angle), np.sin(self.angle)
        x = x * self.sx
        return (float(self.origin[0] + c * x - s * y), float(self.origin[1] + s * x + c * y))

    def pts(self, xy: Iterable[Sequence[float]]) -> np.ndarray:
        return np.array([self.pt(x, y) for x, y in xy], dtype=np.float64)

    def child(self, x: float, y: float, dangle: float = 0.0, sx: float | None = None) -> "Frame":
        """The frame at local point ``(x, y)``, rotated by ``dangle`` more."""
        return Frame(self.pt(x, y), self.angle + dangle, self.sx if sx is None else sx)


class Canvas:
    """The attenuation map of one image plus the pixel grid in body coordinates.

    Primitives only evaluate the pixels inside their own bounding box (:meth:`window`), which
    keeps a hand of 30 bones as cheap as a chest.  ``layers`` holds named extra maps (e.g. lung
    vessels) that a renderer combines or masks before :func:`expose`.
    """

    def __init__(self, view: View, texture_rng: np.random.Generator, hardness: float = 0.5):
        self.view = view
        self.hardness = float(hardness)
        self._mu = {
            k: (1 - self.hardness) * MU_SOFT_BEAM[k] + self.hardness * MU_HARD_BEAM[k] for k in MU_SOFT_BEAM
        }
        n = view.size
        py, px = np.mgrid[0:n, 0:n]
        u, v = view.to_body(px, py)
        self.u = u.astype(np.float32)
        self.v = v.astype(np.float32)
        self.atten = np.zeros((n, n), np.float32)
        self.layers: dict[str, np.ndarray] = {}
        # each texture gets its own seed, so the order in which renderers ask for them is irrelevant
        self._texture_key = [int(x) for x in texture_rng.integers(0, 2**32, size=2)]
        self.soft_inhomogeneity = float(texture_rng.uniform(0.005, 0.02))
        self._textures: dict[str, np.ndarray] = {}

    @property
    def size(self) -> int:
        return self.view.size

    def mu(self, material: str) -> float:
        """Attenuation coefficient (1/cm) of ``material`` at this film's beam quality."""
        return self._mu[material]

    def excess(self, material: str) -> float:
        """``mu(material) - mu("soft")``: what a bone adds where it displaces soft tissue."""
        return self._mu[material] - self._mu["soft"]

    def total(self) -> np.ndarray:
        """The attenuation map: ``atten`` plus every ``union*`` layer (parts merged by maximum).

        Soft tissue is not homogeneous (fat lobules, muscle bundles, vessels): the union layers
        are modulated by a few per cent of smooth noise, which keeps large areas from looking
        computer-drawn."""
        out = self.atten.copy()
        soft_parts = [arr for name, arr in self.layers.items() if name.startswith("union")]
        if soft_parts:
            out += sum(soft_parts) * (1.0 + self.soft_inhomogeneity * self.texture("soft"))
        return out

    def _put(self, win: tuple[slice, slice], values: np.ndarray, layer: str | None) -> None:
        if layer is None:
            self.atten[win] += values.astype(np.float32)
        elif layer.startswith("union"):
            tgt = self.layer(layer)
            np.maximum(tgt[win], values.astype(np.float32), out=tgt[win])
        else:
            self.layer(layer)[win] += values.astype(np.float32)

    def layer(self, name: str) -> np.ndarray:
        if name not in self.layers:
            self.layers[name] = np.zeros_like(self.atten)
        return self.layers[name]

    def window(self, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice] | None:
        """Pixel slices covering the body box ``[x0, x1] x [y0, y1]``; ``None`` when off-image."""
        a, b, c, d, e, f = self.view.affine
        xs = (a * x0 + b * y0 + c, a * x1 + b * y0 + c, a * x0 + b * y1 + c, a * x1 + b * y1 + c)
        ys = (d * x0 + e * y0 + f, d * x1 + e * y0 + f, d * x0 + e * y1 + f, d * x1 + e * y1 + f)
        c0, c1 = math.floor(min(xs)) - 1, math.ceil(max(xs)) + 2
        r0, r1 = math.floor(min(ys)) - 1, math.ceil(max(ys)) + 2
        n = self.view.size
        c0, c1, r0, r1 = max(c0, 0), min(c1, n), max(r0, 0), min(r1, n)
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def texture(self, name: str = "trabecular") -> np.ndarray:
        """A unit-variance noise field, generated once per image.

        ``trabecular``: an anisotropic lattice at about 1 mm in body scale (never finer than a
        pixel); ``soft``: smooth blotches a few cm wide for soft-tissue inhomogeneity; ``lung``:
        mottling of a few mm for the lung parenchyma; ``fine``: pixel-scale band-pass noise.
        """
        if name not in self._textures:
            n = self.size
            kinds = ("trabecular", "soft", "fine", "lung")
            if name not in kinds:
                raise ValueError(f"unknown texture {name!r}; expected one of {kinds}")
            rng = np.random.default_rng([*self._texture_key, kinds.index(name)])
            white = rng.standard_normal((n, n)).astype(np.float32)
            if name == "trabecular":
                # a fine lattice: band-passed noise stretched along and across the bone axis
                # (longitudinal and transverse trabeculae), about 1 mm in body scale
                s = max(0.55, 0.06 * self.view.scale)
                vert = ndi.gaussian_filter(white, (2.2 * s, 0.7 * s))
                horiz = ndi.gaussian_filter(
                    rng.standard_normal((n, n)).astype(np.float32), (0.7 * s, 2.0 * s)
                )
                band = vert / (vert.std() + 1e-6) + 0.7 * horiz / (horiz.std() + 1e-6)
                band = band - ndi.gaussian_filter(band, 3.0 * s)
                tex = np.clip(band / (band.std() + 1e-6), -2.5, 2.5)
            elif name == "soft":
                s = max(1.5, 1.6 * self.view.scale)
                big = lowpass(white, s)
                tex = big / (big.std() + 1e-6) + 0.5 * ndi.gaussian_filter(
                    white, min(3.0, max(1.0, 0.4 * self.view.scale))
                )
            elif name == "lung":  # secondary lobules and small vessels, a few mm
                s = max(0.6, 0.25 * self.view.scale)
                tex = ndi.gaussian_filter(white, s) - 0.6 * ndi.gaussian_filter(white, 3 * s)
            else:
                tex = ndi.gaussian_filter(white, 0.7) - ndi.gaussian_filter(white, 1.6)
            tex = tex - tex.mean()
            self._textures[name] = (tex / (tex.std() + 1e-6)).astype(np.float32)
        return self._textures[name]


def sample_view(
    rng: np.random.Generator,
    size: int,
    center: Sequence[float],
    fov: float,
    *,
    up: Sequence[float] | None = None,
    base_angle: float = 0.0,
    angle_sd: float = 0.06,
    flip_p: float = 0.5,
    shift: float = 0.06,
    aspect: tuple[float, float] = (0.85, 1.18),
) -> View:
    """A randomly posed view: ``fov`` cm across, centred near ``center``.

    The film is rotated by ``base_angle`` (radians) plus a normal jitter of ``angle_sd``; with
    ``up`` (a body-coordinate direction) the base angle is chosen so that direction points up
    on the film (e.g. a finger's tip).  ``shift`` moves the centre by up to that fraction of
    the field; ``aspect`` is the range of the horizontal stretch (see :class:`View`).
    """
    flip = bool(rng.random() < flip_p)
    if up is not None:
        dx, dy = float(up[0]), float(up[1])
        if flip:
            dx = -dx
        base_angle = float(np.arctan2(-dx, dy) + np.pi) + base_angle
    cx = center[0] + rng.uniform(-shift, shift) * fov
    cy = center[1] + rng.uniform(-shift, shift) * fov
    return View(
        size=size,
        center=(float(cx), float(cy)),
        scale=size / fov,
        angle=float(base_angle + rng.normal(0.0, angle_sd)),
        flip=flip,
        aspect=float(np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1])))),
    )


# --------------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------------
def _chord(r2: np.ndarray) -> np.ndarray:
    """Normalised chord ``sqrt(1 - r^2)`` (0 outside)."""
    return np.sqrt(np.maximum(1.0 - r2, 0.0))


def ellipse_chords(
    u: np.ndarray,
    v: np.ndarray,
    center: Sequence[float],
    axes: Sequence[float],
    angle: float = 0.0,
    power: float = 2.0,
) -> np.ndarray:
    """``sqrt(1 - rho^2)`` of a (super)ellipse; ``power`` > 2 gives rounded rectangles."""
    c, s = np.cos(angle), np.sin(angle)
    x, y = u - center[0], v - center[1]
    xr, yr = (c * x + s * y) / axes[0], (-s * x + c * y) / axes[1]
    if power == 2.0:
        r2 = xr * xr + yr * yr
    else:
        r2 = (np.abs(xr) ** power + np.abs(yr) ** power) ** (2.0 / power)
    return _chord(r2)


def _ellipse_bbox(
    center: Sequence[float], axes: Sequence[float], angle: float
) -> tuple[float, float, float, float]:
    c, s = abs(np.cos(angle)), abs(np.sin(angle))
    # generous for superellipses: use the circumscribed rectangle's extent
    hx = axes[0] * c + axes[1] * s
    hy = axes[0] * s + axes[1] * c
    return center[0] - hx, center[1] - hy, center[0] + hx, center[1] + hy


def ellipse(
    cv: Canvas,
    center: Sequence[float],
    axes: Sequence[float],
    depth: float,
    mu: float,
    *,
    angle: float = 0.0,
    power: float = 2.0,
    cortex: float = 0.0,
    mu_in: float | None = None,
    texture: float = 0.0,
    layer: str | None = None,
    soft_edge: float = 0.0,
) -> None:
    """Add a projected ellipsoid (half-depth ``depth`` cm) of material ``mu``.

    With ``cortex`` (fraction of the radii, 0-1) it is a bone: a shell of ``mu`` around an
    interior of ``mu_in`` modulated by ``texture`` x the trabecular texture.  ``soft_edge``
    (fraction) flattens the profile near the rim for blurry opacities (nodules, haze).
    """
    win = cv.window(*_ellipse_bbox(center, axes, angle))
    if win is None:
        return
    u, v = cv.u[win], cv.v[win]
    outer = ellipse_chords(u, v, center, axes, angle, power)
    if soft_edge > 0:
        outer = outer ** (1.0 + 4.0 * soft_edge)
    out = (2.0 * depth * mu) * outer
    if cortex > 0:
        k = 1.0 - cortex
        inner = ellipse_chords(u, v, center, (axes[0] * k, axes[1] * k), angle, power) * (2.0 * depth * k)
        m_in = cv.excess("trabecular") if mu_in is None else mu_in
        tex = 1.0 + texture * cv.texture()[win] if texture else 1.0
        out = out - mu * inner + m_in * inner * tex
    cv._put(win, out, layer)


#: Up to this many (segment x pixel) evaluations a tube is computed in one vectorised pass.
TUBE_VECTOR_LIMIT = 60000


def _tube_all_segments(
    cv: Canvas,
    win: tuple[slice, slice],
    pts: list,
    r: list,
    ctx: list,
    tx: list,
    m_in: list,
    dp: list | None,
    mu: float,
    depth_ratio: float,
    profile: float,
    end_cap: float,
    has_in: bool,
) -> np.ndarray:
    """:func:`tube` for a small window: every segment evaluated at once on a (K, H, W) stack,
    the segment with the largest chord chosen per pixel.  Same result as the per-segment loop."""
    P = np.asarray(pts, dtype=np.float32)
    a, b = P[:-1], P[1:]
    k = len(a)
    R = np.asarray(r, dtype=np.float32)
    u = cv.u[win][None]
    v = cv.v[win][None]
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    dx, dy = (b[:, 0] - a[:, 0])[:, None, None], (b[:, 1] - a[:, 1])[:, None, None]
    L2 = np.maximum(dx * dx + dy * dy, 1e-12)
    t_raw = ((u - ax) * dx + (v - ay) * dy) / L2
    t = np.clip(t_raw, 0.0, 1.0)
    ex, ey = u - (ax + t * dx), v - (ay + t * dy)
    dist2 = ex * ex + ey * ey
    if end_cap != 1.0:
        k2 = 1.0 / max(end_cap, 1e-3) ** 2 - 1.0
        over = np.zeros_like(t_raw)
        over[0] = np.minimum(t_raw[0], 0.0)
        over[-1] = np.where(over[-1] != 0, over[-1], np.maximum(t_raw[-1] - 1.0, 0.0))
        dist2 = dist2 + k2 * L2 * over * over
    lerp = (
        lambda arr: (
            np.asarray(arr, np.float32)[:-1, None, None]  # noqa: E731
            + t * (np.asarray(arr, np.float32)[1:, None, None] - np.asarray(arr, np.float32)[:-1, None, None])
        )
    )
    rr = lerp(R)
    q = np.maximum(1.0 - dist2 / (rr * rr), 0.0)
    outer_n = np.sqrt(q) if profile == 0.5 else q**profile
    half = rr * depth_ratio
    if dp is not None:
        half = np.minimum(lerp(dp), half)
    outer = outer_n * (2.0 * half)
    out = mu * outer
    if has_in:
        kk = 1.0 - lerp(ctx)
        inner = np.sqrt(np.maximum(1.0 - dist2 / ((rr * kk) ** 2 + 1e-12), 0.0)) * (2.0 * half) * kk
        mi = lerp(m_in)
        if max(tx) > 0:
            mi = mi * (1.0 + lerp(tx) * cv.texture()[win][None])
        out = out + (mi - mu) * inner
    if k == 1:
        return out[0]
    idx = outer.argmax(0)
    return np.take_along_axis(out, idx[None], 0)[0]


def tube(
    cv: Canvas,
    points: Sequence[Sequence[float]],
    radii: Sequence[float] | float,
    mu: float,
    *,
    depth_ratio: float = 1.0,
    cortex: Sequence[float] | float = 0.0,
    mu_in: Sequence[float] | float | None = None,
    texture: Sequence[float] | float = 0.0,
    layer: str | None = None,
    profile: float = 0.5,
    end_cap: float = 1.0,
    depths: Sequence[float] | None = None,
) -> None:
    """Add a tube along a polyline (a bone shaft, a rib, a finger, a vessel).

    ``radii``, ``cortex`` (fraction of the radius), ``mu_in`` and ``texture`` may vary per
    vertex and are interpolated along each segment; segments are joined by taking the maximum
    chord, so a bent tube never counts its joints twice.  ``depth_ratio`` flattens the cross
    section (a rib is flat, a finger is round); ``profile`` is the exponent of the chord
    (0.5 = a solid cylinder, larger = softer edges, e.g. for vessels).  ``end_cap`` is the
    length of the two free ends' rounded caps as a fraction of the radius (1 = hemispheres;
    small values give the flat articular ends of bones, so neighbours do not overlap).
    ``depths`` (per vertex, cm) caps the half-thickness: wide but flat bone ends.
    """
    pts = [(float(x), float(y)) for x, y in points]
    k = len(pts) - 1

    def per_vertex(x) -> list[float]:
        if np.ndim(x) == 0:
            return [float(x)] * (k + 1)
        return [float(y) for y in x]

    r, ctx, tx = per_vertex(radii), per_vertex(cortex), per_vertex(texture)
    has_in = max(ctx) > 0
    m_in = per_vertex(cv.excess("trabecular") if mu_in is None else mu_in)
    dp = None if depths is None else per_vertex(depths)
    rmax = max(r)
    xs_all, ys_all = [p[0] for p in pts], [p[1] for p in pts]
    win = cv.window(min(xs_all) - rmax, min(ys_all) - rmax, max(xs_all) + rmax, max(ys_all) + rmax)
    if win is None:
        return
    H, W = win[0].stop - win[0].start, win[1].stop - win[1].start
    if k > 1 and H * W * k <= TUBE_VECTOR_LIMIT:  # small windows: all segments at once (fewer numpy calls)
        out = _tube_all_segments(
            cv, win, pts, r, ctx, tx, m_in, dp, mu, depth_ratio, profile, end_cap, has_in
        )
        cv._put(win, out, layer)
        return
    single = k == 1
    best = None if single else np.full((H, W), -1.0, np.float32)  # outer chord of the chosen segment
    acc = np.zeros((H, W), np.float32)
    k2 = 1.0 / max(end_cap, 1e-3) ** 2 - 1.0
    tex_full = cv.texture() if (has_in and max(tx) > 0) else None
    for i in range(k):
        (ax, ay), (bx, by) = pts[i], pts[i + 1]
        r0, r1 = r[i], r[i + 1]
        rm = max(r0, r1)
        if single:
            ys, xs = win
        else:
            sub = cv.window(min(ax, bx) - rm, min(ay, by) - rm, max(ax, bx) + rm, max(ay, by) + rm)
            if sub is None:
                continue
            ys = slice(max(sub[0].start, win[0].start), min(sub[0].stop, win[0].stop))
            xs = slice(max(sub[1].start, win[1].start), min(sub[1].stop, win[1].stop))
            if ys.start >= ys.stop or xs.start >= xs.stop:
                continue
        u, v = cv.u[ys, xs], cv.v[ys, xs]
        dx, dy = bx - ax, by - ay
        L2 = max(dx * dx + dy * dy, 1e-12)
        t_raw = (u - ax) * (dx / L2) + (v - ay) * (dy / L2)
        t = np.minimum(np.maximum(t_raw, 0.0), 1.0)
        ex, ey = u - (ax + t * dx), v - (ay + t * dy)
        dist2 = ex * ex + ey * ey
        if end_cap != 1.0 and (i == 0 or i == k - 1):
            # overshoot beyond a free end only (joints between segments keep round caps)
            if single:
                over = t_raw - t
            elif i == 0:
                over = np.minimum(t_raw, 0.0)
            else:
                over = np.maximum(t_raw - 1.0, 0.0)
            dist2 = dist2 + (k2 * L2) * over * over
        rr = r0 + t * (r1 - r0) if r1 != r0 else r0
        q = np.maximum(1.0 - dist2 / (rr * rr), 0.0)
        outer_n = np.sqrt(q) if profile == 0.5 else q**profile
        half = rr * depth_ratio
        if dp is not None:
            half = np.minimum(dp[i] + t * (dp[i + 1] - dp[i]), half)
        outer = outer_n * (2.0 * half)
        out = mu * outer
        if has_in:
            kk = 1.0 - (ctx[i] + t * (ctx[i + 1] - ctx[i])) if ctx[i + 1] != ctx[i] else 1.0 - ctx[i]
            ri2 = (rr * kk) ** 2 + 1e-12
            inner = np.sqrt(np.maximum(1.0 - dist2 / ri2, 0.0)) * (2.0 * half) * kk
            mi = m_in[i] + t * (m_in[i + 1] - m_in[i]) if m_in[i + 1] != m_in[i] else m_in[i]
            if tex_full is not None:
                amp = tx[i] + t * (tx[i + 1] - tx[i]) if tx[i + 1] != tx[i] else tx[i]
                mi = mi * (1.0 + amp * tex_full[ys, xs])
            out = out + (mi - mu) * inner
        if single:
            acc = out
            break
        ly = slice(ys.start - win[0].start, ys.stop - win[0].start)
        lx = slice(xs.start - win[1].start, xs.stop - win[1].start)
        sel = outer > best[ly, lx]
        best[ly, lx] = np.where(sel, outer, best[ly, lx])
        acc[ly, lx] = np.where(sel, out, acc[ly, lx])
    cv._put(win, acc, layer)


def ellipses(
    cv: Canvas,
    centers: np.ndarray,
    axes: np.ndarray,
    depths: np.ndarray,
    mu: float,
    *,
    angles: np.ndarray | None = None,
    power: float = 2.0,
    cortex: float = 0.0,
    mu_in: float = 0.0,
    texture: float = 0.0,
    layer: str | None = None,
) -> None:
    """Many (non-overlapping or additive) ellipsoids of one material in a single vectorised pass
    -- vertebral bodies, pedicles, foramina.  Same profile as :func:`ellipse`."""
    centers = np.asarray(centers, dtype=np.float32)
    axes = np.asarray(axes, dtype=np.float32)
    depths = np.asarray(depths, dtype=np.float32)
    n_e = len(centers)
    angles = np.zeros(n_e, np.float32) if angles is None else np.asarray(angles, dtype=np.float32)
    ext = axes.max(1)
    win = cv.window(
        float((centers[:, 0] - ext).min()),
        float((centers[:, 1] - ext).min()),
        float((centers[:, 0] + ext).max()),
        float((centers[:, 1] + ext).max()),
    )
    if win is None:
        return
    tex = 1.0 + texture * cv.texture()[win] if (texture and cortex > 0) else 1.0
    H, W = win[0].stop - win[0].start, win[1].stop - win[1].start
    if n_e * H * W > 80000:  # large: each ellipse on its own sub-window
        out = np.zeros((H, W), np.float32)
        for i in range(n_e):
            sub = cv.window(
                float(centers[i, 0] - ext[i]),
                float(centers[i, 1] - ext[i]),
                float(centers[i, 0] + ext[i]),
                float(centers[i, 1] + ext[i]),
            )
            if sub is None:
                continue
            ys = slice(
                max(sub[0].start, win[0].start) - win[0].start, min(sub[0].stop, win[0].stop) - win[0].start
            )
            xs = slice(
                max(sub[1].start, win[1].start) - win[1].start, min(sub[1].stop, win[1].stop) - win[1].start
            )
            if ys.start >= ys.stop or xs.start >= xs.stop:
                continue
            uu, vv = cv.u[win][ys, xs], cv.v[win][ys, xs]
            val = (2.0 * depths[i] * mu) * ellipse_chords(
                uu, vv, centers[i], axes[i], float(angles[i]), power
            )
            if cortex > 0:
                k = 1.0 - cortex
                inner = ellipse_chords(uu, vv, centers[i], axes[i] * k, float(angles[i]), power) * (
                    2.0 * depths[i] * k
                )
                t = tex[ys, xs] if isinstance(tex, np.ndarray) else tex
                val = val + (mu_in * t - mu) * inner
            out[ys, xs] += val
        cv._put(win, out, layer)
        return
    u, v = cv.u[win][None], cv.v[win][None]
    # small: all ellipses at once on the shared window
    c, s_ = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    x, y = u - centers[:, 0, None, None], v - centers[:, 1, None, None]
    xr, yr = c * x + s_ * y, -s_ * x + c * y
    ax, ay = axes[:, 0, None, None], axes[:, 1, None, None]

    def chord(k: float) -> np.ndarray:
        if power == 2.0:
            r2 = (xr / (ax * k)) ** 2 + (yr / (ay * k)) ** 2
        else:
            r2 = (np.abs(xr / (ax * k)) ** power + np.abs(yr / (ay * k)) ** power) ** (2.0 / power)
        return np.sqrt(np.maximum(1.0 - r2, 0.0))

    dep = depths[:, None, None]
    val = (2.0 * mu) * dep * chord(1.0)
    if cortex > 0:
        k = 1.0 - cortex
        val = val + (mu_in * tex - mu) * (chord(k) * (2.0 * k) * dep)
    cv._put(win, val.sum(0).astype(np.float32), layer)


def bone_tube(
    cv: Canvas,
    points: Sequence[Sequence[float]],
    radii: Sequence[float] | np.ndarray,
    *,
    shaft: Sequence[bool] | None = None,
    density: float = 1.0,
    depth_ratio: float = 1.0,
    texture: float = 0.35,
    end_cap: float = 0.45,
    depths: Sequence[float] | None = None,
) -> None:
    """A tubular bone: thick cortex and marrow along the shaft, thin cortex and trabecular ends.

    ``shaft[i]`` marks the vertices in the diaphysis; the others are metaphysis/epiphysis.
    ``density`` scales all coefficients (bone mineral density of the patient).  Deposits the
    excess over soft tissue (see :data:`MU_SOFT_BEAM`).
    """
    n = len(points)
    if shaft is None:
        shaft = [0 < i < n - 1 for i in range(n)]
    sh = np.asarray(shaft, dtype=bool)
    cortex = np.where(sh, 0.32, 0.10)
    mu_in = np.where(sh, cv.excess("marrow") + 0.01, cv.excess("trabecular")) * density
    tex = np.where(sh, 0.25 * texture, texture)
    tube(
        cv,
        points,
        radii,
        cv.excess("cortex") * density,
        depth_ratio=depth_ratio,
        cortex=cortex,
        mu_in=mu_in,
        texture=tex,
        end_cap=end_cap,
        depths=depths,
    )


def bone_blob(
    cv: Canvas,
    center: Sequence[float],
    axes: Sequence[float],
    *,
    angle: float = 0.0,
    density: float = 1.0,
    depth: float | None = None,
    power: float = 2.0,
    cortex: float = 0.12,
    texture: float = 0.4,
) -> None:
    """A cancellous bone (carpal, tarsal, epiphysis, vertebral body): thin cortex, textured inside."""
    depth = min(axes) if depth is None else depth
    ellipse(
        cv,
        center,
        axes,
        depth,
        cv.excess("cortex") * density,
        angle=angle,
        power=power,
        cortex=cortex,
        mu_in=cv.excess("trabecular") * density,
        texture=texture,
    )


def slab(
    cv: Canvas,
    ys: Sequence[float],
    half_widths: Sequence[float],
    half_depths: Sequence[float],
    mu: float,
    *,
    center_x: Sequence[float] | float = 0.0,
    layer: str | None = None,
) -> None:
    """A vertical body of elliptical cross-section whose width and depth vary with ``y``
    (trunk, neck): ``2 d(y) sqrt(1 - (x - c(y))^2 / w(y)^2)``.  Cheap: one interpolation."""
    v, u = cv.v, cv.u
    ys = np.asarray(ys, dtype=np.float64)
    w = np.interp(v, ys, np.asarray(half_widths, dtype=np.float64))
    d = np.interp(v, ys, np.asarray(half_depths, dtype=np.float64))
    cx = np.interp(v, ys, np.broadcast_to(np.asarray(center_x, dtype=np.float64), ys.shape))
    inside = (v >= ys[0]) & (v <= ys[-1])
    out = 2.0 * d * np.sqrt(np.clip(1.0 - ((u - cx) / w) ** 2, 0.0, None)) * inside * mu
    cv._put((slice(0, cv.size), slice(0, cv.size)), out.astype(np.float32), layer)


def line_bundle(
    cv: Canvas,
    segments: Sequence[tuple[Sequence[float], Sequence[float]]],
    radius: float | Sequence[float],
    mu: float,
    *,
    layer: str | None = None,
) -> None:
    """Many thin cylinders of one radius (vessels, septal lines), rasterised together and blurred
    to their width: each carries ``mu * pi * r^2`` of attenuation per unit length, the line
    integral of a cylinder, so thin ones fade naturally.  Vectorised: sample points along every
    segment are splatted bilinearly in one pass, then one Gaussian blur gives the width (set by
    the median radius when ``radius`` is given per segment)."""
    n = cv.size
    if len(segments) == 0:
        return
    seg = np.asarray(segments, dtype=np.float64).reshape(-1, 2, 2)
    a, b, c, d, e, f = cv.view.affine
    px = a * seg[..., 0] + b * seg[..., 1] + c
    py = d * seg[..., 0] + e * seg[..., 1] + f
    length = np.hypot(px[:, 1] - px[:, 0], py[:, 1] - py[:, 0])
    k = np.maximum(2, np.ceil(length * 1.5).astype(int))
    idx = np.repeat(np.arange(len(seg)), k)
    start = np.cumsum(k) - k
    t = (np.arange(int(k.sum())) - np.repeat(start, k) + 0.5) / np.repeat(k, k)
    x = px[idx, 0] + t * (px[idx, 1] - px[idx, 0])
    y = py[idx, 0] + t * (py[idx, 1] - py[idx, 0])
    rad = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(seg),))
    w = (length / k * rad * rad)[idx]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    buf = np.zeros(n * n, np.float64)
    for dx, dy, ww in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        xx, yy = x0 + dx, y0 + dy
        ok = (xx >= 0) & (xx < n) & (yy >= 0) & (yy < n)
        buf += np.bincount(yy[ok] * n + xx[ok], weights=(w * ww)[ok], minlength=n * n)
    scale = cv.view.scale
    sigma = max(0.6, 0.7 * float(np.median(rad)) * scale)
    out = ndi.gaussian_filter(buf.reshape(n, n).astype(np.float32), sigma) * (mu * np.pi * scale)
    cv._put((slice(0, n), slice(0, n)), out, layer)


@dataclass(frozen=True)
class Part:
    """One convex piece of a compound bone for :func:`bone_union`.

    ``kind`` is ``"ellipse"`` (``center``, ``axes``, ``angle``, ``power``; ``depth`` = half
    thickness) or ``"tube"`` (``points`` and per-vertex ``radii`` and ``depths``).  ``cortex``
    is the shell thickness as a fraction of the part's size; ``inner`` names the interior
    material (``"trabecular"`` for epiphyses and flat bones, ``"marrow"`` for shafts).
    """

    kind: str
    center: tuple[float, float] = (0.0, 0.0)
    axes: tuple[float, float] = (1.0, 1.0)
    angle: float = 0.0
    power: float = 2.0
    depth: float = 1.0
    points: tuple[tuple[float, float], ...] = ()
    radii: tuple[float, ...] = ()
    depths: tuple[float, ...] = ()
    cortex: float = 0.1
    inner: str = "trabecular"


def E(
    center: Sequence[float],
    axes: Sequence[float],
    depth: float,
    *,
    angle: float = 0.0,
    power: float = 2.0,
    cortex: float = 0.1,
    inner: str = "trabecular",
) -> Part:
    """An ellipsoidal :class:`Part`."""
    return Part(
        "ellipse",
        (float(center[0]), float(center[1])),
        (float(axes[0]), float(axes[1])),
        float(angle),
        float(power),
        float(depth),
        cortex=cortex,
        inner=inner,
    )


def T(
    points: Sequence[Sequence[float]],
    radii: Sequence[float],
    depths: Sequence[float] | None = None,
    *,
    cortex: float = 0.3,
    inner: str = "marrow",
) -> Part:
    """A tubular :class:`Part` along a polyline (a shaft)."""
    pts = tuple((float(x), float(y)) for x, y in points)
    r = tuple(float(x) for x in np.broadcast_to(np.asarray(radii, dtype=float), (len(pts),)))
    dp = (
        r
        if depths is None
        else tuple(float(x) for x in np.broadcast_to(np.asarray(depths, dtype=float), (len(pts),)))
    )
    return Part("tube", points=pts, radii=r, depths=dp, cortex=cortex, inner=inner)


def _part_bbox(p: Part) -> tuple[float, float, float, float]:
    if p.kind == "ellipse":
        return _ellipse_bbox(p.center, p.axes, p.angle)
    pts = np.asarray(p.points)
    r = max(p.radii)
    return pts[:, 0].min() - r, pts[:, 1].min() - r, pts[:, 0].max() + r, pts[:, 1].max() + r


def _part_rho(p: Part, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised radius (``< 1`` inside) and local half-depth of a part on the pixels ``u, v``."""
    if p.kind == "ellipse":
        c, s = np.cos(p.angle), np.sin(p.angle)
        x, y = u - p.center[0], v - p.center[1]
        xr, yr = (c * x + s * y) / p.axes[0], (-s * x + c * y) / p.axes[1]
        if p.power == 2.0:
            rho = np.sqrt(xr * xr + yr * yr)
        else:
            rho = (np.abs(xr) ** p.power + np.abs(yr) ** p.power) ** (1.0 / p.power)
        return rho, np.full_like(rho, p.depth)
    pts = np.asarray(p.points)
    r = np.asarray(p.radii)
    dp = np.asarray(p.depths)
    a, d = pts[:-1], pts[1:] - pts[:-1]
    L2 = np.maximum((d * d).sum(1), 1e-12)
    uu, vv = u[..., None], v[..., None]
    t = np.clip(((uu - a[:, 0]) * d[:, 0] + (vv - a[:, 1]) * d[:, 1]) / L2, 0.0, 1.0)
    dist = np.hypot(uu - (a[:, 0] + t * d[:, 0]), vv - (a[:, 1] + t * d[:, 1]))
    rho_s = dist / (r[:-1] + t * (r[1:] - r[:-1]))
    k = np.argmin(rho_s, axis=-1)[..., None]
    rho = np.take_along_axis(rho_s, k, -1)[..., 0]
    tk = np.take_along_axis(t, k, -1)[..., 0]
    k = k[..., 0]
    depth = dp[:-1][k] + tk * (dp[1:][k] - dp[:-1][k])
    return rho, depth


def bone_union(
    cv: Canvas, parts: Sequence[Part], *, density: float = 1.0, texture: float = 0.4, blend: float = 0.07
) -> None:
    """A compound bone (distal femur, calcaneus, vertebra, ilium) as ONE shell.

    The parts' normalised radii are merged by a smooth minimum, so condyles, metaphysis and
    shaft share a single continuous cortex -- no bright internal rims where pieces overlap --
    and junctions get natural fillets.  Depth, cortex and interior blend with the same weights.
    """
    boxes = np.array([_part_bbox(p) for p in parts])
    win = cv.window(boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max())
    if win is None:
        return
    u = cv.u[win].astype(np.float64)
    v = cv.v[win].astype(np.float64)
    rhos, depths = zip(*(_part_rho(p, u, v) for p in parts))
    rho_all = np.stack(rhos)
    m = rho_all.min(0)
    w = np.exp(-(rho_all - m) / blend)
    wsum = w.sum(0)
    rho = m - blend * np.log(wsum)
    w /= wsum
    depth = (w * np.stack(depths)).sum(0)
    cortex = (w * np.array([p.cortex for p in parts])[:, None, None]).sum(0)
    mu_in = (
        w
        * np.array([cv.excess(p.inner) + (0.01 if p.inner == "marrow" else 0.0) for p in parts])[
            :, None, None
        ]
    ).sum(0)
    tex_w = (w * np.array([1.0 if p.inner == "trabecular" else 0.25 for p in parts])[:, None, None]).sum(0)
    k = 1.0 - cortex
    outer = 2.0 * depth * np.sqrt(np.clip(1.0 - rho * rho, 0.0, None))
    inner = 2.0 * depth * k * np.sqrt(np.clip(1.0 - (rho / k) ** 2, 0.0, None))
    tex = 1.0 + texture * tex_w * cv.texture()[win]
    out = density * (cv.excess("cortex") * (outer - inner) + mu_in * inner * tex)
    cv._put(win, out, None)


def soft(
    cv: Canvas,
    center: Sequence[float],
    axes: Sequence[float],
    depth: float,
    *,
    angle: float = 0.0,
    density: float = 1.0,
    power: float = 2.0,
    layer: str | None = None,
    soft_edge: float = 0.0,
) -> None:
    """Soft-tissue ellipsoid; ``density`` multiplies the soft-tissue coefficient (-1 = air
    replacing tissue, e.g. lungs or bowel gas; 0.85 = fat)."""
    ellipse(
        cv,
        center,
        axes,
        depth,
        density * cv.mu("soft"),
        angle=angle,
        power=power,
        layer=layer,
        soft_edge=soft_edge,
    )


def soft_tube(
    cv: Canvas,
    points: Sequence[Sequence[float]],
    radii: Sequence[float] | float,
    *,
    depth_ratio: float = 1.0,
    density: float = 1.0,
    layer: str | None = None,
    profile: float = 0.5,
    end_cap: float = 1.0,
) -> None:
    """Soft tissue along a polyline (limb, finger, vessel); ``density`` as in :func:`soft`."""
    tube(
        cv,
        points,
        radii,
        density * cv.mu("soft"),
        depth_ratio=depth_ratio,
        layer=layer,
        profile=profile,
        end_cap=end_cap,
    )


def limb_soft_tissue(
    cv: Canvas,
    points: Sequence[Sequence[float]],
    radii: Sequence[float],
    *,
    depth_ratio: float = 0.85,
    fat: float = 0.18,
    layer: str = "union_limb",
    end_cap: float = 1.0,
    profile: float = 0.5,
) -> None:
    """A limb segment: muscle core inside a subcutaneous fat layer (fat planes show faintly).

    Drawn into a ``union`` layer, so limb, palm and fingers merge smoothly where they meet.
    ``profile`` < 0.5 flattens the cross-section (a foot seen from the side is wide and flat).
    """
    r = np.asarray(radii, dtype=np.float64)
    tube(
        cv,
        points,
        r,
        cv.mu("fat"),
        depth_ratio=depth_ratio,
        layer=layer + "_fat",
        end_cap=end_cap,
        profile=profile,
    )
    tube(
        cv,
        points,
        r * (1.0 - fat),
        cv.mu("soft") - cv.mu("fat"),
        depth_ratio=depth_ratio,
        layer=layer + "_muscle",
        end_cap=end_cap,
        profile=profile,
    )


# --------------------------------------------------------------------------------------------
# detector, markers, display
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _glyph(text: str, px: int) -> np.ndarray:
    """Rasterised text mask (float 0-1) of about ``px`` pixels height."""
    font = ImageFont.load_default(size=max(6, px))
    left, top, right, bottom = font.getbbox(text)
    w, h = right - left + 2, bottom - top + 2
    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).text((1 - left, 1 - top), text, fill=255, font=font)
    return np.asarray(im, dtype=np.float32) / 255.0


@dataclass
class Detector:
    """All random settings of acquisition and display for one image (see :func:`sample_detector`)."""

    blur: float
    scatter: float
    photons: float
    collimate: tuple[float, float, float, float] | None
    collimation_black: bool
    markers: list[tuple[str, float, float, int, bool]] = field(default_factory=list)
    stripes: float = 0.0
    heel: float = 0.0
    heel_angle: float = 0.0
    equalise: float = 0.5
    unsharp: float = 0.6
    gamma: float = 1.0
    black: float = 0.05
    white: float = 0.97
    low_pct: float = 0.5
    high_pct: float = 99.5
    headroom: float = 0.0
    invert_background: bool = False


def sample_detector(rng: np.random.Generator, size: int) -> Detector:
    """Draw acquisition and display settings -- one distribution for every class of image."""
    collimate = None
    if rng.random() < 0.5:
        collimate = tuple(float(x) for x in rng.uniform(0.0, 0.16, 4) * (rng.random(4) < 0.7))
    markers: list[tuple[str, float, float, int, bool]] = []
    if rng.random() < 0.65:
        txt = "L" if rng.random() < 0.5 else "R"
        markers.append(
            (
                txt,
                float(rng.uniform(0.04, 0.92)),
                float(rng.choice([rng.uniform(0.03, 0.2), rng.uniform(0.75, 0.93)])),
                int(max(5, round(size * rng.uniform(0.05, 0.1)))),
                bool(rng.random() < 0.3),
            )
        )
    if rng.random() < 0.15:
        txt = str(rng.choice(["AP", "PA", "PORTABLE", "ERECT", "SUPINE", "LAT", "OBL", "STANDING"]))
        markers.append(
            (
                txt,
                float(rng.uniform(0.03, 0.5)),
                float(rng.uniform(0.03, 0.12)),
                int(max(5, round(size * rng.uniform(0.035, 0.06)))),
                False,
            )
        )
    return Detector(
        blur=float(rng.uniform(0.35, 0.75)),
        scatter=float(rng.uniform(0.03, 0.25)),
        photons=float(10 ** rng.uniform(2.6, 3.8)),
        collimate=collimate,
        collimation_black=bool(rng.random() < 0.35),
        markers=markers,
        stripes=float(rng.uniform(0.0, 0.03) if rng.random() < 0.35 else 0.0),
        heel=float(rng.uniform(0.0, 0.25)),
        heel_angle=float(rng.uniform(0, 2 * np.pi)),
        equalise=float(rng.uniform(0.25, 0.7)),
        unsharp=float(rng.uniform(0.3, 1.2)),
        gamma=float(np.exp(rng.normal(0.0, 0.15))),
        black=float(rng.uniform(0.0, 0.22)),
        white=float(rng.uniform(0.8, 1.0)),
        low_pct=float(rng.uniform(0.2, 3.0)),
        high_pct=float(rng.uniform(98.5, 99.9)),
        headroom=float(rng.uniform(0.0, 0.35)),
    )


def lowpass(img: np.ndarray, sigma: float) -> np.ndarray:
    """Wide Gaussian blur, computed on a block-averaged copy and resized back (same result to
    within a few per cent for ``sigma`` of many pixels, at a fraction of the cost)."""
    n0, n1 = img.shape
    f = max(1, int(sigma // 3))
    while f > 1 and (n0 % f or n1 % f):
        f -= 1
    if f == 1:
        return ndi.gaussian_filter(img, sigma)
    small = img.reshape(n0 // f, f, n1 // f, f).mean(axis=(1, 3))
    small = ndi.gaussian_filter(small.astype(np.float32), sigma / f, mode="nearest")
    return np.asarray(Image.fromarray(small, mode="F").resize((n1, n0), Image.BILINEAR), dtype=np.float32)


def _marker_mask(det: Detector, n: int) -> np.ndarray:
    mask = np.zeros((n, n), np.float32)
    for text, fx, fy, px, boxed in det.markers:
        g = _glyph(text, px)
        if boxed:
            g = np.pad(g, 2)
            g[[0, -1], :] = 1.0
            g[:, [0, -1]] = 1.0
        h, w = g.shape
        x0 = int(np.clip(round(fx * n), 0, max(0, n - w)))
        y0 = int(np.clip(round(fy * n), 0, max(0, n - h)))
        h, w = min(h, n - y0), min(w, n - x0)
        mask[y0 : y0 + h, x0 : x0 + w] = np.maximum(mask[y0 : y0 + h, x0 : x0 + w], g[:h, :w])
    return mask


def collimation_mask(det: Detector, n: int) -> np.ndarray:
    """1 inside the exposed field, 0 under the collimator blades (soft edge of ~1 px)."""
    if det.collimate is None:
        return np.ones((n, n), np.float32)
    l, t, r, b = det.collimate
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    d = np.minimum.reduce([xx - l, 1 - r - xx, yy - t, 1 - b - yy]) * n
    return np.clip(d + 0.5, 0.0, 1.0).astype(np.float32)


def expose(
    atten: np.ndarray,
    rng: np.random.Generator,
    det: Detector | None = None,
    noise: np.ndarray | None = None,
    window_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Attenuation map -> 8-bit radiograph (dense = bright).  See the module docstring.

    ``noise`` (a standard-normal field) may be passed in so two renders that differ only in
    anatomy share the same noise realisation; otherwise it is drawn from ``rng``.
    ``window_mask`` (bool) restricts the pixels the display window is computed from.
    """
    n = atten.shape[0]
    if det is None:
        det = sample_detector(rng, n)
    if noise is None:
        noise = rng.standard_normal((n, n)).astype(np.float32)
    field_mask = collimation_mask(det, n)
    a = atten.astype(np.float32) + 3.5 * _marker_mask(det, n)
    # the X-ray tube's heel effect: a gentle intensity ramp across the field
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n - 0.5
    ramp = det.heel * (np.cos(det.heel_angle) * xx + np.sin(det.heel_angle) * yy)
    intensity = np.exp(-a) * np.exp(ramp)
    intensity = ndi.gaussian_filter(intensity, det.blur)
    if det.scatter > 0:
        intensity = intensity + det.scatter * lowpass(intensity, n / 10.0)
    # collimated region: no primary beam, only a little scatter
    intensity = intensity * field_mask + (1 - field_mask) * 0.004 * float(np.median(intensity))
    if det.stripes > 0:
        cols = ndi.gaussian_filter1d(rng.standard_normal(n).astype(np.float32), 0.7)
        intensity = intensity * (1.0 + det.stripes * cols[None, :])
    # quantum noise: Gaussian approximation of Poisson counts (variance = mean count).  The
    # technique is set so the dense parts of the part imaged (its 90th attenuation percentile)
    # still receive ``photons`` quanta, as an exposure meter would.
    ref = (
        float(np.percentile(intensity[field_mask > 0.5], 10))
        if (field_mask > 0.5).any()
        else float(intensity.mean())
    )
    counts = (det.photons / max(ref, 1e-6)) * intensity
    counts = counts + np.sqrt(np.maximum(counts, 1e-3)) * noise
    log_i = -np.log(np.maximum(counts, 0.5))
    return display(log_i, det, field_mask, window_mask)


def display(
    log_i: np.ndarray, det: Detector, field_mask: np.ndarray, window_mask: np.ndarray | None = None
) -> np.ndarray:
    """Console post-processing: contrast equalisation, unsharp mask, percentile window, gamma.

    The window's percentiles come from the exposed field (optionally only where
    ``window_mask``), so a lesion does not re-window the whole film."""
    n = log_i.shape[0]
    exposed = field_mask > 0.5
    vals = log_i[exposed] if exposed.sum() > 16 else log_i.ravel()
    fill = float(np.median(vals))
    work = np.where(exposed, log_i, fill).astype(np.float32)
    low = lowpass(work, n / 8.0)
    mid = ndi.gaussian_filter(work, max(1.0, n / 64.0))
    out = work - det.equalise * (low - float(low[exposed].mean() if exposed.any() else low.mean()))
    out = out + det.unsharp * (work - mid)
    sel = exposed if window_mask is None else (exposed & window_mask)
    if sel.sum() <= 16:
        sel = exposed
    vals = out[sel] if sel.sum() > 16 else out.ravel()
    lo, hi = np.percentile(vals, [det.low_pct, det.high_pct])
    hi = hi + det.headroom * (hi - lo)
    y = np.clip((out - lo) / max(hi - lo, 1e-6), 0.0, 1.0) ** det.gamma
    y = det.black + (det.white - det.black) * y
    # outside the field: white (unexposed plate) or black (electronic shutter)
    shutter = 0.0 if det.collimation_black else 1.0
    y = y * field_mask + shutter * (1 - field_mask)
    return np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)


@dataclass
class Phantom:
    """One generated image and what is known about it.

    ``boxes`` are ``(finding, x, y, w, h)`` in pixels of ``image``; ``meta`` holds the view and
    anatomy parameters (e.g. ``ctr`` for chest films); ``attenuation`` is the map before the
    detector when the caller asked for it (used by tests to locate changes).
    """

    image: np.ndarray
    kind: str
    findings: tuple[str, ...] = ()
    boxes: list[tuple[str, float, float, float, float]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    attenuation: np.ndarray | None = None


def develop(
    cv: Canvas,
    rng: np.random.Generator,
    kind: str,
    *,
    meta: dict[str, Any] | None = None,
    findings: Sequence[str] = (),
    boxes: Sequence[tuple[str, float, float, float, float]] = (),
    return_attenuation: bool = False,
) -> Phantom:
    """Expose and display a finished canvas; package the result as a :class:`Phantom`."""
    det = sample_detector(rng, cv.size)
    noise = rng.standard_normal((cv.size, cv.size)).astype(np.float32)
    atten = cv.total()
    img = expose(atten, rng, det, noise)
    info = dict(meta or {})
    info.update(
        view={
            "center": list(cv.view.center),
            "scale": cv.view.scale,
            "angle": cv.view.angle,
            "flip": cv.view.flip,
            "aspect": cv.view.aspect,
        }
    )
    return Phantom(
        image=img,
        kind=kind,
        findings=tuple(findings),
        boxes=list(boxes),
        meta=info,
        attenuation=atten if return_attenuation else None,
    )
