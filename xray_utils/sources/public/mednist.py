"""MedNIST (MONAI): 64 px JPEGs of six classes; CXR and Hand are X-rays, the CT and MRI slices
are the hard "not X-ray" negatives of Module I (beyond the paper)."""
from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import pandas as pd

from xray_utils.sources.public.spec import PublicDataError, PublicDataset, PublicFile, frame

NAME = "mednist"
#: MedNIST folder -> (is X-ray, X-ray type).  CT and MRI slices are not radiographs.
MEDNIST_CLASSES: Mapping[str, tuple[bool, str]] = MappingProxyType({
    "AbdomenCT": (False, ""), "BreastMRI": (False, ""), "CXR": (True, "chest"),
    "ChestCT": (False, ""), "Hand": (True, "hand"), "HeadCT": (False, "")})

#: What the dataset is, its licence and how to cite it.
SPEC: PublicDataset = PublicDataset(
    name="mednist", title="MedNIST (MONAI)",
    licence="CC BY-SA 4.0", licence_url="https://creativecommons.org/licenses/by-sa/4.0/",
    citation=("MedNIST, gathered from TCIA, the RSNA Bone Age Challenge and the NIH Chest "
              "X-ray dataset; made available by Dr. Bradley J. Erickson M.D., Ph.D. "
              "(Department of Radiology, Mayo Clinic); distributed by Project MONAI"),
    homepage="https://github.com/Project-MONAI/tutorials",
    used_for="Modules I-II (CXR = chest, Hand = hand); AbdomenCT, BreastMRI, ChestCT, "
             "HeadCT as hard 'not X-ray' negatives of Module I",
    notes="Share-alike: figures showing MedNIST images are CC BY-SA 4.0 too.")

#: Its downloadable files (:class:`~xray_utils.sources.public.spec.PublicFile`).
FILES: tuple[PublicFile, ...] = (
    PublicFile(
        name="mednist", dataset="mednist",
        url="https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/MedNIST.tar.gz",
        filename="MedNIST.tar.gz", size=59_000_000, size_exact=False,
        size_source="estimate: 59.0 MB in a MONAI tutorial's download log",
        checksums=("md5:0bc7306e7427e00ad1c5526a6677552d",),
        checksum_source="MONAI (monai.apps.MedNISTDataset and the MedNIST tutorial)",
        layout="MedNIST/{AbdomenCT,BreastMRI,CXR,ChestCT,Hand,HeadCT}/NNNNNN.jpeg (64 x 64)"),
)


def mednist_images(root: Path) -> pd.DataFrame:
    """MedNIST rows: CXR and Hand are X-rays, the four CT / MRI classes are not."""
    frames = []
    missing = [c for c in MEDNIST_CLASSES if not (root / c).is_dir()]
    if missing:
        raise PublicDataError(f"MedNIST: {root} lacks the class folder(s) {missing}; expected "
                              f"{FILES[0].layout}")
    for cls, (xray, xtype) in MEDNIST_CLASSES.items():
        files = sorted(p for p in (root / cls).iterdir()
                       if p.suffix.lower() in (".jpeg", ".jpg", ".png") and not p.name.startswith("."))
        frames.append(frame([str(p) for p in files], is_xray="1" if xray else "0", xray_type=xtype,
                             patient_id=[f"mednist:{cls}/{p.stem}" for p in files], source="mednist"))
    return pd.concat(frames, ignore_index=True)
