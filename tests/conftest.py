"""Shared fixtures: tiny synthetic task manifests for fast training tests, the shared folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xray_utils.config import paper


def write_tiny_task(folder: Path, task: str, n: int = 80, size: int = 32, seed: int = 0) -> Path:
    """A learnable toy task manifest: class 0 has a bright square, others do not / other shapes.

    For the chest task, each of the first two findings is a bright blob in its own corner.
    """
    rng = np.random.default_rng(seed)
    img_dir = folder / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    classes = paper.classes_for(task)
    rows = []
    splits = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    for i in range(n):
        img = rng.normal(90, 15, (size, size))
        if task == "chest":
            present = [f for j, f in enumerate(paper.FINDINGS[:2]) if rng.random() < 0.4]
            for f in present:
                y0 = 4 if f == paper.FINDINGS[0] else size // 2
                img[y0:y0 + size // 3, 4:4 + size // 3] += 90
            label = "|".join(present) or paper.NO_FINDING
        else:
            k = i % 2
            label = classes[k]
            if k == 0:
                img[size // 4: 3 * size // 4, size // 4: 3 * size // 4] += 90
        path = img_dir / f"{task}_{i:03d}.png"
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path)
        rows.append({"path": str(path), "label": label, "patient_id": f"p{i}",
                     "split": splits[i % 10], "source": "test", "boxes": "",
                     "width": size, "height": size})
    manifest = folder / f"{task}.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


@pytest.fixture
def tiny_task(tmp_path):
    """Factory: ``tiny_task(task, n=80, size=32)`` -> manifest path in a fresh tmp folder."""
    def make(task: str, n: int = 80, size: int = 32, seed: int = 0) -> Path:
        return write_tiny_task(tmp_path / f"data_{task}", task, n=n, size=size, seed=seed)
    return make


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests with one torch thread (steadier on a shared 2-core machine)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
