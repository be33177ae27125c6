"""Command-line interface: ``attnsr <command>``. One module per subcommand."""

from __future__ import annotations

from importlib import import_module

from attnsr.cli.app import app

# Each module registers its command(s) on `app` when imported.
_COMMANDS = ("demo", "eval", "models", "upscale", "train", "export", "bench", "explain")


def _load_commands() -> None:
    for name in _COMMANDS:
        try:
            import_module(f"attnsr.cli.{name}_cmd")
        except ModuleNotFoundError as exc:  # command not written yet (development)
            if exc.name != f"attnsr.cli.{name}_cmd":
                raise


def main() -> None:
    """Console-script entry point."""
    _load_commands()
    app()
