"""Timer firing benchmark (not a test): `python -m bench --only timers` or `.venv/bin/python bench/timers.py`.

Starts its own PostgreSQL server (scripts.stack, as the tests do, on a free port under
`.local/bench-timers-<pid>`, removed at the end), fills a database with 1,000,000 due timers
(`--quick`: 100,000) and fires them all through the runtime's firing loop (`TimerWorker.run()`;
the segmenter's defaults: two workers in one process, batches of 2,000), in this process. Two
handlers, one fresh database each (`--handler` picks one):

- `noop`: returns every due timer as handled and re-arms `--rearm` of them (a fraction) a day
  ahead, so the time is the runtime's own cost: claim, spend, re-arm.
- `segmenter`: the segmenter's real handler (`SegmenterHandler.on_timers`) over as many profiles
  copied from real states (the workload of `bench/segmenter.py`'s timer phase, without Kafka),
  each timer changing its user's stage.

The time runs from the first fired timer to none due (goal: under 60 s for 1,000,000). CPU
seconds of this process (the workers) and of PostgreSQL are reported per timer, since the machine
may be shared. `--explain` prints the plan of the claim on the filled table and half way through.
Results go to `bench/results/timers.json` (`bench/common.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from common import machine_header, row, write_results  # noqa: E402
from segmenter_measure import CpuMeter, postgres_pids  # noqa: E402

from scripts.stack import PostgresNode  # noqa: E402
from scripts.stack.procs import free_port  # noqa: E402

NOOP_KIND = "bench.noop"
GOAL_S = 60.0


class NoopHandler:
    """Handles every due timer; re-arms every `1 / rearm`-th of them a day ahead."""

    def __init__(self, rearm: float) -> None:
        self._every = round(1 / rearm) if rearm > 0 else 0

    async def on_timers(self, session: Any, due: Sequence[Any], now: datetime) -> Iterable[Any]:
        from shared.runtime import timers

        if self._every:
            later = now + timedelta(days=1)
            await timers.schedule(session, [timers.Timer(t.kind, t.key, later) for t in due[:: self._every]])
        return due


async def _new_database(node: PostgresNode) -> str:
    name = f"timers_{os.getpid()}_{int(time.time() * 1000) % 100000}"
    conn = await asyncpg.connect(node.url())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def _prepare(
    args: argparse.Namespace, which: str, node: PostgresNode, db: str
) -> tuple[Any, list[str]]:
    """Schema and `args.timers` due timers; return the handler `which` and its kinds."""
    from shared.runtime import migrations
    from shared.runtime.db import create_engine

    conn = await asyncpg.connect(node.url(db))
    t0 = time.monotonic()
    try:
        if which == "noop":
            from shared.runtime.schema import RUNTIME_DDL

            for ddl in RUNTIME_DDL:
                await conn.execute(ddl)
            await conn.execute(
                """
                INSERT INTO timers (kind, key, due_at)
                SELECT $1, 'k-' || lpad(g::text, 7, '0'),
                       now() - interval '10 minutes' + g * interval '100 microseconds'
                FROM generate_series(0, $2 - 1) g
                """,
                NOOP_KIND,
                args.timers,
            )
            handler: Any = NoopHandler(args.rearm)
            kinds = [NOOP_KIND]
        else:
            from segmenter_workload import build_templates, fill_timers

            from services.segmenter.config import SegmenterConfig
            from services.segmenter.consumer import IDLE_TIMER, SegmenterHandler
            from services.segmenter.main import MIGRATIONS
            from shared.config import config_version, load_yaml

            engine = create_engine(node.async_url(db))
            await migrations.upgrade(engine, MIGRATIONS)
            await engine.dispose()
            path = REPO / "config" / "segmenter.yaml"
            cfg = load_yaml(path, SegmenterConfig)
            await fill_timers(conn, build_templates(cfg, datetime.now(UTC)), args.timers)
            handler = SegmenterHandler(
                cfg, config_version(path), "bench.lifecycle", lambda: datetime.now(UTC)
            )
            kinds = [IDLE_TIMER]
        await conn.execute("VACUUM ANALYZE")
        print(f"  filled and vacuumed in {time.monotonic() - t0:.1f} s", flush=True)
        if args.explain:
            await _explain(conn, kinds, args.batch)
    finally:
        await conn.close()
    return handler, kinds


async def _explain(conn: asyncpg.Connection, kinds: list[str], batch: int) -> None:
    """EXPLAIN ANALYZE of the claim (and what it deletes) on the table as it is, rolled back.

    From the start of the index, and (where the claim takes a lower bound) from the oldest live
    due timer, as a worker draining a backlog does.
    """
    from shared.runtime import timer_store as store

    claim = getattr(store, "_CLAIM", None)
    if claim is None:  # the claim before it became a DELETE
        claim = store.CLAIM
    sql = str(claim).replace(":now", "$1").replace(":kinds", "$2").replace(":n", "$3")
    floors: list[tuple[str, list[Any]]] = [("", [])]
    if ":floor" in sql:
        sql = sql.replace(":floor", "$4")
        oldest = await conn.fetchval("SELECT min(due_at) FROM timers WHERE kind = ANY($1)", kinds)
        floors = [(" from the start", [store.NO_FLOOR]), (" from the oldest due", [oldest])]
    for what, extra in floors:
        print(f"  EXPLAIN ANALYZE claim of {batch:,}{what}:", flush=True)
        tx = conn.transaction()
        await tx.start()
        try:
            plan = await conn.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS) {sql}", datetime.now(UTC), kinds, batch, *extra
            )
            for line in plan:
                print("    " + line[0])
        finally:
            await tx.rollback()


async def _due(conn: asyncpg.Connection, kinds: list[str]) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM timers WHERE due_at <= now() AND kind = ANY($1) AND dead_at IS NULL",
            kinds,
        )
    )


async def _fire_all(args: argparse.Namespace, which: str, node: PostgresNode, db: str) -> dict[str, float]:
    from prometheus_client import CollectorRegistry

    from shared.runtime.db import create_engine, session_factory
    from shared.runtime.metrics import RuntimeMetrics
    from shared.runtime.timers import TimerWorker

    handler, kinds = await _prepare(args, which, node, db)
    engine = create_engine(node.async_url(db))
    registry = CollectorRegistry()
    metrics = RuntimeMetrics.create(registry, "bench")
    sessions = session_factory(engine)
    workers = [
        TimerWorker(sessions, handler, kinds, metrics, "bench", batch_size=args.batch, registry=registry)
        for _ in range(args.workers)
    ]
    meter = CpuMeter({"postgres": lambda: postgres_pids(node)})
    conn = await asyncpg.connect(node.url(db))
    try:
        meter.start()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        tasks = [asyncio.create_task(w.run()) for w in workers]

        def fired() -> float:
            return sum(
                registry.get_sample_value("userops_timers_fired_total", {"service": "bench", "kind": k}) or 0
                for k in kinds
            )

        first = 0.0
        explained = not args.explain
        next_report = time.monotonic() + 10
        while fired() < args.timers:
            for t in tasks:
                if t.done():
                    t.result()
                    raise SystemExit("a timer worker ended early")
            if not first and fired():
                first = time.monotonic()
            if not explained and fired() >= args.timers / 2:
                explained = True
                print("  half fired (dead rows of the fired half still in the index):")
                await _explain(conn, kinds, args.batch)
            if time.monotonic() >= next_report:
                next_report += 10
                print(f"  {time.monotonic() - t0:5.0f} s: {fired():,.0f} fired", flush=True)
            await asyncio.sleep(0.05)
        while True:  # timers re-armed to instants already past fire again
            if not await _due(conn, kinds):
                break
            await asyncio.sleep(0.1)
        end = time.monotonic()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        meter.stop()
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)
        left = await conn.fetchval("SELECT count(*) FROM timers WHERE kind = ANY($1)", kinds)
    finally:
        await conn.close()
        await engine.dispose()
    return {
        "seconds": end - (first or t0),
        "from_start": end - t0,
        "python_cpu": cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime,
        "postgres_cpu": meter.used["postgres"],
        "left": float(left),
    }


def _row(args: argparse.Namespace, which: str, fig: dict[str, float], floor: float | None) -> dict[str, Any]:
    """The table row; `floor` (raw) is the noop handler's time: the runtime's own share."""
    n = args.timers
    print(
        f"  >>> {n:,} timers in {fig['seconds']:.1f} s from the first fired to none due "
        f"({n / fig['seconds']:,.0f} timers/s; {fig['from_start']:.1f} s from the workers' start)"
    )
    cpu = (
        f"CPU python {fig['python_cpu']:.1f} s ({fig['python_cpu'] / n * 1e6:.0f} us/timer), "
        f"postgres {fig['postgres_cpu']:.1f} s ({fig['postgres_cpu'] / n * 1e6:.0f} us/timer)"
    )
    print(f"  {cpu}; timers left (re-armed ahead) {fig['left']:,.0f}")
    return row(
        f"{n:,} due timers, {which} handler ({args.workers} workers x {args.batch})",
        round(fig["seconds"], 2),
        "s",
        goal=f"< {GOAL_S:.0f} s" if n >= 1_000_000 else None,
        raw=floor,
        detail=f"{n / fig['seconds']:,.0f} timers/s; {cpu}",
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timers", type=int, default=1_000_000)
    p.add_argument("--quick", action="store_true", help="100,000 timers instead")
    p.add_argument("--handler", choices=("noop", "segmenter", "both"), default="both")
    p.add_argument("--rearm", type=float, default=0.1, help="noop: fraction re-armed a day ahead")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=2000, help="timers per batch (the segmenter's setting)")
    p.add_argument("--fsync", choices=("on", "off"), default="on")
    p.add_argument(
        "--explain", action="store_true", help="EXPLAIN ANALYZE the claim when filled and half way"
    )
    p.add_argument("--force", action="store_true", help="run even on a loaded machine")
    args = p.parse_args()
    if args.quick:
        args.timers = 100_000
    if args.timers < 1 or args.workers < 1 or args.batch < 1 or not 0 <= args.rearm <= 1:
        p.error("--timers, --workers and --batch must be positive and --rearm within 0..1")

    machine = machine_header("timers", force=args.force)
    handlers = ["noop", "segmenter"] if args.handler == "both" else [args.handler]
    print(
        f"  {args.timers:,} due timers per run, handlers {', '.join(handlers)}, "
        f"{args.workers} workers x {args.batch}, fsync={args.fsync}"
    )
    home = REPO / ".local" / f"bench-timers-{os.getpid()}"
    node = PostgresNode(home=home / "postgres", port=free_port(), fsync=args.fsync == "on")
    rows = []
    try:
        node.start()
        for which in handlers:
            print(f"\n== {which} handler")

            async def run(which: str = which) -> dict[str, float]:
                return await _fire_all(args, which, node, await _new_database(node))

            try:
                import uvloop

                fig = uvloop.run(run())
            except ImportError:
                fig = asyncio.run(run())
            floor = rows[0]["value"] if rows else None  # the noop run, when it ran first
            rows.append(_row(args, which, fig, floor))
    finally:
        node.stop(mode="immediate")
        shutil.rmtree(home, ignore_errors=True)
    write_results("timers", rows, machine)


if __name__ == "__main__":
    main()
