"""models.py: the device rule and DenseNet-121's features carried between modules (the checks of a
checkpoint's digest and description are in test_robustness.py)."""
from __future__ import annotations

import pytest
import torch

from xray_utils import models
from xray_utils.models import build_model, checkpoint_meta, init_features_from, save_checkpoint


def test_resolve_device():
    assert models.resolve_device("cpu") == torch.device("cpu")
    assert models.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        models.resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no GPU"):
            models.resolve_device("cuda")


def test_init_features_from_copies_the_feature_extractor_only(tmp_path):
    torch.manual_seed(0)
    source = build_model("xray_type")
    ckpt = save_checkpoint(source, tmp_path / "best", checkpoint_meta("xray_type", 32))
    torch.manual_seed(1)
    target = build_model("chest")
    head = target.classifier.weight.detach().clone()
    assert not torch.equal(target.features.conv0.weight, source.features.conv0.weight)
    n = init_features_from(target, ckpt)
    assert n == len([k for k in source.state_dict() if k.startswith("features.")])
    for (k, a), b in zip(source.features.state_dict().items(), target.features.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(target.classifier.weight, head)  # 14 findings: a fresh head


def test_to_model_input_standardises_each_image_and_leaves_the_input_alone():
    import numpy as np

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 48, 40), dtype=np.uint8)
    imgs[3] = 7  # a flat image: std clamped to 1, so it becomes zeros
    x = models.to_model_input(imgs)
    assert x.shape == (5, 1, 48, 40) and x.dtype == torch.float32
    for i, img in enumerate(imgs):  # the definition, image by image, in float64
        ref = (img - img.mean()) / max(img.std(ddof=1), 1.0)
        np.testing.assert_allclose(x[i, 0].numpy(), ref, atol=2e-6)
    assert models.to_model_input(imgs[0]).shape == (1, 1, 48, 40)
    given = torch.from_numpy(imgs.astype(np.float32))[:, None]
    before = given.clone()
    out = models.to_model_input(given)
    assert torch.equal(given, before)  # a float input is not standardised in place
    assert torch.equal(out, x)
    strided = torch.from_numpy(imgs.astype(np.float32)).transpose(1, 2)  # not contiguous
    np.testing.assert_allclose(models.to_model_input(strided).numpy(),
                               x.transpose(2, 3).numpy(), atol=1e-6)
