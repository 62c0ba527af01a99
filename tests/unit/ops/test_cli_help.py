"""Every `userops` command explains itself with an example (`--help`), and the groups are wired."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from scripts.cli import app

COMMANDS = [
    ("dev", "up"),
    ("dev", "down"),
    ("dev", "status"),
    ("dev", "run"),
    ("db", "upgrade"),
    ("deadletter", "list"),
    ("deadletter", "replay"),
    ("replay",),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_an_example(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example: userops " + " ".join(command) in result.output


def test_top_level_lists_every_group() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    expected = {"dev", "db", "deadletter", "replay"}
    if importlib.util.find_spec("scripts.commands.jobs") is not None:
        expected |= {"jobs", "timers"}
    listed = {
        line.split()[1]
        for line in result.output.splitlines()
        if line.startswith("│ ") and len(line.split()) > 2
    }
    assert expected <= listed, result.output
