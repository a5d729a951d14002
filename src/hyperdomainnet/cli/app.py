"""The ``hdn`` Typer application and its entry point. Every error ends as one line on stderr:
user errors with exit status 1, usage errors (unknown option, bad number, …) with 2."""
from __future__ import annotations

from typing import Optional

import typer

try:  # typer ≥ 0.20 carries its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_exceptions

from ..atomic import is_full_disk
from ..version import __version__
from ..errors import HDNError
from .console import warnings_as_lines

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Domain adaptation of StyleGAN2 with domain modulation and HyperDomainNet.")
adapt_app = typer.Typer(no_args_is_help=True, help="Adapt a generator to a new domain.")
app.add_typer(adapt_app, name="adapt")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hyperdomainnet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """hdn: adapt StyleGAN2 generators to new domains by text or image."""


def _usage_line(exc: click_exceptions.UsageError) -> str:
    """A click usage error as one line naming the command's --help."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    where = f"; see '{exc.ctx.command_path} --help'" if exc.ctx is not None else ""
    return f"error: {message}{where}"


#: How allocators report running out of memory (PyTorch CPU / CUDA, NumPy).
OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "Unable to allocate")


def _resource_line(exc: BaseException) -> Optional[str]:
    """One line for running out of memory or disk space anywhere, else None."""
    first = " ".join(str(exc).split())[:200]
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError)
                                        and any(m in str(exc) for m in OUT_OF_MEMORY_MESSAGES)):
        return (f"error: out of memory ({type(exc).__name__}: {first or 'no detail'}); ask for less at once: "
                "fewer seeds, frames or targets, a smaller --batch/--batch-size, --micro-batch or --low-memory")
    if is_full_disk(exc):
        where = f" writing {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
        return (f"error: no space left on the device{where} ({first}); free some space or write elsewhere, "
                "then run the command again")
    return None


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point: every error is one line on stderr — user errors, and running out of memory or
    disk space, exit 1, usage errors 2, an interrupt 130; every warning one ``warning:`` line; a
    command group called without a command prints its help."""
    try:
        with warnings_as_lines():
            result = app(args=argv, prog_name="hdn", standalone_mode=False)
    except HDNError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 1
    except click_exceptions.NoArgsIsHelpError as exc:
        typer.echo(exc.format_message())
        return 2
    except click_exceptions.UsageError as exc:
        typer.echo(_usage_line(exc), err=True)
        return exc.exit_code
    except click_exceptions.ClickException as exc:
        typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        return exc.exit_code
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 1
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except (MemoryError, RuntimeError, OSError) as exc:
        line = _resource_line(exc)
        if line is None:
            raise
        typer.echo(line, err=True)
        return 1
    return result if isinstance(result, int) else 0
