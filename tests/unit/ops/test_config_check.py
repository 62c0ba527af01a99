"""`userops config check`: every service's file and settings validated by the services' own code."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scripts.cli import app
from scripts.commands.config_check import check_service, local_defaults

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("ingest", "segmenter", "rewards", "notifier"):
        shutil.copy(REPO / "config" / f"{name}.yaml", tmp_path / f"{name}.yaml")
    for variable, value in local_defaults().items():
        monkeypatch.setenv(variable, value)
    return tmp_path


def test_the_shipped_configs_pass_with_the_local_settings(configs: Path) -> None:
    result = CliRunner().invoke(app, ["config", "check", "--dir", str(configs)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.output.count("OK") == 4


def test_a_bad_field_is_named_with_its_file_and_the_service_fails(configs: Path) -> None:
    path = configs / "rewards.yaml"
    path.write_text(path.read_text().replace("points: 10\n", "points: -5\n", 1))
    check = check_service("rewards", configs)
    assert not check.ok and check.path == path
    assert any(p.startswith("field 'rules[0].points'") for p in check.problems), check.problems
    result = CliRunner().invoke(app, ["config", "check", "--dir", str(configs)], env={"COLUMNS": "250"})
    assert result.exit_code == 1
    assert "rules[0].points" in result.output and "invalid configuration: rewards" in result.output


def test_environment_settings_are_checked_like_the_service_does(
    configs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USEROPS_WEBHOOK_SECRET", "not-a-whsec")
    monkeypatch.delenv("USEROPS_DEV_WRITE_KEY")
    notifier = check_service("notifier", configs)
    assert any("USEROPS_WEBHOOK_SECRET" in p and "whsec_" in p for p in notifier.problems), notifier.problems
    ingest = check_service("ingest", configs)
    assert any("USEROPS_DEV_WRITE_KEY" in p and "sources[0].write_key_env" in p for p in ingest.problems)
    assert check_service("segmenter", configs).ok


def test_unreadable_yaml_and_a_missing_file_are_reported(configs: Path) -> None:
    (configs / "segmenter.yaml").write_text("stages: [unclosed\n")
    (configs / "notifier.yaml").unlink()
    assert "not valid YAML" in check_service("segmenter", configs).problems[0]
    assert "cannot read config file" in check_service("notifier", configs).problems[0]


def test_an_unknown_service_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["config", "check", "--service", "billing"])
    assert result.exit_code == 2
    assert "unknown service billing" in result.output


@pytest.mark.parametrize("command", [("send",), ("user", "show"), ("config", "check")], ids=" ".join)
def test_help_has_an_example(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example: userops " + " ".join(command) in result.output


def test_a_yaml_syntax_error_names_the_file_and_the_line(configs: Path) -> None:
    path = configs / "segmenter.yaml"
    path.write_text("stages:\n  - name: new\n    when: [unclosed\n  - name: active\n")
    [problem] = check_service("segmenter", configs).problems
    assert f'in "{path}", line 3' in problem, problem
    assert "<unicode string>" not in problem
