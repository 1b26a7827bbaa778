"""The radiograph phantoms, chest findings and photographs (xray_utils.sources.phantoms)."""
from __future__ import annotations

import numpy as np
import pytest
from image_stats import simple_image_stats as simple_stats
from scipy import ndimage as ndi

from xray_utils.config import paper
from xray_utils.data import manifests
from xray_utils.data.imageio import resize_gray
from xray_utils.sources.phantoms import (
    render,
    render_chest,
    render_photo,
    sample_findings,
)
from xray_utils.sources.phantoms.physics import Canvas, View, line_bundle, lowpass, streams, tube

KINDS = (*paper.XRAY_TYPES, "photo")

@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_a_varied_8bit_image(kind):
    film = render(kind, (1, 2), 48)
    assert film.image.shape == (48, 48) and film.image.dtype == np.uint8
    assert film.image.std() > 8, f"{kind}: nearly flat image"
    assert film.kind == kind
    other = render(kind, (1, 3), 48)
    assert not np.array_equal(film.image, other.image)


def test_same_seed_same_bytes_different_seed_different():
    for kind in ("hand", "chest", "dental", "photo"):
        a, b = render(kind, (7, 1), 64), render(kind, (7, 1), 64)
        assert a.image.tobytes() == b.image.tobytes(), kind
        assert a.image.tobytes() != render(kind, (8, 1), 64).image.tobytes(), kind
    # an int seed and a one-element tuple are different seeds, both deterministic
    assert render("knee", 5, 32).image.tobytes() == render("knee", 5, 32).image.tobytes()


def test_unknown_kind_and_finding_are_clear_errors():
    with pytest.raises(ValueError, match="unknown image kind"):
        render("skull", 0, 32)
    with pytest.raises(ValueError, match="unknown finding"):
        render_chest(0, 32, findings=["Broken heart"])


def test_named_streams_are_independent():
    # drawing from one stream never shifts another
    c, d = streams((3, 4), ["x", "y"]), streams((3, 4), ["x", "y"])
    c["x"].random(50)
    assert c["y"].random() == d["y"].random()
    assert streams((3, 4), ["x"])["x"].random() != streams((3, 5), ["x"])["x"].random()


@pytest.mark.parametrize("finding", paper.FINDINGS)
def test_finding_changes_lie_inside_its_box(finding):
    """Render one chest with and without the finding: the attenuation change is inside the box,
    the displayed change is concentrated there, and it survives the resize to 64 px."""
    size = 96
    inside_att, contrast, visible = [], [], []
    for s in range(3):
        a = render_chest((s, 11), size, findings=[finding], return_attenuation=True)
        b = render_chest((s, 11), size, findings=[], return_attenuation=True)
        assert a.findings == (finding,) and b.findings == ()
        assert [bx[0] for bx in a.boxes] == [finding]
        _, x, y, w, h = a.boxes[0]
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= size + 1e-6 and y + h <= size + 1e-6
        m = np.zeros((size, size), bool)
        m[max(0, int(y) - 1):int(np.ceil(y + h)) + 1, max(0, int(x) - 1):int(np.ceil(x + w)) + 1] = True
        d_att = np.abs(a.attenuation - b.attenuation)
        assert d_att.sum() > 0, f"{finding}: no change at all"
        inside_att.append(d_att[m].sum() / d_att.sum())
        d_img = np.abs(a.image.astype(float) - b.image.astype(float))
        contrast.append(d_img[m].mean() / (d_img[~m].mean() + 0.05))
        # visible at the demo's training size
        A, B = resize_gray(a.image, 64).astype(float), resize_gray(b.image, 64).astype(float)
        k = 64 / size
        rows = slice(int(y * k), int(np.ceil((y + h) * k)))
        cols = slice(int(x * k), int(np.ceil((x + w) * k)))
        visible.append(np.abs(A - B)[rows, cols].mean())
    assert min(inside_att) > 0.9, (finding, inside_att)
    assert min(contrast) > 3.0, (finding, contrast)
    assert np.mean(visible) > 1.5, (finding, visible)


def test_boxes_of_sampled_films_are_inside_the_image():
    for i in range(12):
        film = render_chest((5, i), 64, findings=None)
        for name, x, y, w, h in film.boxes:
            assert name in paper.FINDINGS
            assert 0 <= x <= x + w <= 64 + 1e-6 and 0 <= y <= y + h <= 64 + 1e-6
        # encodable in the manifest and back
        decoded = manifests.decode_boxes(manifests.encode_boxes(film.boxes))
        assert [b[0] for b in decoded] == list(film.findings)


def test_cardiothoracic_ratio():
    normal = [render_chest((2, i), 48, findings=[]).meta["ctr"] for i in range(8)]
    big = [render_chest((2, i), 48, findings=["Cardiomegaly"]).meta["ctr"] for i in range(8)]
    assert max(normal) < 0.5 and min(normal) > 0.35
    assert min(big) > 0.5
    # the enlarged heart is the same patient's heart: the normal CTR is reported alongside
    assert all(render_chest((2, i), 48, findings=["Cardiomegaly"]).meta["normal_ctr"] == n
               for i, n in enumerate(normal))


def test_follow_up_films_share_the_patient_anatomy():
    a = render_chest((1, 1), 48, findings=[], patient=(0, 9))
    b = render_chest((1, 2), 48, findings=[], patient=(0, 9))
    c = render_chest((1, 3), 48, findings=[], patient=(0, 10))
    assert a.meta["ctr"] == b.meta["ctr"] != c.meta["ctr"]
    assert not np.array_equal(a.image, b.image)


def test_prevalence_and_co_occurrence():
    rng = np.random.default_rng(0)
    draws = [sample_findings(rng) for _ in range(4000)]
    normal = np.mean([len(d) == 0 for d in draws])
    assert 0.45 < normal < 0.55
    counts = {f: sum(f in d for d in draws) for f in paper.FINDINGS}
    assert min(counts.values()) >= 25, counts  # even Hernia appears
    abnormal = [d for d in draws if d]
    assert 1.2 < np.mean([len(d) for d in abnormal]) < 2.0
    p_ate = counts["Atelectasis"] / len(draws)
    p_ate_given_eff = np.mean(["Atelectasis" in d for d in draws if "Effusion" in d])
    assert p_ate_given_eff > 1.5 * p_ate  # effusion and atelectasis travel together
    p_inf_given_pna = np.mean(["Infiltration" in d for d in draws if "Pneumonia" in d])
    assert p_inf_given_pna > 1.5 * counts["Infiltration"] / len(draws)


def test_no_trivial_cue_separates_the_types():
    """Simple image statistics must not identify the X-ray type (the anatomy should)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = 14
    X = np.array([simple_stats(render(t, (99, k, i), 48).image)
                  for k, t in enumerate(paper.XRAY_TYPES) for i in range(n)])
    y = np.repeat(np.arange(len(paper.XRAY_TYPES)), n)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    acc = cross_val_score(clf, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0)).mean()
    print(f"\nlogistic regression on image statistics, 14 X-ray types: CV accuracy {acc:.3f} (chance 0.071)")
    assert acc < 0.5


def test_no_trivial_cue_separates_findings_from_normal():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    films = [render_chest((98, i), 48) for i in range(160)]
    X = np.array([simple_stats(f.image) for f in films])
    y = np.array([len(f.findings) > 0 for f in films])
    assert 0.3 < y.mean() < 0.7
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    auc = cross_val_score(clf, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0),
                          scoring="roc_auc").mean()
    print(f"\nlogistic regression on image statistics, finding vs no finding: CV AUC {auc:.3f}")
    assert auc < 0.75


def test_photographs_are_distinct_and_include_hard_negatives():
    films = [render_photo((4, i), 48) for i in range(40)]
    cats = [f.meta["category"] for f in films]
    assert "natural" in cats and len(set(cats)) >= 3
    assert 0.1 < np.mean([c != "natural" for c in cats]) < 0.5
    flat = np.array([f.image.astype(np.float64).ravel() for f in films])
    flat = (flat - flat.mean(1, keepdims=True)) / (flat.std(1, keepdims=True) + 1e-9)
    corr = flat @ flat.T / flat.shape[1]
    np.fill_diagonal(corr, 0)
    assert corr.max() < 0.95, "near-duplicate photographs"


# ------------------------------------------------------------------------------- physics
def _canvas(size: int = 64, scale: float = 4.0) -> Canvas:
    return Canvas(View(size, (0.0, 0.0), scale), np.random.default_rng(0), hardness=0.5)


def test_tube_vectorised_path_matches_the_segment_loop(monkeypatch):
    import xray_utils.sources.phantoms.physics as ph

    pts = [(-5.0, -3.0), (-1.0, -2.0), (2.0, 1.0), (4.0, 5.0)]
    kw = dict(radii=[0.9, 0.7, 0.8, 1.1], mu=0.4, cortex=[0.1, 0.3, 0.3, 0.1], mu_in=[0.1, 0.02, 0.02, 0.1],
              depths=[0.8, 0.7, 0.7, 0.9], end_cap=0.4)
    vec = _canvas(40, 3.0)
    tube(vec, pts, **kw)
    monkeypatch.setattr(ph, "TUBE_VECTOR_LIMIT", 0)  # force the per-segment loop
    loop = _canvas(40, 3.0)
    tube(loop, pts, **kw)
    assert vec.atten.max() > 0.3
    assert np.allclose(vec.atten, loop.atten, atol=1e-5)


def test_line_bundle_carries_the_line_integral_of_a_cylinder():
    cv = _canvas(64, 4.0)
    r, mu, length = 0.4, 0.3, 8.0
    line_bundle(cv, [((-4.0, 0.0), (4.0, 0.0))], r, mu)
    # integral over the image (pixel units) = mu * pi r^2 * length, in attenuation x px^2 / scale
    total = cv.atten.sum() / cv.view.scale ** 2
    assert total == pytest.approx(mu * np.pi * r * r * length, rel=0.05)


def test_lowpass_approximates_a_gaussian_blur():
    rng = np.random.default_rng(0)
    img = (ndi.gaussian_filter(rng.random((128, 128)), 4).astype(np.float32)
           + np.linspace(0, 1, 128, dtype=np.float32))
    ref = ndi.gaussian_filter(img, 16.0)
    got = lowpass(img, 16.0)
    inner = (slice(32, 96), slice(32, 96))
    assert np.abs(got - ref)[inner].max() < 0.02
