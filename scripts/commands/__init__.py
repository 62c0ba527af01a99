"""The `userops` subcommands, one typer app per module (registered in `scripts.cli`).

Every command reads its connection settings from `USEROPS_*` environment variables with local
defaults, prints errors on stderr and exits non-zero on failure.
"""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `error: <message>` in red on stderr and exit with `code`."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)
