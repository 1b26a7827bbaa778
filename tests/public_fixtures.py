"""Small archives in each public source's exact layout, and a local HTTP server to serve them.

Every archive is written at test time (nothing binary is committed) with the publisher's file
and folder names: ``chestmnist_64.npz`` (keys ``{train,val,test}_{images,labels}``),
``MedNIST.tar.gz`` (``MedNIST/<class>/NNNNNN.jpeg``), ``FracAtlas.zip``
(``FracAtlas/dataset.csv`` + ``FracAtlas/images/{Fractured,Non_fractured}/IMGnnnnnnn.jpg`` +
annotations) and ``imagenette2-160.tgz`` (``imagenette2-160/{train,val}/<wnid>/*.JPEG``).
Images are tiny (32-64 px) random noise; each file's pixels differ.

:class:`RangeServer` serves a folder on 127.0.0.1 with HTTP ``Range`` support, logs every
request (path, ``Range`` header, status), and can cut the connection halfway through the first
download of chosen files -- to test resumed downloads without the internet.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import tarfile
import threading
import zipfile
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterable, Mapping
from urllib.parse import unquote, urlparse

import numpy as np
from PIL import Image

from xray_utils.config import paper
from xray_utils.sources.public import FILES, MEDNIST_CLASSES, PublicFile

#: Split sizes of the fixture ChestMNIST npz (the real one: 78,468 / 11,219 / 22,433).
CHESTMNIST_COUNTS: Mapping[str, int] = {"train": 14, "val": 4, "test": 6}
MEDNIST_PER_CLASS = 3
IMAGENETTE_WNIDS = ("n01440764", "n02102040", "n03888257")


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _noise(key: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(key.encode())).integers(0, 256, shape, dtype=np.uint8)


def _jpeg(key: str, size: tuple[int, int] = (40, 48), rgb: bool = False) -> bytes:
    shape = (size[1], size[0], 3) if rgb else (size[1], size[0])
    buf = io.BytesIO()
    Image.fromarray(_noise(key, shape)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _add_tar(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


# ----------------------------------------------------------------------------- ChestMNIST
def write_chestmnist_npz(folder: Path, size: int = 64,
                         counts: Mapping[str, int] = CHESTMNIST_COUNTS) -> tuple[Path, dict[str, np.ndarray]]:
    """``<folder>/chestmnist_<size>.npz``; returns the path and the labels of each split."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(size)
    arrays, labels = {}, {}
    for split, n in counts.items():
        lab = (rng.random((n, len(paper.FINDINGS))) < 0.15).astype(np.uint8)
        lab[0] = 0                                   # a "No Finding" film in every split
        lab[1, [2, 4]] = 1                           # and one with Effusion + Mass
        arrays[f"{split}_images"] = _noise(f"cm-{split}", (n, size, size))
        arrays[f"{split}_labels"] = lab
        labels[split] = lab
    path = folder / f"chestmnist_{size}.npz"
    np.savez_compressed(path, **arrays)
    return path, labels


# ----------------------------------------------------------------------------- MedNIST
def write_mednist_tar(folder: Path, per_class: int = MEDNIST_PER_CLASS) -> Path:
    """``<folder>/MedNIST.tar.gz`` holding ``MedNIST/<class>/000000.jpeg`` ... (64 x 64)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "MedNIST.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for cls in MEDNIST_CLASSES:
            for i in range(per_class):
                _add_tar(tf, f"MedNIST/{cls}/{i:06d}.jpeg", _jpeg(f"mednist-{cls}-{i}", (64, 64)))
    return path


# ----------------------------------------------------------------------------- FracAtlas
FRACATLAS_HEADER = ("image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,fractured,"
                    "fracture_count,frontal,lateral,oblique")
#: (image_id, region flags hand/leg/hip/shoulder, mixed, fractured, what the manifest does):
#: a Module II type for films of the shipped review table (real ids; the flags may disagree,
#: as in the dataset: a "hand" flag on a forearm, a "leg" flag on a knee), "unknown" for films
#: outside it (Module I only), or why the film is left out.
FRACATLAS_ROWS: tuple[tuple[str, tuple[int, int, int, int], int, int, str], ...] = (
    ("IMG0000031.jpg", (1, 0, 0, 0), 0, 0, "hand"),
    ("IMG0000165.jpg", (1, 0, 0, 0), 0, 1, "hand"),
    ("IMG0000198.jpg", (1, 0, 0, 0), 0, 0, "forearm"),
    ("IMG0000484.jpg", (1, 0, 0, 0), 0, 1, "elbow"),
    ("IMG0000329.jpg", (0, 0, 1, 0), 0, 0, "hip"),
    ("IMG0000344.jpg", (0, 0, 1, 0), 0, 1, "hip"),
    ("IMG0001166.jpg", (0, 0, 0, 1), 0, 0, "shoulder"),
    ("IMG0001178.jpg", (0, 0, 0, 1), 0, 1, "shoulder"),
    ("IMG0000139.jpg", (0, 1, 0, 0), 0, 0, "knee"),
    ("IMG0000061.jpg", (0, 1, 0, 0), 0, 1, "foot"),
    ("IMG0000001.jpg", (1, 0, 0, 0), 0, 0, "unknown"),
    ("IMG0000002.jpg", (0, 0, 1, 0), 0, 1, "unknown"),
    ("IMG0000008.jpg", (0, 1, 0, 0), 0, 0, "unknown"),
    ("IMG0000009.jpg", (1, 1, 0, 0), 1, 0, "unknown"),
    ("IMG0003375.jpg", (1, 0, 0, 0), 0, 1, "in_both_folders"),
    ("IMG0004028.jpg", (1, 0, 0, 0), 0, 0, "truncated"),
)


def write_fracatlas_zip(folder: Path) -> Path:
    """``<folder>/FracAtlas.zip`` in the figshare v7 layout: reviewed films, films of unknown body
    part (single flag, leg, mixed), and one of each kind the manifest leaves out (in both class
    folders, truncated JPEG)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "FracAtlas.zip"
    lines = [FRACATLAS_HEADER]
    with zipfile.ZipFile(path, "w") as zf:
        for image_id, (hand, leg, hip, shoulder), mixed, fractured, kind in FRACATLAS_ROWS:
            lines.append(f"{image_id},{hand},{leg},{hip},{shoulder},{mixed},0,0,{fractured},"
                         f"{fractured},1,0,0")
            data = _jpeg(f"frac-{image_id}", (48, 40))
            if kind == "truncated":
                data = data[: int(len(data) * 0.6)]
            folder_name = "Fractured" if fractured else "Non_fractured"
            zf.writestr(f"FracAtlas/images/{folder_name}/{image_id}", data)
            if kind == "in_both_folders":
                zf.writestr(f"FracAtlas/images/Non_fractured/{image_id}", data)
            if fractured:
                zf.writestr(f"FracAtlas/Annotations/YOLO/{Path(image_id).stem}.txt", "0 0.5 0.5 0.1 0.1\n")
        zf.writestr("FracAtlas/Annotations/COCO JSON/COCO_fracture_masks.json", "{}")
        zf.writestr("FracAtlas/utilities/Fracture_Split/train.csv", "image_id\n")
        zf.writestr("FracAtlas/dataset.csv", "\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------- Imagenette
def write_imagenette_tgz(folder: Path, px: int = 160, per_split: int = 2) -> tuple[Path, int]:
    """``<folder>/imagenette2-<px>.tgz``; returns the path and the number of photographs."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"imagenette2-{px}.tgz"
    top = f"imagenette2-{px}"
    count = 0
    csv = ["path,noisy_labels_0,noisy_labels_1,noisy_labels_5,noisy_labels_25,noisy_labels_50,is_valid"]
    with tarfile.open(path, "w:gz") as tf:
        for wnid in IMAGENETTE_WNIDS:
            for k in range(per_split):
                for split, name in (("train", f"{wnid}_{10026 + k}.JPEG"),
                                    ("val", f"ILSVRC2012_val_{9111 + k:08d}.JPEG")):
                    rel = f"{split}/{wnid}/{name}"
                    _add_tar(tf, f"{top}/{rel}", _jpeg(f"nette-{rel}", (40, 32), rgb=True))
                    csv.append(f"{rel},{wnid},{wnid},{wnid},{wnid},{wnid},{split == 'val'}")
                    count += 1
        _add_tar(tf, f"{top}/noisy_imagenette.csv", ("\n".join(csv) + "\n").encode())
    return path, count


def write_all(folder: Path) -> dict[str, Path]:
    """All four archives (the files a ``public`` run at 64 px needs), by registry name."""
    return {"chestmnist_64": write_chestmnist_npz(folder)[0], "mednist": write_mednist_tar(folder),
            "fracatlas": write_fracatlas_zip(folder), "imagenette2_160": write_imagenette_tgz(folder)[0]}


def registry_for(archives: Mapping[str, Path], base_url: str) -> dict[str, PublicFile]:
    """The real registry entries, pointed at ``<base_url>/<file name>`` with the fixtures' md5."""
    return {name: dataclasses.replace(FILES[name], url=f"{base_url}/{Path(p).name}",
                                      size=Path(p).stat().st_size, size_exact=True,
                                      checksums=(f"md5:{md5(p)}",))
            for name, p in archives.items()}


# ----------------------------------------------------------------------------- HTTP server
class _RangeHandler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _serve(self, body: bool) -> None:
        name = unquote(urlparse(self.path).path).lstrip("/")
        path = self.server.root / name
        rng = self.headers.get("Range")
        entry = {"method": self.command, "path": name, "range": rng, "status": 0}
        self.server.log.append(entry)
        if not path.is_file():
            entry["status"] = 404
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m:
            start = int(m.group(1))
            if start >= len(data):
                entry["status"] = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        entry["status"] = 206 if m else 200
        self.send_response(entry["status"])
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        if m:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if not body:
            return
        if not m and body and name in self.server.cut_once and name not in self.server.cut_done:
            self.server.cut_done.add(name)
            entry["cut_after"] = len(data) // 2
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    log: list
    cut_once: set
    cut_done: set


class RangeServer:
    """Serve ``root`` on 127.0.0.1 (a free port) in a thread; ``with RangeServer(root) as s:``.

    ``s.url`` is the base URL, ``s.log`` the request log (dicts with method, path, range,
    status, and ``cut_after`` for a cut transfer); ``s.cut(name)`` makes the first full GET of
    ``name`` stop after half the bytes (the headers announce the whole file).
    """

    def __init__(self, root: Path) -> None:
        self.httpd = _Server(("127.0.0.1", 0), _RangeHandler)
        self.httpd.root = Path(root)
        self.httpd.log = []
        self.httpd.cut_once = set()
        self.httpd.cut_done = set()
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def log(self) -> list[dict]:
        return self.httpd.log

    def cut(self, names: Iterable[str] | str) -> None:
        self.httpd.cut_once.update([names] if isinstance(names, str) else names)

    def __enter__(self) -> "RangeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
