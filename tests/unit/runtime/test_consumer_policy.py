"""The runner's policy on in-memory ports: commit order, dead letters, retries, pause, stop."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from sqlalchemy import exc as sa_exc
from structlog.testing import capture_logs

from shared import ids
from shared.runtime import deadletter
from shared.runtime.errors import ConsumerFailed
from tests.unit.runtime.fakes import SOURCE, TOPIC, Kit, make_kit, started

TP0 = TopicPartition(TOPIC, 0)


def _id(user: str, message: str) -> str:
    return ids.input_id(SOURCE, user, message)


async def test_offsets_are_committed_after_the_transaction_and_point_past_the_batch() -> None:
    kit = await started(make_kit())
    for i in range(3):
        kit.consumer.add(0, b"u1", f"u1:m{i}".encode())
    await kit.runner.run_once()
    assert kit.events == [("tx_commit", [_id("u1", f"m{i}") for i in range(3)]), ("commit", {TP0: 3})]
    assert kit.store.effects == ["m0", "m1", "m2"]
    assert kit.sample("userops_consumer_messages_processed_total", consumer="c", topic=TOPIC) == 3


async def test_a_redelivered_message_changes_nothing() -> None:
    kit = await started(make_kit())
    kit.consumer.add(0, b"u1", b"u1:m0")
    kit.consumer.add(0, b"u1", b"u1:m0")  # an SDK retry in the same batch
    await kit.runner.run_once()
    kit.consumer.committed[TP0] = 0  # the group is rewound: both delivered again
    kit.consumer.positions.clear()
    await kit.runner.run_once()
    assert kit.store.effects == ["m0"]


async def test_a_decode_error_is_dead_lettered_unclaimed_and_the_offset_moves_past_it() -> None:
    kit = await started(make_kit())
    kit.consumer.add(0, b"u1", b"u1:m0")
    bad = kit.consumer.add(0, b"k", b"\xff not decodable", headers=[("trace", b"t-1"), ("reason", b"old")])
    kit.consumer.add(0, b"u1", b"u1:m2")
    await kit.runner.run_once()
    assert kit.store.effects == ["m0", "m2"]
    ((topic, key, value, headers),) = kit.deadletters.sent
    assert (topic, key, value) == ("userops.deadletter.v1", b"k", bad.value)
    assert headers["trace"] == b"t-1"  # the original headers travel with it
    assert headers[deadletter.REASON] == b"UnicodeDecodeError"  # replaced, not duplicated
    assert headers[deadletter.SOURCE_TOPIC] == TOPIC.encode()
    assert headers[deadletter.SOURCE_OFFSET] == b"1"
    assert headers[deadletter.CONSUMER] == b"c"
    assert headers[deadletter.DEAD_LETTERED_AT] == b"2026-01-01T00:00:00+00:00"
    assert kit.events[-1] == ("commit", {TP0: 3})
    labels = {"consumer": "c", "topic": TOPIC, "reason": "UnicodeDecodeError"}
    assert kit.sample("userops_consumer_messages_deadlettered_total", **labels) == 1


async def test_a_permanent_error_isolates_the_message_and_the_rest_of_the_batch_is_applied() -> None:
    kit = await started(make_kit())
    for i in range(5):
        kit.consumer.add(0, b"u1", f"u1:m{i}{':poison' if i == 2 else ''}".encode())
    await kit.runner.run_once()
    assert kit.store.effects == ["m0", "m1", "m3", "m4"]
    assert [s[2] for s in kit.deadletters.sent] == [b"u1:m2:poison"]
    assert kit.deadletters.sent[0][3][deadletter.REASON] == b"poison"
    assert ("c", _id("u1", "m2")) not in kit.store.claimed
    assert kit.events[-1] == ("commit", {TP0: 5})


async def test_a_dead_lettered_message_replayed_after_the_fix_is_applied() -> None:
    kit = await started(make_kit())
    kit.consumer.add(0, b"u1", b"u1:m0:poison")
    await kit.runner.run_once()
    assert kit.store.effects == []
    kit.handler.fixed = True
    kit.consumer.add(0, b"u1", kit.deadletters.sent[0][2])  # `userops deadletter replay`
    await kit.runner.run_once()
    assert kit.store.effects == ["m0"]


async def test_a_code_bug_is_retried_never_dead_lettered_and_then_stops_the_consumer() -> None:
    kit = await started(make_kit(max_unexpected_failures=3))
    kit.consumer.add(0, b"u1", b"u1:m0")
    kit.consumer.add(0, b"u1", b"u1:m1:bug")
    with pytest.raises(ConsumerFailed, match="KeyError"):
        await kit.runner.run_once()
    assert kit.deadletters.sent == []
    assert kit.store.effects == []
    assert not [e for e in kit.events if e[0] in ("commit", "tx_commit")]
    assert len(kit.sleeps) >= 3  # backed off between the attempts
    assert kit.consumer.paused == set()  # resumed on the way out
    assert kit.sample("userops_consumer_retries_total", consumer="c") == 3


async def test_a_transient_failure_pauses_keeps_polling_and_retries_the_same_batch() -> None:
    states: list[tuple[bool, set[TopicPartition]]] = []

    def during_wait(kit: Kit) -> None:
        states.append((kit.runner.ready, set(kit.consumer.paused)))

    kit = await started(make_kit(on_sleep=during_wait))
    assert kit.runner.ready
    down = sa_exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("db down"))
    kit.store.failures = [down] * 20  # far more than the unexpected-error bound: still retried
    for i in range(3):
        kit.consumer.add(0, b"u1", f"u1:m{i}".encode())
    with capture_logs() as logs:
        await kit.runner.run_once()
    # Twenty failed attempts, two log lines: the outage began, the outage ended.
    assert [e["event"] for e in logs if e["log_level"] != "debug"] == [
        "consumer batch failed; retrying",
        "consumer batch recovered",
    ]
    assert kit.store.effects == ["m0", "m1", "m2"]
    assert states and all(ready is False and paused == {TP0} for ready, paused in states)
    assert kit.consumer.polls_while_paused >= 20
    assert [e[0] for e in kit.events] == ["pause", "tx_commit", "resume", "commit"]
    assert kit.runner.ready
    assert kit.runner.check()["failing"] is None


async def test_stop_during_a_retry_returns_without_committing_or_applying() -> None:
    def stop_on_wait(kit: Kit) -> None:
        kit.runner.stop()

    kit = await started(make_kit(on_sleep=stop_on_wait))
    kit.store.failures = [ConnectionRefusedError("db down")] * 100
    kit.consumer.add(0, b"u1", b"u1:m0")
    await kit.runner.run_once()
    assert kit.store.effects == []
    assert not [e for e in kit.events if e[0] == "commit"]
    assert kit.consumer.paused == set()


async def test_a_dead_letter_publish_outage_is_retried_not_skipped() -> None:
    kit = await started(make_kit())
    kit.deadletters.failures = [ConnectionError("broker down")] * 10
    kit.consumer.add(0, b"u1", b"garbage")
    await kit.runner.run_once()
    assert [s[2] for s in kit.deadletters.sent] == [b"garbage"]
    assert kit.events[-1] == ("commit", {TP0: 1})


async def test_the_breaker_stops_a_consumer_that_dead_letters_most_messages() -> None:
    kit = await started(make_kit(dlq_min_messages=10, dlq_window=20, max_batch=5))
    for i in range(40):
        kit.consumer.add(0, b"u1", b"garbage" if i % 4 else f"u1:m{i}".encode())
    await kit.runner.run_once()  # 5 seen: too few to judge
    with pytest.raises(ConsumerFailed, match="breaker"):
        await kit.runner.run_once()
    # It stopped after the batch that crossed the threshold (10 seen, 7 dead), with that batch committed.
    assert len(kit.deadletters.sent) == 7
    assert kit.events[-1] == ("commit", {TP0: 10})


async def test_reasons_are_bounded_labels_never_free_text() -> None:
    kit = await started(make_kit())
    from shared.runtime.dlq_policy import Reasons
    from shared.runtime.errors import PermanentError

    reasons = Reasons(limit=3)
    assert reasons.of(PermanentError("invalid_event", "user alice@example.com")) == "invalid_event"
    assert (
        reasons.of(PermanentError("bad id alice@example.com " * 10)) == ("bad_id_alice_example.com_" * 3)[:64]
    )
    assert reasons.of(KeyError("x")) == "KeyError"
    assert reasons.of(ValueError("x")) == "other"
    assert reasons.of(KeyError("y")) == "KeyError"
    assert kit.runner.ready
