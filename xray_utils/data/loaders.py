"""Datasets and loaders: task manifests -> preprocessing cache -> batches for Catalyst.

Every loader reads the preprocessing cache (:mod:`xray_utils.data.cache`): images are decoded once
into 8-bit arrays at the profile's size, so an epoch never decodes a PNG again.  Batches are
dicts ``{"features": (N, 1, H, W) float, "targets": ...}`` as Catalyst's ``SupervisedRunner``
expects; the input transform is :func:`xray_utils.models.to_model_input`, the same one that
evaluation and ``diagnose()`` use.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from xray_utils.config import paper
from xray_utils.data.cache import ImageCache, build_cache
from xray_utils.data.manifests import findings_to_vector, read_task_manifest
from xray_utils.models import to_model_input

#: Catalyst's loader names for the manifest splits.
LOADER_NAMES = {"train": "train", "val": "valid", "test": "test"}


def encode_targets(task: str, labels: Sequence[str]) -> np.ndarray:
    """Manifest labels -> class indices (modules I-II) or an (N, 14) 0/1 matrix (module III)."""
    if paper.is_multilabel(task):
        return findings_to_vector(labels)
    classes = paper.classes_for(task)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not classes of task {task!r}: {classes}")
    return np.array([index[lbl] for lbl in labels], dtype=np.int64)


class CachedImageDataset(Dataset):
    """Images of one split, read from the cache, with light augmentation when ``train``
    (see :func:`augment`)."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, train: bool = False,
                 seed: int = 0, augment: str = "flip_crop") -> None:
        self.images = images
        self.targets = targets
        self.train = train
        self.seed = seed
        self.augment = augment

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([i]).items()}

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """A whole batch at once: one read from the cache, one standardisation (the DataLoader
        calls this with the batch's indices; :func:`pass_batch` is its collate function)."""
        idx = np.asarray(indices, dtype=np.int64)
        order = np.argsort(idx)  # a memmap reads sorted indices fastest; restore the order after
        imgs = np.asarray(self.images[idx[order]])[np.argsort(order)]
        if self.train and self.augment != "none":
            imgs = augment_batch(imgs, self.augment)
        return {"features": to_model_input(imgs), "targets": torch.as_tensor(self.targets[idx])}


def pass_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Collate function for datasets whose ``__getitems__`` already builds the batch."""
    return batch


AUGMENTATIONS = ("flip_crop", "hv_flip")


def augment(img: np.ndarray, mode: str = "flip_crop") -> np.ndarray:
    """One 8-bit image through :func:`augment_batch` (the same draws, the same result)."""
    return augment_batch(np.asarray(img)[None], mode)[0]


def augment_batch(imgs: np.ndarray | torch.Tensor, mode: str = "flip_crop") -> np.ndarray:
    """A batch of 8-bit images ``(N, H, W)`` augmented, each with its own random parameters.

    ``flip_crop`` (ours): random horizontal flip and a random crop of 85-100 % of each side,
    resized back to ``H x W`` (bilinear); ``hv_flip`` (the authors' code): random horizontal
    and vertical flips.  Geometric only: photometric augmentation did not help transfer to
    real films, and the per-image standardisation already removes exposure differences.

    The parameters of the whole batch come from one draw of torch's (seeded) generator,
    ``torch.rand(N, 4)`` in float64: per image a flip, the crop's scale, its top and its left
    (``hv_flip``: the two flips).  One draw costs the same for 4 images as for 64, where four
    scalar draws per image were a fifth of a 64 px batch's time.  The pixels: the crop is a view
    of the source (a flip before the crop is the mirrored crop flipped after the resize, which
    gives the same pixels), resized by OpenCV straight into the output batch: no copy of the
    crop, no stacking.  (Computing the whole batch as tensors, two gathers of rows and columns,
    was measured slower on 2 cores: a batch of 224 px floats leaves the cache, where OpenCV
    works on one image in it.)
    """
    import cv2

    if mode not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {mode!r}; expected flip_crop, hv_flip or none")
    src = imgs.numpy() if torch.is_tensor(imgs) else np.asarray(imgs)
    n, h, w = src.shape
    out = np.empty_like(src)
    u = torch.rand(n, 4, dtype=torch.float64).numpy()
    if mode == "hv_flip":
        hflip, vflip = u[:, 0] < 0.5, u[:, 1] < 0.5
        codes = np.where(hflip & vflip, -1, np.where(hflip, 1, np.where(vflip, 0, 2)))
        for i in range(n):
            if codes[i] == 2:
                out[i] = src[i]
            else:
                cv2.flip(src[i], int(codes[i]), dst=out[i])
        return out
    hflip = u[:, 0] < 0.5
    scale = 0.85 + 0.15 * u[:, 1]
    ch = np.maximum(8, (h * scale).astype(np.int64))
    cw = np.maximum(8, (w * scale).astype(np.int64))
    top = np.minimum((u[:, 2] * (h - ch + 1)).astype(np.int64), h - ch)
    left = np.minimum((u[:, 3] * (w - cw + 1)).astype(np.int64), w - cw)
    left = np.where(hflip, w - left - cw, left)  # columns of the flipped image, mirrored
    for i, (t, l, y, x, f) in enumerate(zip(top.tolist(), left.tolist(), ch.tolist(),
                                            cw.tolist(), hflip.tolist())):
        cv2.resize(src[i, t:t + y, l:l + x], (w, h), dst=out[i], interpolation=cv2.INTER_LINEAR)
        if f:
            cv2.flip(out[i], 1, dst=out[i])
    return out


def load_split_arrays(manifest: pd.DataFrame, task: str, image_size: int, cache_dir: str | Path,
                      split: str, max_items: int | None = None,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Cached images, targets and manifest rows of one split (unreadable images dropped)."""
    rows = manifest[manifest["split"] == split].reset_index(drop=True)
    if max_items and len(rows) > max_items:  # None or 0: all
        rows = rows.sample(n=max_items, random_state=seed).reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"the {task} manifest has no images in split {split!r}")
    cache: ImageCache = build_cache(rows["path"].tolist(), image_size, cache_dir,
                                    desc=f"cache {task}/{split}")
    keep = np.asarray(cache.ok, dtype=bool)
    if not keep.all():
        print(f"{task}/{split}: {int((~keep).sum())} unreadable image(s) skipped "
              f"(see {cache.folder})")
    rows = rows[keep].reset_index(drop=True)
    images = np.asarray(cache.images)[keep] if not keep.all() else cache.images
    return images, encode_targets(task, rows["label"].tolist()), rows


def make_loaders(manifest_csv: str | Path, task: str, image_size: int, batch_size: int,
                 cache_dir: str | Path, num_workers: int = 0, seed: int = 0,
                 max_train: int | None = None, splits: Sequence[str] = ("train", "val"),
                 pin_memory: bool = False, augment: str = "flip_crop") -> "OrderedDict[str, DataLoader]":
    """Catalyst loaders (``train``, ``valid``[, ``test``]) of a task manifest, via the cache;
    ``augment`` (the ``AUGMENT`` setting) is applied to the training split only."""
    manifest = read_task_manifest(manifest_csv)
    loaders: "OrderedDict[str, DataLoader]" = OrderedDict()
    for split in splits:
        images, targets, _ = load_split_arrays(
            manifest, task, image_size, cache_dir, split,
            max_items=max_train if split == "train" else None, seed=seed)
        train = split == "train"
        generator = torch.Generator().manual_seed(seed)
        loaders[LOADER_NAMES[split]] = DataLoader(
            CachedImageDataset(images, targets, train=train, seed=seed, augment=augment),
            batch_size=batch_size, shuffle=train, num_workers=num_workers, collate_fn=pass_batch,
            generator=generator, drop_last=train and len(targets) > batch_size,
            pin_memory=pin_memory, persistent_workers=num_workers > 0)
    return loaders
