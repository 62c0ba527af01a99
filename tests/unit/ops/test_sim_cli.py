"""`userops simulate` on the command line: NDJSON output, and clear refusals."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
from typer.testing import CliRunner

from scripts.cli import app
from scripts.sim.settle import Behind, metric_sums
from shared.events import Event

runner = CliRunner()
START = "2026-01-05T08:00:00Z"


def test_ndjson_is_the_same_for_the_same_seed_and_every_line_is_a_valid_event(tmp_path: Path) -> None:
    files = [tmp_path / "a.ndjson.gz", tmp_path / "b.ndjson.gz"]
    for f in files:
        result = runner.invoke(
            app, ["simulate", "--users", "20", "--weeks", "3", "--start", START, "--ndjson", str(f)]
        )
        assert result.exit_code == 0, result.output
    first, second = (gzip.decompress(f.read_bytes()) for f in files)
    assert first == second
    lines = first.splitlines()
    assert lines and all(Event.from_wire(orjson.loads(line)) for line in lines)
    assert f"{len(lines)} events written" in result.output


def test_bad_or_future_start_and_an_unreachable_ingest_exit_1_naming_the_problem(tmp_path: Path) -> None:
    bad = runner.invoke(app, ["simulate", "--start", "yesterday", "--ndjson", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "--start" in bad.output
    future = runner.invoke(
        app, ["simulate", "--start", "2999-01-01T00:00:00Z", "--ndjson", str(tmp_path / "x")]
    )
    assert future.exit_code == 1 and "in the future" in future.output
    down = runner.invoke(
        app, ["simulate", "--users", "2", "--weeks", "1", "--url", "http://127.0.0.1:1", "--start", START]
    )
    assert down.exit_code == 1 and "ingest does not answer at http://127.0.0.1:1" in down.output


def test_metric_sums_add_every_labelled_sample_of_a_metric() -> None:
    text = (
        "# HELP userops_outbox_backlog Outbox rows not yet published.\n"
        'userops_outbox_backlog{service="rewards"} 3.0\n'
        'userops_jobs_queued{service="notifier",kind="email"} 2.0\n'
        'userops_jobs_queued{service="notifier",kind="webhook"} 1.0\n'
        "userops_outbox_backlog_total 99\n"
    )
    sums = metric_sums(text, ("userops_outbox_backlog", "userops_jobs_queued", "userops_timer_backlog"))
    assert sums == {"userops_outbox_backlog": 3.0, "userops_jobs_queued": 3.0, "userops_timer_backlog": 0.0}
    assert not Behind({"rewards": 0}, sums).done
    assert Behind({"rewards": 0}, dict.fromkeys(sums, 0.0)).done
    assert Behind({"rewards": 4}, {}).describe() == "rewards lag 4"
