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
