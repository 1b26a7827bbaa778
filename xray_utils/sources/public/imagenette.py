"""Imagenette (fast.ai's ten-class subset of ImageNet): the "not X-ray" photographs of Module I,
as in the paper (which took them from ImageNet)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from xray_utils.sources.public.spec import PublicDataError, PublicDataset, PublicFile, frame

NAME = "imagenette"
#: What the dataset is, its licence and how to cite it.
SPEC: PublicDataset = PublicDataset(
    name="imagenette", title="Imagenette (fast.ai subset of ImageNet)",
    licence="no licence stated; ImageNet images (ImageNet terms: non-commercial research "
            "and education)",
    licence_url="https://image-net.org/download.php",
    citation=("J. Howard, Imagenette, https://github.com/fastai/imagenette; ImageNet: "
              "O. Russakovsky, J. Deng, H. Su et al., \"ImageNet Large Scale Visual "
              "Recognition Challenge\", IJCV 115 (2015)"),
    homepage="https://github.com/fastai/imagenette",
    used_for="Module I 'not X-ray' photographs (as in the paper, from ImageNet)")

_IMAGENETTE_CHECKSUM_SOURCE = (
    "first: torchvision / catalyst; second: fastai's data/checks.txt (the S3 object was "
    "replaced at least once, so both published values are accepted)")

_IMAGENETTE_LAYOUT = "imagenette2-{px}/{{train,val}}/<wnid>/*.JPEG + noisy_imagenette.csv"


def _imagenette(px: int, nbytes: int, *md5s: str) -> PublicFile:
    return PublicFile(
        name=f"imagenette2_{px}", dataset="imagenette",
        url=f"https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-{px}.tgz",
        filename=f"imagenette2-{px}.tgz", size=nbytes, size_exact=False,
        size_source="fastai's data/checks.txt (paired there with the second md5)",
        checksums=tuple(f"md5:{m}" for m in md5s), checksum_source=_IMAGENETTE_CHECKSUM_SOURCE,
        layout=_IMAGENETTE_LAYOUT.format(px=px))


#: Its downloadable files (:class:`~xray_utils.sources.public.spec.PublicFile`).
FILES: tuple[PublicFile, ...] = (
    _imagenette(160, 99_003_388, "e793b78cc4c9e9a4ccc0c1155377a412",
                "c475f8f7617a200ba35b9facc48443c3"),
    _imagenette(320, 341_663_724, "3df6f0d01a2c9592104656642f5e78a3",
                "1f1f74f133caff120e575856659b87a2"),
)


def imagenette_images(root: Path) -> pd.DataFrame:
    """Imagenette rows: every JPEG of ``train/`` and ``val/`` is a "not X-ray" photograph."""
    files = sorted(p for split in ("train", "val") if (root / split).is_dir()
                   for p in (root / split).rglob("*")
                   if p.suffix.lower() in (".jpeg", ".jpg", ".png") and not p.name.startswith("."))
    if not files:
        raise PublicDataError(f"Imagenette: no images under {root}/train or {root}/val; expected "
                              f"{_IMAGENETTE_LAYOUT.format(px='<px>')}")
    return frame([str(p) for p in files], is_xray="0",
                  patient_id=[f"imagenette:{p.relative_to(root).as_posix()}" for p in files],
                  source="imagenette")
