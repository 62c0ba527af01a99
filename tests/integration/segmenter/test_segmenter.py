"""The segmenter end to end on a real broker and server: stages, segments, timers, dead letters."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson

from tests.conftest import Stack, eventually, plain_url
from tests.integration.runtime.test_runner import read_all
from tests.integration.segmenter.conftest import SegmenterFactory
from tests.integration.segmenter.harness import produce_events, wire_event

EVENTS, LIFECYCLE, DLQ = "userops.events.v1", "userops.lifecycle.v1", "userops.deadletter.v1"


async def _stage(seg, user: str) -> str | None:  # type: ignore[no-untyped-def]
    try:
        return (await seg.get(f"/v1/users/{user}"))["stage"]  # type: ignore[no-any-return]
    except Exception:
        return None


async def test_idle_user_moves_through_stages_at_deadlines_and_reactivates(
    stack: Stack, topics: dict[str, str], segmenter_factory: SegmenterFactory, short_config: Path
) -> None:
    seg = segmenter_factory(short_config)
    seg.start()
    await seg.wait_ready()
    t0 = datetime.now(UTC)
    await produce_events(
        stack.bootstrap,
        topics[EVENTS],
        [
            wire_event("alice", "Order Completed", t0, mid="a1", properties={"revenue": 120}),
        ],
    )
    await eventually(lambda: _is(seg, "alice", "activated"), timeout=20)
    # No more events: activated -> active -> at_risk -> dormant -> churned, by timers alone.
    await eventually(lambda: _is(seg, "alice", "churned"), timeout=30)
    profile = await seg.get("/v1/users/alice")
    moves = [(h["from"], h["to"]) for h in profile["history"]]
    assert moves == [
        (None, "activated"),
        ("activated", "active"),
        ("active", "at_risk"),
        ("at_risk", "dormant"),
        ("dormant", "churned"),
    ]
    at = {h["to"]: datetime.fromisoformat(h["at"]) for h in profile["history"]}
    # Time-only changes are recorded at the exact deadline, not when a batch happened to run.
    assert abs((at["at_risk"] - t0).total_seconds() - 3) < 0.01
    assert abs((at["dormant"] - t0).total_seconds() - 6) < 0.01
    assert abs((at["churned"] - t0).total_seconds() - 9) < 0.01
    # The custom segment, and the default RFM layer: one recent order is a new customer.
    assert [s["segment"] for s in profile["segments"]] == ["big_spenders", "new_customers"]
    # A new event after a gap >= 6 s: reactivated.
    await produce_events(
        stack.bootstrap,
        topics[EVENTS],
        [
            wire_event("alice", "Lesson Completed", datetime.now(UTC), mid="a2"),
        ],
    )
    await eventually(lambda: _is(seg, "alice", "reactivated"), timeout=20)
    stages = await seg.get("/v1/stages")
    assert stages["stages"]["reactivated"] == 1
    outputs = await read_all(stack.bootstrap, topics[LIFECYCLE], expect=8)
    changes = [orjson.loads(r.value) for r in outputs]
    stage_changes = [(c["from"], c["to"]) for c in changes if c["type"] == "stage_changed"]
    assert stage_changes == [*moves, ("churned", "reactivated")]
    assert sorted(c["segment"] for c in changes if c["type"] == "segment_entered") == [
        "big_spenders",
        "new_customers",
    ]
    assert all(c["configVersion"] for c in changes)
    # SIGTERM: graceful stop (uvicorn re-raises the signal once shut down).
    assert seg.terminate() in (0, -signal.SIGTERM)


async def _is(seg, user: str, stage: str) -> bool:  # type: ignore[no-untyped-def]
    return await _stage(seg, user) == stage


async def test_poison_event_is_dead_lettered_and_the_rest_applied(
    stack: Stack, topics: dict[str, str], segmenter_factory: SegmenterFactory, short_config: Path
) -> None:
    seg = segmenter_factory(short_config)
    seg.start()
    await seg.wait_ready()
    now = datetime.now(UTC)
    bad_type = wire_event("bob", "X", now, mid="b2")
    bad_type["type"] = "explode"
    await produce_events(
        stack.bootstrap,
        topics[EVENTS],
        [
            wire_event("bob", "Signed Up", now, mid="b1"),
            bad_type,
            b"not json at all",
            wire_event("carol", "Signed Up", now, mid="c1"),
        ],
    )
    await eventually(lambda: _is(seg, "carol", "new"), timeout=20)
    assert await _stage(seg, "bob") == "new"
    dead = await read_all(stack.bootstrap, topics[DLQ], expect=2)
    assert len(dead) == 2
    reasons = sorted(dict(r.headers)["reason"] for r in dead)
    assert reasons == [b"invalid_event", b"invalid_event"]


async def test_admin_api_requires_the_bearer_token(
    segmenter_factory: SegmenterFactory, short_config: Path
) -> None:
    import httpx

    seg = segmenter_factory(short_config)
    seg.start()
    await seg.wait_ready()
    async with httpx.AsyncClient(base_url=seg.url) as c:
        assert (await c.get("/v1/stages")).status_code == 401
        assert (await c.get("/v1/stages", headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await c.get("/health")).status_code == 200
        metrics = (await c.get("/metrics")).text
    assert "userops_consumer_ready" in metrics


async def test_invalid_config_stops_the_service_naming_file_and_field(
    segmenter_factory: SegmenterFactory, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("segments:\n  - name: x\n    rule: {all: [{field: stage, op: approx, value: new}]}\n")
    seg = segmenter_factory(bad)
    seg.start()
    assert seg.proc is not None
    assert seg.proc.wait(30) == 2
    out = seg.log.read_text()
    assert str(bad) in out
    assert "segments[0].rule.all[0]" in out
    assert "approx" in out or "op" in out


async def test_two_users_reusing_a_message_id_both_get_history_and_lifecycle_events(
    stack: Stack,
    topics: dict[str, str],
    database: str,
    segmenter_factory: SegmenterFactory,
    short_config: Path,
) -> None:
    """Defect 3: output ids derive from (topic contract, user, messageId), not the messageId alone."""
    seg = segmenter_factory(short_config)
    seg.start()
    await seg.wait_ready()
    now = datetime.now(UTC)
    await produce_events(
        stack.bootstrap,
        topics[EVENTS],
        [wire_event(user, "Signed Up", now, mid="signup-1") for user in ("dana", "eve")],
    )
    await eventually(lambda: _is(seg, "dana", "new"), timeout=20)
    await eventually(lambda: _is(seg, "eve", "new"), timeout=20)
    for user in ("dana", "eve"):
        assert [h["to"] for h in (await seg.get(f"/v1/users/{user}"))["history"]] == ["new"]
    records = await read_all(stack.bootstrap, topics[LIFECYCLE], expect=2)
    changes = [orjson.loads(r.value) for r in records]
    first = {(c["userId"], c["id"]) for c in changes if c["type"] == "stage_changed" and c["from"] is None}
    assert {u for u, _ in first} == {"dana", "eve"}
    assert len({i for _, i in first}) == 2


async def test_a_timer_whose_profile_row_is_gone_is_dropped_with_a_log_line(
    database: str, segmenter_factory: SegmenterFactory, short_config: Path
) -> None:
    """Defect 7: it used to be offered again forever (skip-locked could not tell gone from busy)."""
    seg = segmenter_factory(short_config)
    seg.start()
    await seg.wait_ready()
    await _execute(
        database,
        "INSERT INTO timers (kind, key, due_at, payload) VALUES ('segmenter.idle', 'ghost', now(), '{}')",
    )

    async def gone() -> bool:
        return not await _rows(database, "SELECT 1 FROM timers WHERE key = 'ghost'")

    await eventually(gone, timeout=20)
    await eventually(lambda: "profile row is gone" in seg.log.read_text(), timeout=10)
    assert not await _rows(database, "SELECT 1 FROM profiles WHERE user_id = 'ghost'")


async def test_non_finite_revenue_never_poisons_the_user(
    stack: Stack,
    topics: dict[str, str],
    database: str,
    segmenter_factory: SegmenterFactory,
    short_config: Path,
) -> None:
    """Defect 2: `1e308` twice and `"NaN"` are applied without their amount; later orders count."""
    seg = segmenter_factory(short_config)
    seg.start()
    await seg.wait_ready()
    now = datetime.now(UTC)
    amounts: list[object] = [1e308, 1e308, "NaN", "inf", 150]
    await produce_events(
        stack.bootstrap,
        topics[EVENTS],
        [
            wire_event("frank", "Order Completed", now, mid=f"f{i}", properties={"revenue": amount})
            for i, amount in enumerate(amounts)
        ],
    )

    async def orders() -> int:
        rows = await _rows(database, "SELECT state FROM profiles WHERE user_id = 'frank'")
        return int(orjson.loads(rows[0][0])["orders"]) if rows else 0

    await eventually(lambda: _count_is(orders, len(amounts)), timeout=20)
    state = orjson.loads((await _rows(database, "SELECT state FROM profiles WHERE user_id = 'frank'"))[0][0])
    assert state["revenue"] == 150.0
    assert "big_spenders" in {s["segment"] for s in (await seg.get("/v1/users/frank"))["segments"]}


async def _count_is(count, n: int) -> bool:  # type: ignore[no-untyped-def]
    return bool(await count() == n)


async def _rows(url: str, sql: str) -> list[Any]:
    conn = await asyncpg.connect(plain_url(url))
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(plain_url(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
