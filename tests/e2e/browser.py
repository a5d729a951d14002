"""Browser end-to-end support: chromium driven by Playwright, and ``hdn ui`` in a subprocess.

Chromium is Debian's (tests/e2e/install_browser.sh installs it with root), else the one Playwright
manages (the same script installs it without root). No browser fails the test with the command
that fixes it.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL = "bash tests/e2e/install_browser.sh"
SERVING = "serving on "


def free_port() -> int:
    """A currently free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def chromium_page(timeout_ms: int = 30_000) -> Iterator[Any]:
    """A Playwright page in headless chromium (Debian's, else Playwright's own); fails (never skips)
    when neither is installed."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            executable = {"executable_path": str(CHROMIUM)} if CHROMIUM.is_file() else {}
            browser = playwright.chromium.launch(args=CHROMIUM_ARGS, **executable)
        except PlaywrightError as exc:
            pytest.fail(f"no chromium: neither Debian's ({CHROMIUM}) nor Playwright's "
                        f"({str(exc).splitlines()[0][:120]}); run `{INSTALL}` and rerun")
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            browser.close()


class HdnProcess:
    """``hdn <args>`` in a subprocess; stdout and stderr are collected in ``output``."""

    def __init__(self, args: Sequence[str], env: dict[str, str]) -> None:
        code = "import sys; from hyperdomainnet.cli import main; sys.exit(main(sys.argv[1:]))"
        self.proc = subprocess.Popen([sys.executable, "-c", code, *args], env={**os.environ, **env},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_url(self, timeout_s: float = 120.0) -> str:
        """The URL from the "serving on URL" line; fails with the output if the app dies or stalls."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.lines:
                if SERVING in line:
                    return line.split(SERVING, 1)[1].split()[0]
            if self.proc.poll() is not None:
                pytest.fail(f"hdn ui exited with status {self.proc.returncode}:\n{self.output}")
            time.sleep(0.1)
        pytest.fail(f"hdn ui did not start within {timeout_s:.0f} s:\n{self.output}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
