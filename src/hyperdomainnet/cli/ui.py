"""``hdn ui``: serve the local web app (see ``hyperdomainnet.ui``)."""
from __future__ import annotations

import importlib.util
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from . import options
from .app import app

LOOPBACK = ("127.0.0.1", "localhost", "::1")
GRADIO_HINT = "pip install 'hyperdomainnet[ui]'"


@app.command()
def ui(
    port: int = typer.Option(7860, help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback exposes the app "
                                               "(no login) to your network."),
    generator: Optional[list[str]] = typer.Option(None, "--generator", help="Zoo name, checkpoint or "
                                                  "random:<size> spec; repeatable (downloaded zoo models are "
                                                  "listed too)."),
    domain: Optional[list[Path]] = typer.Option(None, "--domain", help="Domain file, or a directory searched "
                                                "for them; repeatable. Nothing else is read."),
    hypernet: Optional[list[Path]] = typer.Option(None, "--hypernet", help="HyperDomainNet file, or a directory "
                                                  "searched for them; repeatable."),
    encoder: Optional[list[str]] = typer.Option(None, "--encoder", help="ReStyle encoder for the \"your photo\" "
                                                "tab: zoo name or file; repeatable (downloaded ones are listed too)."),
    device: str = options.DEVICE,
    precision: str = options.PRECISION,
) -> None:
    """Web app: pick a generator and a domain file or hypernetwork prompt, move seed, truncation,
    strength and style-mixing sliders, and see source and adapted renders side by side; or upload
    your photo and see it in the domain."""
    if importlib.util.find_spec("gradio") is None:
        raise ConfigError(f"hdn ui needs Gradio: {GRADIO_HINT}")
    from ..device import resolve_device
    from ..ui import Studio, domain_files, hypernet_files, serve

    if not 0 < port < 65536:
        raise ConfigError(f"--port must be in 1…65535, got {port}")
    studio = Studio(generator or [], domain_files(domain or []), hypernet_files(hypernet or []),
                    resolve_device(device), encoders=encoder or [], precision=precision)
    demo, url = serve(studio, host, port)
    if host not in LOOPBACK:
        typer.echo(f"warning: bound to {host}: anyone who can reach this address can use the app", err=True)
    typer.echo(f"hdn ui: serving on {url} ({len(studio.domains.labels)} domain files, "
               f"{len(studio.hypernets.labels)} hypernetworks, {len(studio.encoders)} encoders; "
               f"precision {studio.precision}); Ctrl-C to stop")
    with _terminate_as_exit():
        try:
            demo.block_thread()
        finally:
            demo.close()


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM and SIGHUP end the app as Ctrl-C does (``SystemExit`` 128 + signal): the server
    closes and the exit handlers remove the private render folder."""
    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signals = [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {s: signal.signal(s, stop) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
