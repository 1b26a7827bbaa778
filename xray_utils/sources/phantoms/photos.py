""" "Not an X-ray" images: photographs shipped with scikit-image and scikit-learn, plus hard
negatives (documents, line drawings, other medical modalities, textures).

Only a few dozen source pictures ship with those packages, so every sample is a strong,
seeded transformation of one (or a blend of two): a random crop at 25-100 % of the picture,
rotation, mirror, colour jitter, then the conversion to 8-bit grey the paper applies to all
inputs.  About 30 % are hard negatives: text pages rendered with Pillow, line art, the
Shepp-Logan CT phantom, a retinal fundus photograph, histology and cell microscopy, and
procedural textures -- images that share some look of a radiograph (grey, medical, high
contrast) without being one.  Only files bundled in the installed wheels are used; nothing is
downloaded.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage as ndi

from xray_utils.sources.phantoms.physics import Phantom, streams

#: skimage.data loaders used, with the file each needs inside the installed package
#: (checked before loading, so a missing file is skipped instead of triggering a download).
SKIMAGE_PHOTOS: dict[str, str] = {
    "astronaut": "astronaut.png",
    "coffee": "coffee.png",
    "chelsea": "chelsea.png",
    "rocket": "rocket.jpg",
    "camera": "camera.png",
    "coins": "coins.png",
    "moon": "moon.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "clock": "clock_motion.png",
    "colorwheel": "color.png",
    "logo": "logo.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "brick": "brick.png",
}
SKIMAGE_MEDICAL: dict[str, str] = {
    "retina": "retina.jpg",
    "immunohistochemistry": "ihc.png",
    "cell": "cell.png",
    "microaneurysms": "microaneurysms.png",
    "shepp_logan_phantom": "phantom.png",
}
SKIMAGE_DOCUMENTS: dict[str, str] = {
    "page": "page.png",
    "text": "text.png",
    "horse": "horse.png",
    "checkerboard": "chessboard_GRAY.png",
}

_WORDS = (
    "the of and to in is was for on that with as by at from this be are or an have not which it "
    "patient report radiology clinical history findings impression results table figure method data "
    "model training accuracy image page section chapter invoice total date number name address "
    "meeting agenda notes summary review study group value error sample test"
).split()


def _to_float(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.float32)
    elif img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    else:
        img = img.astype(np.float32)
        img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img)


@lru_cache(maxsize=1)
def source_images() -> dict[str, dict[str, np.ndarray]]:
    """All bundled source pictures, by category: ``photo``, ``medical`` and ``document``.

    Each is float32 RGB in [0, 1].  Pictures whose file is not inside the installed package are
    left out (scikit-image would otherwise try to download them).
    """
    import skimage.data as skd

    out: dict[str, dict[str, np.ndarray]] = {"photo": {}, "medical": {}, "document": {}}
    data_dir = Path(skd.__file__).parent
    for cat, table in (
        ("photo", SKIMAGE_PHOTOS),
        ("medical", SKIMAGE_MEDICAL),
        ("document", SKIMAGE_DOCUMENTS),
    ):
        for name, fname in table.items():
            if not (data_dir / fname).is_file() or not hasattr(skd, name):
                continue
            img = getattr(skd, name)()
            out[cat][name] = _to_float(img)
    try:
        from sklearn.datasets import load_sample_images

        data = load_sample_images()
        for fname, img in zip(data.filenames, data.images):
            out["photo"][Path(fname).stem] = _to_float(img)
    except Exception:  # noqa: BLE001 - sample images are optional
        pass
    if not out["photo"]:
        raise RuntimeError(
            "no bundled photographs found in scikit-image or scikit-learn; reinstall "
            "scikit-image (its wheel ships skimage/data/*.png) and scikit-learn"
        )
    return out


def _random_crop(img: np.ndarray, rng: np.random.Generator, size: int, min_frac: float = 0.25) -> np.ndarray:
    """Crop, rotate, mirror and resize to ``size`` x ``size`` (float RGB)."""
    h, w = img.shape[:2]
    frac = float(rng.uniform(min_frac, 1.0))
    ar = float(np.exp(rng.uniform(-0.3, 0.3)))
    ch = int(np.clip(frac * min(h, w) * ar, 8, h))
    cw = int(np.clip(frac * min(h, w) / ar, 8, w))
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    pil = Image.fromarray(np.clip(img[y0 : y0 + ch, x0 : x0 + cw] * 255, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
    if rng.random() < 0.4:
        pil = pil.rotate(
            float(rng.uniform(-30, 30)),
            resample=Image.BILINEAR,
            expand=False,
            fillcolor=tuple(int(c) for c in rng.integers(0, 256, 3)),
        )
    pil = pil.resize((size, size), Image.BILINEAR)
    return np.asarray(pil, dtype=np.float32) / 255.0


def _jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and a channel-mixing hue shift."""
    mix = np.eye(3) + rng.normal(0, 0.12, (3, 3))
    img = np.clip(img @ mix.T.astype(np.float32), 0, 1)
    gray = img.mean(2, keepdims=True)
    img = gray + float(rng.uniform(0.5, 1.5)) * (img - gray)
    img = (img - 0.5) * float(rng.uniform(0.7, 1.3)) + 0.5 + float(rng.uniform(-0.15, 0.15))
    return np.clip(img, 0, 1)


def _gray(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB -> 8-bit grey (luma weights, slightly randomised like different converters)."""
    w = np.array([0.299, 0.587, 0.114]) + rng.normal(0, 0.03, 3)
    w = np.clip(w, 0.02, None)
    w /= w.sum()
    g = img @ w.astype(np.float32) if img.ndim == 3 else img
    return np.clip(np.round(g * 255), 0, 255).astype(np.uint8)


def _document(rng: np.random.Generator, size: int) -> np.ndarray:
    """A page of text (or a table) rendered with Pillow, photographed at an angle."""
    big = size * 3
    bg = int(rng.integers(200, 256))
    im = Image.new("L", (big, big), bg)
    dr = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=int(rng.integers(big // 30, big // 12)))
    y = int(rng.integers(0, big // 8))
    ink = int(rng.integers(0, 90))
    table = rng.random() < 0.25
    while y < big:
        x = int(rng.integers(0, big // 10))
        line = " ".join(rng.choice(_WORDS, size=int(rng.integers(2, 9))))
        if rng.random() < 0.15:
            line = line.upper()
        dr.text((x, y), line, fill=ink, font=font)
        y += int(font.size * rng.uniform(1.2, 1.8))
        if table:
            dr.line([(0, y - 2), (big, y - 2)], fill=ink, width=1)
    if table:
        for x in np.sort(rng.integers(big // 8, big, 3)):
            dr.line([(int(x), 0), (int(x), big)], fill=ink, width=1)
    im = im.rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR, fillcolor=int(rng.integers(0, 120)))
    im = im.resize((size, size), Image.LANCZOS)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    # uneven lighting of a photographed page
    yy, xx = np.mgrid[0:size, 0:size] / size
    arr = arr * (1 - 0.3 * rng.random() * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)))
    return np.clip(arr, 0, 1)


def _drawing(rng: np.random.Generator, size: int) -> np.ndarray:
    """Line art: random strokes, circles, polygons and filled shapes."""
    big = size * 2
    bg = int(rng.integers(0, 256))
    im = Image.new("L", (big, big), bg)
    dr = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(4, 18))):
        col = int(rng.integers(0, 256))
        pts = [tuple(int(v) for v in rng.integers(0, big, 2)) for _ in range(int(rng.integers(2, 6)))]
        kind = rng.random()
        if kind < 0.4:
            dr.line(pts, fill=col, width=int(rng.integers(1, 6)))
        elif kind < 0.7:
            x0, y0 = rng.integers(0, big, 2)
            r = int(rng.integers(5, big // 3))
            dr.ellipse(
                [int(x0) - r, int(y0) - r, int(x0) + r, int(y0) + r],
                outline=col,
                width=int(rng.integers(1, 5)),
                fill=col if rng.random() < 0.3 else None,
            )
        elif len(pts) >= 3:
            dr.polygon(pts, outline=col, fill=col if rng.random() < 0.5 else None)
    im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.5)))).resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255.0


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Procedural textures: filtered noise, gradients, blobs, stripes."""
    kind = rng.random()
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind < 0.35:
        n = ndi.gaussian_filter(
            rng.standard_normal((size, size)).astype(np.float32), float(rng.uniform(0.5, size / 8))
        )
    elif kind < 0.6:
        a = rng.uniform(0, 2 * np.pi)
        n = np.cos(a) * xx + np.sin(a) * yy + 0.2 * ndi.gaussian_filter(rng.standard_normal((size, size)), 3)
    elif kind < 0.8:
        n = sum(
            np.sin(2 * np.pi * (rng.uniform(1, 12) * (np.cos(a) * xx + np.sin(a) * yy)) + rng.uniform(0, 6))
            for a in rng.uniform(0, np.pi, int(rng.integers(1, 4)))
        )
    else:
        from skimage.data import binary_blobs

        n = ndi.gaussian_filter(
            binary_blobs(
                size, blob_size_fraction=float(rng.uniform(0.05, 0.3)), rng=int(rng.integers(0, 2**31))
            ).astype(np.float32),
            1.0,
        )
    n = np.asarray(n, dtype=np.float32)
    return (n - n.min()) / max(float(n.max() - n.min()), 1e-6)


def render_photo(seed, size: int = 128) -> Phantom:
    """One "not an X-ray" sample; ``meta["category"]`` says which kind, ``meta["source"]`` which picture."""
    r = streams(seed, ("kind", "crop", "jitter", "blend", "gray"))
    src = source_images()
    u = r["kind"].random()
    if u < 0.70:
        category = "natural"
        names = sorted(src["photo"])
        name = str(r["kind"].choice(names))
        img = _jitter(_random_crop(src["photo"][name], r["crop"], size), r["jitter"])
        if r["blend"].random() < 0.2:  # blend with a crop of another photograph
            other = str(r["blend"].choice(names))
            a = float(r["blend"].uniform(0.2, 0.5))
            img = (1 - a) * img + a * _random_crop(src["photo"][other], r["blend"], size)
            name = f"{name}+{other}"
        if r["gray"].random() < 0.1:  # inverted grey photographs: film negatives
            img = 1.0 - img
    else:
        v = r["kind"].random()
        if v < 0.3:
            category = "medical_other"
            names = sorted(src["medical"])
            name = str(r["kind"].choice(names))
            img = _random_crop(src["medical"][name], r["crop"], size, min_frac=0.4)
            img = _jitter(img, r["jitter"]) if name != "shepp_logan_phantom" else img
            if name == "shepp_logan_phantom":  # a noisy CT-like slice
                img = np.clip(img + r["jitter"].normal(0, 0.04, img.shape[:2])[..., None], 0, 1)
        elif v < 0.55:
            category = "document"
            if r["kind"].random() < 0.6 or not src["document"]:
                name, img = "rendered_text", _document(r["crop"], size)
            else:
                name = str(r["kind"].choice(sorted(src["document"])))
                img = _random_crop(src["document"][name], r["crop"], size, min_frac=0.4)
        elif v < 0.8:
            category, name, img = "drawing", "line_art", _drawing(r["crop"], size)
        else:
            category, name, img = "texture", "procedural", _texture(r["crop"], size)
    gray = _gray(img, r["gray"])
    return Phantom(image=gray, kind="photo", meta={"category": category, "source": name})
