"""The embedded demo dataset: generated radiograph phantoms and photographs, and the sample DICOM films.

:func:`build_demo_dataset` renders every image (see :mod:`xray_utils.sources.phantoms`) into
``<out_dir>/images/<kind>/`` as 8-bit grey PNG and writes the image manifest
``<out_dir>/images.csv`` (schema: :mod:`xray_utils.data.manifests`) and ``<out_dir>/demo_info.json``.

* Deterministic: image ``i`` of kind ``k`` is rendered from the seed ``(seed, code(k), i)``,
  so the files do not depend on the number of worker processes or on the order they finish.
* Resumable: work is done in chunks; each finished chunk leaves a small record in
  ``<out_dir>/.parts``; an interrupted build picks up where it stopped, and the manifest is
  written last (atomically), so a manifest on disk always describes a complete dataset.
* Cached: a second call with the same parameters returns at once (``force=True`` rebuilds).

:func:`sample_dicom_films` locates the sample DICOM films: the two computed radiographs shipped by
``pydicom-data``.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from xray_utils.config import paper
from xray_utils.config.profiles import check_types
from xray_utils.data import manifests

#: The sample DICOM films (the two radiographs of ``pydicom-data``): name -> (file, what it shows).
SAMPLE_DICOM_FILMS: dict[str, tuple[str, str]] = {
    "chest_pa": ("RG1_UNCR.dcm", "chest PA computed radiograph (MONOCHROME1, several round opacities)"),
    "ankle": ("RG3_UNCR.dcm", "distal tibia and ankle computed radiograph (MONOCHROME1)"),
}

_PHOTO_CODE = 100
_CHEST_PATIENT_CODE = 200
_CHUNK = 48


#: ``source`` of every generated image in the manifests (real images carry their dataset's name).
SOURCE = "demo"


def is_generated(source: pd.Series) -> pd.Series:
    """True for images the demo generator drew; everything else is a real image (the shipped
    films in the demo, every image of the public and full profiles)."""
    return source.astype(str) == SOURCE


def sample_dicom_films() -> dict[str, Path]:
    """Paths of the sample DICOM films, the two radiographs shipped with ``pydicom-data`` (used as
    examples, never for training): ``{"chest_pa": .../RG1_UNCR.dcm, "ankle": .../RG3_UNCR.dcm}``."""
    try:
        from pydicom.data import get_testdata_file
    except ImportError as exc:  # pragma: no cover - pydicom is a dependency
        raise RuntimeError("pydicom is not installed; install the project's requirements "
                           "(pip install -e .) to get pydicom and pydicom-data") from exc
    out = {}
    for name, (fname, _) in SAMPLE_DICOM_FILMS.items():
        path = get_testdata_file(fname)
        if path is None:
            raise FileNotFoundError(
                f"{fname} is not available from pydicom's test data; install the package "
                "'pydicom-data' (pip install pydicom-data), which ships it")
        out[name] = Path(path)
    return out


def _kind_code(kind: str) -> int:
    return _PHOTO_CODE if kind == "photo" else paper.XRAY_TYPES.index(kind)


def chest_patients(n_chest: int, seed: int) -> list[int]:
    """Patient number of each chest film: most patients have one film, some 2-3 follow-ups."""
    rng = np.random.default_rng([seed, _CHEST_PATIENT_CODE])
    out: list[int] = []
    p = 0
    while len(out) < n_chest:
        k = int(rng.choice([1, 2, 3], p=[0.78, 0.14, 0.08]))
        out.extend([p] * k)
        p += 1
    return out[:n_chest]


def _jobs(per_type: int, n_chest: int, n_photos: int, seed: int,
          types: Sequence[str] = paper.XRAY_TYPES) -> list[dict[str, Any]]:
    """Everything to render, in manifest order (``types``: the non-chest types to render)."""
    jobs: list[dict[str, Any]] = []
    for kind in paper.XRAY_TYPES:
        if kind != "chest" and kind not in types:
            continue
        if kind == "chest":
            for i, pat in enumerate(chest_patients(n_chest, seed)):
                jobs.append({"kind": kind, "index": i, "patient": pat})
        else:
            jobs.extend({"kind": kind, "index": i} for i in range(per_type))
    jobs.extend({"kind": "photo", "index": i} for i in range(n_photos))
    return jobs


def _rel_path(job: dict[str, Any]) -> str:
    return f"images/{job['kind']}/{job['kind']}_{job['index']:05d}.png"


def _write_png(img: np.ndarray, path: Path) -> None:
    """Write atomically: a crash never leaves a truncated PNG behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(img).save(tmp, format="PNG", optimize=False, compress_level=6)
    os.replace(tmp, path)


def render_job(job: dict[str, Any], seed: int, size: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Render one job -> (image, manifest row without ``path``/``split``)."""
    from xray_utils.sources.phantoms import render

    kind = job["kind"]
    img_seed = (seed, _kind_code(kind), job["index"])
    if kind == "chest":
        film = render("chest", img_seed, size, patient=(seed, _CHEST_PATIENT_CODE, job["patient"]))
        findings = "|".join(film.findings) if film.findings else paper.NO_FINDING
        patient = f"demo-chest-{job['patient']:05d}"
    else:
        film = render(kind, img_seed, size)
        findings = ""
        patient = f"demo-{kind}-{job['index']:05d}"
    row = {"is_xray": 0 if kind == "photo" else 1, "xray_type": "" if kind == "photo" else kind,
           "findings": findings, "patient_id": patient, "source": SOURCE,
           "boxes": manifests.encode_boxes(film.boxes), "width": int(film.image.shape[1]),
           "height": int(film.image.shape[0])}
    return film.image, row


def _run_chunk(args: tuple[list[dict[str, Any]], int, int, str]) -> list[dict[str, Any]]:
    """Worker: render and write one chunk of jobs; returns their manifest rows."""
    jobs, seed, size, out_dir = args
    rows = []
    for job in jobs:
        img, row = render_job(job, seed, size)
        rel = _rel_path(job)
        _write_png(img, Path(out_dir) / rel)
        rows.append({"path": rel, **row})
    return rows


def _params(image_size: int, per_type: int, n_chest: int, n_photos: int, seed: int,
            types: Sequence[str]) -> dict[str, Any]:
    from xray_utils.sources.phantoms import GENERATOR_VERSION

    return {"image_size": int(image_size), "per_type": int(per_type), "n_chest": int(n_chest),
            "n_photos": int(n_photos), "seed": int(seed), "generator_version": GENERATOR_VERSION,
            "types": [t for t in paper.XRAY_TYPES if t in types and t != "chest"]}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def build_demo_dataset(out_dir: str | Path, *, image_size: int | None = None, per_type: int | None = None,
                       n_chest: int | None = None, n_photos: int | None = None, seed: int = 0,
                       types: Sequence[str] | str | None = None, workers: int = 2,
                       force: bool = False, progress: bool = True) -> Path:
    """Generate the demo dataset under ``out_dir``; returns the path of ``images.csv``.

    ``per_type`` images for each non-chest X-ray type of ``types`` (by default the demo's
    ``DEMO_TYPES``: only the types no shipped real film covers well; ``"all"`` for the 13),
    ``n_chest`` chest films (some patients with 2-3 follow-up films; 0 for none), ``n_photos``
    non-X-ray images, all ``image_size`` px square.  Splits are assigned patient-wise, 70/20/10 per type, by
    :func:`xray_utils.data.manifests.assign_splits`.  ``workers`` processes render in parallel (0 or 1:
    in this process).  Returns immediately when ``out_dir`` already holds a dataset built with the
    same parameters, unless ``force``.  Sizes left ``None`` take the demo profile's
    (``DEMO_IMAGE_SIZE``, ``DEMO_PER_TYPE``, ``DEMO_CHEST``, ``DEMO_PHOTOS``, ``DEMO_TYPES`` in
    :mod:`xray_utils.config.profiles`).
    """
    from xray_utils.config.profiles import settings

    demo = settings("demo")
    image_size = demo["DEMO_IMAGE_SIZE"] if image_size is None else image_size
    per_type = demo["DEMO_PER_TYPE"] if per_type is None else per_type
    n_chest = demo["DEMO_CHEST"] if n_chest is None else n_chest
    n_photos = demo["DEMO_PHOTOS"] if n_photos is None else n_photos
    types = check_types(demo["DEMO_TYPES"] if types is None else types)
    for name, val, lo in (("image_size", image_size, 16), ("per_type", per_type, 1), ("n_chest", n_chest, 0),
                          ("n_photos", n_photos, 1)):
        if int(val) < lo:
            raise ValueError(f"build_demo_dataset: {name}={val} is too small (minimum {lo})")
    out = Path(out_dir)
    manifest_path = out / "images.csv"
    info_path = out / "demo_info.json"
    params = _params(image_size, per_type, n_chest, n_photos, seed, types)
    info = _read_json(info_path)
    if not force and manifest_path.is_file() and info is not None and info.get("parameters") == params:
        return manifest_path
    # anything from another parameter set (or a forced rebuild) is removed first
    parts_dir = out / ".parts"
    parts_params = _read_json(parts_dir / "parameters.json")
    if force or parts_params != params:
        for stale in (manifest_path, info_path):
            stale.unlink(missing_ok=True)
        shutil.rmtree(parts_dir, ignore_errors=True)
        shutil.rmtree(out / "images", ignore_errors=True)
    parts_dir.mkdir(parents=True, exist_ok=True)
    _write_json(params, parts_dir / "parameters.json")

    t0 = time.perf_counter()
    jobs = _jobs(per_type, n_chest, n_photos, seed, types)
    chunks = [jobs[i:i + _CHUNK] for i in range(0, len(jobs), _CHUNK)]
    todo = [(k, c) for k, c in enumerate(chunks) if not (parts_dir / f"{k:05d}.json").is_file()]
    bar = tqdm(total=len(jobs), initial=len(jobs) - sum(len(c) for _, c in todo), desc="demo images",
               unit="img", disable=not progress)

    def done(k: int, rows: list[dict[str, Any]]) -> None:
        _write_json(rows, parts_dir / f"{k:05d}.json")
        bar.update(len(rows))

    args = [(c, int(seed), int(image_size), str(out)) for _, c in todo]
    if workers and workers > 1 and len(todo) > 1:
        ctx = mp.get_context("spawn")  # safe beside torch/OpenMP threads in notebooks
        with ctx.Pool(processes=int(workers)) as pool:
            for (k, _), rows in zip(todo, pool.imap(_run_chunk, args)):
                done(k, rows)
    else:
        for (k, _), a in zip(todo, args):
            done(k, _run_chunk(a))
    bar.close()

    rows = []
    for k in range(len(chunks)):
        part = _read_json(parts_dir / f"{k:05d}.json")
        if part is None:
            raise RuntimeError(f"demo build: chunk {k} record {parts_dir / f'{k:05d}.json'} is missing or "
                               "unreadable; run build_demo_dataset again with force=True")
        rows.extend(part)
    df = pd.DataFrame(rows)
    df["split"] = ""
    df = manifests.assign_splits(df[list(manifests.IMAGE_COLUMNS)], seed=seed)
    seconds = time.perf_counter() - t0
    info = {"parameters": params, "counts": _counts(df), "generation_seconds": round(seconds, 1),
            "workers": int(workers),
            "sample_dicom_films": {k: v[0] for k, v in SAMPLE_DICOM_FILMS.items()}}
    _write_json(info, info_path)
    tmp = manifest_path.with_name(".images.csv.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, manifest_path)  # the manifest last: its presence means "complete"
    shutil.rmtree(parts_dir, ignore_errors=True)
    return manifest_path


def _counts(df: pd.DataFrame) -> dict[str, Any]:
    xr = df[df["is_xray"].astype(int) == 1]
    chest = xr[xr["xray_type"] == "chest"]
    findings: dict[str, int] = {f: 0 for f in (*paper.FINDINGS, paper.NO_FINDING)}
    for text in chest["findings"]:
        for name in str(text).split("|"):
            findings[name] = findings.get(name, 0) + 1
    return {"total": int(len(df)), "xray": int(len(xr)), "not_xray": int(len(df) - len(xr)),
            "per_type": {t: int((xr["xray_type"] == t).sum()) for t in paper.XRAY_TYPES},
            "chest_patients": int(chest["patient_id"].nunique()), "findings": findings,
            "splits": {s: int((df["split"] == s).sum()) for s in manifests.SPLITS}}

