"""Checksummed downloads, tested against a local HTTP server on 127.0.0.1 (never the internet)."""
from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
from functools import partial
from pathlib import Path

import pytest
from fixtures_real import shared_dir

from xray_utils.sources import download as downloads
from xray_utils.sources.download import (
    DownloadError,
    RemoteFile,
    fetch,
    fetch_authors_split,
    fetch_many,
)
from xray_utils.sources.paper import read_authors_split

SPLIT = shared_dir() / "reference" / "is2ai-chest-split" if shared_dir() else None
needs_split = pytest.mark.skipif(
    SPLIT is None or not SPLIT.is_dir(),
    reason="shared reference folder absent (XRAY_SHARED_DIR or <repo>/../shared)")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serve ``tmp_path/www`` on 127.0.0.1 (a free port) for the test; yields (folder, base URL)."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("XRAY_OFFLINE", raising=False)
    www = tmp_path / "www"
    www.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}", httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fetch_checks_sha256_caches_and_works_offline_afterwards(tmp_path, server):
    www, url, httpd = server
    data = b"00000001_000.png 0 1 0 0 0 0 0 0 0 0 0 0 0 0\n"
    (www / "a.txt").write_bytes(data)
    registry = {"set/a.txt": RemoteFile(f"{url}/a.txt", sha256(data))}
    cache = tmp_path / "downloads"
    path = fetch("set/a.txt", cache_dir=cache, registry=registry)
    assert path == cache / "set" / "a.txt" and path.read_bytes() == data
    (www / "a.txt").unlink()  # the server no longer has it: the cached copy is used
    assert fetch("set/a.txt", cache_dir=cache, registry=registry).read_bytes() == data
    assert fetch("set/a.txt", cache_dir=cache, registry=registry, offline=True) == path


def test_checksum_mismatch_is_refused(tmp_path, server):
    www, url, _ = server
    (www / "b.txt").write_bytes(b"tampered")
    registry = {"b.txt": RemoteFile(f"{url}/b.txt", sha256(b"original"))}
    with pytest.raises(DownloadError, match=r"b\.txt: the file downloaded from .* failed its sha256 check"):
        fetch("b.txt", cache_dir=tmp_path / "dl", registry=registry)
    assert not (tmp_path / "dl" / "b.txt").exists()


def test_unreachable_file_says_what_to_do(tmp_path, server):
    _, url, _ = server
    registry = {"c.txt": RemoteFile(f"{url}/missing.txt", sha256(b"x"))}
    with pytest.raises(DownloadError,
                       match=r"could not download .*missing\.txt .*download it by hand to .*c\.txt"):
        fetch("c.txt", cache_dir=tmp_path / "dl", registry=registry)


def test_offline_mode_lists_every_missing_or_corrupt_file(tmp_path, monkeypatch):
    registry = {"x/one.txt": RemoteFile("https://example.invalid/one.txt", sha256(b"1")),
                "x/two.txt": RemoteFile("https://example.invalid/two.txt", sha256(b"2"))}
    cache = tmp_path / "dl"
    (cache / "x").mkdir(parents=True)
    (cache / "x" / "two.txt").write_bytes(b"not two")
    monkeypatch.setenv("XRAY_OFFLINE", "1")  # offline through the environment
    with pytest.raises(DownloadError) as err:
        fetch_many(registry, cache_dir=cache, registry=registry)
    text = str(err.value)
    assert text.startswith("offline mode: 2 file(s) unavailable")
    assert (f"x/one.txt: not in the cache (expected at {cache / 'x' / 'one.txt'}; "
            "source https://example.invalid/one.txt)") in text
    assert (f"x/two.txt: {cache / 'x' / 'two.txt'} has sha256 {sha256(b'not two')}, "
            f"expected {sha256(b'2')}") in text
    (cache / "x" / "one.txt").write_bytes(b"1")
    (cache / "x" / "two.txt").write_bytes(b"2")
    assert fetch_many(registry, cache_dir=cache, registry=registry) == {
        "x/one.txt": cache / "x" / "one.txt", "x/two.txt": cache / "x" / "two.txt"}


def test_unknown_name_and_default_folder(monkeypatch, tmp_path):
    with pytest.raises(DownloadError, match="no file 'nope' in the download registry"):
        fetch("nope", offline=True)
    monkeypatch.delenv("XRAY_DOWNLOADS_DIR", raising=False)
    monkeypatch.delenv("XRAY_DATA_DIR", raising=False)
    assert downloads.downloads_dir() == Path(downloads.__file__).resolve().parents[2] / "data" / "downloads"
    monkeypatch.setenv("XRAY_DOWNLOADS_DIR", str(tmp_path))
    assert downloads.downloads_dir() == tmp_path.resolve()


@needs_split
def test_registry_sha256_matches_the_shared_copies_of_the_authors_lists():
    for name in downloads.AUTHORS_SPLIT_FILES:
        local = SPLIT / Path(name).name
        assert sha256(local.read_bytes()) == downloads.REGISTRY[name].sha256, name
        assert downloads.REGISTRY[name].url.startswith(
            f"https://raw.githubusercontent.com/IS2AI/Chest-X-ray-module/{downloads.AUTHORS_COMMIT}/labels/")


@needs_split
def test_fetch_authors_split_through_pooch_with_the_real_checksums(tmp_path, server):
    www, url, _ = server
    for name in downloads.AUTHORS_SPLIT_FILES:
        shutil.copy(SPLIT / Path(name).name, www / Path(name).name)
    registry = {n: RemoteFile(f"{url}/{Path(n).name}", downloads.REGISTRY[n].sha256)
                for n in downloads.AUTHORS_SPLIT_FILES}
    folder = fetch_authors_split(cache_dir=tmp_path / "dl", registry=registry)
    assert folder == tmp_path / "dl" / "is2ai-chest-split"
    table = read_authors_split(folder)
    assert len(table) == 78_468 + 11_219 + 22_433
    assert fetch_authors_split(cache_dir=tmp_path / "dl", offline=True) == folder


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Announces 1,000 bytes and sends one every half second: alive, but far too slow."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                if self.server.stop.wait(0.5):
                    return
        except OSError:  # the client gave up
            pass


def test_a_trickling_server_fails_at_the_deadline_and_the_part_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("XRAY_OFFLINE", raising=False)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    httpd.daemon_threads = True
    httpd.stop = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/slow.txt"
        registry = {"slow.txt": RemoteFile(url, sha256(b"x" * 1000))}
        with pytest.raises(DownloadError, match=r"slow\.txt: could not download .*DownloadTimeout.*"
                                                r"did not finish within its deadline of 1 s"):
            fetch("slow.txt", cache_dir=tmp_path / "dl", registry=registry, deadline=1)
        assert not (tmp_path / "dl" / "slow.txt").exists()
        assert (tmp_path / "dl" / "slow.txt.part").is_file()  # kept: a later run resumes
        monkeypatch.setenv("XRAY_DOWNLOAD_DEADLINE", "1")  # the same through the environment
        with pytest.raises(DownloadError, match="deadline of 1 s"):
            fetch("slow.txt", cache_dir=tmp_path / "dl2", registry=registry)
    finally:
        httpd.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


class _Liar(http.server.BaseHTTPRequestHandler):
    """``/huge``: announces 10 GiB and sends zeros; ``/gzip``: a small gzip body that the client
    decompresses to 8 MiB (Content-Encoding: gzip)."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        import gzip

        try:
            if self.path == "/huge":
                self.send_response(200)
                self.send_header("Content-Length", str(10 * 2**30))
                self.end_headers()
                for _ in range(64):
                    self.wfile.write(bytes(1 << 16))
            else:
                body = gzip.compress(bytes(8 * 2**20))
                self.send_response(200)
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        except OSError:  # the client stopped reading
            pass


@pytest.fixture
def liar(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("XRAY_OFFLINE", raising=False)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Liar)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.mark.parametrize("path,words", [("huge", r"announces 10,737,418,240 bytes"),
                                        ("gzip", r"sent more than")])
def test_download_stops_at_the_size_ceiling_and_keeps_nothing(tmp_path, liar, path, words):
    registry = {f"{path}.bin": RemoteFile(f"{liar}/{path}", sha256(b"x" * 1000), size=1000)}
    assert downloads.size_ceiling(1000) == 1050 + 2**20
    with pytest.raises(DownloadError, match=words + r".*more than the 1,049,626 this file may "
                                                    r"have.*nothing kept"):
        fetch(f"{path}.bin", cache_dir=tmp_path / "dl", registry=registry)
    assert not list((tmp_path / "dl").iterdir())  # no part: it could never be resumed


def test_a_part_longer_than_the_file_is_not_resumed(tmp_path, server):
    www, url, _ = server
    data = b"small file\n"
    (www / "c.txt").write_bytes(data)
    registry = {"c.txt": RemoteFile(f"{url}/c.txt", sha256(data), size=len(data))}
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "c.txt.part").write_bytes(bytes(2 * 2**20))  # beyond the ceiling
    assert fetch("c.txt", cache_dir=tmp_path / "dl", registry=registry).read_bytes() == data


def test_a_file_placed_by_hand_is_moved_aside_never_deleted(tmp_path, server, capsys):
    www, url, _ = server
    data = b"the right content\n"
    (www / "d.txt").write_bytes(data)
    registry = {"d.txt": RemoteFile(f"{url}/d.txt", sha256(data), size=len(data))}
    (tmp_path / "dl").mkdir()
    mine = tmp_path / "dl" / "d.txt"
    mine.write_bytes(b"my own copy")
    assert fetch("d.txt", cache_dir=tmp_path / "dl", registry=registry).read_bytes() == data
    aside = tmp_path / "dl" / "d.txt.rejected"
    assert aside.read_bytes() == b"my own copy"
    assert f"moved aside to {aside} (not deleted)" in capsys.readouterr().out
