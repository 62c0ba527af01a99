"""The `make bench` table and the benchmarks' load refusal (no benchmark runs here)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bench.__main__ import Outcome, read_results, render, selected
from bench.common import (
    FORCE_ENV,
    REFUSED_EXIT,
    REFUSED_MARK,
    BenchInputError,
    check_row,
    forced,
    machine_header,
    parse_goal,
    row,
    write_results,
)

MACHINE = {
    "cores": 2,
    "load_at_start": [0.3, 0.5, 0.7],
    "cpu": "Test CPU",
    "started_at": "2026-12-01T03:00:00+00:00",
}


def table_text(outcomes: list[Outcome]) -> str:
    out = io.StringIO()
    render(outcomes, Console(file=out, width=220, color_system=None))
    return out.getvalue()


def lines_with(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if word in line]


def test_a_row_computes_whether_its_goal_is_met_and_its_ratio_to_the_raw_ceiling() -> None:
    r = row("ingest /v1/batch", 131_000.0, "events/s", goal=">= 124,000", raw=262_000.0, detail="16 conns")
    assert r["goal_met"] is True
    assert r["ratio"] == pytest.approx(0.5)
    assert row("p99", 1200.0, "ms", goal="<= 1000")["goal_met"] is False
    assert row("redemptions", 62.0, "redemptions/s")["goal_met"] is None
    assert row("redemptions", 62.0, "redemptions/s")["ratio"] is None


def test_a_goal_may_name_its_unit() -> None:
    assert parse_goal("< 60 s") == ("<", 60.0, "s")
    assert parse_goal("<= 1,000 ms") == ("<=", 1000.0, "ms")
    assert row("1,000,000 timers", 118.0, "s", goal="< 60 s")["goal_met"] is False


@pytest.mark.parametrize("goal", ["at least 5000", ">= lots", "5000", "=> 5000"])
def test_a_goal_that_is_not_an_operator_and_a_number_is_refused_naming_it(goal: str) -> None:
    with pytest.raises(BenchInputError, match=f"goal '{goal}'"):
        parse_goal(goal)


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"value": math.nan}, "'value' must be a finite number"),
        ({"value": "fast"}, "'value' must be a finite number"),
        ({"unit": ""}, "'unit' must be a non-empty string"),
        ({"raw": math.inf}, "'raw' must be a finite number"),
        ({"speed": 1}, "unknown keys \\['speed'\\]"),
    ],
)
def test_a_bad_row_is_refused_naming_the_field(bad: dict[str, Any], named: str) -> None:
    good = {"measure": "m", "value": 1.0, "unit": "events/s"}
    with pytest.raises(BenchInputError, match=f"ingest row 0: {named}"):
        check_row({**good, **bad}, "ingest row 0")


def test_results_are_written_in_the_contract_shape(tmp_path: Path) -> None:
    rows = [row("qualifying inputs", 1406.0, "events/s", goal=">= 5000", detail="CPU 227 µs/input")]
    path = write_results("rewards", rows, MACHINE, results=tmp_path)
    body = json.loads(path.read_text())
    assert path == tmp_path / "rewards.json"
    assert body["bench"] == "rewards"
    assert body["started_at"] == MACHINE["started_at"]
    assert body["machine"] == {"cores": 2, "load_at_start": [0.3, 0.5, 0.7], "cpu": "Test CPU"}
    assert body["rows"] == [
        {
            "measure": "qualifying inputs",
            "value": 1406.0,
            "unit": "events/s",
            "goal": ">= 5000",
            "goal_met": False,
            "raw": None,
            "ratio": None,
            "detail": "CPU 227 µs/input",
        }
    ]
    with pytest.raises(BenchInputError, match="rewards: no rows"):
        write_results("rewards", [], MACHINE, results=tmp_path)


def test_a_busy_machine_is_refused_unless_forced(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(FORCE_ENV, raising=False)
    with pytest.raises(SystemExit) as exc:
        machine_header("segmenter", force=False, load=(1.5, 1.0, 0.8), cores=2)
    assert exc.value.code == REFUSED_EXIT
    out = capsys.readouterr().out
    assert out.startswith("segmenter: cores 2, load 1.50/1.00/0.80")
    assert f"{REFUSED_MARK} segmenter: 1-minute load 1.50 is over 1.0" in out

    machine = machine_header("segmenter", force=True, load=(1.5, 1.0, 0.8), cores=2)
    assert "WARNING segmenter: 1-minute load 1.50" in capsys.readouterr().out
    assert machine["cores"] == 2
    assert machine["load_at_start"] == [1.5, 1.0, 0.8]

    # The runner forces its benchmarks through the environment; their own --force flag is off.
    monkeypatch.setenv(FORCE_ENV, "1")
    machine_header("segmenter", force=False, load=(1.5, 1.0, 0.8), cores=2)
    assert "WARNING segmenter" in capsys.readouterr().out


def test_a_quiet_machine_starts_without_a_warning(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(FORCE_ENV, raising=False)
    machine_header("notifier", force=False, load=(0.9, 0.5, 0.5), cores=2)
    out = capsys.readouterr().out
    assert "WARNING" not in out and REFUSED_MARK not in out


def test_force_comes_from_the_flag_or_the_environment() -> None:
    assert forced(["--users", "5", "--force"], {})
    assert forced([], {"BENCH_FORCE": "1"})
    assert not forced([], {"BENCH_FORCE": "0"})
    assert not forced(["--quick"], {})


def test_the_table_shows_every_figure_with_goal_ratio_and_the_benches_without_results(tmp_path: Path) -> None:
    write_results(
        "ingest",
        [row("ingest /v1/batch x100, 16 conns", 131_000.0, "events/s", goal=">= 124000", raw=262_000.0)],
        MACHINE,
        results=tmp_path,
    )
    write_results(
        "notifier",
        [
            row("webhook deliveries", 141.0, "deliveries/s", goal=">= 2000", detail="CPU ms/message 6.1"),
            row("p99 event -> message", 420.0, "ms", goal="<= 1000", detail="p50 80 ms"),
        ],
        {**MACHINE, "load_at_start": [0.45, 0.5, 0.6]},
        results=tmp_path,
    )
    (tmp_path / "segmenter.json").write_text("{not json")
    outcomes = [read_results(n, tmp_path) for n in ("ingest", "segmenter", "timers", "notifier")]
    text = table_text(outcomes)

    (ingest,) = lines_with(text, "ingest /v1/batch")
    assert "131,000 events/s" in ingest and ">= 124,000" in ingest and "yes" in ingest
    assert "262,000" in ingest and "0.50" in ingest
    (deliveries,) = lines_with(text, "webhook deliveries")
    assert "141 deliveries/s" in deliveries and ">= 2,000" in deliveries and " no " in deliveries
    (p99,) = lines_with(text, "p99 event")
    assert "420 ms" in p99 and "<= 1,000" in p99 and "yes" in p99
    assert lines_with(text, "timers")[0].split("│")[2].strip() == "no results"
    assert "bad results" in lines_with(text, "segmenter")[0]
    assert "machine: 2 cores, Test CPU; 1-minute load at each start: ingest 0.30, notifier 0.45" in text


def test_results_older_than_the_run_are_not_shown_as_its_figures(tmp_path: Path) -> None:
    path = write_results("rewards", [row("m", 1.0, "events/s")], MACHINE, results=tmp_path)
    assert read_results("rewards", tmp_path, since=path.stat().st_mtime + 10).status == "no results"
    assert read_results("rewards", tmp_path, since=path.stat().st_mtime - 10).status == "ok"


def test_only_selects_benches_in_the_standard_order_and_names_unknown_ones() -> None:
    assert selected("notifier,ingest") == ["ingest", "notifier"]
    assert selected(None) == ["ingest", "segmenter", "timers", "rewards", "notifier"]
    with pytest.raises(SystemExit, match="unknown benchmark ingset"):
        selected("ingset")
