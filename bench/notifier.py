"""Notifier benchmark (not a test): `make bench` or `.venv/bin/python bench/notifier.py`.

Starts its own private Kafka broker and PostgreSQL server (scripts.stack, on free ports under
`.local/bench-<pid>`, removed at the end), a local webhook receiver in this process (the local
development sink, `scripts.stack.sinks`, signature checks off), and the real service
(`python -m services.notifier`) as a subprocess, with the shipped campaigns of
`config/notifier.yaml` (endpoints pointed at the receiver) plus one immediate webhook campaign on
`Signed Up` (`bench_signup`, no quiet hours, no caps).

1. throughput: a pre-filled topic of `--users` users x (identify, `Signed Up`, page, two
   `Lesson Completed`) is drained by one notifier process. Reported: inputs evaluated per second
   (every input is matched against every campaign; from the service's
   `userops_notifier_inputs_evaluated_total`, first to last) and webhook messages delivered per
   second at the receiver (first to last receipt);
2. latency: new users' `Signed Up` events produced at `--rate` events/s for `--seconds`, each
   stamped `receivedAt` as it is produced, as ingest does; the event → message latency is the
   receiver's arrival time minus `receivedAt` (p50 / p99 / max).

Prints the cores and load average at start (and refuses to run on a busy machine unless
`--force`, bench/common.py), and the CPU seconds the notifier and PostgreSQL used in each phase;
at the end it writes bench/results/notifier.json for `python -m bench`. `--quick`: a smaller
workload (2,000 users, a 5-second latency phase).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import machine_header, row, write_results  # noqa: E402
from segmenter_measure import CpuMeter, postgres_pids  # noqa: E402

from scripts.stack import KafkaNode, PostgresNode  # noqa: E402
from scripts.stack.procs import free_port  # noqa: E402
from scripts.stack.topics import ensure_topics  # noqa: E402
from shared import topics as t  # noqa: E402
from shared.events import format_ts  # noqa: E402
from shared.kafka import create_producer  # noqa: E402

SECRET = "whsec_" + base64.b64encode(b"b" * 32).decode()


def bench_config(path: Path, sink: str) -> Path:
    data: dict[str, Any] = yaml.safe_load((REPO / "config" / "notifier.yaml").read_text())
    for endpoint in data["endpoints"].values():
        endpoint["url"] = f"{sink}/hooks/endpoint"
    data["endpoints"]["bench"] = {"url": f"{sink}/hooks/bench"}
    data["campaigns"].append(
        {
            "name": "bench_signup",
            "topic": "onboarding",
            "trigger": {"event": {"name": "Signed Up"}},
            "channel": "webhook",
            "endpoint": "bench",
            "quiet_hours": False,
            "global_caps": False,
            "template": {"payload": {"user_id": "{{ user_id }}", "hello": "welcome"}},
        }
    )
    path.write_text(yaml.safe_dump(data))
    return path


def event(user: str, mid: str, kind: str, name: str | None = None, **extra: Any) -> bytes:
    now = format_ts(datetime.now(UTC))
    body: dict[str, Any] = {
        "type": kind,
        "messageId": mid,
        "userId": user,
        "timestamp": now,
        "receivedAt": now,
        "originalTimestamp": now,
        **extra,
    }
    if name is not None:
        body["event" if kind == "track" else "name"] = name
    return orjson.dumps(body)


def user_events(user: str) -> list[bytes]:
    return [
        event(user, "i", "identify", traits={"email": f"{user}@example.com", "first_name": "Bench"}),
        event(user, "s", "track", "Signed Up"),
        event(user, "p", "page", "Home"),
        event(user, "l1", "track", "Lesson Completed"),
        event(user, "l2", "track", "Lesson Completed"),
    ]


async def produce(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    producer = create_producer(bootstrap, linger_ms=10)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key.encode()) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def metric(client: httpx.AsyncClient, url: str, name: str) -> float:
    text = (await client.get(f"{url}/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def start_notifier(env: dict[str, str], log: Path, profile: Path | None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "services.notifier"]
    if profile is not None:
        command = [sys.executable, str(REPO / "bench" / "notifier_sampler.py")]
        env = {**env, "NOTIFIER_PROFILE_OUT": str(profile)}
    return subprocess.Popen(
        command,
        env=env,
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(1200):
            if proc.poll() is not None:
                raise SystemExit(f"notifier exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if (await client.get(f"{url}/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("notifier not ready in 120 s")


class Receiver:
    """The local development sinks in their own process (so the receiver has its own core share),
    keeping every request; arrivals are read from its `GET /received`."""

    def __init__(self, http_port: int, smtp_port: int, home: Path) -> None:
        self.http_port, self.smtp_port = http_port, smtp_port
        self.url = f"http://127.0.0.1:{http_port}"
        self._home = home
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        env = {
            **os.environ,
            "USEROPS_SINK_HTTP_PORT": str(self.http_port),
            "USEROPS_SINK_SMTP_PORT": str(self.smtp_port),
            "USEROPS_SINK_KEEP": "10000000",
            "USEROPS_SINK_QUIET": "1",
            "USEROPS_SINK_MAIL_DIR": str(self._home / "mail"),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.stack.sinks"], env=env, cwd=REPO, stdout=subprocess.DEVNULL
        )
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                try:
                    if (await client.get(f"{self.url}/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise SystemExit("the sinks did not start")

    async def arrivals(self) -> dict[str, float]:
        """user id -> arrival (epoch seconds) of the bench campaign's message."""
        async with httpx.AsyncClient(timeout=60) as client:
            rows = (await client.get(f"{self.url}/received")).json()
        return {
            r["body"]["userId"]: datetime.fromisoformat(r["received_at"]).timestamp()
            for r in rows
            if r["path"] == "/hooks/bench"
        }

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def cpu_per(meter: CpuMeter, items: int, unit: str) -> str:
    """CPU milliseconds per item of each process group, for the results table."""
    parts = [f"{name} {cpu / max(1, items) * 1e3:.2f}" for name, cpu in meter.used.items()]
    return f"CPU ms/{unit}: " + ", ".join(parts)


async def run(
    args: argparse.Namespace, kafka: KafkaNode, postgres: PostgresNode, home: Path
) -> list[dict[str, Any]]:
    names = {name: f"{name}.bench" for name in t.ALL_TOPICS}
    await ensure_topics(kafka.bootstrap, args.partitions, tuple(names.values()))
    sinks = Receiver(free_port(), free_port(), home)
    await sinks.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "USEROPS_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "USEROPS_NOTIFIER_DATABASE_URL": postgres.async_url("notifier"),
        "USEROPS_NOTIFIER_PORT": str(port),
        "USEROPS_NOTIFIER_CONFIG": str(bench_config(home / "notifier.yaml", sinks.url)),
        "USEROPS_ADMIN_TOKEN": "bench",
        "USEROPS_WEBHOOK_SECRET": SECRET,
        "USEROPS_UNSUBSCRIBE_SECRET": "u" * 32,
        "USEROPS_INBOX_SECRET": "i" * 32,
        "USEROPS_SMTP_PORT": str(sinks.smtp_port),
        "USEROPS_LOG_LEVEL": "WARNING",
        **{
            f"USEROPS_{k.upper()}_TOPIC": v
            for k, v in (
                ("events", names[t.EVENTS]),
                ("lifecycle", names[t.LIFECYCLE]),
                ("rewards", names[t.REWARDS]),
                ("deliveries", names[t.DELIVERIES]),
                ("deadletter", names[t.DEADLETTER]),
            )
        },
        **dict(item.split("=", 1) for item in args.env),
    }
    records = [(f"u{i}", e) for i in range(args.users) for e in user_events(f"u{i}")]
    await produce(kafka.bootstrap, names[t.EVENTS], records)
    log = home / "notifier.log"
    profile = home / "notifier.profile.txt" if args.profile else None
    proc = start_notifier(env, log, profile)
    meter = CpuMeter(
        {
            "notifier": lambda: [proc.pid],
            "postgres": lambda: postgres_pids(postgres),
            "receiver": lambda: [sinks.proc.pid] if sinks.proc else [],
        }
    )
    try:
        await wait_ready(url, proc, log)
        # -- phase 1: throughput
        meter.start()
        samples: list[tuple[float, float]] = []
        async with httpx.AsyncClient() as client:
            while True:
                n = await metric(client, url, "userops_notifier_inputs_evaluated_total")
                samples.append((time.monotonic(), n))
                if n >= len(records) and len(await sinks.arrivals()) >= args.users:
                    break
                await asyncio.sleep(1.0)
        meter.stop()
        first = next(s for s in samples if s[1] > 0)
        last = next(s for s in samples if s[1] >= len(records))
        inputs_s = (last[1] - first[1]) / max(1e-9, last[0] - first[0])
        times = sorted((await sinks.arrivals()).values())
        deliveries_s = (len(times) - 1) / max(1e-9, times[-1] - times[0])
        seconds = times[-1] - times[0]
        print(
            f"throughput: {len(records):,} inputs ({args.users:,} users), {inputs_s:,.0f} inputs evaluated/s; "
            f"{len(times):,} webhook messages delivered at {deliveries_s:,.0f}/s"
        )
        print("  " + meter.report(seconds, len(times), "message"))
        throughput_cpu = cpu_per(meter, len(times), "message")
        # -- phase 2: latency at a steady rate
        produced: dict[str, float] = {}
        producer = create_producer(kafka.bootstrap, linger_ms=2)
        await producer.start()
        meter.start()
        phase_started = time.monotonic()
        try:
            total = args.rate * args.seconds
            start = time.monotonic()
            pending = []
            for i in range(total):
                due = start + i / args.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                user = f"lat{i}"
                value = event(user, "s", "track", "Signed Up")
                produced[user] = time.time()
                pending.append(await producer.send(names[t.EVENTS], value, key=user.encode()))
            await asyncio.gather(*pending)
        finally:
            await producer.stop()
        for _ in range(300):
            got = await sinks.arrivals()
            if all(u in got for u in produced):
                break
            await asyncio.sleep(0.5)
        meter.stop()
        waited = time.time()
        arrived = len([u for u in produced if u in got])
        # A message that never arrived waited at least until now: counting that keeps p99 honest
        # (a lower bound) instead of dropping the slowest messages.
        lat = sorted(got[u] - produced[u] if u in got else waited - produced[u] for u in produced)
        p50 = statistics.median(lat)
        p99 = lat[int(0.99 * (len(lat) - 1))]
        print(
            f"latency at {args.rate:,} events/s for {args.seconds} s: {arrived:,}/{len(produced):,} messages; "
            f"event -> message p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms"
        )
        print("  " + meter.report(time.monotonic() - phase_started, max(1, arrived), "message"))
        missing = len(produced) - arrived
        late = (
            f"; {missing:,} never arrived (counted as waiting until the end: a lower bound)"
            if missing
            else ""
        )
        print(
            f"\nsummary: {deliveries_s:,.0f} deliveries/s per process (goal >= 2,000); "
            f"{inputs_s:,.0f} inputs evaluated/s; p99 event -> message {p99 * 1000:.0f} ms at {args.rate:,}/s (goal <= 1,000 ms)"
        )
        return [
            row(
                f"webhook deliveries, one process ({args.users:,} users' sign-ups)",
                deliveries_s,
                "deliveries/s",
                goal=">= 2000",
                detail=f"{inputs_s:,.0f} inputs evaluated/s; {throughput_cpu}",
            ),
            row(
                f"p99 event -> message at {args.rate:,} events/s for {args.seconds} s",
                p99 * 1000,
                "ms",
                goal="<= 1000",
                detail=f"p50 {p50 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms{late}",
            ),
        ]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        await sinks.stop()
        problems = Counter(
            (line.get("level"), str(line.get("event"))[:80])
            for line in map(_json_line, log.read_text().splitlines())
            if line.get("level") in ("warning", "error", "critical")
        )
        for (level, what), n in problems.most_common(10):
            print(f"  log: {n} x {level}: {what}")
        if profile is not None and profile.exists():
            print("\nprofile of the notifier (share of samples of its main thread):")
            print(profile.read_text())


def _json_line(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--rate", type=int, default=1000, help="events/s in the latency phase")
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--fsync", choices=("on", "off"), default="on", help="PostgreSQL fsync (default on)")
    p.add_argument(
        "--profile", action="store_true", help="run the service under cProfile and print where its time goes"
    )
    p.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE", help="extra service environment")
    p.add_argument("--quick", action="store_true", help="a smaller workload (2,000 users, 5 s of latency)")
    p.add_argument("--force", action="store_true", help="run even when the machine is already busy")
    args = p.parse_args()
    if args.quick:
        args.users, args.seconds = 2_000, 5
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    machine = machine_header("notifier", force=args.force)
    print(f"PostgreSQL fsync={args.fsync}")
    home = REPO / ".local" / f"bench-{os.getpid()}"
    kafka = KafkaNode.on_free_ports(home / "kafka")
    postgres = PostgresNode(home=home / "postgres", port=free_port(), fsync=args.fsync == "on")
    try:
        kafka.start()
        postgres.start()
        postgres.ensure_databases(("notifier",))
        rows = asyncio.run(run(args, kafka, postgres, home))
    except KeyboardInterrupt:
        raise SystemExit("interrupted") from None
    finally:
        kafka.stop()
        postgres.stop(mode="immediate")
        shutil.rmtree(home, ignore_errors=True)
    write_results("notifier", rows, machine)


if __name__ == "__main__":
    main()
