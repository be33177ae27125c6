"""Command-line interface: ``attnsr <command>``. One module per subcommand."""

from __future__ import annotations

from importlib import import_module

from attnsr.cli.app import app
from attnsr.malloc import tune_malloc

# Each module registers its command(s) on `app` when imported.
_COMMANDS = ("demo", "eval", "models", "upscale", "train", "export", "bench", "explain",
             "serve")


def _load_commands() -> None:
    for name in _COMMANDS:
        import_module(f"attnsr.cli.{name}_cmd")


def main() -> None:
    """Console-script entry point."""
    tune_malloc()  # big tile buffers reused, not mmap'd and zero-filled per tile
    _load_commands()
    app()
