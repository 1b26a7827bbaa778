"""The three recipes (paper / published / authors' code), the settings table and the up-front
checks of every setting: nothing shown is ignored, nothing unsupported is accepted."""
from __future__ import annotations

import json

import pytest
import torch

from xray_utils.cli.run import check_parameters, list_notebooks, notebook_parameters
from xray_utils.config import paper
from xray_utils.config.profiles import SettingsError, settings
from xray_utils.train.lessons import describe_settings
from xray_utils.train.training import PosWeightBCE, make_criterion

SOURCES = {"paper", "published", "authors' code", "our assumption", "our addition", "our choice"}


@pytest.mark.parametrize("recipe", paper.RECIPES)
@pytest.mark.parametrize("task", paper.TASKS)
def test_every_setting_of_every_recipe_has_its_source(recipe, task):
    cfg = settings("full", task, RECIPE=recipe)
    table = describe_settings(cfg, task)
    assert table["source"].map(lambda s: s.split(" (")[0] in SOURCES).all(), table["source"]
    assert table["same"].all()  # the full profile follows its recipe
    for key, (value, source) in paper.recipe(recipe, task).items():
        expected = tuple(value) if key == "BETAS" else value
        assert cfg[key] == expected, key
        assert source.split(" (")[0] in SOURCES
    labels = set(table.index)
    for shown in ("augmentation (training)", "normalisation", "mixed precision", "batch size",
                  "image size (px)", "initial weights", "loss", "scheduler", "epochs"):
        assert shown in labels


def test_the_recipes_differ_where_the_sources_do():
    paper_, published, authors = (settings("full", "chest", RECIPE=r) for r in paper.RECIPES)
    assert (paper_["EPOCHS"], published["EPOCHS"], authors["EPOCHS"]) == (15, 20, 20)
    assert authors["SCHEDULER"] == {"name": "ReduceLROnPlateau", "mode": "min", "factor": 0.25,
                                    "patience": 2}
    assert (authors["BATCH_SIZE"], authors["IMAGE_SIZE"], authors["AUGMENT"], authors["LOSS"]) == (
        64, 256, "hv_flip", "bce_pos_weight")
    assert paper_["LOSS"] == published["LOSS"] == "bce"
    # Modules I-II: the authors released chest code only; every recipe follows the preprint there
    for r in paper.RECIPES:
        assert settings("full", "xray_type", RECIPE=r)["EPOCHS"] == 10
    table = describe_settings(authors, "chest")
    assert table.loc["epochs", "source"] == "authors' code"
    assert table.loc["normalisation", "source"].startswith("our choice")
    assert describe_settings(published, "chest").loc["epochs", "source"] == "published"
    modules_i = describe_settings(settings("full", "xray_or_not"), "xray_or_not")
    assert modules_i.loc["initial weights", "source"] == "our assumption"  # "from scratch"
    assert modules_i.loc["initial weights"].iloc[0] == "random (from scratch)"


def test_demo_keeps_its_settings_and_reports_the_paper_as_reference():
    cfg = settings("demo", "chest")
    assert cfg["RECIPE"] == "paper" and cfg["EPOCHS"] == 4
    table = describe_settings(cfg, "chest")
    assert table.loc["epochs", "source"].startswith("demo profile")
    assert table.loc["epochs", "recipe: paper"] == "15" and not table.loc["epochs", "same"]
    over = describe_settings(settings("full", "chest", EPOCHS=2), "chest")
    assert over.loc["epochs", "source"] == "override (-p)" and not over.loc["epochs", "same"]


def test_loss_setting_changes_the_criterion_or_is_refused():
    logits, targets = torch.zeros(4, 14), torch.ones(4, 14)
    plain = make_criterion(settings("full", "chest"), "chest")
    weighted = make_criterion(settings("full", "chest", LOSS="bce_pos_weight"), "chest")
    assert isinstance(weighted, PosWeightBCE)
    ratio = (weighted(logits, targets) / plain(logits, targets)).item()
    assert ratio == pytest.approx(sum(paper.AUTHORS_POS_WEIGHT) / 14)
    assert isinstance(make_criterion(settings("full", "xray_type"), "xray_type"), torch.nn.CrossEntropyLoss)
    with pytest.raises(SettingsError, match=r"LOSS 'focal' is not supported; choose one of bce, bce_pos_w"):
        settings("full", "chest", LOSS="focal")
    with pytest.raises(SettingsError, match="LOSS 'bce' is not supported; choose one of cross_entropy"):
        settings("full", "xray_type", LOSS="bce")


@pytest.mark.parametrize("overrides,message", [
    ({"EPOCH": 3}, r"unknown setting 'EPOCH'; did you mean EPOCHS\?"),
    ({"IMAGE_SZE": 64}, r"did you mean IMAGE_SIZE"),
    ({"EPOCHS": 0}, r"EPOCHS must be an integer >= 1; got 0"),
    ({"EPOCHS": "two"}, r"EPOCHS must be an integer"),
    ({"BATCH_SIZE": 0}, r"BATCH_SIZE must be an integer >= 1"),
    ({"IMAGE_SIZE": 16}, r"IMAGE_SIZE must be an integer >= 32"),
    ({"IMAGE_SIZE": 100}, r"IMAGE_SIZE must be a multiple of 8"),
    ({"LR": 0}, r"LR must be a number > 0"),
    ({"DEVICE": "gpu"}, r"DEVICE must be auto, cpu, cuda or cuda:N"),
    ({"NORMALIZE": "imagenet"}, r"ImageNet mean/std .* not implemented"),
    ({"AUGMENT": "mixup"}, r"AUGMENT 'mixup' is not supported"),
    ({"RECIPE": "chexnet"}, r"RECIPE 'chexnet' is not supported; choose one of paper, published, auth"),
    ({"OPTIMIZER": "SGD"}, r"OPTIMIZER 'SGD' is not supported"),
    ({"SCHEDULER": {"name": "StepLR"}}, r"SCHEDULER name 'StepLR' is not supported"),
    ({"AMP": "yes"}, r"AMP must be True or False"),
    ({"MAX_TRAIN": -1}, r"MAX_TRAIN must be an integer >= 0"),
])
@pytest.mark.parametrize("profile", ["demo", "full"])
def test_bad_settings_are_refused_up_front(profile, overrides, message):
    with pytest.raises(SettingsError, match=message):
        settings(profile, "chest", **overrides)


def test_cuda_without_a_gpu_is_an_error():
    if torch.cuda.is_available():
        assert settings("full", "chest", DEVICE="cuda")["DEVICE"] == "cuda"
        with pytest.raises(SettingsError, match="GPU"):
            settings("full", "chest", DEVICE=f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(SettingsError, match="no CUDA GPU is available"):
            settings("full", "chest", DEVICE="cuda")
    assert settings("full", "chest", DEVICE="CPU")["DEVICE"] == "cpu"


def test_tiny_settings_are_accepted():
    for profile in ("demo", "public", "full"):
        for task in paper.TASKS:
            cfg = settings(profile, task, EPOCHS=2, MAX_TRAIN=64)
            assert (cfg["EPOCHS"], cfg["MAX_TRAIN"]) == (2, 64)
    assert settings("full", "chest", BETAS=[0.8, 0.99])["BETAS"] == (0.8, 0.99)


def test_notebook_runner_refuses_before_running(tmp_path):
    notebooks = list_notebooks()
    training = [nb for nb in notebooks if nb.name.startswith(("01", "02", "03"))]
    assert {"EPOCHS", "MAX_TRAIN", "IMAGE_SIZE"} <= notebook_parameters(training[0])
    check_parameters("demo", training, {"EPOCHS": 2, "MAX_TRAIN": 64})
    with pytest.raises(SettingsError, match="EPOCHS must be an integer >= 1"):
        check_parameters("demo", training, {"EPOCHS": 0})
    with pytest.raises(SettingsError, match=r"-p EPOCH: no selected notebook .* did you mean EPOCHS"):
        check_parameters("demo", training, {"EPOCH": 2})
    # every training chapter takes the recipe and the augmentation, chapter 03 also the loss
    assert all({"RECIPE", "AUGMENT"} <= notebook_parameters(nb) for nb in training)
    assert "LOSS" in notebook_parameters(training[2])
    check_parameters("full", training, {"RECIPE": "published", "AUGMENT": "hv_flip",
                                        "LOSS": "bce_pos_weight"})
    with pytest.raises(SettingsError, match="AUGMENT 'mixup' is not supported"):
        check_parameters("demo", training, {"AUGMENT": "mixup"})
    # a setting no selected notebook passes on would be silently ignored: refused
    with pytest.raises(SettingsError, match="-p DEMO_CHEST: no selected notebook"):
        check_parameters("demo", training, {"DEMO_CHEST": 100})


def test_train_command_refuses_bad_settings_before_any_work(tmp_path, capsys):
    from types import SimpleNamespace

    from xray_utils.cli.train import run as main

    args = SimpleNamespace(task="chest", profile="demo",
                           param=[["RUN_DIR", json.dumps(str(tmp_path / "run"))], ["LOSS", "focal"]])
    assert main(args) == 2
    assert "LOSS 'focal' is not supported" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()


def test_augment_setting_changes_the_training_images():
    import numpy as np

    from xray_utils.data.loaders import augment

    img = np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)
    torch.manual_seed(0)
    flips = [augment(img, "hv_flip") for _ in range(40)]
    variants = {(bool((f == img[::-1]).all()), bool((f == img[:, ::-1]).all()),
                 bool((f == img[::-1, ::-1]).all()), bool((f == img).all())) for f in flips}
    assert all(any(v) for v in variants) and len(variants) == 4  # only flips, all four kinds
    crops = [augment(img, "flip_crop") for _ in range(10)]
    assert any(not any((c == x).all() for x in (img, img[:, ::-1])) for c in crops)
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment(img, "mixup")


def test_batch_augmentation_equals_the_per_image_crop_and_resize():
    """augment_batch: one draw for the batch; per image the pixels of a flip, a crop copy and
    cv2.resize with the parameters that draw gives."""
    import cv2
    import numpy as np

    from xray_utils.data.loaders import augment_batch

    def reference(img, u, mode):
        if u[0] < 0.5:
            img = img[:, ::-1]
        if mode == "hv_flip":
            return np.ascontiguousarray(img[::-1] if u[1] < 0.5 else img)
        h, w = img.shape
        scale = 0.85 + 0.15 * u[1]
        ch, cw = max(8, int(h * scale)), max(8, int(w * scale))
        top, left = int(u[2] * (h - ch + 1)), int(u[3] * (w - cw + 1))
        assert 0 <= top <= h - ch and 0 <= left <= w - cw
        crop = np.ascontiguousarray(img[top:top + ch, left:left + cw])
        return cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)

    rng = np.random.default_rng(0)
    for size in (40, 64, 101):
        imgs = rng.integers(0, 256, (12, size, size), dtype=np.uint8)
        for mode in ("flip_crop", "hv_flip"):
            torch.manual_seed(size)
            draws = torch.rand(len(imgs), 4, dtype=torch.float64).numpy()
            want = np.stack([reference(im, u, mode) for im, u in zip(imgs, draws)])
            after_ref = torch.rand(3)
            torch.manual_seed(size)
            got = augment_batch(imgs, mode)
            np.testing.assert_array_equal(got, want)
            assert torch.equal(torch.rand(3), after_ref)  # the same number of draws
            assert not np.array_equal(got, imgs)
            kinds = {(bool(u[0] < 0.5), bool(u[1] < 0.5)) for u in draws}
            assert len(kinds) > 1  # the images of one batch get different parameters


@pytest.mark.slow
def test_authors_code_recipe_trains_with_tiny_settings(tiny_task, tmp_path):
    """The authors' recipe end to end at toy size: pos_weight BCE, flips, its scheduler."""
    from xray_utils.config.paths import project_paths
    from xray_utils.train.training import train_task

    manifest = tiny_task("chest", n=48, size=32)
    paths = project_paths("demo", data_dir=tmp_path / "d", run_dir=tmp_path / "r",
                          figures_dir=tmp_path / "f")
    cfg = settings("full", "chest", RECIPE="authors_code", IMAGE_SIZE=32, EPOCHS=2, BATCH_SIZE=16,
                   MAX_TRAIN=32, NUM_WORKERS=0, DEVICE="cpu", PRETRAINED=False, AMP=False)
    assert (cfg["LOSS"], cfg["AUGMENT"], cfg["SCHEDULER"]["factor"]) == ("bce_pos_weight", "hv_flip", 0.25)
    result = train_task(paths, cfg, manifest, verbose=False)
    assert result.epochs_run == 2
    meta = json.loads(result.best_checkpoint.read_text())
    assert meta["training"]["LOSS"] == "bce_pos_weight" and meta["training"]["RECIPE"] == "authors_code"
