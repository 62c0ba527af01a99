"""`userops send`: chunking within ingest's limits, bad lines isolated and named, retries, summary."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from scripts.cli import app
from scripts.commands.batch_sender import (
    ChunkLimits,
    Item,
    Outcome,
    RetryPolicy,
    Sender,
    WriteKeyRefused,
    chunks,
    read_items,
)
from scripts.stack.procs import free_port

URL = "http://ingest.test/v1/batch"


def lines(*events: object) -> io.BytesIO:
    return io.BytesIO(b"\n".join(e if isinstance(e, bytes) else orjson.dumps(e) for e in events) + b"\n")


class Ingest:
    """A stand-in for ingest's /v1/batch: refuses the first item without a userId, as ingest does."""

    def __init__(self, fail_first: int = 0, status: int = 503) -> None:
        self.fail_first = fail_first
        self.status = status
        self.batches: list[list[dict[str, object]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.fail_first:
            self.fail_first -= 1
            return httpx.Response(
                self.status, json={"code": "unavailable", "message": "kafka"}, headers={"Retry-After": "1"}
            )
        batch = orjson.loads(request.content)["batch"]
        for i, item in enumerate(batch):
            if "userId" not in item:
                return httpx.Response(
                    400,
                    json={
                        "code": "invalid_request",
                        "message": f"batch[{i}].userId: userId or anonymousId is required",
                    },
                )
        self.batches.append(batch)
        return httpx.Response(200, json={"success": True})


def sender(ingest: Ingest, outcome: Outcome, attempts: int = 3) -> tuple[Sender, list[float]]:
    slept: list[float] = []
    client = httpx.Client(transport=httpx.MockTransport(ingest))
    return Sender(
        client, URL, "k", RetryPolicy(attempts=attempts), outcome, sleep=slept.append, rand=lambda: 0.0
    ), slept


def test_malformed_lines_are_named_by_number_and_the_rest_is_read() -> None:
    outcome = Outcome()
    items = list(read_items(lines({"userId": "a"}, b"{not json", b"", b"[1]", {"userId": "b"}), outcome))
    assert [i.line for i in items] == [1, 5]
    assert [n for n, _ in outcome.rejected] == [2, 4]
    assert "malformed JSON" in outcome.rejected[0][1]
    assert outcome.rejected[1][1] == "must be a JSON object, not an array"
    assert (outcome.lines, outcome.events, outcome.malformed) == (4, 2, 2)
    assert all(orjson.loads(i.body)["messageId"] for i in items)  # fixed before the first attempt


def test_chunks_stay_within_the_event_and_byte_limits() -> None:
    outcome = Outcome()
    items = [Item(n, b'{"userId":"%d"}' % n + b" " * 80) for n in range(1, 101)]
    limits = ChunkLimits(max_events=7, max_request_bytes=500)
    groups = list(chunks(iter(items), limits, outcome))
    assert [i for g in groups for i in g] == items
    for g in groups:
        assert len(g) <= 7
        assert len(b'{"batch":[' + b",".join(i.body for i in g) + b"]}") <= 500
    huge = Item(101, b"x" * 600)
    assert list(chunks(iter([huge]), limits, outcome)) == []
    assert outcome.rejected[0][0] == 101 and "request limit" in outcome.rejected[0][1]


def test_a_refused_item_is_rejected_with_ingests_reason_and_the_others_are_sent_again() -> None:
    outcome = Outcome()
    ingest = Ingest()
    s, _ = sender(ingest, outcome)
    items = list(
        read_items(
            lines({"userId": "a"}, {"event": "x"}, {"userId": "c"}, {"anonymous": 1}, {"userId": "e"}),
            outcome,
        )
    )
    s.send(items)
    assert outcome.accepted == 3
    assert outcome.rejected == [
        (2, "userId: userId or anonymousId is required"),
        (4, "userId: userId or anonymousId is required"),
    ]
    assert [[e["userId"] for e in b] for b in ingest.batches] == [["a", "c", "e"]]


def test_503_and_429_are_retried_with_retry_after_then_succeed() -> None:
    outcome = Outcome()
    s, slept = sender(Ingest(fail_first=2, status=503), outcome)
    s.send(list(read_items(lines({"userId": "a"}), outcome)))
    assert outcome.accepted == 1 and outcome.ok
    assert slept == [1.0, 1.0] and outcome.retries == 2 and outcome.requests == 3


def test_lines_are_failed_with_the_reason_once_the_retries_are_spent() -> None:
    outcome = Outcome()
    s, _ = sender(Ingest(fail_first=10, status=429), outcome, attempts=2)
    s.send(list(read_items(lines({"userId": "a"}, {"userId": "b"}), outcome)))
    assert outcome.accepted == 0
    assert [n for n, _ in outcome.failed] == [1, 2]
    assert "429 unavailable: kafka (after 2 attempts)" in outcome.failed[0][1]


def test_connection_errors_are_retried_with_backoff() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    outcome = Outcome()
    slept: list[float] = []
    client = httpx.Client(transport=httpx.MockTransport(down))
    s = Sender(
        client, URL, "k", RetryPolicy(attempts=4, initial=0.5), outcome, sleep=slept.append, rand=lambda: 1.0
    )
    s.send(list(read_items(lines({"userId": "a"}), outcome)))
    assert slept == [0.5, 1.0, 2.0]
    assert "cannot reach ingest" in outcome.failed[0][1]


def test_an_unknown_write_key_stops_the_send() -> None:
    outcome = Outcome()
    client = httpx.Client(
        transport=httpx.MockTransport(
            lambda r: httpx.Response(401, json={"code": "unauthorized", "message": "unknown write key"})
        )
    )
    s = Sender(client, URL, "k", RetryPolicy(), outcome)
    with pytest.raises(WriteKeyRefused, match="unknown write key"):
        s.send(list(read_items(lines({"userId": "a"}), outcome)))


def test_cli_reads_gzip_and_exits_1_when_ingest_is_unreachable(tmp_path: Path) -> None:
    file = tmp_path / "events.ndjson.gz"
    file.write_bytes(gzip.compress(b'{"userId": "a", "type": "track", "event": "x"}\nnot json\n'))
    env = {"USEROPS_INGEST_URL": f"http://127.0.0.1:{free_port()}", "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["send", str(file), "--retries", "0"], env=env)
    assert result.exit_code == 1, result.output
    assert "cannot reach ingest" in result.output
    assert "malformed JSON" in result.output
    assert "│    2 │ rejected" in result.output or "2 │ rejected" in result.output


def test_cli_with_an_empty_file_sends_nothing_and_succeeds(tmp_path: Path) -> None:
    file = tmp_path / "empty.ndjson"
    file.write_bytes(b"\n\n")
    result = CliRunner().invoke(
        app, ["send", str(file)], env={"USEROPS_INGEST_URL": f"http://127.0.0.1:{free_port()}"}
    )
    assert result.exit_code == 0, result.output
    assert "0 events" in result.output


def test_the_progress_line_and_the_summary_count_events_alike(tmp_path: Path) -> None:
    file = tmp_path / "events.ndjson"
    events = [orjson.dumps({"userId": u, "type": "track", "event": "x"}) for u in "abcd"]
    file.write_bytes(b"\n".join([*events[:2], b"{not json", *events[2:]]) + b"\n")
    env = {"USEROPS_INGEST_URL": f"http://127.0.0.1:{free_port()}", "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["send", str(file), "--retries", "0"], env=env)
    assert result.exit_code == 1, result.output
    assert "send 4 events" in result.stderr
    assert "5 lines: 4 events, 1 malformed" in result.stdout
