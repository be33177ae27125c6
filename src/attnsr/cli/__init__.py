"""Command-line interface: ``attnsr <command>``. One module per subcommand."""

from __future__ import annotations

from importlib import import_module

from attnsr.cli.app import app

# Each module registers its command(s) on `app` when imported.
_COMMANDS = ("demo", "eval", "models", "upscale", "train", "export", "bench", "explain",
             "serve")


def _load_commands() -> None:
    for name in _COMMANDS:
        import_module(f"attnsr.cli.{name}_cmd")


def main() -> None:
    """Console-script entry point."""
    _load_commands()
    app()
