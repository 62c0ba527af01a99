"""The segmenter end to end on a real broker and server: stages, segments, timers, dead letters."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path

import orjson

from tests.conftest import Stack, eventually
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
