"""The `speechrole` command: one thin module per command group, each parsing arguments, calling the
library and printing what it returns."""

from __future__ import annotations

from typing import Annotated

import typer

from speechrole import __version__
from speechrole.cli import agents, bench, checks, data, evaluate, judge, measure, results, train  # noqa: F401 - registers
from speechrole.cli.common import app, out


def _version(value: bool) -> None:
    if value:
        out.print(f"speechrole {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Build, run and evaluate speech role-playing agents (SpeechRole-Eval)."""


def main() -> None:
    app()


__all__ = ["app", "main"]
