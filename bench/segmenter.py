"""Segmenter throughput benchmark (not a test): `make bench` or `.venv/bin/python bench/segmenter.py`.

Starts its own private Kafka broker and PostgreSQL server (scripts.stack, as the tests do, on free
ports under `.local/bench-<pid>`, removed at the end, with the stack's PostgreSQL settings) and
runs the real service (`python -m services.segmenter`) as subprocesses, with the rules of
`config/segmenter.yaml`:

1. events: a pre-filled 12-partition topic with a realistic mix for 100,000 users (page, screen,
   track of several names incl. `Order Completed` with revenue and `Lesson Completed`, identify
   with traits, anonymous visitors identified later, alias), timestamps over the last 60 days,
   keyed by user as ingest keys them. It is drained once per `--processes` count (default 1,
   then 2 processes in one group, static membership), each time into a fresh database; with
   `--compare CHECKOUT` first by the segmenter of another checkout too (an A/B in the same
   window). The rate is measured from the first committed offsets to the last (start-up
   excluded), read from the group's committed offsets in Kafka.
2. raw: the segmenter's writes for as many events as a bare asyncpg loop (no service), with
   the state size and stage changes per event measured in phase 1: the ceiling for `ratio`.
3. timers: a database pre-filled (after the service's migrations) with 1,000,000 profiles copied
   from a few real `UserState`s built with the domain, and one due `segmenter.idle` timer per
   profile, each of which changes the user's stage when it fires. The time is from the first
   fired timer to no due row left.

Each phase reports the CPU seconds the segmenter, PostgreSQL and Kafka used (from /proc), and
CPU microseconds per event: on a shared machine that compares runs better than the rate.
PostgreSQL runs with fsync on (`--fsync off` to compare; `--pg-settings default` for the server
defaults instead of the stack's settings). `--profile` attaches py-spy (if installed) to the
service while it works and prints where its CPU time goes; the raw samples land in
bench/results/. The figures go to bench/results/segmenter.json (the `make bench` table).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import machine_header, row, write_results  # noqa: E402
from segmenter_measure import CONFIG, CpuMeter, Profiler, Service, postgres_pids, start_service  # noqa: E402
from segmenter_workload import build_templates, fill_timers, make_events  # noqa: E402

from scripts.stack import KafkaNode, PostgresNode  # noqa: E402
from scripts.stack.postgres import WORKLOAD_SETTINGS  # noqa: E402
from scripts.stack.procs import free_port  # noqa: E402
from scripts.stack.topics import ensure_topics  # noqa: E402
from services.segmenter.config import load_config  # noqa: E402
from services.segmenter.consumer import IDLE_TIMER  # noqa: E402
from shared.events import format_ts  # noqa: E402
from shared.kafka import create_producer  # noqa: E402

# --------------------------------------------------------------------------- phase 1: events


async def produce(bootstrap: str, topic: str, events: list[tuple[bytes, bytes]]) -> dict[int, int]:
    """Publish `events`; return the end offset of each partition."""
    producer = create_producer(bootstrap, linger_ms=50, max_batch_size=1024 * 1024)
    await producer.start()
    ends: dict[int, int] = {}
    try:
        for start in range(0, len(events), 20_000):
            futures = [await producer.send(topic, v, key=k) for k, v in events[start : start + 20_000]]
            for md in await asyncio.gather(*futures):
                ends[md.partition] = max(ends.get(md.partition, 0), md.offset + 1)
    finally:
        await producer.stop()
    return ends


async def committed_total(admin: Any, group: str, topic: str) -> int:
    from aiokafka.errors import KafkaError

    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except KafkaError:  # the group has no coordinator yet
        return 0
    return sum(max(0, om.offset) for tp, om in offsets.items() if tp.topic == topic)


@dataclass
class Drain:
    """One measured drain of the events topic."""

    label: str
    processes: int
    rate: float  # events/s from the first commit to lag 0
    events: int
    seconds: float
    cpu: dict[str, float]  # CPU seconds per process group

    def us_per_event(self, group: str) -> float:
        return self.cpu.get(group, 0.0) / max(1, self.events) * 1e6


async def bench_events(ctx: Context) -> None:
    args = ctx.args
    print(
        f"\n== events: {args.events:,} events of {args.users:,} users ({args.partitions} partitions), "
        f"drained by {' then '.join(str(n) for n in args.processes)} process(es)"
        f"{' and the code at ' + str(args.compare) if args.compare else ''}"
    )
    topics = await ctx.new_topics()
    t = time.monotonic()
    events = make_events(args.users, args.events, datetime.now(UTC))
    kinds = Counter(orjson.loads(v)["type"] for _, v in events[:: max(1, len(events) // 20_000)])
    size = sum(len(v) for _, v in events) / len(events)
    print(
        f"  generated {len(events):,} events in {time.monotonic() - t:.1f} s "
        f"(mean {size:.0f} B; mix {', '.join(f'{k} {n / sum(kinds.values()):.0%}' for k, n in kinds.most_common())})"
    )
    t = time.monotonic()
    ends = await produce(ctx.bootstrap, topics["events"], events)
    total = sum(ends.values())
    print(f"  produced {total:,} in {time.monotonic() - t:.1f} s")
    del events
    # The same topic, a fresh database and consumer group per run: the code compared against
    # (if any) and this code run in the same window, one after the other.
    plan: list[tuple[str, int, Path | None]] = []
    if args.compare:
        plan.append(("compared code, 1 process", 1, args.compare))
    plan += [(f"{n} process{'es' if n > 1 else ''}", n, None) for n in args.processes]
    for label, n, root in plan:
        ctx.drains.append(await drain(ctx, topics, total, label, n, root))
    if ctx.drains:
        print("\n  summary (CPU per event: segmenter processes + PostgreSQL):")
        for d in ctx.drains:
            print(
                f"    {d.label:26} {d.rate:8,.0f} events/s  segmenter {d.us_per_event('segmenter'):5.0f} us  "
                f"postgres {d.us_per_event('postgres'):5.0f} us  "
                f"total {d.us_per_event('segmenter') + d.us_per_event('postgres'):5.0f} us/event"
            )


async def drain(
    ctx: Context, topics: dict[str, str], total: int, label: str, processes: int, root: Path | None
) -> Drain:
    """Start `processes` segmenters (one group, static membership) on a fresh database and
    measure them from their first committed offsets until the topic is drained."""
    from aiokafka.admin import AIOKafkaAdminClient

    args = ctx.args
    print(f"\n  -- {label}")
    db_url = await ctx.new_database()
    group = f"bench-seg-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=ctx.bootstrap)
    await admin.start()
    svcs = [
        start_service(
            ctx.home,
            ctx.bootstrap,
            db_url,
            topics,
            group,
            {**ctx.service_env, "USEROPS_SEGMENTER_INSTANCE_ID": f"{group}-{i}"},
            root=root,
        )
        for i in range(processes)
    ]
    ctx.services += svcs
    meter = ctx.meter(svcs)
    profiler: Profiler | None = None
    try:
        ready = max([await svc.wait_ready() for svc in svcs])
        print(f"  ready in {ready:.1f} s")
        first_at, first_done = 0.0, 0
        done = 0
        samples: list[tuple[float, int]] = []
        while done < total:
            done = await committed_total(admin, group, topics["events"])
            now = time.monotonic()
            if done and not first_at:
                first_at, first_done = now, done
                meter.start()
                await ctx.reset_pg_stats(db_url)
                if args.profile and root is None:
                    profiler = Profiler(svcs[0].proc.pid, "events")
            samples.append((now, done))
            for svc in svcs:
                if svc.proc.poll() is not None:
                    raise SystemExit(f"segmenter died:\n{svc.log.read_text()[-3000:]}")
            await asyncio.sleep(0.2)
        end = time.monotonic()
        meter.stop()
        if profiler:
            profiler.stop()
        seconds = end - first_at
        count = total - first_done
        rate = count / seconds
        print(f"  drained {count:,} events in {seconds:.1f} s (from the first commit to lag 0)")
        print(f"  >>> {rate:,.0f} events/s ({label})")
        print("  " + meter.report(seconds, count, "event"))
        _print_curve(samples, first_at)
        await ctx.print_pg_stats(db_url, seconds)
        conn = await asyncpg.connect(db_url.replace("+asyncpg", ""))
        try:
            stages = await conn.fetch(
                "SELECT stage, count(*) AS n FROM profiles WHERE merged_into IS NULL GROUP BY stage ORDER BY n DESC"
            )
            merged = await conn.fetchval("SELECT count(*) FROM profiles WHERE merged_into IS NOT NULL")
            history = await conn.fetchval("SELECT count(*) FROM stage_history")
            hot = await conn.fetchrow(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'profiles'"
            )
            ctx.shape = {
                "state_bytes": float(
                    await conn.fetchval("SELECT coalesce(avg(pg_column_size(state)), 0) FROM profiles")
                ),
                "users_per_event": (await conn.fetchval("SELECT count(*) FROM profiles")) / total,
                "history_per_event": history / total,
            }
        finally:
            await conn.close()
        by_stage = ", ".join(f"{r['stage']} {r['n']:,}" for r in stages)
        print(f"  profiles by stage: {by_stage}; merged anonymous {merged:,}; history rows {history:,}")
        if hot and hot["n_tup_upd"]:
            print(f"  profile updates in place (HOT): {hot['n_tup_hot_upd'] / hot['n_tup_upd']:.0%}")
        return Drain(label, processes, rate, count, seconds, dict(meter.used))
    finally:
        for svc in svcs:
            svc.stop()
        await admin.close()


def _print_curve(samples: list[tuple[float, int]], first_at: float) -> None:
    """Throughput per tenth of the run, to show warm-up and steady state."""
    run = [(t - first_at, n) for t, n in samples if t >= first_at]
    if len(run) < 10:
        return
    span = run[-1][0]
    rates = []
    j = 0
    for k in range(1, 11):
        edge = span * k / 10
        i = j
        while j < len(run) - 1 and run[j][0] < edge:
            j += 1
        dt = run[j][0] - run[i][0]
        if dt > 0:
            rates.append(f"{(run[j][1] - run[i][1]) / dt / 1000:.1f}k")
    print(f"  rate by tenth of the run: {' '.join(rates)}")


# --------------------------------------------------------------------------- phase 2: timers


async def bench_timers(ctx: Context) -> None:
    from services.segmenter.main import MIGRATIONS
    from shared.runtime import migrations
    from shared.runtime.db import create_engine

    args = ctx.args
    n = args.timers
    print(f"\n== timers: {n:,} due idle timers over {n:,} profiles")
    topics = await ctx.new_topics()
    db_url = await ctx.new_database()
    engine = create_engine(db_url)
    await migrations.upgrade(engine, MIGRATIONS)
    await engine.dispose()
    cfg = load_config(CONFIG)
    templates = build_templates(cfg, datetime.now(UTC))
    for t in templates:
        print(
            f"  template {t.name!r}: {t.state.stage} -> {t.expect} at {format_ts(t.due)}, "
            f"state {len(t.state.to_json())} B, segments {t.state.segments}"
        )
    conn = await asyncpg.connect(db_url.replace("+asyncpg", ""))
    try:
        t0 = time.monotonic()
        await fill_timers(conn, templates, n)
        await conn.execute("VACUUM ANALYZE")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
        print(f"  filled and vacuumed in {time.monotonic() - t0:.1f} s (database {size})")
        group = f"bench-timers-{uuid.uuid4().hex[:6]}"
        svc = start_service(ctx.home, ctx.bootstrap, db_url, topics, group, ctx.service_env)
        ctx.services.append(svc)
        meter = ctx.meter([svc])
        profiler: Profiler | None = None
        try:
            async with httpx.AsyncClient() as client:
                ready = None
                fired = 0.0
                first_at = 0.0
                while fired < n:
                    if svc.proc.poll() is not None:
                        raise SystemExit(f"segmenter died:\n{svc.log.read_text()[-3000:]}")
                    try:
                        fired = await svc.metric(client, "userops_timers_fired_total", kind=IDLE_TIMER)
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
                        continue
                    if ready is None:
                        ready = time.monotonic() - svc.started
                    if fired and not first_at:
                        first_at = time.monotonic()
                        meter.start()
                        await ctx.reset_pg_stats(db_url)
                        if args.profile:
                            profiler = Profiler(svc.proc.pid, "timers")
                    await asyncio.sleep(0.2)
                while True:  # the timers re-armed to instants already past fire again
                    if not await conn.fetchval("SELECT count(*) FROM timers WHERE due_at <= now()"):
                        break
                    await asyncio.sleep(0.2)
                end = time.monotonic()
                meter.stop()
                if profiler:
                    profiler.stop()
                seconds = end - first_at
                print(f"  HTTP up {ready:.1f} s after process start")
                print(
                    f"  >>> {n:,} timers in {seconds:.1f} s from the first fired to none due "
                    f"({n / seconds:,.0f}/s; {end - svc.started:.1f} s from process start)"
                )
                print("  " + meter.report(seconds, n, "timer"))
                await ctx.print_pg_stats(db_url, seconds)
                deadline = time.monotonic() + 600
                backlog = -1.0
                while time.monotonic() < deadline:
                    backlog = await svc.metric(client, "userops_outbox_backlog")
                    if backlog == 0:
                        break
                    await asyncio.sleep(0.5)
                print(
                    f"  outbox (stage_changed events) drained {time.monotonic() - first_at:.1f} s "
                    f"after the first timer fired (backlog now {backlog:,.0f})"
                )
            stages = await conn.fetch(
                "SELECT stage, count(*) AS n FROM profiles GROUP BY stage ORDER BY n DESC"
            )
            history = await conn.fetchval("SELECT count(*) FROM stage_history")
            by_stage = ", ".join(f"{r['stage']} {r['n']:,}" for r in stages)
            print(f"  profiles by stage: {by_stage}; history rows {history:,}")
            ctx.figures["timers_s"] = seconds
            ctx.details["timers"] = meter.report(seconds, n, "timer").removeprefix("CPU used: ")
        finally:
            svc.stop()
    finally:
        await conn.close()


# --------------------------------------------------------------------------- raw SQL ceiling


@dataclass
class RawLoop:
    rate: float
    cpu: dict[str, float]
    events: int


async def raw_loop(ctx: Context) -> RawLoop:
    """The segmenter's writes for the same number of events as a bare asyncpg loop, no service:
    per batch of `--max-batch` events, the dedupe keys, the profile locks (and first-seen rows),
    the profile updates with states of the measured size, history, activity days, outbox rows
    and timers, then a durable commit. The ceiling the service's rate is a share of."""
    from services.segmenter.main import MIGRATIONS
    from shared.runtime import migrations
    from shared.runtime.db import create_engine

    args = ctx.args
    shape = ctx.shape or {"state_bytes": 1200.0, "users_per_event": 0.17, "history_per_event": 0.3}
    batch = args.max_batch
    users = max(1, int(args.events * shape["users_per_event"]))
    print(
        f"\n== raw SQL loop: {args.events:,} events in batches of {batch}, {users:,} users, "
        f"states of {shape['state_bytes']:.0f} B, {shape['history_per_event']:.2f} history rows per event"
    )
    db_url = await ctx.new_database()
    engine = create_engine(db_url)
    await migrations.upgrade(engine, MIGRATIONS)
    await engine.dispose()
    state = b"x" * int(shape["state_bytes"])
    conn = await asyncpg.connect(db_url.replace("+asyncpg", ""))
    pg = CpuMeter({"postgres": lambda: postgres_pids(ctx.postgres), "loop": lambda: [os.getpid()]})
    rng = random.Random(3)
    now = datetime.now(UTC)
    try:
        pg.start()
        t0 = time.monotonic()
        for start in range(0, args.events, batch):
            n = min(batch, args.events - start)
            keys = [uuid.uuid4().bytes for _ in range(n)]
            ids = sorted({f"user-{int(users * rng.random() ** 1.6):06d}" for _ in range(n)})
            changes = int(n * shape["history_per_event"])
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO processed_messages (consumer, key_hash) SELECT 'raw', k FROM unnest($1::bytea[]) k",
                    keys,
                )
                found = await conn.fetch(
                    "SELECT user_id, state, stage, merged_into FROM profiles WHERE user_id = ANY($1) "
                    "ORDER BY user_id FOR UPDATE",
                    ids,
                )
                have = {r["user_id"] for r in found}
                if len(have) < len(ids):
                    await conn.execute(
                        "INSERT INTO profiles (user_id, state, stage, first_seen) SELECT u, ''::bytea, 'new', $2 "
                        "FROM unnest($1::text[]) u ON CONFLICT DO NOTHING",
                        [u for u in ids if u not in have],
                        now,
                    )
                await conn.execute(
                    "UPDATE profiles p SET state = $2, stage = 'active', activated = true, "
                    "last_activity_at = $3, updated_at = now() FROM unnest($1::text[]) u WHERE p.user_id = u",
                    ids,
                    state,
                    now,
                )
                if changes:
                    await conn.execute(
                        "INSERT INTO stage_history (event_id, user_id, from_stage, to_stage, reason, at) "
                        "SELECT gen_random_uuid()::text, u, 'new', 'active', 'raw', $2 FROM unnest($1::text[]) u",
                        ids[:changes],
                        now,
                    )
                    await conn.execute(
                        "INSERT INTO outbox (id, topic, key, value) SELECT gen_random_uuid()::text, "
                        "'raw', u, $2 FROM unnest($1::text[]) u",
                        ids[:changes],
                        state[:300],
                    )
                await conn.execute(
                    "INSERT INTO activity_days (user_id, day) SELECT u, $2 FROM unnest($1::text[]) u "
                    "ON CONFLICT DO NOTHING",
                    ids,
                    now.date(),
                )
                await conn.execute(
                    "INSERT INTO timers (kind, key, due_at) SELECT 'raw', u, $2 FROM unnest($1::text[]) u "
                    "ON CONFLICT (kind, key) DO UPDATE SET due_at = EXCLUDED.due_at",
                    ids,
                    now + timedelta(days=7),
                )
        seconds = time.monotonic() - t0
        pg.stop()
    finally:
        await conn.close()
    rate = args.events / seconds
    print(f"  >>> {rate:,.0f} events/s (raw SQL loop, one connection)")
    print("  " + pg.report(seconds, args.events, "event"))
    return RawLoop(rate, dict(pg.used), args.events)


# --------------------------------------------------------------------------- driver


@dataclass
class Context:
    args: argparse.Namespace
    home: Path
    kafka: KafkaNode
    postgres: PostgresNode
    service_env: dict[str, str]
    services: list[Service] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    drains: list[Drain] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)
    shape: dict[str, float] = field(default_factory=dict)  # of the last drain, for the raw loop
    raw: RawLoop | None = None

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    async def new_topics(self) -> dict[str, str]:
        suffix = uuid.uuid4().hex[:6]
        names = {k: f"bench.{k}.{suffix}" for k in ("events", "lifecycle", "deadletter")}
        await ensure_topics(self.bootstrap, self.args.partitions, tuple(names.values()))
        return names

    async def new_database(self) -> str:
        name = f"seg_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(self.postgres.url())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        if self.args.pg_stats:
            conn = await asyncpg.connect(self.postgres.url(name))
            try:
                await conn.execute("CREATE EXTENSION pg_stat_statements")
            finally:
                await conn.close()
        return self.postgres.async_url(name)

    async def reset_pg_stats(self, db_url: str) -> None:
        if self.args.pg_stats:
            conn = await asyncpg.connect(db_url.replace("+asyncpg", ""))
            try:
                await conn.execute("SELECT pg_stat_statements_reset()")
            finally:
                await conn.close()

    async def print_pg_stats(self, db_url: str, seconds: float) -> None:
        """The statements PostgreSQL spent its time on during the measured window."""
        if not self.args.pg_stats:
            return
        conn = await asyncpg.connect(db_url.replace("+asyncpg", ""))
        try:
            rows = await conn.fetch(
                "SELECT calls, total_exec_time AS ms, rows, query FROM pg_stat_statements "
                "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "ORDER BY total_exec_time DESC LIMIT 15"
            )
        finally:
            await conn.close()
        print(f"  PostgreSQL statement time (of {seconds:.1f} s wall):")
        for r in rows:
            query = " ".join(r["query"].split())[:90]
            print(
                f"    {r['ms'] / 1000:6.1f} s {r['calls']:7,} calls {r['ms'] / max(1, r['calls']):7.2f} ms/call "
                f"{r['rows']:9,} rows  {query}"
            )

    def meter(self, svcs: list[Service]) -> CpuMeter:
        kafka_pid = self.kafka.pid()
        return CpuMeter(
            {
                "segmenter": lambda: [svc.proc.pid for svc in svcs],
                "postgres": lambda: postgres_pids(self.postgres),
                "kafka": lambda: [kafka_pid] if kafka_pid else [],
            }
        )


async def run(ctx: Context) -> None:
    if ctx.args.pg_stats:
        conn = await asyncpg.connect(ctx.postgres.url())
        try:
            await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            await conn.execute("ALTER SYSTEM SET pg_stat_statements.track_utility = off")
        finally:
            await conn.close()
        ctx.postgres.stop()
        ctx.postgres.start()
    if ctx.args.pg_tune:
        conn = await asyncpg.connect(ctx.postgres.url())
        try:
            for setting in ctx.args.pg_tune:
                name, _, value = setting.partition("=")
                await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()
    if "events" in ctx.args.phases:
        await bench_events(ctx)
    if "raw" in ctx.args.phases:
        ctx.raw = await raw_loop(ctx)
    if "timers" in ctx.args.phases:
        await bench_timers(ctx)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--events", type=int, default=600_000)
    p.add_argument("--timers", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument(
        "--phases", nargs="+", choices=("events", "raw", "timers"), default=["events", "raw", "timers"]
    )
    p.add_argument(
        "--processes",
        nargs="+",
        type=int,
        default=[1, 2],
        help="drain the events with this many processes (one run each; default 1 then 2)",
    )
    p.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="CHECKOUT",
        help="also drain them with the segmenter of another checkout (A/B in the same window)",
    )
    p.add_argument("--force", action="store_true", help="run even if the machine is busy")
    p.add_argument("--max-batch", type=int, default=1000, help="events per batch of the raw SQL loop")
    p.add_argument("--fsync", choices=("on", "off"), default="on", help="PostgreSQL fsync (default on)")
    p.add_argument(
        "--pg-settings",
        choices=("workload", "default"),
        default="workload",
        help="the stack's PostgreSQL settings (scripts/stack/postgres.py), or the defaults to compare",
    )
    p.add_argument(
        "--pg-tune",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="PostgreSQL settings for the bench server (ALTER SYSTEM; reload-level only)",
    )
    p.add_argument(
        "--env",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the service, e.g. USEROPS_SEGMENTER_MAX_BATCH=2000",
    )
    p.add_argument("--profile", action="store_true", help="attach py-spy to the service while it works")
    p.add_argument("--pg-stats", action="store_true", help="print PostgreSQL's time per statement")
    p.add_argument(
        "--quick", action="store_true", help="a smoke run: 60,000 events of 10,000 users, 100,000 timers"
    )
    args = p.parse_args()
    if args.quick:
        args.events, args.users, args.timers = 60_000, 10_000, 100_000

    home = REPO / ".local" / f"bench-{os.getpid()}"
    kafka = KafkaNode.on_free_ports(home / "kafka")
    postgres = PostgresNode(
        home=home / "postgres",
        port=free_port(),
        fsync=args.fsync == "on",
        settings=WORKLOAD_SETTINGS if args.pg_settings == "workload" else (("shared_buffers", "256MB"),),
    )
    env = dict(item.split("=", 1) for item in args.env)
    machine = machine_header("segmenter", force=args.force or None)
    print(
        f"PostgreSQL fsync={args.fsync}, {args.pg_settings} settings"
        f"{' ' + ' '.join(args.pg_tune) if args.pg_tune else ''}"
        f"{'; service env ' + ' '.join(args.env) if args.env else ''}"
    )
    ctx = Context(args, home, kafka, postgres, env)
    try:
        kafka.start()
        postgres.start()
        try:
            import uvloop

            uvloop.run(run(ctx))
        except ImportError:
            asyncio.run(run(ctx))
    except KeyboardInterrupt:
        print("interrupted")
    finally:
        for svc in ctx.services:
            if svc.proc.poll() is None:
                svc.proc.kill()
                svc.proc.wait()
        kafka.stop()
        postgres.stop(mode="immediate")
        shutil.rmtree(home, ignore_errors=True)
    rows = result_rows(ctx)
    if rows:
        print(f"\nresults: {write_results('segmenter', rows, machine)}")


def result_rows(ctx: Context) -> list[dict[str, Any]]:
    """The rows of bench/results/segmenter.json (the `make bench` table)."""
    rows = []
    raw = ctx.raw
    raw_detail = ""
    if raw is not None:
        raw_detail = f"; raw loop {raw.cpu.get('postgres', 0) / raw.events * 1e6:.0f} us PostgreSQL CPU/event"
    for d in ctx.drains:
        seg, pg = d.us_per_event("segmenter"), d.us_per_event("postgres")
        rows.append(
            row(
                f"segmenter events/s, {d.label}",
                d.rate,
                "events/s",
                goal=">= 10000" if d.processes == 1 and not d.label.startswith("compared") else None,
                raw=raw.rate if raw is not None and d.processes == 1 else None,
                detail=f"{d.events:,} events of {ctx.args.users:,} users; "
                f"CPU/event: segmenter {seg:.0f} us + PostgreSQL {pg:.0f} us = {seg + pg:.0f} us"
                + (raw_detail if d.processes == 1 else ""),
            )
        )
    if raw is not None:
        rows.append(
            row(
                "segmenter writes as a bare SQL loop (ceiling)",
                raw.rate,
                "events/s",
                detail=f"PostgreSQL {raw.cpu.get('postgres', 0) / raw.events * 1e6:.0f} us, "
                f"loop {raw.cpu.get('loop', 0) / raw.events * 1e6:.0f} us CPU per event",
            )
        )
    if "timers_s" in ctx.figures:
        rows.append(
            row(
                f"segmenter {ctx.args.timers:,} idle timers fired",
                ctx.figures["timers_s"],
                "s",
                goal="< 60" if ctx.args.timers >= 1_000_000 else None,
                detail=ctx.details.get("timers", ""),
            )
        )
    return rows


if __name__ == "__main__":
    main()
