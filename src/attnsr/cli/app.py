"""The typer application and the helpers every subcommand shares."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from attnsr.errors import AttnsrError

app = typer.Typer(
    name="attnsr",
    help="Attention-based super-resolution: upscale, evaluate, train, export, explain.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USAGE = 2  # bad input / bad usage


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print a one-line error and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(func: F) -> F:
    """Turn :class:`AttnsrError` (and missing files) into a one-line error and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AttnsrError as exc:
            fail(str(exc))
        except FileNotFoundError as exc:
            fail(f"{exc.filename}: no such file or directory")
        return None

    return wrapper  # type: ignore[return-value]


def setup_logging(verbose: bool = False) -> None:
    """INFO for everything; ``verbose`` turns on DEBUG for attnsr's own loggers only
    (third-party debug output such as Pillow's ``STREAM`` lines stays off)."""
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
        force=True,
    )
    logging.getLogger("attnsr").setLevel(logging.DEBUG if verbose else logging.NOTSET)


def _version_callback(value: bool) -> None:
    if value:
        from attnsr import __version__

        console.print(f"attnsr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version."
    ),
) -> None:
    """Attention-based super-resolution: upscale, evaluate, train, export, explain."""
