"""download(): real transports against a local HTTP server, real verification and placement."""
from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hyperdomainnet.download import UnverifiedDownloadWarning, download
from hyperdomainnet.errors import DownloadError, HDNError
from hyperdomainnet.hashing import remembered_sha256

REV = "0123456789abcdef0123456789abcdef01234567"


class Served:
    """A threaded HTTP server on 127.0.0.1: ``files[path] = bytes``; ``hits`` lists requests.

    Paths under ``/<org>/<repo>/resolve/<rev>/`` answer like the Hugging Face Hub (the commit and
    the ETag in headers, HEAD and GET)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: list[str] = []
        served = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: bool) -> None:
                served.hits.append(f"{self.command} {self.path}")
                data = served.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                if "/resolve/" in self.path:
                    self.send_header("X-Repo-Commit", self.path.split("/")[4])
                    self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(False)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.url + path


@pytest.fixture
def hub(server: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    """Point huggingface_hub at the local server, online (what HF_ENDPOINT does at import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return server


def closed_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/gone.pt"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_url_download_is_verified_placed_and_remembered(server: Served, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    sha = hashlib.sha256(data).hexdigest()
    dest = download([server.add("/g.pt", data)], tmp_path / "models" / "g.pt", sha, "g")
    assert dest.read_bytes() == data
    assert remembered_sha256(dest) == sha
    assert leftovers(dest.parent) == ["g.pt"]  # the digest is remembered in the cache, not beside it


def test_checksum_mismatch_places_nothing_and_next_url_wins(server: Served, tmp_path: Path) -> None:
    data = os.urandom(10_000)
    sha = hashlib.sha256(data).hexdigest()
    bad, good = server.add("/bad.pt", b"other bytes"), server.add("/good.pt", data)
    dest = tmp_path / "g.pt"
    got = hashlib.sha256(b"other bytes").hexdigest()
    with pytest.raises(DownloadError, match=f"checksum mismatch: got sha256 {got}, expected {sha}"):
        download([bad], dest, sha, "g")
    assert leftovers(tmp_path) == []
    assert download([bad, good], dest, sha, "g").read_bytes() == data


def test_failure_is_one_line_with_url_and_destination(server: Served, tmp_path: Path) -> None:
    first, missing = closed_url(), server.url + "/missing.pt"
    dest = tmp_path / "models" / "g.pt"
    with pytest.raises(DownloadError) as err:
        download([first, missing], dest, "0" * 64, "my-model")
    msg = str(err.value)
    assert isinstance(err.value, OSError) and isinstance(err.value, HDNError) and "\n" not in msg
    assert msg.startswith("could not download my-model (127.0.0.1:")
    assert "404" in msg and msg.endswith(f"download it yourself from {first} and place it at {dest}")
    assert not dest.exists()


def test_unpublished_hash_warns_and_records_the_digest(server: Served, tmp_path: Path) -> None:
    data = b"released archive bytes"
    sha = hashlib.sha256(data).hexdigest()
    with pytest.warns(UnverifiedDownloadWarning, match=sha):
        dest = download([server.add("/a.zip", data)], tmp_path / "a.zip", None, "archive")
    assert remembered_sha256(dest) == sha


def test_hugging_face_urls_go_through_huggingface_hub(hub: Served, tmp_path: Path) -> None:
    data = os.urandom(50_000)
    sha = hashlib.sha256(data).hexdigest()
    hub.add(f"/org/repo/resolve/{REV}/sub/w.pt", data)
    url = f"https://huggingface.co/org/repo/resolve/{REV}/sub/w.pt"
    dest = download([url], tmp_path / "w.pt", sha, "w")
    assert dest.read_bytes() == data
    assert any(h.startswith(f"GET /org/repo/resolve/{REV}/sub/w.pt") for h in hub.hits)
    assert leftovers(tmp_path) == ["w.pt"]  # HF's staging folder is gone


def test_hugging_face_offline_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    url = f"https://huggingface.co/org/repo/resolve/{REV}/w.pt"
    with pytest.raises(DownloadError, match=re.escape("huggingface.co: Hugging Face not reachable (offline, "
                                                      "or HF_HUB_OFFLINE is set)")):
        download([url], tmp_path / "w.pt", "0" * 64, "w")
    assert leftovers(tmp_path) == []


def test_google_drive_links_use_gdown(server: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only gdown's network call is replaced (by a copy from the local server); the rest is real."""
    import gdown
    from torch.hub import download_url_to_file

    data = os.urandom(20_000)
    local = server.add("/drive-file", data)
    calls = []

    def transport(url: str, output: str, quiet: bool) -> str:
        calls.append(url)
        download_url_to_file(local, output, progress=False)
        return output

    monkeypatch.setattr(gdown, "download", transport)
    drive = "https://drive.google.com/uc?id=1abcDEF"
    dest = download([drive], tmp_path / "e.pt", hashlib.sha256(data).hexdigest(), "e")
    assert calls == [drive] and dest.read_bytes() == data


@pytest.mark.parametrize("answer", ["raise", "html", "offline"])
def test_a_google_drive_refusal_is_one_line_and_leaves_nothing(answer: str, server: Served, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """gdown's quota error (pages of advice), a quota page saved as the file, or no connection at
    all (not a quota): one line, no file."""
    import gdown
    from requests.exceptions import ConnectionError as NoConnection
    from torch.hub import download_url_to_file

    page = server.add("/quota", b"\n  <!DOCTYPE html><html><title>Google Drive - Quota exceeded</title></html>")

    def transport(url: str, output: str, quiet: bool) -> str:
        if answer == "offline":
            raise NoConnection("HTTPSConnectionPool(host='drive.google.com', port=443): Max retries exceeded")
        if answer == "raise":
            raise RuntimeError("Failed to retrieve file url:\n\n\tToo many users have viewed or downloaded this "
                               "file recently.\n\nYou may still be able to access the file from the browser")
        download_url_to_file(page, output, progress=False)
        return output

    monkeypatch.setattr(gdown, "download", transport)
    with pytest.raises(DownloadError) as err:
        download(["https://drive.google.com/uc?id=1abc"], tmp_path / "e.pt", None, "e",
                 hint="set HDN_MIRROR to a folder or URL holding e.pt")
    msg = str(err.value)
    assert "\n" not in msg and "set HDN_MIRROR" in msg
    expected = {"raise": "Google Drive refused the file", "html": "served an HTML page",
                "offline": "drive.google.com: not reachable (offline"}[answer]
    assert expected in msg and ("quota" in msg) == (answer != "offline")
    assert leftovers(tmp_path) == []


def test_a_compressed_download_cannot_expand_past_its_size(tmp_path: Path) -> None:
    """A small .bz2 that expands far beyond the pinned size is refused while it expands; nothing stays."""
    import bz2

    from hyperdomainnet.download import download

    bomb = tmp_path / "bomb.dat.bz2"
    bomb.write_bytes(bz2.compress(b"\0" * 10_000_000))
    dest = tmp_path / "cache" / "bomb.dat"
    with pytest.raises(DownloadError, match="decompresses to more than the 1,000 bytes expected"):
        download([str(bomb)], dest, None, "bomb", size=1000)
    assert not dest.exists() and not [p for p in dest.parent.glob("*")] if dest.parent.exists() else True
