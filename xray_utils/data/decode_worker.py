"""Decoding under a memory and a time budget: :func:`~xray_utils.data.imageio.read_gray` in a child
process.

The reader's own checks (declared sizes, DICOM element and item counts, compressed frames
against their headers, TIFF tiles; see :mod:`xray_utils.data.imageio`) refuse the known kinds of
image bomb before decoding.  What they cannot foresee -- a decoder library that needs far more
memory or time than the file suggests -- is bounded here: a :class:`DecodeWorker` runs the reader
in a separate Python process whose address space is limited to what it had after its imports plus
:data:`~xray_utils.data.imageio.DECODE_MEMORY_BYTES`, and each file gets at most
:data:`~xray_utils.data.imageio.DECODE_TIMEOUT_S` seconds.  A file over either budget is refused
with one sentence (an :class:`~xray_utils.data.imageio.ImageReadError`); the worker is restarted
and the next file is read as usual, so one hostile file never takes the caller (a ``diagnose``
batch, the app) down with it.

The worker is started on first use (about half a second) and kept for the next files; the
:class:`~xray_utils.diagnose.diagnoser.Diagnoser` reads every file through one.  Only decoded
pixels come back (a small header and the raw ``uint8`` bytes; nothing is unpickled from the child).
"""
from __future__ import annotations

import os
import pickle
import resource
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from xray_utils.data import imageio
from xray_utils.data.imageio import ImageReadError, display_name

_OK, _ERROR, _REFUSED_MEMORY = 0, 1, 2
_HEADER = struct.Struct("<BIIQ")  # status, height, width, payload bytes


def _vm_size() -> int:
    """This process's virtual memory size in bytes (Linux), 0 when unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _serve(memory_bytes: int) -> None:
    """The child's loop: read requests from stdin, answer on stdout, until stdin closes."""
    # warm the decoders the reader imports lazily, so that the limit is set after them
    import pydicom  # noqa: F401
    import pydicom.pixels  # noqa: F401

    base = _vm_size()
    if base and memory_bytes > 0:
        limit = base + memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # the answers go to a private copy of stdout; whatever a decoder library prints goes to
    # stderr instead of into the answers
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return
        (n,) = struct.unpack("<Q", head)
        request = pickle.loads(inp.read(n))  # from the parent process only
        kind, source, name, kwargs = request
        try:
            if kind == "path":
                img = imageio.read_gray(source, **kwargs)
            else:
                img = imageio.read_gray_bytes(source, name, **kwargs)
            del request, source
            data = np.ascontiguousarray(img, dtype=np.uint8).tobytes()
            out.write(_HEADER.pack(_OK, img.shape[0], img.shape[1], len(data)) + data)
        except MemoryError:
            out.write(_HEADER.pack(_REFUSED_MEMORY, 0, 0, 0))
        except ImageReadError as exc:
            message = str(exc).encode("utf-8", "backslashreplace")
            out.write(_HEADER.pack(_ERROR, 0, 0, len(message)) + message)
        out.flush()


class DecodeWorker:
    """Reads images in a child process under a memory limit and a time limit per file.

    ``memory_bytes`` (default :data:`~xray_utils.data.imageio.DECODE_MEMORY_BYTES`) is what the
    decoding may add to the child's address space; ``timeout_s`` (default
    :data:`~xray_utils.data.imageio.DECODE_TIMEOUT_S`) the seconds one file may take.  Methods
    mirror the reader's: :meth:`read_gray` and :meth:`read_gray_bytes` (same keyword limits),
    raising :class:`~xray_utils.data.imageio.ImageReadError` for every refusal, budgets included.
    Thread-safe (one file at a time); :meth:`close` ends the child (also at garbage collection).
    """

    def __init__(self, memory_bytes: int | None = None, timeout_s: float | None = None) -> None:
        self.memory_bytes = int(imageio.DECODE_MEMORY_BYTES if memory_bytes is None
                                else memory_bytes)
        self.timeout_s = float(imageio.DECODE_TIMEOUT_S if timeout_s is None else timeout_s)
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public

    def read_gray(self, path: str | os.PathLike, **limits) -> np.ndarray:
        """:func:`~xray_utils.data.imageio.read_gray` of ``path`` in the child."""
        name = display_name(path)
        return self._ask(("path", os.fspath(path), name, limits), name)

    def read_gray_bytes(self, data: bytes | bytearray | memoryview, name: str = "<bytes>",
                        **limits) -> np.ndarray:
        """:func:`~xray_utils.data.imageio.read_gray_bytes` of ``data`` in the child."""
        return self._ask(("bytes", bytes(data), name, limits), display_name(name))

    def close(self) -> None:
        """End the child process (a later read starts a new one)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=2)
        except Exception:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout,):
            try:
                stream.close()
            except Exception:
                pass

    def __del__(self) -> None:  # pragma: no cover - depends on the garbage collector
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> "DecodeWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _start(self) -> subprocess.Popen:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        # one thread: the child decodes one file at a time, and thread stacks count against
        # the address-space limit
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"
        code = ("import sys; from xray_utils.data.decode_worker import _serve; "
                f"_serve({self.memory_bytes})")
        return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                close_fds=True)

    def _ask(self, request: tuple, name: str) -> np.ndarray:
        # the limit as this process has it (a program may lower the module constant)
        request[3].setdefault("max_bytes", imageio.MAX_DECODED_BYTES)
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            proc = self._proc
            payload = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
            try:
                proc.stdin.write(struct.pack("<Q", len(payload)) + payload)
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._kill()
                raise self._crashed(name) from None
            deadline = time.monotonic() + self.timeout_s
            try:
                head = self._read(proc, _HEADER.size, deadline)
                status, h, w, n = _HEADER.unpack(head)
                body = self._read(proc, n, deadline) if n else b""
            except TimeoutError:
                self._kill()
                raise ImageReadError(
                    f"{name}: decoding took longer than {self.timeout_s:g} s, the time this reader "
                    "allows one image (xray_utils.data.imageio.DECODE_TIMEOUT_S); refused (a "
                    "guard against images built to exhaust the decoder). Export the image "
                    "again, uncompressed or smaller.") from None
            except EOFError:
                self._kill()
                raise self._crashed(name) from None
            if status == _OK and h * w == n:
                return np.frombuffer(body, dtype=np.uint8).reshape(h, w).copy()
            if status == _ERROR:
                raise ImageReadError(body.decode("utf-8", "backslashreplace"))
            self._kill()  # a MemoryError may leave the child's heap in any state
            raise self._over_memory(name)

    def _crashed(self, name: str) -> ImageReadError:
        return ImageReadError(
            f"{name}: the decoder stopped on this file (it needed more than the "
            f"{self.memory_bytes / 2**20:,.0f} MiB this reader allows one image, "
            "xray_utils.data.imageio.DECODE_MEMORY_BYTES, or the file is corrupt); refused. "
            "Export the image again, uncompressed or smaller.")

    def _over_memory(self, name: str) -> ImageReadError:
        return ImageReadError(
            f"{name}: decoding needed more than the {self.memory_bytes / 2**20:,.0f} MiB this "
            "reader allows one image (xray_utils.data.imageio.DECODE_MEMORY_BYTES); refused (a "
            "guard against 'decompression bombs'). Export the image again, smaller.")

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except Exception:
                    pass

    @staticmethod
    def _read(proc: subprocess.Popen, n: int, deadline: float) -> bytes:
        fd = proc.stdout.fileno()
        parts, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, min(n - got, 1 << 20))
            if not chunk:
                raise EOFError
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

