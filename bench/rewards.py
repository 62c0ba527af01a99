"""Rewards throughput benchmark (not a test): `make bench` or `.venv/bin/python bench/rewards.py`.

Starts its own private Kafka broker and PostgreSQL server (scripts.stack, on free ports under
`.local/bench-<pid>`, removed at the end) and runs the real service (`python -m services.rewards`)
as a subprocess with the rules of `config/rewards.yaml`:

1. events: a pre-filled topic with a realistic mix for many users (lessons, check-ins, orders with
   revenue, sign-ups naming a referrer, and non-qualifying page views and other tracks), keyed by
   user, timestamps over the last 30 days, plus one `activated` lifecycle record per user. One
   process drains it; the rate of *qualifying* inputs (those a rule, the streak or a referral
   acts on) is measured from the first committed offsets to the last (start-up excluded).
2. redemptions: concurrent clients reserve and confirm points against a few users' balances (so
   requests contend for the same per-user locks); requests/s and outcomes.

Each phase reports the CPU seconds the service, PostgreSQL and Kafka used. `--profile` attaches
py-spy (if installed) to the service and prints where its CPU time goes. It prints the cores and
load average at start and refuses to run on a busy machine unless `--force` (bench/common.py); at
the end it writes bench/results/rewards.json for `python -m bench`. `--quick`: a smaller workload.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import machine_header, row, write_results  # noqa: E402
from segmenter import committed_total, produce  # noqa: E402
from segmenter_measure import CpuMeter, Profiler, Service, postgres_pids  # noqa: E402

from scripts.stack import KafkaNode, PostgresNode  # noqa: E402
from scripts.stack.procs import free_port  # noqa: E402
from scripts.stack.topics import ensure_topics  # noqa: E402
from shared.contracts import StageChanged  # noqa: E402
from shared.events import format_ts  # noqa: E402

CONFIG = REPO / "config" / "rewards.yaml"
TOKEN = "bench-admin-token"
QUALIFYING = {"Lesson Completed", "Checked In", "Order Completed", "Signed Up"}
MIX = [
    ("Lesson Completed", 40),
    ("Checked In", 15),
    ("Order Completed", 8),
    ("Signed Up", 2),
    ("Page Viewed", 20),
    ("Video Played", 15),
]


def make_events(users: int, count: int, now: datetime) -> tuple[list[tuple[bytes, bytes]], int]:
    """(key, value) of `count` events in per-user time order, and how many qualify."""
    rng = random.Random(1)
    names, weights = zip(*MIX, strict=True)
    start = now - timedelta(days=30)
    step = timedelta(days=30) / max(1, count // users)
    clock = {u: start + timedelta(seconds=rng.randint(0, 3600)) for u in range(users)}
    out: list[tuple[bytes, bytes]] = []
    qualifying = 0
    for i in range(count):
        u = rng.randrange(users)
        clock[u] += step * rng.uniform(0.5, 1.5)
        name = rng.choices(names, weights)[0]
        props: dict[str, Any] = {}
        if name == "Order Completed":
            props = {"revenue": round(rng.uniform(1, 200), 2), "order_id": f"o{i}"}
        elif name == "Signed Up":
            props = {"referrer_id": f"user{rng.randrange(users)}"}
        elif name == "Page Viewed":
            props = {"path": "/lessons"}
        qualifying += name in QUALIFYING
        stamp = format_ts(clock[u])
        event = {
            "type": "track",
            "messageId": f"m{i}",
            "userId": f"user{u}",
            "event": name,
            "properties": props,
            "timestamp": stamp,
            "receivedAt": stamp,
        }
        out.append((f"user{u}".encode(), orjson.dumps(event)))
    return out, qualifying


def activations(users: int, now: datetime) -> list[tuple[bytes, bytes]]:
    at = now - timedelta(days=30)
    return [
        (
            f"user{u}".encode(),
            StageChanged(
                id=f"act{u}",
                user_id=f"user{u}",
                at=at,
                config_version="bench",
                from_stage=None,
                to_stage="activated",
                reason="bench",
                activated=True,
            ).to_json(),
        )
        for u in range(users)
    ]


@dataclass
class Context:
    args: argparse.Namespace
    home: Path
    kafka: KafkaNode
    postgres: PostgresNode
    env: dict[str, str]
    services: list[Service] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)

    async def new_database(self) -> str:
        name = f"rw_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(self.postgres.url())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.postgres.async_url(name)

    def start(self, db_url: str, topics: dict[str, str], group: str) -> Service:
        port = free_port()
        env = {
            **os.environ,
            "USEROPS_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
            "USEROPS_REWARDS_DATABASE_URL": db_url,
            "USEROPS_REWARDS_PORT": str(port),
            "USEROPS_REWARDS_CONFIG": str(CONFIG),
            "USEROPS_REWARDS_GROUP": group,
            "USEROPS_ADMIN_TOKEN": TOKEN,
            "USEROPS_EVENTS_TOPIC": topics["events"],
            "USEROPS_LIFECYCLE_TOPIC": topics["lifecycle"],
            "USEROPS_REWARDS_TOPIC": topics["rewards"],
            "USEROPS_DEADLETTER_TOPIC": topics["deadletter"],
            "USEROPS_LOG_LEVEL": "WARNING",
            **self.env,
        }
        log = self.home / f"rewards-{group}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.rewards"],
            env=env,
            cwd=REPO,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        svc = Service(proc, port, log, time.monotonic())
        self.services.append(svc)
        return svc

    def meter(self, svc: Service) -> CpuMeter:
        kafka_pid = self.kafka.pid()
        return CpuMeter(
            {
                "rewards": lambda: [svc.proc.pid],
                "postgres": lambda: postgres_pids(self.postgres),
                "kafka": lambda: [kafka_pid] if kafka_pid else [],
            }
        )


async def bench_events(ctx: Context) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    args = ctx.args
    print(f"\n== events: one rewards process draining {args.events:,} events of {args.users:,} users")
    suffix = uuid.uuid4().hex[:6]
    topics = {k: f"bench.{k}.{suffix}" for k in ("events", "lifecycle", "rewards", "deadletter")}
    await ensure_topics(ctx.kafka.bootstrap, args.partitions, tuple(topics.values()))
    db_url = await ctx.new_database()
    now = datetime.now(UTC)
    events, qualifying = make_events(args.users, args.events, now)
    life = activations(args.users, now)
    ends = await produce(ctx.kafka.bootstrap, topics["lifecycle"], life)
    ends_events = await produce(ctx.kafka.bootstrap, topics["events"], events)
    total_life, total_events = sum(ends.values()), sum(ends_events.values())
    q_share = (qualifying + total_life) / (total_events + total_life)
    print(
        f"  produced {total_events:,} events ({qualifying:,} qualifying) and {total_life:,} lifecycle records"
    )
    group = f"bench-rw-{suffix}"
    admin = AIOKafkaAdminClient(bootstrap_servers=ctx.kafka.bootstrap)
    await admin.start()
    svc = ctx.start(db_url, topics, group)
    meter = ctx.meter(svc)
    profiler: Profiler | None = None
    try:
        print(f"  service ready in {await svc.wait_ready():.1f} s")
        first_at, first_done, done = 0.0, 0, 0
        total = total_events + total_life
        while done < total:
            done = await committed_total(admin, group, topics["events"]) + await committed_total(
                admin, group, topics["lifecycle"]
            )
            if done and not first_at:
                first_at, first_done = time.monotonic(), done
                meter.start()
                if args.profile:
                    profiler = Profiler(svc.proc.pid, "rewards-events")
            if svc.proc.poll() is not None:
                raise SystemExit(f"rewards died:\n{svc.log.read_text()[-3000:]}")
            await asyncio.sleep(0.2)
        seconds = time.monotonic() - first_at
        meter.stop()
        if profiler:
            profiler.stop()
        inputs = total - first_done
        rate = inputs * q_share / seconds
        print(f"  drained {inputs:,} inputs in {seconds:.1f} s: {inputs / seconds:,.0f} inputs/s")
        print(f"  >>> {rate:,.0f} qualifying inputs/s (one process)")
        print("  " + meter.report(seconds, inputs, "input"))
        conn = await asyncpg.connect(db_url.replace("+asyncpg", ""))
        try:
            tx = await conn.fetchval("SELECT count(*) FROM ledger_transactions")
            users = await conn.fetchval("SELECT count(*) FROM accounts")
            timers = await conn.fetchval("SELECT count(*) FROM timers")
        finally:
            await conn.close()
        print(f"  ledger transactions {tx:,}; accounts {users:,}; timers armed {timers:,}")
        ctx.figures["qualifying_per_s"] = rate
        ctx.details["qualifying_per_s"] = f"{inputs / seconds:,.0f} inputs/s; " + cpu_per(
            meter, inputs, "input"
        )
        await bench_redemptions(ctx, svc)
    finally:
        svc.stop()
        await admin.close()


async def bench_redemptions(ctx: Context, svc: Service) -> None:
    args = ctx.args
    hot = [f"user{u}" for u in range(args.hot_users)]
    print(f"\n== redemptions: {args.clients} clients reserve+confirm against {len(hot)} users' balances")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=args.clients)
    async with httpx.AsyncClient(base_url=svc.url, headers=headers, limits=limits, timeout=60) as c:
        for uid in hot:
            r = await c.post(
                f"/v1/users/{uid}/adjustments",
                json={"points": 10_000_000, "reason": "bench", "actor": "bench"},
                headers={"Idempotency-Key": f"seed-{uid}"},
            )
            r.raise_for_status()
        outcomes: Counter[str] = Counter()
        deadline = time.monotonic() + args.redeem_seconds
        meter = ctx.meter(svc)
        meter.start()

        async def client(n: int) -> None:
            i = 0
            while time.monotonic() < deadline:
                uid, key = hot[(n + i) % len(hot)], f"k{n}-{i}"
                i += 1
                r = await c.post(
                    f"/v1/users/{uid}/redemptions", json={"points": 10}, headers={"Idempotency-Key": key}
                )
                outcomes[f"reserve {r.status_code}"] += 1
                if r.status_code == 201:
                    r = await c.post(f"/v1/users/{uid}/redemptions/{key}/confirm")
                    outcomes[f"confirm {r.status_code}"] += 1

        started = time.monotonic()
        await asyncio.gather(*(client(n) for n in range(args.clients)))
        seconds = time.monotonic() - started
        meter.stop()
    requests = sum(outcomes.values())
    redeemed = outcomes["confirm 200"]
    print(
        f"  {requests:,} requests in {seconds:.1f} s: {requests / seconds:,.0f} requests/s; outcomes {dict(outcomes)}"
    )
    print(f"  >>> {redeemed / seconds:,.0f} redemptions/s (reserve + confirm) under contention")
    print("  " + meter.report(seconds, requests, "request"))
    ctx.figures["redemptions_per_s"] = redeemed / seconds
    ctx.details["redemptions_per_s"] = f"{requests / seconds:,.0f} requests/s; " + cpu_per(
        meter, requests, "request"
    )


def cpu_per(meter: CpuMeter, items: int, unit: str) -> str:
    """CPU microseconds per item of each process group, for the results table."""
    parts = [f"{name} {cpu / max(1, items) * 1e6:,.0f}" for name, cpu in meter.used.items()]
    return f"CPU µs/{unit}: " + ", ".join(parts)


def result_rows(
    args: argparse.Namespace, figures: dict[str, float], details: dict[str, str]
) -> list[dict[str, Any]]:
    rows = []
    if "qualifying_per_s" in figures:
        rows.append(
            row(
                f"qualifying inputs, one process ({args.events:,} events, {args.users:,} users)",
                figures["qualifying_per_s"],
                "events/s",
                goal=">= 5000",
                detail=details.get("qualifying_per_s", ""),
            )
        )
    if "redemptions_per_s" in figures:
        rows.append(
            row(
                f"redemptions (reserve + confirm), {args.clients} clients on {args.hot_users} balances",
                figures["redemptions_per_s"],
                "redemptions/s",
                detail=details.get("redemptions_per_s", ""),
            )
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--hot-users", type=int, default=8)
    p.add_argument("--redeem-seconds", type=float, default=15.0)
    p.add_argument("--fsync", choices=("on", "off"), default="on")
    p.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE", help="extra service environment")
    p.add_argument("--profile", action="store_true", help="attach py-spy to the service while it works")
    p.add_argument(
        "--quick", action="store_true", help="a smaller workload (5,000 users, 40,000 events, 5 s)"
    )
    p.add_argument("--force", action="store_true", help="run even when the machine is already busy")
    args = p.parse_args()
    if args.quick:
        args.users, args.events, args.redeem_seconds = 5_000, 40_000, 5.0
    machine = machine_header("rewards", force=args.force)
    home = REPO / ".local" / f"bench-{os.getpid()}"
    kafka = KafkaNode.on_free_ports(home / "kafka")
    postgres = PostgresNode(home=home / "postgres", port=free_port(), fsync=args.fsync == "on")
    print(f"PostgreSQL fsync={args.fsync}{'; service env ' + ' '.join(args.env) if args.env else ''}")
    ctx = Context(args, home, kafka, postgres, dict(item.split("=", 1) for item in args.env))
    try:
        kafka.start()
        postgres.start()
        asyncio.run(bench_events(ctx))
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
        print(
            f"\nsummary: {ctx.figures.get('qualifying_per_s', 0):,.0f} qualifying inputs/s per process "
            f"(goal >= 5,000); {ctx.figures.get('redemptions_per_s', 0):,.0f} redemptions/s under contention"
        )
    rows = result_rows(args, ctx.figures, ctx.details)
    if len(rows) < 2:
        raise SystemExit("rewards bench: not every phase finished; no results written")
    write_results("rewards", rows, machine)


if __name__ == "__main__":
    main()
