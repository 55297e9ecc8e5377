"""The `azr` command line: one typer app, each command group registered from its own module.

A command module exposes `register(app: typer.Typer) -> None`; listing it in COMMAND_MODULES with the command names
it adds is all it takes. `azr <command> ...` imports only the module of that command: the others pull in pydantic,
the executor or Prefect, which would add most of a second to every `azr sql`. `--help` and unknown names load all.
`azr sql` (without --help) runs without typer at all: see `azr_core.commands.sql_core`.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "azr_core.commands.sql": ("sql",),
    "azr_core.commands.executor": ("validate", "grade", "sandbox-setup"),
    "azr_core.commands.model": ("model",),
    "azr_core.commands.stack": ("up", "down", "status"),
    "azr_core.commands.eval": ("eval",),
    "azr_core.commands.promote": ("promote",),
    "azr_core.commands.report": ("report",),
}


def _root_callback() -> None:
    """Absolute Zero self-play: propose code-reasoning tasks, verify them in a sandbox, solve them, learn."""


def build_app(modules: list[str] | None = None) -> typer.Typer:
    """The CLI with the commands of `modules` (default: all of them)."""
    import typer

    app = typer.Typer(
        name="azr",
        help=_root_callback.__doc__,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    # A callback keeps `azr` a command group even when only one command is registered (typer would otherwise run
    # that command directly and read its name as an argument).
    app.callback()(_root_callback)
    for name in COMMAND_MODULES if modules is None else modules:
        importlib.import_module(name).register(app)
    return app


def _modules_for(argv: list[str]) -> list[str] | None:
    """The one module that defines the command named in `argv`, or None (all) for help or an unknown name."""
    command = next((a for a in argv if not a.startswith("-")), None)
    for module, names in COMMAND_MODULES.items():
        if command in names:
            return [module]
    return None


def main() -> None:
    """Console-script entry point."""
    argv = sys.argv[1:]
    if argv[:1] == ["sql"] and not {"-h", "--help"} & set(argv[1:]):
        # The most scripted command skips typer (and the pydantic it imports): a third of its start-up.
        from azr_core.commands.sql_core import fast_main

        sys.exit(fast_main(argv[1:]))
    build_app(_modules_for(argv))()


def __getattr__(name: str) -> Any:
    # `from azr_core.cli import app` (tests, docs) still gets the full CLI, built on first use.
    if name == "app":
        app = build_app()
        globals()["app"] = app
        return app
    raise AttributeError(name)


if __name__ == "__main__":
    main()
