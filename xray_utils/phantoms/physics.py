"""Radiograph physics shared by every phantom: geometry, attenuation, detector, display.

A phantom is built in three steps, the way a real film comes about:

1. **Anatomy -> attenuation.**  Body parts are projected primitives (ellipsoids, tubes along
   polylines) drawn in *body coordinates* (centimetres, ``x`` to the image's right, ``y`` down).
   Each primitive adds ``mu * chord`` to the attenuation map ``A`` of a :class:`Canvas`, where
   ``chord`` is the path length of a ray through the solid (``2 * depth * sqrt(1 - r**2)`` for an
   ellipsoid).  Bone is a dense cortical shell around a lighter trabecular interior with its own
   texture, so shafts show two bright cortical lines; overlapping parts simply add up, and air
   (lungs, bowel gas) *removes* soft tissue.
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

from dataclasses import dataclass, field
from functools import lru_cache
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
    "soft": 0.32, "fat": 0.27, "cortex": 1.55, "trabecular": 0.52, "marrow": 0.33,
    "enamel": 2.6, "dentin": 1.5, "metal": 8.0,
}
MU_HARD_BEAM: dict[str, float] = {
    "soft": 0.205, "fat": 0.18, "cortex": 0.60, "trabecular": 0.29, "marrow": 0.215,
    "enamel": 1.0, "dentin": 0.6, "metal": 4.0,
}


def seed_sequence(seed: int | Sequence[int] | np.random.SeedSequence) -> np.random.SeedSequence:
    """A NumPy ``SeedSequence`` from an int, a tuple of ints (e.g. ``(seed, index)``) or itself."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, (int, np.integer)):
        return np.random.SeedSequence(int(seed))
    return np.random.SeedSequence([int(s) for s in seed])


def streams(seed: int | Sequence[int] | np.random.SeedSequence, names: Sequence[str]) -> dict[str, np.random.Generator]:
    """Independent named generators derived from one seed.

    Each name gets its own child stream, so drawing more numbers in one part of the generator
    (say, for an extra finding) never shifts the numbers another part (pose, detector) sees.
    """
    ss = seed_sequence(seed)
    return {n: np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=ss.spawn_key + (i,)))
            for i, n in enumerate(names)}


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
        return self.scale * np.sqrt(self.aspect)

    @property
    def sy(self) -> float:
        return self.scale / np.sqrt(self.aspect)

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
    sx: float = 1.0     # foreshortening of local x (oblique and lateral projections)

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
        self._mu = {k: (1 - self.hardness) * MU_SOFT_BEAM[k] + self.hardness * MU_HARD_BEAM[k]
                    for k in MU_SOFT_BEAM}
        n = view.size
        py, px = np.mgrid[0:n, 0:n]
        u, v = view.to_body(px, py)
        self.u = u.astype(np.float32)
        self.v = v.astype(np.float32)
        self.atten = np.zeros((n, n), np.float32)
        self.layers: dict[str, np.ndarray] = {}
        self._texture_rng = texture_rng
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
        """The attenuation map: ``atten`` plus every ``union*`` layer (parts merged by maximum)."""
        out = self.atten.copy()
        for name, arr in self.layers.items():
            if name.startswith("union"):
                out += arr
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
        px, py = self.view.to_pixel(np.array([x0, x1, x0, x1]), np.array([y0, y0, y1, y1]))
        c0, c1 = int(np.floor(px.min())) - 1, int(np.ceil(px.max())) + 2
        r0, r1 = int(np.floor(py.min())) - 1, int(np.ceil(py.max())) + 2
        n = self.size
        c0, c1, r0, r1 = max(c0, 0), min(c1, n), max(r0, 0), min(r1, n)
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def texture(self, name: str = "trabecular") -> np.ndarray:
        """A unit-variance noise field, generated once per image.

        ``trabecular``: band-pass noise at about 1 mm in body scale (never finer than a pixel),
        squashed towards a net of bright struts; ``soft``: smooth blotches a few cm wide for
        soft-tissue inhomogeneity; ``fine``: pixel-scale band-pass noise.
        """
        if name not in self._textures:
            n = self.size
            white = self._texture_rng.standard_normal((n, n)).astype(np.float32)
            if name == "trabecular":
                s = max(0.55, 0.09 * self.view.scale)
                band = ndi.gaussian_filter(white, s) - ndi.gaussian_filter(white, 2.2 * s)
                band /= band.std() + 1e-6
                # struts: emphasise ridges (positive lobes) like a trabecular network
                tex = np.tanh(1.5 * band) + 0.35 * np.abs(band)
            elif name == "soft":
                s = max(1.5, 1.6 * self.view.scale)
                tex = ndi.gaussian_filter(white, s)
            elif name == "fine":
                tex = ndi.gaussian_filter(white, 0.7) - ndi.gaussian_filter(white, 1.6)
            else:
                raise ValueError(f"unknown texture {name!r}")
            tex = tex - tex.mean()
            self._textures[name] = (tex / (tex.std() + 1e-6)).astype(np.float32)
        return self._textures[name]


def sample_view(rng: np.random.Generator, size: int, center: Sequence[float], fov: float, *,
                up: Sequence[float] | None = None, base_angle: float = 0.0, angle_sd: float = 0.06,
                flip_p: float = 0.5, shift: float = 0.06,
                aspect: tuple[float, float] = (0.85, 1.18)) -> View:
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
    return View(size=size, center=(float(cx), float(cy)), scale=size / fov,
                angle=float(base_angle + rng.normal(0.0, angle_sd)), flip=flip,
                aspect=float(np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1])))))


# --------------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------------
def _chord(r2: np.ndarray) -> np.ndarray:
    """Normalised chord ``sqrt(1 - r^2)`` (0 outside)."""
    return np.sqrt(np.clip(1.0 - r2, 0.0, None))


def ellipse_chords(u: np.ndarray, v: np.ndarray, center: Sequence[float], axes: Sequence[float],
                   angle: float = 0.0, power: float = 2.0) -> np.ndarray:
    """``sqrt(1 - rho^2)`` of a (super)ellipse; ``power`` > 2 gives rounded rectangles."""
    c, s = np.cos(angle), np.sin(angle)
    x, y = u - center[0], v - center[1]
    xr, yr = (c * x + s * y) / axes[0], (-s * x + c * y) / axes[1]
    if power == 2.0:
        r2 = xr * xr + yr * yr
    else:
        r2 = (np.abs(xr) ** power + np.abs(yr) ** power) ** (2.0 / power)
    return _chord(r2)


def _ellipse_bbox(center: Sequence[float], axes: Sequence[float], angle: float) -> tuple[float, float, float, float]:
    c, s = abs(np.cos(angle)), abs(np.sin(angle))
    # generous for superellipses: use the circumscribed rectangle's extent
    hx = axes[0] * c + axes[1] * s
    hy = axes[0] * s + axes[1] * c
    return center[0] - hx, center[1] - hy, center[0] + hx, center[1] + hy


def ellipse(cv: Canvas, center: Sequence[float], axes: Sequence[float], depth: float, mu: float,
            *, angle: float = 0.0, power: float = 2.0, cortex: float = 0.0, mu_in: float | None = None,
            texture: float = 0.0, layer: str | None = None, soft_edge: float = 0.0) -> None:
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


def tube(cv: Canvas, points: Sequence[Sequence[float]], radii: Sequence[float] | float, mu: float,
         *, depth_ratio: float = 1.0, cortex: Sequence[float] | float = 0.0,
         mu_in: Sequence[float] | float | None = None, texture: Sequence[float] | float = 0.0,
         layer: str | None = None, profile: float = 0.5, end_cap: float = 1.0,
         depths: Sequence[float] | None = None) -> None:
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
    pts = np.asarray(points, dtype=np.float64)
    k = len(pts) - 1
    r = np.broadcast_to(np.asarray(radii, dtype=np.float64), (k + 1,))
    ctx = np.broadcast_to(np.asarray(cortex, dtype=np.float64), (k + 1,))
    tx = np.broadcast_to(np.asarray(texture, dtype=np.float64), (k + 1,))
    has_in = bool(np.any(ctx > 0))
    m_in = np.broadcast_to(np.asarray(cv.excess("trabecular") if mu_in is None else mu_in, dtype=np.float64), (k + 1,))
    rmax = float(r.max())
    win = cv.window(pts[:, 0].min() - rmax, pts[:, 1].min() - rmax, pts[:, 0].max() + rmax, pts[:, 1].max() + rmax)
    if win is None:
        return
    u = cv.u[win].astype(np.float64)[..., None]
    v = cv.v[win].astype(np.float64)[..., None]
    a, b = pts[:-1], pts[1:]
    d = b - a
    L2 = np.maximum((d * d).sum(1), 1e-12)
    t_raw = ((u - a[:, 0]) * d[:, 0] + (v - a[:, 1]) * d[:, 1]) / L2
    t = np.clip(t_raw, 0.0, 1.0)
    dx = u - (a[:, 0] + t * d[:, 0])
    dy = v - (a[:, 1] + t * d[:, 1])
    dist2 = dx * dx + dy * dy
    rr = r[:-1] + t * (r[1:] - r[:-1])
    if end_cap != 1.0:
        # stretch the distance beyond the two free ends: elliptical caps of length end_cap * r
        L = np.sqrt(L2)
        over = np.zeros_like(t_raw)
        over[..., 0] = np.clip(-t_raw[..., 0], 0.0, None) * L[0]
        over[..., -1] = np.maximum(over[..., -1], np.clip(t_raw[..., -1] - 1.0, 0.0, None) * L[-1])
        k2 = 1.0 / max(end_cap, 1e-3) ** 2 - 1.0
        dist2 = dist2 + k2 * over * over
    q = 1.0 - dist2 / (rr * rr)
    outer_n = np.clip(q, 0.0, None) ** profile  # normalised chord per segment
    seg = np.argmax(outer_n * rr, axis=-1)[..., None]
    pick = lambda arr: np.take_along_axis(arr, seg, axis=-1)[..., 0]  # noqa: E731
    rsel = pick(rr)
    if depths is not None:
        dp = np.broadcast_to(np.asarray(depths, dtype=np.float64), (k + 1,))
        dd = dp[:-1] + t * (dp[1:] - dp[:-1])
        half = np.minimum(pick(dd), rsel * depth_ratio)
    else:
        half = rsel * depth_ratio
    outer = pick(outer_n) * (2.0 * half)
    out = mu * outer
    if has_in:
        tsel = pick(t)
        s = seg[..., 0]
        c_in = ctx[:-1][s] + tsel * (ctx[1:][s] - ctx[:-1][s])
        kk = np.clip(1.0 - c_in, 0.0, 1.0)
        ri = rsel * kk
        d2 = pick(dist2)
        inner = np.sqrt(np.clip(1.0 - d2 / np.maximum(ri * ri, 1e-12), 0.0, None)) * (2.0 * half) * kk
        mi = m_in[:-1][s] + tsel * (m_in[1:][s] - m_in[:-1][s])
        tex_amp = tx[:-1][s] + tsel * (tx[1:][s] - tx[:-1][s])
        tex = 1.0 + tex_amp * cv.texture()[win] if np.any(tx) else 1.0
        out = out - mu * inner + mi * inner * tex
    cv._put(win, out, layer)


def bone_tube(cv: Canvas, points: Sequence[Sequence[float]], radii: Sequence[float] | np.ndarray, *,
              shaft: Sequence[bool] | None = None, density: float = 1.0, depth_ratio: float = 1.0,
              texture: float = 0.35, end_cap: float = 0.45, depths: Sequence[float] | None = None) -> None:
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
    tube(cv, points, radii, cv.excess("cortex") * density, depth_ratio=depth_ratio, cortex=cortex,
         mu_in=mu_in, texture=tex, end_cap=end_cap, depths=depths)


def bone_blob(cv: Canvas, center: Sequence[float], axes: Sequence[float], *, angle: float = 0.0,
              density: float = 1.0, depth: float | None = None, power: float = 2.0,
              cortex: float = 0.12, texture: float = 0.4) -> None:
    """A cancellous bone (carpal, tarsal, epiphysis, vertebral body): thin cortex, textured inside."""
    depth = min(axes) if depth is None else depth
    ellipse(cv, center, axes, depth, cv.excess("cortex") * density, angle=angle, power=power,
            cortex=cortex, mu_in=cv.excess("trabecular") * density, texture=texture)


def soft(cv: Canvas, center: Sequence[float], axes: Sequence[float], depth: float, *, angle: float = 0.0,
         density: float = 1.0, power: float = 2.0, layer: str | None = None, soft_edge: float = 0.0) -> None:
    """Soft-tissue ellipsoid; ``density`` multiplies the soft-tissue coefficient (-1 = air
    replacing tissue, e.g. lungs or bowel gas; 0.85 = fat)."""
    ellipse(cv, center, axes, depth, density * cv.mu("soft"), angle=angle, power=power,
            layer=layer, soft_edge=soft_edge)


def soft_tube(cv: Canvas, points: Sequence[Sequence[float]], radii: Sequence[float] | float, *,
              depth_ratio: float = 1.0, density: float = 1.0, layer: str | None = None,
              profile: float = 0.5, end_cap: float = 1.0) -> None:
    """Soft tissue along a polyline (limb, finger, vessel); ``density`` as in :func:`soft`."""
    tube(cv, points, radii, density * cv.mu("soft"), depth_ratio=depth_ratio, layer=layer,
         profile=profile, end_cap=end_cap)


def limb_soft_tissue(cv: Canvas, points: Sequence[Sequence[float]], radii: Sequence[float], *,
                     depth_ratio: float = 0.85, fat: float = 0.18, layer: str = "union_limb") -> None:
    """A limb segment: muscle core inside a subcutaneous fat layer (fat planes show faintly).

    Drawn into a ``union`` layer, so limb, palm and fingers merge smoothly where they meet.
    """
    r = np.asarray(radii, dtype=np.float64)
    tube(cv, points, r, cv.mu("fat"), depth_ratio=depth_ratio, layer=layer + "_fat")
    tube(cv, points, r * (1.0 - fat), cv.mu("soft") - cv.mu("fat"), depth_ratio=depth_ratio,
         layer=layer + "_muscle")


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
        markers.append((txt, float(rng.uniform(0.04, 0.92)), float(rng.choice([rng.uniform(0.03, 0.2), rng.uniform(0.75, 0.93)])),
                        int(max(5, round(size * rng.uniform(0.05, 0.1)))), bool(rng.random() < 0.3)))
    if rng.random() < 0.15:
        txt = str(rng.choice(["AP", "PA", "PORTABLE", "ERECT", "SUPINE", "LAT", "OBL", "STANDING"]))
        markers.append((txt, float(rng.uniform(0.03, 0.5)), float(rng.uniform(0.03, 0.12)),
                        int(max(5, round(size * rng.uniform(0.035, 0.06)))), False))
    return Detector(
        blur=float(rng.uniform(0.35, 0.75)),
        scatter=float(rng.uniform(0.03, 0.25)),
        photons=float(10 ** rng.uniform(3.0, 4.3)),
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
        mask[y0:y0 + h, x0:x0 + w] = np.maximum(mask[y0:y0 + h, x0:x0 + w], g[:h, :w])
    return mask


def collimation_mask(det: Detector, n: int) -> np.ndarray:
    """1 inside the exposed field, 0 under the collimator blades (soft edge of ~1 px)."""
    if det.collimate is None:
        return np.ones((n, n), np.float32)
    l, t, r, b = det.collimate
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    d = np.minimum.reduce([xx - l, 1 - r - xx, yy - t, 1 - b - yy]) * n
    return np.clip(d + 0.5, 0.0, 1.0).astype(np.float32)


def expose(atten: np.ndarray, rng: np.random.Generator, det: Detector | None = None,
           noise: np.ndarray | None = None) -> np.ndarray:
    """Attenuation map -> 8-bit radiograph (dense = bright).  See the module docstring.

    ``noise`` (a standard-normal field) may be passed in so two renders that differ only in
    anatomy share the same noise realisation; otherwise it is drawn from ``rng``.
    """
    n = atten.shape[0]
    if det is None:
        det = sample_detector(rng, n)
    if noise is None:
        noise = rng.standard_normal((n, n)).astype(np.float32)
    field_mask = collimation_mask(det, n)
    a = atten.astype(np.float32) + 3.5 * _marker_mask(det, n)
    # the X-ray tube's heel effect: a gentle intensity ramp across the field
    yy, xx = (np.mgrid[0:n, 0:n].astype(np.float32) / n - 0.5)
    ramp = det.heel * (np.cos(det.heel_angle) * xx + np.sin(det.heel_angle) * yy)
    intensity = np.exp(-a) * np.exp(ramp)
    intensity = ndi.gaussian_filter(intensity, det.blur)
    if det.scatter > 0:
        intensity = intensity + det.scatter * ndi.gaussian_filter(intensity, n / 10.0)
    # collimated region: no primary beam, only a little scatter
    intensity = intensity * field_mask + (1 - field_mask) * 0.004 * float(np.median(intensity))
    if det.stripes > 0:
        cols = ndi.gaussian_filter1d(rng.standard_normal(n).astype(np.float32), 0.7)
        intensity = intensity * (1.0 + det.stripes * cols[None, :])
    # quantum noise: Gaussian approximation of Poisson counts (variance = mean count)
    counts = det.photons * intensity
    counts = counts + np.sqrt(np.maximum(counts, 1e-3)) * noise
    log_i = -np.log(np.maximum(counts, 0.5) / det.photons)
    return display(log_i, det, field_mask)


def display(log_i: np.ndarray, det: Detector, field_mask: np.ndarray) -> np.ndarray:
    """Console post-processing: contrast equalisation, unsharp mask, percentile window, gamma."""
    n = log_i.shape[0]
    exposed = field_mask > 0.5
    vals = log_i[exposed] if exposed.sum() > 16 else log_i.ravel()
    fill = float(np.median(vals))
    work = np.where(exposed, log_i, fill).astype(np.float32)
    low = ndi.gaussian_filter(work, n / 8.0)
    mid = ndi.gaussian_filter(work, max(1.0, n / 64.0))
    out = work - det.equalise * (low - float(low[exposed].mean() if exposed.any() else low.mean()))
    out = out + det.unsharp * (work - mid)
    vals = out[exposed] if exposed.sum() > 16 else out.ravel()
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


def develop(cv: Canvas, rng: np.random.Generator, kind: str, *, meta: dict[str, Any] | None = None,
            findings: Sequence[str] = (), boxes: Sequence[tuple[str, float, float, float, float]] = (),
            return_attenuation: bool = False) -> Phantom:
    """Expose and display a finished canvas; package the result as a :class:`Phantom`."""
    det = sample_detector(rng, cv.size)
    noise = rng.standard_normal((cv.size, cv.size)).astype(np.float32)
    atten = cv.total()
    img = expose(atten, rng, det, noise)
    info = dict(meta or {})
    info.update(view={"center": list(cv.view.center), "scale": cv.view.scale, "angle": cv.view.angle,
                      "flip": cv.view.flip, "aspect": cv.view.aspect})
    return Phantom(image=img, kind=kind, findings=tuple(findings), boxes=list(boxes), meta=info,
                   attenuation=atten if return_attenuation else None)
