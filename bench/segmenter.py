"""Segmenter throughput benchmark (not a test): `make bench` or `.venv/bin/python bench/segmenter.py`.

Starts its own private Kafka broker and PostgreSQL server (scripts.stack, as the tests do, on free
ports under `.local/bench-<pid>`, removed at the end) and runs the real service
(`python -m services.segmenter`) as a subprocess, with the rules of `config/segmenter.yaml`:

1. events: a pre-filled 12-partition topic with a realistic mix for 100,000 users (page, screen,
   track of several names incl. `Order Completed` with revenue and `Lesson Completed`, identify
   with traits, anonymous visitors identified later, alias), timestamps over the last 60 days,
   keyed by user as ingest keys them. One segmenter process drains it; the rate is measured from
   its first committed offsets to the last (start-up excluded), read from the group's committed
   offsets in Kafka.
2. timers: a database pre-filled (after the service's migrations) with 1,000,000 profiles copied
   from a few real `UserState`s built with the domain, and one due `segmenter.idle` timer per
   profile, each of which changes the user's stage when it fires. The time is from the first
   fired timer to no due row left.

Each phase reports the CPU seconds the segmenter, PostgreSQL and Kafka used, so it is clear which
one limits. PostgreSQL runs with fsync on (the default here; `--fsync off` to compare).
`--profile` attaches py-spy (if installed: `pip install py-spy`) to the service while it works
and prints where its CPU time goes; the raw samples land in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segmenter_measure import CONFIG, CpuMeter, Profiler, Service, postgres_pids, start_service  # noqa: E402
from segmenter_workload import build_templates, fill_timers, make_events  # noqa: E402

from scripts.stack import KafkaNode, PostgresNode  # noqa: E402
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


async def bench_events(ctx: Context) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    args = ctx.args
    print(
        f"\n== events: one segmenter draining {args.events:,} events of {args.users:,} users "
        f"({args.partitions} partitions)"
    )
    topics = await ctx.new_topics()
    db_url = await ctx.new_database()
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

    group = f"bench-seg-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=ctx.bootstrap)
    await admin.start()
    svc = start_service(ctx.home, ctx.bootstrap, db_url, topics, group, ctx.service_env)
    ctx.services.append(svc)
    meter = ctx.meter(svc)
    profiler: Profiler | None = None
    try:
        ready = await svc.wait_ready()
        print(f"  service ready in {ready:.1f} s")
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
                if args.profile:
                    profiler = Profiler(svc.proc.pid, "events")
            samples.append((now, done))
            if svc.proc.poll() is not None:
                raise SystemExit(f"segmenter died:\n{svc.log.read_text()[-3000:]}")
            await asyncio.sleep(0.2)
        end = time.monotonic()
        meter.stop()
        if profiler:
            profiler.stop()
        seconds = end - first_at
        rate = (total - first_done) / seconds
        print(
            f"  drained {total - first_done:,} events in {seconds:.1f} s "
            f"(from first commit to lag 0; {(end - svc.started):.1f} s from process start)"
        )
        print(f"  >>> {rate:,.0f} events/s (one process)")
        print("  " + meter.report(seconds, total - first_done, "event"))
        _print_curve(samples, first_at)
        await ctx.print_pg_stats(db_url, seconds)
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                backlog = await svc.metric(client, "userops_outbox_backlog")
                if backlog == 0:
                    break
                await asyncio.sleep(0.5)
            print(
                f"  outbox drained {time.monotonic() - first_at:.1f} s after the first commit "
                f"(backlog now {backlog:.0f})"
            )
        conn = await asyncpg.connect(db_url.replace("+asyncpg", ""))
        try:
            stages = await conn.fetch(
                "SELECT stage, count(*) AS n FROM profiles WHERE merged_into IS NULL GROUP BY stage ORDER BY n DESC"
            )
            merged = await conn.fetchval("SELECT count(*) FROM profiles WHERE merged_into IS NOT NULL")
            history = await conn.fetchval("SELECT count(*) FROM stage_history")
        finally:
            await conn.close()
        by_stage = ", ".join(f"{r['stage']} {r['n']:,}" for r in stages)
        print(f"  profiles by stage: {by_stage}; merged anonymous {merged:,}; history rows {history:,}")
        ctx.figures["events_per_s"] = rate
    finally:
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
        meter = ctx.meter(svc)
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
        finally:
            svc.stop()
    finally:
        await conn.close()


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

    def meter(self, svc: Service) -> CpuMeter:
        kafka_pid = self.kafka.pid()
        return CpuMeter(
            {
                "segmenter": lambda: [svc.proc.pid],
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
    if "timers" in ctx.args.phases:
        await bench_timers(ctx)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--events", type=int, default=600_000)
    p.add_argument("--timers", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--phases", nargs="+", choices=("events", "timers"), default=["events", "timers"])
    p.add_argument("--fsync", choices=("on", "off"), default="on", help="PostgreSQL fsync (default on)")
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
    args = p.parse_args()

    home = REPO / ".local" / f"bench-{os.getpid()}"
    kafka = KafkaNode.on_free_ports(home / "kafka")
    postgres = PostgresNode(home=home / "postgres", port=free_port(), fsync=args.fsync == "on")
    env = dict(item.split("=", 1) for item in args.env)
    load = os.getloadavg()
    print(
        f"segmenter bench: {os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"PostgreSQL fsync={args.fsync}{' ' + ' '.join(args.pg_tune) if args.pg_tune else ''}"
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
    if ctx.figures:
        parts = []
        if "events_per_s" in ctx.figures:
            parts.append(f"{ctx.figures['events_per_s']:,.0f} events/s per process (goal >= 10,000)")
        if "timers_s" in ctx.figures:
            parts.append(f"{args.timers:,} timers in {ctx.figures['timers_s']:.1f} s (goal < 60 s)")
        print("\nsummary: " + "; ".join(parts))


if __name__ == "__main__":
    main()
