"""Grad-CAM: from-scratch version vs pytorch-grad-cam, the fast path, hooks, scores, sanity."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from xray_utils.config import paper
from xray_utils.explain import gradcam as gc
from xray_utils.explain import localisation as loc
from xray_utils.explain import plots as cplots
from xray_utils.models import XrayDenseNet, build_model, predict_probabilities, to_model_input

torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------
def _smooth_images(n: int, h: int, w: int, seed: int) -> np.ndarray:
    """Blobby 8-bit test images (random noise gives nearly structureless maps)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    out = [gaussian_filter(rng.normal(0, 1, (h, w)), 4) for _ in range(n)]
    return np.stack([np.clip(128 + 60 * o / o.std(), 0, 255) for o in out]).astype(np.uint8)


@pytest.fixture(scope="module")
def chest_model() -> XrayDenseNet:
    torch.manual_seed(0)
    return build_model("chest").eval()


@pytest.fixture(scope="module")
def x64() -> torch.Tensor:
    return to_model_input(_smooth_images(3, 64, 64, seed=1))


def _assert_no_hooks(model: nn.Module) -> None:
    for name, m in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                     "_backward_pre_hooks"):
            assert len(getattr(m, attr)) == 0, f"hook left on {name or 'model'}.{attr}"


# --------------------------------------------------------------------------------------------
# equality with the reference implementation (acceptance criterion)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer_name", ["features", "features.norm5"])
def test_matches_pytorch_grad_cam(chest_model: XrayDenseNet, layer_name: str) -> None:
    from pytorch_grad_cam import GradCAM as RefCAM
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    # non-square input (64 x 96 -> a 2 x 3 grid) so a swapped height/width cannot pass
    x = to_model_input(_smooth_images(3, 64, 96, seed=2))
    # per image, the class with the strongest raw map, so no compared map is flat
    raw_all = gc.all_class_cams(chest_model, x, upsample=False, normalize=False)
    classes = raw_all.max(axis=(2, 3)).argmax(axis=1).tolist()
    assert all(raw_all[i, c].max() > 0 for i, c in enumerate(classes))

    layer = chest_model.get_submodule(layer_name)
    with gc.GradCAM(chest_model, target_layer=layer) as cam:
        mine_raw = cam(x, classes, upsample=False, normalize=False)
        mine = cam(x, classes)
    targets = [ClassifierOutputTarget(c) for c in classes]
    with RefCAM(model=chest_model, target_layers=[layer]) as ref:
        ref_out = ref(input_tensor=x, targets=targets)
        acts = ref.activations_and_grads.activations[0].numpy()
        grads = ref.activations_and_grads.gradients[0].numpy()
        ref_raw = np.maximum(ref.get_cam_image(x, layer, targets, acts, grads), 0)

    assert mine_raw.shape == ref_raw.shape == (3, 2, 3)
    assert mine.shape == ref_out.shape == (3, 64, 96)
    np.testing.assert_allclose(mine_raw, ref_raw, atol=1e-4, rtol=0)
    np.testing.assert_allclose(mine, ref_out, atol=1e-4, rtol=0)
    # pytorch-grad-cam's post-processing replicated exactly on our raw map
    W, H = x.shape[-1], x.shape[-2]
    replicated = scale_cam_image(scale_cam_image(mine_raw, (W, H)))
    np.testing.assert_allclose(mine, replicated, atol=1e-4, rtol=0)
    assert mine.min() >= 0 and np.allclose(mine.max(axis=(1, 2)), 1.0)


def test_default_class_is_top_prediction(chest_model: XrayDenseNet, x64: torch.Tensor) -> None:
    with gc.GradCAM(chest_model) as cam:
        res = cam.compute(x64, None)
    assert torch.equal(res.class_idx, res.logits.argmax(1))


# --------------------------------------------------------------------------------------------
# fast path == backward path
# --------------------------------------------------------------------------------------------
def test_fast_path_equals_backward_for_all_classes(chest_model: XrayDenseNet,
                                                   x64: torch.Tensor) -> None:
    fast_raw = gc.all_class_cams(chest_model, x64, upsample=False, normalize=False)
    fast = gc.all_class_cams(chest_model, x64)
    assert fast.shape == (3, len(paper.FINDINGS), 64, 64) and fast.dtype == np.float32
    assert fast.min() >= 0 and fast.max() <= 1
    nonflat = 0
    with gc.GradCAM(chest_model) as cam:
        for c in range(len(paper.FINDINGS)):
            slow_raw = cam(x64, c, upsample=False, normalize=False)
            scale = max(float(np.abs(slow_raw).max()), 1e-12)
            assert np.abs(fast_raw[:, c] - slow_raw).max() <= 1e-5 * scale, paper.FINDINGS[c]
            np.testing.assert_allclose(fast[:, c], cam(x64, c), atol=1e-5, rtol=0)
            nonflat += int((slow_raw.max(axis=(1, 2)) > 0).sum())
    assert nonflat > 0  # the comparison covered real maps, not only zeros


def test_fast_path_selects_classes_by_index_and_name(chest_model: XrayDenseNet,
                                                     x64: torch.Tensor) -> None:
    full = gc.all_class_cams(chest_model, x64, upsample=False)
    by_idx = gc.all_class_cams(chest_model, x64, classes=[1, 4], upsample=False)
    by_name = gc.all_class_cams(chest_model, x64, classes=["Cardiomegaly", "Mass"],
                                upsample=False, class_names=paper.FINDINGS)
    np.testing.assert_array_equal(by_idx, full[:, [1, 4]])
    np.testing.assert_array_equal(by_name, by_idx)
    with pytest.raises(ValueError, match="class_names"):
        gc.all_class_cams(chest_model, x64, classes=["Mass"])
    with pytest.raises(IndexError):
        gc.all_class_cams(chest_model, x64, classes=[14])


# --------------------------------------------------------------------------------------------
# hooks and side effects
# --------------------------------------------------------------------------------------------
def test_hooks_released_after_block_and_after_exception(chest_model: XrayDenseNet,
                                                        x64: torch.Tensor) -> None:
    chest_model.train()
    try:
        with gc.GradCAM(chest_model) as cam:
            assert cam.active and len(chest_model.features._forward_hooks) == 1
            assert not chest_model.training  # eval while explaining
            cam(x64[:1], 0)
        _assert_no_hooks(chest_model)
        assert chest_model.training  # previous mode restored

        with pytest.raises(ZeroDivisionError):
            with gc.GradCAM(chest_model) as cam:
                cam(x64[:1], 0)
                1 / 0
        _assert_no_hooks(chest_model)
        assert not cam.active and chest_model.training
    finally:
        chest_model.eval()
    with pytest.raises(RuntimeError, match="with GradCAM"):
        cam(x64[:1], 0)  # released: refuses instead of silently computing nothing


def test_no_parameter_gradients_left_behind(chest_model: XrayDenseNet, x64: torch.Tensor) -> None:
    chest_model.zero_grad(set_to_none=True)  # pytorch-grad-cam's backward fills .grad
    # ours must not
    with gc.GradCAM(chest_model) as cam:
        cam(x64, 2)
    assert all(p.grad is None for p in chest_model.parameters())


class _InplaceReluDenseNet(XrayDenseNet):
    """torchvision's own DenseNet forward: ``F.relu(features, inplace=True)`` after norm5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.relu(self.features(x.expand(-1, 3, -1, -1)), inplace=True)
        return self.classifier(F.adaptive_avg_pool2d(f, 1).flatten(1))


def test_robust_to_inplace_relu_after_target_layer(chest_model: XrayDenseNet,
                                                   x64: torch.Tensor) -> None:
    other = _InplaceReluDenseNet(len(paper.FINDINGS)).eval()
    other.load_state_dict(chest_model.state_dict())
    expected = gc.all_class_cams(chest_model, x64, classes=range(4), upsample=False,
                                 normalize=False)
    with gc.GradCAM(other) as cam:
        for c in range(4):
            res = cam.compute(x64, c)
            assert (res.activations < 0).any()  # the saved A was not overwritten by the ReLU
            np.testing.assert_allclose(res.raw.numpy(), expected[:, c], atol=1e-5, rtol=1e-5)


def test_bad_input_is_explained(chest_model: XrayDenseNet) -> None:
    images = np.zeros((1, 1, 64, 64), dtype=np.uint8)
    with gc.GradCAM(chest_model) as cam:
        with pytest.raises(ValueError, match="to_model_input"):
            cam(images, 0)
        with pytest.raises(ValueError, match="one per image"):
            cam(torch.zeros(2, 1, 64, 64), [0, 1, 2])
        with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
            cam(torch.zeros(1, 1, 64, 64), 0)
        with torch.no_grad():  # switched back on inside, so this works
            assert cam(torch.randn(1, 1, 64, 64), 0).shape == (1, 64, 64)
    with pytest.raises(TypeError, match="GradCAM"):
        gc.all_class_cams(nn.Sequential(nn.Conv2d(1, 2, 3)), torch.zeros(1, 1, 8, 8))


# --------------------------------------------------------------------------------------------
# normalisation, overlay
# --------------------------------------------------------------------------------------------
def test_normalize_maps_min_max_and_flat_maps_are_zero() -> None:
    maps = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    maps[0, 0, 1, 2] = 3.0
    maps[0, 1] = 5.0  # constant, positive
    maps[0, 2] = torch.arange(16.0).reshape(4, 4) + 2
    out = gc.normalize_maps(maps)
    assert out[0, 0, 1, 2] == 1 and out[0, 0].sum() == 1
    assert torch.count_nonzero(out[0, 1]) == 0
    assert out[0, 2].min() == 0 and out[0, 2].max() == 1
    assert not torch.isnan(out).any()


def test_overlay() -> None:
    gray = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (40, 1))  # (40, 64)
    cam = np.zeros((5, 8), dtype=np.float32)
    cam[0, 0] = 1.0
    out = cplots.overlay(gray, cam, alpha=0.4)
    assert out.shape == (40, 64, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(cplots.overlay(gray, cam, alpha=0.0),
                                  np.repeat(gray[..., None], 3, axis=2))
    import matplotlib

    pure = cplots.overlay(gray, np.ones((5, 8)), alpha=1.0)
    red = np.round(np.array(matplotlib.colormaps["jet"](1.0)[:3]) * 255)
    np.testing.assert_array_equal(pure[20, 30], red)
    # the hot corner of the cam is the reddest part of the overlay
    redness = out[..., 0].astype(int) - out[..., 2].astype(int)
    assert np.unravel_index(redness.argmax(), redness.shape)[0] < 10
    with pytest.raises(ValueError):
        cplots.overlay(np.zeros((4, 4, 3), np.uint8), cam)


# --------------------------------------------------------------------------------------------
# localisation scores on hand-made maps
# --------------------------------------------------------------------------------------------
def test_pointing_game_hand_made() -> None:
    cam = np.zeros((32, 32))
    cam[12, 20] = 1.0  # pixel centre (x=20.5, y=12.5)
    assert loc.cam_peak(cam) == (12, 20)
    assert loc.pointing_game(cam, [(18, 10, 5, 5)])
    assert not loc.pointing_game(cam, [(0, 0, 10, 10)])
    assert loc.pointing_game(cam, [(0, 0, 10, 10), (20, 12, 1, 1)])  # any box
    assert not loc.pointing_game(cam, [(22, 14, 4, 4)])
    assert loc.pointing_game(cam, [(22, 14, 4, 4)], tolerance=2)
    assert not loc.pointing_game(np.zeros((32, 32)), [(0, 0, 32, 32)])  # flat: no point
    assert not loc.pointing_game(cam, [])


def test_pointing_game_flat_top_points_at_the_cell_centre() -> None:
    cam = np.zeros((32, 32))
    cam[:8, :8] = 1.0  # the flat corner top that bilinear upsampling produces
    assert loc.cam_peak(cam) == (7, 7)  # its innermost pixel, not the corner (np.argmax)
    assert loc.pointing_game(cam, [(6, 6, 3, 3)])
    assert not loc.pointing_game(cam, [(0, 0, 2, 2)])
    # an upsampled 2 x 2 grid: the same rule in every corner (np.argmax is not symmetric)
    grid = torch.zeros(4, 1, 2, 2, dtype=torch.float64)
    for k in range(4):
        grid[k, 0, k // 2, k % 2] = 1.0
    peaks = [loc.cam_peak(m) for m in gc.upsample_maps(grid, (64, 64))[:, 0].numpy()]
    assert peaks == [(15, 15), (15, 48), (48, 15), (48, 48)]


def test_cam_iou_hand_made() -> None:
    cam = np.zeros((32, 32))
    cam[10:20, 10:20] = 0.8
    cam[0, 0] = 0.3  # below half the maximum: not in the thresholded region
    assert loc.cam_iou(cam, [(10, 10, 10, 10)]) == pytest.approx(1.0)
    assert loc.cam_iou(cam, [(15, 10, 10, 10)]) == pytest.approx(50 / 150)
    assert loc.cam_iou(cam, [(15, 10, 10, 10), (10, 10, 5, 10)]) == pytest.approx(100 / 150)
    assert loc.cam_iou(cam, [(0, 0, 5, 5)]) == 0.0
    assert loc.cam_iou(cam, [(0, 0, 1, 1)], threshold=0.3) == pytest.approx(1 / 101)
    assert loc.cam_iou(np.zeros((8, 8)), [(0, 0, 8, 8)]) == 0.0


def test_scale_boxes() -> None:
    assert loc.scale_boxes([(100, 50, 20, 10)], (1000, 500), (64, 64)) == [
        pytest.approx((6.4, 6.4, 1.28, 1.28))]


def test_score_localisation_table_shape_and_box_scaling(chest_model: XrayDenseNet) -> None:
    images = _smooth_images(3, 64, 64, seed=3)
    boxes = [[("Mass", 10, 10, 20, 20), ("Cardiomegaly", 20, 30, 30, 20), ("Mass", 40, 40, 5, 5)],
             [("Mass", 0, 0, 32, 32), ("Unknown", 0, 0, 5, 5)],
             []]
    table = loc.score_localisation(chest_model, images, boxes, (64, 64), progress=False)
    assert list(table.index) == list(paper.FINDINGS)
    assert table.loc["Mass", "n"] == 2 and table.loc["Cardiomegaly", "n"] == 1
    assert table.loc["Effusion", "n"] == 0 and np.isnan(table.loc["Effusion", "pointing"])
    # the same boxes given in the coordinates of 4x larger, non-square files
    big = [[(f, x * 4, y * 3, w * 4, h * 3) for f, x, y, w, h in b] for b in boxes]
    table_big = loc.score_localisation(chest_model, images, big, [(256, 192)] * 3, progress=False)
    assert table.equals(table_big)
    summary = loc.localisation_summary(table)
    assert summary["Mass"]["n"] == 2 and summary["Effusion"]["pointing"] is None
    assert summary["findings_scored"] == 2 and summary["n_cases"] == 3
    assert summary["mean_pointing"] == pytest.approx(table["pointing"].mean())


def test_score_localisation_without_boxes(chest_model: XrayDenseNet) -> None:
    table = loc.score_localisation(chest_model, np.zeros((0, 64, 64), np.uint8), [], (64, 64),
                                  progress=False)
    assert (table["n"] == 0).all()
    summary = loc.localisation_summary(table)
    assert summary["mean_pointing"] is None and summary["n_cases"] == 0


def test_grid_peaks_and_pointing_ceiling() -> None:
    # 2 x 2 grid at 64 px: the four cell centres
    assert sorted(loc.grid_peaks(64, (2, 2))) == [(15, 15), (15, 48), (48, 15), (48, 48)]
    peaks = loc.grid_peaks(224, (7, 7))
    assert len(peaks) == 49 and (111, 111) in peaks  # the centre cell of 7 x 7 at 224 px
    boxes = [[("Cardiomegaly", 200, 200, 100, 100)],                   # centre of a 512 px file
             [("Effusion", 0, 362, 150, 150), ("Cardiomegaly", 0, 0, 150, 150)]]
    ceiling = loc.pointing_ceiling(boxes, (512, 512), 64, (2, 2))
    assert ceiling["Cardiomegaly"] == 0.5  # centre box unreachable on 2 x 2; corner box reachable
    assert ceiling["Effusion"] == 1.0 and np.isnan(ceiling["Mass"])
    assert loc.pointing_ceiling(boxes, (512, 512), 224, (7, 7))["Cardiomegaly"] == 1.0
    # a box just beside a cell centre: reachable only with a tolerance
    near = [[("Mass", 17.0, 17.0, 5.0, 5.0)]]
    assert loc.pointing_ceiling(near, (64, 64), 64, (2, 2))["Mass"] == 0.0
    assert loc.pointing_ceiling(near, (64, 64), 64, (2, 2), tolerance=2)["Mass"] == 1.0
    # a node between two pixels (7 x 7 grid at 224 px: node 1 at x = 48) counts both of them
    tiny = [[("Mass", x0, x0, 0.8, 0.8)] for x0 in (47.1, 48.1, 49.1)]  # pixel 47, 48, 49 only
    assert loc.pointing_ceiling(tiny[:2], 224, 224, (7, 7))["Mass"] == 1.0
    assert loc.pointing_ceiling(tiny[2:], 224, 224, (7, 7))["Mass"] == 0.0
    centre = loc.center_baseline(boxes, [(512, 512), (512, 512)])
    assert centre["Cardiomegaly"] == 0.5 and centre["Effusion"] == 0.0


def test_ceiling_bounds_the_model(chest_model: XrayDenseNet) -> None:
    images = _smooth_images(4, 64, 64, seed=4)
    corners = [(8, 8), (26, 26), (44, 10)]
    boxes = [[(f, x, y, 12, 12) for f, (x, y) in zip(paper.FINDINGS, corners)]] * 4
    table = loc.score_localisation(chest_model, images, boxes, (64, 64), progress=False)
    ceiling = loc.pointing_ceiling(boxes, (64, 64), 64, (2, 2))
    scored = table["n"] > 0
    assert (table.loc[scored, "pointing"] <= ceiling[scored] + 1e-12).all()
    assert list(ceiling[list(paper.FINDINGS[:3])]) == [1.0, 0.0, 1.0]  # the centre box: 0


def test_notebook_helpers(chest_model: XrayDenseNet, tmp_path) -> None:
    from PIL import Image

    labels = ["Mass", "No Finding", "Mass|Effusion", "Effusion", "Mass"]
    boxes = [[], [], [("Mass", 1, 1, 5, 5)], [], [("Effusion", 0, 0, 3, 3)]]
    assert loc.select_films(labels, boxes, per_finding=1) == [0, 2, 4]
    assert loc.select_films(labels, boxes, per_finding=2) == [0, 2, 3, 4]
    assert loc.pick_examples(labels, boxes, ("Mass", "Effusion", "Edema"), per_finding=2) == [
        (2, "Mass"), (0, "Mass"), (2, "Effusion"), (3, "Effusion")]

    files = []
    for k, (w, h) in enumerate([(80, 60), (64, 64)]):
        files.append(tmp_path / f"img{k}.png")
        Image.fromarray(_smooth_images(1, h, w, seed=k)[0]).save(files[-1])
    images, sizes = loc.load_images(files, 32, progress=False)
    assert images.shape == (2, 32, 32) and images.dtype == np.uint8
    assert sizes == [(80, 60), (64, 64)]

    imgs = _smooth_images(3, 64, 64, seed=5)
    cams = gc.case_cams(chest_model, imgs, [(2, "Mass"), (0, "Effusion")], batch_size=1)
    full = gc.all_class_cams(chest_model, to_model_input(imgs))
    np.testing.assert_allclose(cams, [full[2, 4], full[0, 2]], atol=1e-5)  # batch-size float noise

    probs = predict_probabilities(chest_model, {"multilabel": True}, imgs, batch_size=2)
    with torch.no_grad():
        expected = torch.sigmoid(chest_model(to_model_input(imgs))).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert predict_probabilities(chest_model, {"multilabel": True}, imgs[:0]).shape == (0, 14)

    panels = cplots.gallery_panels(chest_model, imgs, [(1, "Mass")],
                               [[], [("Mass", 64, 0, 64, 32)], []], [(64, 64), (128, 64), (64, 64)])
    assert panels[0]["boxes"] == [pytest.approx((32, 0, 32, 32))]
    np.testing.assert_allclose(panels[0]["cam"], full[1, 4], atol=1e-5)
    assert panels[0]["title"] == f"Mass  p={probs[1, 4]:.2f}"
    given = np.full((3, 14), 0.25)
    assert cplots.gallery_panels(chest_model, imgs, [(0, "Edema")], [[]] * 3, (64, 64),
                             probs=given)[0]["title"] == "Edema  p=0.25 (no box)"


def test_figures_render(tmp_path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    img = _smooth_images(1, 32, 32, seed=6)[0]
    cam = np.linspace(0, 1, 16).reshape(4, 4)
    fig = cplots.plot_cam_gallery([{"image": img, "cam": cam, "title": "t", "boxes": [(1, 1, 5, 5)],
                                "peak": (3, 3)}] * 3, ncols=2)
    assert len(fig.axes) == 4
    fig = cplots.plot_randomization_check(img, [cam, np.zeros((4, 4))], ["trained", "random"])
    assert "flat" in fig.axes[2].get_title()
    table = pd.DataFrame({"n": [2, 0], "pointing": [0.5, np.nan], "iou": [0.2, np.nan],
                          "grid_ceiling": [1.0, np.nan]}, index=["Mass", "Edema"])
    fig = cplots.plot_localisation_scores(table)
    fig.savefig(tmp_path / "bars.png")
    assert (tmp_path / "bars.png").stat().st_size > 0


# --------------------------------------------------------------------------------------------
# randomisation
# --------------------------------------------------------------------------------------------
def test_randomized_copy_reinitialises_and_leaves_original(chest_model: XrayDenseNet) -> None:
    before = {k: v.clone() for k, v in chest_model.state_dict().items()}
    state = torch.get_rng_state()
    head = gc.randomized_copy(chest_model, seed=5, scope="head").state_dict()
    assert torch.equal(state, torch.get_rng_state())  # global random state untouched
    for k, v in chest_model.state_dict().items():
        assert torch.equal(v, before[k])
    changed = {k for k, v in head.items()
               if v.is_floating_point() and not torch.equal(v, before[k])}
    assert any(k.startswith("classifier.") for k in changed)
    assert any(k.startswith("features.denseblock4.") for k in changed)
    assert all(k.startswith(("classifier.", "features.denseblock4.", "features.norm5."))
               for k in changed)
    full = gc.randomized_copy(chest_model, seed=5).state_dict()
    assert not torch.equal(full["features.conv0.weight"], before["features.conv0.weight"])
    again = gc.randomized_copy(chest_model, seed=5).state_dict()
    assert all(torch.equal(full[k], again[k]) for k in full)  # reproducible per seed
    with pytest.raises(ValueError):
        gc.randomized_copy(chest_model, seed=0, scope="everything")


def test_heatmap_similarity() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((16, 16))
    assert gc.heatmap_similarity(a, a) == pytest.approx(1.0)
    assert gc.heatmap_similarity(a, a ** 3) == pytest.approx(1.0)  # ranks only
    assert gc.heatmap_similarity(a, -a) == pytest.approx(-1.0)
    assert abs(gc.heatmap_similarity(a, rng.random((16, 16)))) < 0.3
    assert gc.heatmap_similarity(a, a, "ssim") == pytest.approx(1.0)
    assert gc.heatmap_similarity(a, rng.random((16, 16)), "ssim") < 0.5
    assert np.isnan(gc.heatmap_similarity(a, np.zeros_like(a)))


# --------------------------------------------------------------------------------------------
# end to end: a trained model points at the object
# --------------------------------------------------------------------------------------------
class _TinyNet(nn.Module):
    """A small CNN with XrayDenseNet's interface (features ending in BatchNorm -> ReLU -> pool
    -> linear classifier) and an 8 x 8 grid at 64 px, so it trains in seconds on a CPU."""

    def __init__(self, n_out: int = 2) -> None:
        super().__init__()

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                    nn.MaxPool2d(2)]

        self.features = nn.Sequential(*block(3, 16), *block(16, 32), *block(32, 32),
                                      nn.Conv2d(32, 32, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(32))
        self.classifier = nn.Linear(32, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        return self.classifier(F.adaptive_avg_pool2d(F.relu(self.features(x)), 1).flatten(1))


SHAPES = ("square", "disk")


def _shapes_dataset(n: int, rng: np.random.Generator, size: int = 64):
    """One bright square (side 14) or disk (radius 8) per image, at a random place.

    Both shapes cover about the same area, so the only evidence for the class is the shape
    itself: a "square present" vs "nothing" task would let the model read the class from the
    background (per-image standardisation darkens it when a bright object is present), and
    Grad-CAM would then, correctly, light up the background.
    """
    side, rad = 14, 8
    yy, xx = np.mgrid[:size, :size]
    imgs = rng.normal(90, 12, (n, size, size)).clip(0, 255)
    labels, boxes = np.zeros(n, dtype=np.int64), []
    for i in range(n):
        y, x = rng.integers(2, size - 18, 2)
        if i % 2 == 0:
            imgs[i, y:y + side, x:x + side] = 230
            boxes.append([("square", x, y, side, side)])
        else:
            cy, cx = y + rad, x + rad
            imgs[i][(yy - cy + 0.5) ** 2 + (xx - cx + 0.5) ** 2 <= rad * rad] = 230
            boxes.append([("disk", x, y, 2 * rad, 2 * rad)])
            labels[i] = 1
    return imgs.astype(np.uint8), labels, boxes


@pytest.fixture(scope="module")
def shapes_model():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = _TinyNet()
    train_x, train_y, _ = _shapes_dataset(192, rng)
    test = _shapes_dataset(32, rng)
    x, y = to_model_input(train_x), torch.as_tensor(train_y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(60):
        b = torch.randint(0, len(y), (32,), generator=gen)
        loss = F.cross_entropy(model(x[b]), y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), test


def test_trained_model_points_at_the_object(shapes_model) -> None:
    model, (images, labels, boxes) = shapes_model
    with torch.no_grad():
        acc = (model(to_model_input(images)).argmax(1).numpy() == labels).mean()
    assert acc >= 0.9
    table = loc.score_localisation(model, images, boxes, (64, 64), findings=SHAPES, progress=False)
    assert list(table["n"]) == [16, 16]
    assert (table["pointing"] >= 0.8).all(), table
    assert (table["iou"] > 0.15).all(), table
    # the backward-based GradCAM agrees on a model other than DenseNet too
    x = to_model_input(images[:4])
    with gc.GradCAM(model) as cam:
        np.testing.assert_allclose(cam(x, 0), gc.all_class_cams(model, x)[:, 0], atol=1e-5)


def test_randomized_model_loses_the_object(shapes_model) -> None:
    model, (images, _, boxes) = shapes_model
    x = to_model_input(images)
    trained = gc.all_class_cams(model, x)
    randomized = gc.all_class_cams(gc.randomized_copy(model, seed=1), x)
    cls = [0 if b[0][0] == "square" else 1 for b in boxes]
    sims = [gc.heatmap_similarity(trained[i, c], randomized[i, c]) for i, c in enumerate(cls)]
    sims = np.nan_to_num(sims, nan=0.0)  # a flat randomised map shares no ranking
    assert np.mean(sims) < 0.5
    same = [gc.heatmap_similarity(trained[i, c], trained[i, c]) for i, c in enumerate(cls)]
    assert np.allclose(same, 1.0)
    table = loc.score_localisation(gc.randomized_copy(model, seed=1), images, boxes, (64, 64),
                                  findings=SHAPES, progress=False)
    assert table["pointing"].mean() < 0.8


def test_earlier_block_maps_match_pytorch_grad_cam_and_are_finer():
    """layer='denseblock3' scores with Grad-CAM of that block: the same maps as the reference
    library on that layer, on a 4 x 4 grid at 64 px (norm5: 2 x 2)."""
    from pytorch_grad_cam import GradCAM as RefCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from xray_utils.explain import localisation as loc
    from xray_utils.models import build_model, to_model_input

    torch.manual_seed(0)
    model = build_model("chest").eval()
    images = (np.random.default_rng(1).random((2, 64, 64)) * 255).astype(np.uint8)
    x = to_model_input(images)
    index = {f: i for i, f in enumerate(paper.FINDINGS)}
    ours = loc.layer_cams(model, x, "denseblock3", [["Mass"], ["Nodule", "Mass"]], index)
    with RefCAM(model=model, target_layers=[model.features.denseblock3]) as ref:
        for i, names in enumerate([["Mass"], ["Nodule", "Mass"]]):
            for name in names:
                want = ref(input_tensor=x[i:i + 1], targets=[ClassifierOutputTarget(index[name])])[0]
                assert np.allclose(ours[i, index[name]], want, atol=1e-3), name  # float32 sums
    assert not ours[0, index["Nodule"]].any()  # only the asked classes are filled
    assert loc.layer_grid(model, 64, "denseblock3") == (4, 4)
    assert loc.layer_grid(model, 64) == (2, 2)
    with pytest.raises(ValueError, match="no block 'denseblock9'"):
        loc.layer_grid(model, 64, "denseblock9")


def test_gradcam_record_adds_settings_baselines_and_layers() -> None:
    findings = list(paper.FINDINGS[:3])
    table = pd.DataFrame({"n": [2, 0, 1], "pointing": [0.5, 0.0, 1.0], "iou": [0.2, 0.0, 0.4],
                          "center_baseline": [0.5, 0.9, 0.0], "pointing_randomized": [0.0, 0.9, 1.0],
                          "grid_ceiling": [1.0, 0.9, 1.0]}, index=findings)
    finer = table.assign(pointing=[0.0, 0.0, 0.5])
    record = loc.gradcam_record(table, {"norm5": (table, (2, 2)), "denseblock3": (finer, (4, 4))},
                                layer="norm5", grid=(2, 2), threshold=0.5, tolerance=0.0, image_size=64)
    assert record["mean_pointing"] == pytest.approx(0.75) and record["n_cases"] == 3
    assert record["baselines"] == pytest.approx({"center_point": 0.25, "randomized_model": 0.5,
                                                 "grid_ceiling": 1.0})
    assert record["by_layer"]["denseblock3"] == {"grid": [4, 4], "mean_pointing": pytest.approx(0.25)}
    assert (record["layer"], record["grid"], record["image_size"]) == ("norm5", [2, 2], 64)
    assert loc.format_rate(None) == "n/a" and loc.format_rate(0.3) == "0.300"


def test_score_checkpoint_tabulates_each_layer(chest_model: XrayDenseNet, tmp_path) -> None:
    """The trade-off table of chapter 05: one row per layer, grid by input size, scores in range,
    the pointing hit rate never above the grid's ceiling."""
    from PIL import Image

    from xray_utils.models import checkpoint_meta, save_checkpoint

    best = save_checkpoint(chest_model, tmp_path / "best", checkpoint_meta("chest", 64))
    paths = []
    for k, img in enumerate(_smooth_images(4, 96, 96, seed=5)):
        paths.append(str(tmp_path / f"film{k}.png"))
        Image.fromarray(img).save(paths[-1])
    boxes = [[("Cardiomegaly", 30, 40, 30, 30)], [("Mass", 5, 5, 20, 20)],
             [("Effusion", 60, 60, 30, 30), ("Mass", 10, 60, 10, 10)], [("Nodule", 40, 10, 8, 8)]]
    table = loc.score_checkpoint(best, paths, boxes, layers=("norm5", "denseblock3"),
                                 batch_size=4, training_seconds=120.0)
    assert list(table["layer"]) == ["norm5", "denseblock3"]
    assert list(table["grid"]) == ["2 x 2", "4 x 4"] and (table["input px"] == 64).all()
    for _, row in table.iterrows():
        assert 0 <= row["pointing"] <= row["grid ceiling"] + 1e-12
        assert 0 <= row["centre baseline"] <= 1 and 0 <= row["iou"] <= 1
        assert row["training minutes"] == pytest.approx(2.0) and row["Grad-CAM minutes"] >= 0
