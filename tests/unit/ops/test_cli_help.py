"""Every `userops` command explains itself with an example (`--help`), and the groups are wired."""

from __future__ import annotations

import pytest
import typer.main
from typer.testing import CliRunner

from scripts.cli import app


def _leaves(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    subcommands: dict[str, object] | None = getattr(command, "commands", None)
    if subcommands is None:
        return [path]
    return [leaf for name, sub in sorted(subcommands.items()) for leaf in _leaves(sub, (*path, name))]


# Walked from the app itself, so a new command cannot ship without an example.
COMMANDS = _leaves(typer.main.get_command(app))


def test_the_walk_finds_the_ops_commands() -> None:
    expected = {
        ("send",),
        ("user", "show"),
        ("config", "check"),
        ("simulate",),
        ("demo",),
        ("report",),
        ("deadletter", "list"),
        ("deadletter", "replay"),
        ("jobs", "failed"),
        ("jobs", "replay"),
        ("timers", "dead"),
        ("dev", "run"),
    }
    assert expected <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_an_example(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example: userops " + " ".join(command) in result.output


def test_top_level_lists_every_group() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    listed = {
        line.split()[1]
        for line in result.output.splitlines()
        if line.startswith("│ ") and len(line.split()) > 2
    }
    assert {path[0] for path in COMMANDS} <= listed, result.output
