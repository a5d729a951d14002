"""Offline tests of the downloader against a local HTTP server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hyperdomainnet import download, paths
from hyperdomainnet.download import (UnverifiedDownloadWarning, download_file,
                                     google_drive_direct_url, part_path, record_path, verify_file)
from hyperdomainnet.errors import HDNError

DATA = os.urandom(300_000 + 123)
DATA_SHA = hashlib.sha256(DATA).hexdigest()
ETAG = '"v1-' + DATA_SHA[:16] + '"'


# ----------------------------------------------------------------------------------------------
# no real network, ever


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.create_connection

    def guarded(address, *args, **kwargs):  # type: ignore[no-untyped-def]
        host = address[0]
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"test tried to reach the network: {address}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    monkeypatch.setattr(download, "RETRY_DELAY", 0.0)


# ----------------------------------------------------------------------------------------------
# a small configurable server


@dataclass
class Route:
    data: bytes = DATA
    content_type: str = "application/octet-stream"
    ignore_range: bool = False
    truncate_full_at: int | None = None  # full (non-range) responses stop after this many bytes
    truncate_times: int = 10**9  # ... for this many responses
    stall_after: int | None = None  # send this many bytes, then hang
    status: int | None = None  # answer with this error status
    etag: str | None = ETAG
    delay: float = 0.0  # seconds to wait before answering


@dataclass
class Served:
    url: str
    routes: dict[str, Route]
    log: list[dict[str, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def add(self, path: str, route: Route | None = None) -> str:
        self.routes[path] = route or Route()
        return self.url + path

    def requests(self, path: str) -> list[dict[str, str | None]]:
        return [r for r in self.log if r["path"] == path]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: object) -> None:
        return None

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        st = self.server.state
        path = urllib.parse.urlsplit(self.path).path
        st.log.append({"path": path, "range": self.headers.get("Range"),
                       "if_range": self.headers.get("If-Range")})
        route = st.routes.get(path)
        if route is not None and route.delay:
            time.sleep(route.delay)
        if route is None or route.status is not None:
            code = 404 if route is None else route.status
            body = b"no such file"
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        data = route.data
        start = 0
        rng = self.headers.get("Range")
        if rng and not route.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
            assert m, rng
            start = int(m.group(1))
            if_range = self.headers.get("If-Range")
            if if_range is not None and if_range != route.etag:
                start = 0  # validator changed: whole file, 200
        if start >= len(data) and start > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(len(body)))
        if route.etag:
            self.send_header("ETag", route.etag)
        self.end_headers()
        if start == 0 and route.truncate_full_at is not None and route.truncate_times > 0:
            route.truncate_times -= 1
            self.wfile.write(body[: route.truncate_full_at])
            self.wfile.flush()
            self.close_connection = True
            return
        if route.stall_after is not None:
            self.wfile.write(body[: route.stall_after])
            self.wfile.flush()
            st.stop.wait(5)
            self.close_connection = True
            return
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    state: Served


@pytest.fixture
def server() -> Served:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.state = Served(url=f"http://127.0.0.1:{srv.server_address[1]}", routes={})
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield srv.state
    finally:
        srv.state.stop.set()
        srv.shutdown()
        srv.server_close()


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/missing.bin"


# ----------------------------------------------------------------------------------------------
# tests


def test_good_checksum_places_file(server: Served, tmp_path: Path) -> None:
    url = server.add("/model.pt")
    dest = tmp_path / "sub" / "model.pt"
    out = download_file([url], dest, DATA_SHA, size=len(DATA), progress=False)
    assert out == dest
    assert dest.read_bytes() == DATA
    assert not part_path(dest).exists()
    rec = json.loads(record_path(dest).read_text())
    assert rec["sha256"] == DATA_SHA and rec["verified"] is True and rec["size"] == len(DATA)
    assert verify_file(dest, DATA_SHA, len(DATA))
    # nothing else is left behind: no part file, no part metadata, no lock file
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.pt", "model.pt.sha256.json"]


def test_existing_verified_file_needs_no_network(server: Served, tmp_path: Path) -> None:
    url = server.add("/model.pt")
    dest = tmp_path / "model.pt"
    download_file([url], dest, DATA_SHA, progress=False)
    n = len(server.log)
    out = download_file([closed_port_url()], dest, DATA_SHA, progress=False)
    assert out == dest and len(server.log) == n


def test_bad_checksum_raises_and_leaves_nothing(server: Served, tmp_path: Path) -> None:
    url = server.add("/model.pt")
    dest = tmp_path / "model.pt"
    with pytest.raises(HDNError) as err:
        download_file([url], dest, "0" * 64, progress=False)
    msg = str(err.value)
    assert "checksum mismatch" in msg and DATA_SHA in msg
    assert "\n" not in msg
    assert not dest.exists()
    assert not part_path(dest).exists()


def test_truncated_transfer_errors_then_resumes(server: Served, tmp_path: Path) -> None:
    cut = 100_000
    url = server.add("/model.pt", Route(truncate_full_at=cut))
    dest = tmp_path / "model.pt"
    with pytest.raises(HDNError) as err:
        download_file([url], dest, DATA_SHA, size=len(DATA), progress=False, retries=0)
    msg = str(err.value)
    assert "connection closed" in msg and "run again to resume" in msg
    assert not dest.exists()
    part = part_path(dest)
    assert part.read_bytes() == DATA[:cut]

    download_file([url], dest, DATA_SHA, size=len(DATA), progress=False, retries=0)
    assert dest.read_bytes() == DATA
    assert not part.exists()
    second = server.requests("/model.pt")[-1]
    assert second["range"] == f"bytes={cut}-"
    assert second["if_range"] == ETAG


def test_interrupted_transfer_resumes_within_one_call(server: Served, tmp_path: Path) -> None:
    url = server.add("/model.pt", Route(truncate_full_at=50_000, truncate_times=1))
    dest = tmp_path / "model.pt"
    download_file([url], dest, DATA_SHA, progress=False)  # default retries
    assert dest.read_bytes() == DATA
    ranges = [r["range"] for r in server.requests("/model.pt")]
    assert ranges == [None, "bytes=50000-"]


def test_server_ignoring_range_restarts(server: Served, tmp_path: Path) -> None:
    url = server.add("/model.pt", Route(ignore_range=True))
    dest = tmp_path / "model.pt"
    part = part_path(dest)
    part.write_bytes(b"\xff" * 7_000)  # garbage: must not survive a restart
    download_file([url], dest, DATA_SHA, progress=False)
    assert dest.read_bytes() == DATA
    req = server.requests("/model.pt")
    assert req[0]["range"] == "bytes=7000-"
    assert not part.exists()


def test_bad_part_file_is_redownloaded_from_zero(server: Served, tmp_path: Path) -> None:
    url = server.add("/model.pt")
    dest = tmp_path / "model.pt"
    part_path(dest).write_bytes(b"\x00" * 10_000)  # wrong bytes, server honours Range
    download_file([url], dest, DATA_SHA, progress=False)
    assert dest.read_bytes() == DATA
    assert [r["range"] for r in server.requests("/model.pt")] == ["bytes=10000-", None]


def test_complete_part_file_is_verified_without_body(server: Served, tmp_path: Path) -> None:
    url = server.add("/model.pt")
    dest = tmp_path / "model.pt"
    part_path(dest).write_bytes(DATA)
    download_file([url], dest, DATA_SHA, size=len(DATA), progress=False)
    assert dest.read_bytes() == DATA
    assert server.log == []  # the size said it was complete; only hashing was needed


def test_range_not_satisfiable_means_complete(server: Served, tmp_path: Path) -> None:
    url = server.add("/model.pt")
    dest = tmp_path / "model.pt"
    part_path(dest).write_bytes(DATA)
    download_file([url], dest, DATA_SHA, progress=False)  # no size: the server says 416
    assert dest.read_bytes() == DATA
    assert server.requests("/model.pt")[0]["range"] == f"bytes={len(DATA)}-"


def test_concurrent_downloads_of_one_file_share_the_work(server: Served, tmp_path: Path) -> None:
    url = server.add("/model.pt", Route(delay=0.3))
    dest = tmp_path / "model.pt"
    results: list[Path | BaseException] = []

    def worker() -> None:
        try:
            results.append(download_file([url], dest, DATA_SHA, progress=False))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [dest, dest]
    assert dest.read_bytes() == DATA
    assert len(server.requests("/model.pt")) == 1  # the second caller waited, then reused it


def test_unreachable_url_one_line_error_with_manual_hint(tmp_path: Path) -> None:
    url = closed_port_url()
    dest = tmp_path / "models" / "model.pt"
    t0 = time.monotonic()
    with pytest.raises(HDNError) as err:
        download_file([url], dest, DATA_SHA, progress=False, name="my-model")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("could not download my-model (")
    assert "connection refused" in msg
    assert f"download it yourself from {url} and place it at {dest}" in msg
    assert not dest.exists() and not part_path(dest).exists()
    assert time.monotonic() - t0 < 5  # refused is not retried


def test_mirror_fallback(server: Served, tmp_path: Path) -> None:
    dead = closed_port_url()
    missing = server.url + "/nope.pt"
    good = server.add("/model.pt")
    dest = tmp_path / "model.pt"
    download_file([dead, missing, good], dest, DATA_SHA, progress=False)
    assert dest.read_bytes() == DATA
    assert [r["path"] for r in server.log] == ["/nope.pt", "/model.pt"]


def test_all_mirrors_fail_reports_each(server: Served, tmp_path: Path) -> None:
    missing = server.add("/gone.pt", Route(status=404))
    broken = server.add("/broken.pt", Route(status=500))
    dest = tmp_path / "model.pt"
    with pytest.raises(HDNError) as err:
        download_file([missing, broken], dest, DATA_SHA, progress=False, retries=1)
    msg = str(err.value)
    assert "HTTP 404" in msg and "HTTP 500" in msg and "\n" not in msg
    assert f"download it yourself from {missing} " in msg
    assert len(server.requests("/broken.pt")) == 2  # 5xx is retried, 404 is not
    assert len(server.requests("/gone.pt")) == 1


def test_html_page_is_detected(server: Served, tmp_path: Path) -> None:
    page = (b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>"
            b"<body>Too many users have viewed or downloaded this file recently.</body></html>")
    url = server.add("/uc", Route(data=page, content_type="text/html; charset=utf-8"))
    dest = tmp_path / "model.pt"
    with pytest.raises(HDNError) as err:
        download_file([url], dest, DATA_SHA, progress=False)
    msg = str(err.value)
    assert "HTML page" in msg and "Quota exceeded" in msg and "quota" in msg
    assert not dest.exists() and not part_path(dest).exists()


def test_html_without_html_content_type_is_sniffed(server: Served, tmp_path: Path) -> None:
    page = b"\n  <!doctype html>\n<html><head><title>Sign in</title></head><body/></html>"
    url = server.add("/file", Route(data=page))
    dest = tmp_path / "model.pt"
    with pytest.raises(HDNError, match="HTML page"):
        download_file([url], dest, None, progress=False)
    assert not dest.exists() and not part_path(dest).exists()


def test_html_mirror_falls_back_to_binary(server: Served, tmp_path: Path) -> None:
    page = b"<html><head><title>Error</title></head></html>"
    bad = server.add("/page", Route(data=page, content_type="text/html"))
    good = server.add("/model.pt")
    dest = tmp_path / "model.pt"
    download_file([bad, good], dest, DATA_SHA, progress=False)
    assert dest.read_bytes() == DATA


def test_wrong_size_is_refused_before_download(server: Served, tmp_path: Path) -> None:
    url = server.add("/model.pt")
    dest = tmp_path / "model.pt"
    with pytest.raises(HDNError, match=r"server offers 300123 bytes but 42 are expected"):
        download_file([url], dest, None, size=42, progress=False)
    assert not dest.exists() and not part_path(dest).exists()


def test_unknown_hash_warns_and_records(server: Served, tmp_path: Path) -> None:
    url = server.add("/model.pt")
    dest = tmp_path / "model.pt"
    with pytest.warns(UnverifiedDownloadWarning, match=DATA_SHA):
        download_file([url], dest, None, progress=False)
    assert dest.read_bytes() == DATA
    rec = json.loads(record_path(dest).read_text())
    assert rec["sha256"] == DATA_SHA and rec["verified"] is False


def test_socket_timeout(server: Served, tmp_path: Path) -> None:
    url = server.add("/slow.pt", Route(stall_after=1000))
    dest = tmp_path / "model.pt"
    t0 = time.monotonic()
    with pytest.raises(HDNError, match="timed out"):
        download_file([url], dest, DATA_SHA, progress=False, timeout=0.3, retries=0)
    assert time.monotonic() - t0 < 4
    assert part_path(dest).stat().st_size == 1000  # kept for resuming


def test_file_url_and_progress_bar(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(DATA)
    monkeypatch.setattr(download, "_stderr_is_tty", lambda: True)  # draw the rich bar
    dest = tmp_path / "out" / "model.pt"
    download_file([src.as_uri()], dest, DATA_SHA, progress=True)
    assert dest.read_bytes() == DATA
    assert "model.pt" in capsys.readouterr().err


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        download_file(["http://127.0.0.1:1/x"], tmp_path / "x", "abc", progress=False)
    with pytest.raises(HDNError, match="no download URL"):
        download_file([], tmp_path / "x", None, progress=False)


@pytest.mark.parametrize("link", [
    "https://drive.google.com/file/d/1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT/view?usp=sharing",
    "https://drive.google.com/open?id=1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT",
    "https://drive.google.com/uc?id=1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT&export=download",
    "https://docs.google.com/uc?export=download&id=1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT",
])
def test_google_drive_links_are_converted(link: str) -> None:
    assert google_drive_direct_url(link) == (
        "https://drive.usercontent.google.com/download?id=1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT"
        "&export=download&confirm=t")


def test_other_links_are_left_alone() -> None:
    for url in ("https://huggingface.co/a/b/resolve/main/x.pt",
                "https://drive.google.com/drive/folders/1Z76nD8pXIL2O5f6xV8VjM4DUCmhbzn0l"):
        assert google_drive_direct_url(url) == url


def test_hdn_home_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HDN_HOME", str(tmp_path / "hdn"))
    assert paths.home() == (tmp_path / "hdn").resolve()
    models = paths.models_dir()
    assert models == (tmp_path / "hdn" / "models").resolve() and models.is_dir()
    assert paths.latents_dir().is_dir()
    monkeypatch.delenv("HDN_HOME")
    import platformdirs

    assert paths.home() == Path(platformdirs.user_cache_dir("hyperdomainnet")).resolve()
    assert paths.models_dir(create=False).name == "models"


def test_unwritable_home_is_an_hdn_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("HDN_HOME", str(blocker))
    with pytest.raises(HDNError, match="HDN_HOME"):
        paths.models_dir()
