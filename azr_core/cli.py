"""The `azr` command line: one typer app, each command group registered from its own module.

A command module exposes `register(app: typer.Typer) -> None`; listing it in COMMAND_MODULES is all it takes.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="azr",
    help="Absolute Zero self-play: propose code-reasoning tasks, verify them in a sandbox, solve them, learn.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMAND_MODULES: list[str] = [
    "azr_core.commands.sql",
    "azr_core.commands.executor",
    "azr_core.commands.model",
    "azr_core.commands.stack",
]


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_all()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
