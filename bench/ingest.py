"""Ingest throughput benchmark (not a test): `make bench` or `.venv/bin/python bench/ingest.py`.

Starts its own private Kafka broker (scripts.stack, as the tests do) and the ingest service as a
real subprocess (`python -m services.ingest`) with N workers, then measures in one run:

1. the ceiling: a raw aiokafka producer (acks=all, idempotent, as `shared.kafka` builds it)
   publishing the same enriched payloads with as many events in flight as it likes, once with
   `send()` per event (the usual way) and once with the batch API (`create_batch`/`send_batch`,
   full 256 KB batches, no per-event Python work at all: what the broker and client can take);
2. `POST /v1/batch` with 100-event batches from 16, 64 and 256 keep-alive connections, all opened
   at once before the first request (a burst of connections is what once landed every
   connection on one worker) -> events/s and the ratio to the batch-API ceiling;
3. `POST /v1/track` (one event per request) from 64 and 256 connections -> req/s, p50 and p99;
4. with `log.flush.interval.messages=1` (a second broker that fsyncs every batch before it
   acknowledges, `USEROPS_KAFKA_DURABLE`): the batch phase at 16 and the track phase at 64.

Every phase prints the CPU time the ingest workers and the broker spent per event or request
and each worker's own CPU in cores (from /proc/<pid>/stat), so a worker that idles while the
other is saturated shows in every line. At the end it writes bench/results/ingest.json
(bench/common.py). `--service-root DIR` runs the service from another checkout of the code
(A/B against an older version in the same window). The load generator is a minimal
HTTP/1.1 client on asyncio protocols sending pre-built requests (a few microseconds per request),
so nothing beyond the project's dependencies is needed. `--profile` runs the service with one
worker under pyinstrument and writes the profile of the batch phase to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine_header, row, write_results  # noqa: E402
from scripts.stack import KafkaNode  # noqa: E402
from scripts.stack.procs import free_port  # noqa: E402
from scripts.stack.topics import ensure_topics  # noqa: E402
from services.ingest.config import default_workers  # noqa: E402
from services.ingest.domain.envelope import Limits, prepare_events  # noqa: E402
from shared.kafka import create_producer, partition_for  # noqa: E402

WRITE_KEY = "bench-write-key"
TOPIC = "userops.events.v1"
TICK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- payloads


def make_event(i: int, users: int) -> dict[str, Any]:
    """An event shaped like what analytics-python sends for a typical `track` call."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"user-{(i * 7919) % users:08d}",
        "anonymousId": None,
        "messageId": str(uuid.uuid4()),
        "timestamp": now,
        "properties": {"order_id": f"o-{i}", "revenue": 42.5, "currency": "EUR", "items": 3},
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
        "integrations": {},
    }


def batch_body(start: int, size: int, users: int) -> bytes:
    sent_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    events = [make_event(start + j, users) for j in range(size)]
    return orjson.dumps({"batch": events, "sentAt": sent_at, "writeKey": WRITE_KEY})


def http_request(path: str, body: bytes) -> bytes:
    auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --------------------------------------------------------------------------- load generator


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    events: int = 0


class _Client(asyncio.Protocol):
    """One keep-alive connection sending requests back to back (closed loop)."""

    def __init__(
        self,
        requests: list[bytes],
        events_per_request: int,
        stats: Stats,
        stop_at: float,
        done: asyncio.Future[None],
        offset: int,
    ) -> None:
        self.requests, self.per_request, self.stats = requests, events_per_request, stats
        self.stop_at, self.done, self.i = stop_at, done, offset
        self.buf = b""
        self.sent_at = 0.0
        self.transport: Any = None  # uvloop's transports are duck-typed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def _send(self) -> None:
        req = self.requests[self.i % len(self.requests)]
        self.i += 1
        self.sent_at = time.perf_counter()
        self.transport.write(req)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].lower()
        start = head.find(b"content-length:") + 15
        stop = head.find(b"\r\n", start)
        length = int(head[start : stop if stop > 0 else len(head)])
        if len(self.buf) < end + 4 + length:
            return
        now = time.perf_counter()
        status = int(head[9:12])
        self.buf = self.buf[end + 4 + length :]
        st = self.stats
        st.latencies.append(now - self.sent_at)
        st.statuses[status] = st.statuses.get(status, 0) + 1
        if status == 200:
            st.events += self.per_request
        if now < self.stop_at:
            self._send()
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def load(
    port: int, requests: list[bytes], events_per_request: int, concurrency: int, duration: float
) -> tuple[Stats, float]:
    """Open `concurrency` connections at once, then send on all of them for `duration` s."""
    loop = asyncio.get_running_loop()
    stats = Stats()
    stop_at = time.perf_counter() + 3600.0
    waiters: list[asyncio.Future[None]] = []
    clients: list[_Client] = []

    def client(c: int) -> _Client:
        done: asyncio.Future[None] = loop.create_future()
        waiters.append(done)
        made = _Client(
            requests, events_per_request, stats, stop_at, done, c * (len(requests) // max(1, concurrency))
        )
        clients.append(made)
        return made

    await asyncio.gather(
        *(loop.create_connection(partial(client, c), "127.0.0.1", port) for c in range(concurrency))
    )
    start = time.perf_counter()
    for made in clients:
        made.stop_at = start + duration
        made._send()
    await asyncio.gather(*waiters)
    return stats, time.perf_counter() - start


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


# --------------------------------------------------------------------------- CPU accounting


def cpu_seconds(pid: int) -> float:
    """User+system CPU of one process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    """The child processes of `pid`, without multiprocessing's resource tracker."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    found = []
    for child in (int(p) for p in text.split()):
        try:
            if b"resource_tracker" in Path(f"/proc/{child}/cmdline").read_bytes():
                continue
        except FileNotFoundError:
            continue
        found.append(child)
    return found


class CpuMeter:
    """CPU seconds used by each ingest worker and by the broker between `start` and `stop`.

    The workers are the service process's children (or the process itself, with one worker)."""

    def __init__(self, ingest_pid: int, kafka_pid: int) -> None:
        self.parent = ingest_pid
        self.workers = children(ingest_pid) or [ingest_pid]
        self.kafka = kafka_pid
        self._before: dict[int, float] = {}
        self._started = 0.0

    def start(self) -> None:
        self._before = {p: cpu_seconds(p) for p in [self.parent, *self.workers, self.kafka]}
        self._started = time.perf_counter()

    def stop(self) -> Cpu:
        used = {p: cpu_seconds(p) - self._before[p] for p in self._before}
        elapsed = time.perf_counter() - self._started
        per_worker = [used[p] / elapsed for p in self.workers]
        ingest = sum(used[p] for p in {self.parent, *self.workers})
        return Cpu(ingest, used[self.kafka], per_worker)


@dataclass
class Cpu:
    ingest: float  # CPU seconds of the service's processes
    kafka: float  # CPU seconds of the broker
    per_worker: list[float]  # each worker's CPU in cores (CPU seconds per wall second)

    def workers_text(self) -> str:
        return "/".join(f"{c:.2f}" for c in self.per_worker)


# --------------------------------------------------------------------------- ceilings


async def ceiling_send(bootstrap: str, payloads: list[tuple[bytes, bytes]], seconds: float) -> float:
    """`send()` per event, default partitioner, up to 10,000 events in flight."""
    producer = create_producer(bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(TOPIC, payloads[0][1], key=payloads[0][0])
        sent, i = 0, 0
        start = time.perf_counter()
        pending: list[asyncio.Future[Any]] = []
        while time.perf_counter() - start < seconds:
            for _ in range(1000):
                key, value = payloads[i]
                i = (i + 1) % len(payloads)
                pending.append(await producer.send(TOPIC, value, key=key))
            sent += 1000
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        return sent / (time.perf_counter() - start)
    finally:
        await producer.stop()


async def ceiling_batches(bootstrap: str, payloads: list[tuple[bytes, bytes]], seconds: float) -> float:
    """The batch API: one full batch per partition at a time, queued as fast as taken."""
    producer = create_producer(bootstrap)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(TOPIC))
        by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        for key, value in payloads:
            by_partition[partition_for(key, len(partitions))].append((key, value))
        deadline = time.perf_counter() + seconds
        counts: dict[int, int] = defaultdict(int)

        async def pump(partition: int) -> None:
            records, i, futures = by_partition[partition], 0, []
            while time.perf_counter() < deadline:
                batch, n = producer.create_batch(), 0
                while batch.append(key=records[i][0], value=records[i][1], timestamp=None):
                    i, n = (i + 1) % len(records), n + 1
                futures.append(await producer.send_batch(batch, TOPIC, partition=partition))
                counts[partition] += n
            await asyncio.gather(*futures)

        start = time.perf_counter()
        await asyncio.gather(*(pump(p) for p in partitions if by_partition[p]))
        return sum(counts.values()) / (time.perf_counter() - start)
    finally:
        await producer.stop()


# --------------------------------------------------------------------------- the service


def start_ingest(
    port: int, bootstrap: str, workers: int, profile: Path | None, root: Path = REPO
) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("USEROPS_", "PROMETHEUS_"))},
        "USEROPS_KAFKA_BOOTSTRAP": bootstrap,
        "USEROPS_INGEST_PORT": str(port),
        "USEROPS_INGEST_WORKERS": str(workers),
        "USEROPS_INGEST_CONFIG": str(root / "config" / "ingest.yaml"),
        "USEROPS_DEV_WRITE_KEY": WRITE_KEY,
        "USEROPS_LOG_LEVEL": "WARNING",
    }
    cmd = [sys.executable, "-m", "services.ingest"]
    if profile is not None:
        cmd = [
            sys.executable,
            "-m",
            "pyinstrument",
            "-r",
            "text",
            "-o",
            str(profile),
            "--show-all",
            "-m",
            "services.ingest",
        ]
    return subprocess.Popen(cmd, cwd=root, env=env, start_new_session=True)


def stop_ingest(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def wait_ready(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /ready HTTP/1.1\r\nHost: bench\r\n\r\n")
            line = await reader.readline()
            writer.close()
            if b" 200 " in line:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("ingest did not become ready")


@dataclass
class Measured:
    rate: float  # events/s (batch) or requests/s (track)
    stats: Stats
    elapsed: float
    cpu: Cpu

    @property
    def p99_ms(self) -> float:
        return pct(self.stats.latencies, 99) * 1000

    def cpu_us(self) -> float:
        """Ingest CPU per event (batch) or per request (track), in microseconds."""
        return self.cpu.ingest / max(1, self.stats.events) * 1e6

    def describe(self, unit: str) -> str:
        st, n = self.stats, max(1, self.stats.events)
        return (
            f"p50 {pct(st.latencies, 50) * 1000:.1f} ms, p99 {self.p99_ms:.1f} ms; CPU per {unit}: "
            f"ingest {self.cpu_us():.1f} us, broker {self.cpu.kafka / n * 1e6:.1f} us; "
            f"per-worker CPU {self.cpu.workers_text()} cores; statuses {st.statuses}"
        )


async def measure(
    port: int, meter: CpuMeter, requests: list[bytes], per_request: int, connections: int, duration: float
) -> Measured:
    await load(port, requests, per_request, min(connections, 16), 1.0)  # warm-up
    meter.start()
    stats, elapsed = await load(port, requests, per_request, connections, duration)
    cpu = meter.stop()
    return Measured(stats.events / elapsed, stats, elapsed, cpu)


class Service:
    """The ingest service under test against one broker."""

    def __init__(self, args: argparse.Namespace, kafka: KafkaNode, profile: Path | None = None) -> None:
        self.args, self.kafka, self.profile = args, kafka, profile
        self.workers = 1 if profile is not None else args.workers
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.meter: CpuMeter | None = None

    async def __aenter__(self) -> Service:
        root = Path(self.args.service_root).resolve()
        self.proc = start_ingest(self.port, self.kafka.bootstrap, self.workers, self.profile, root)
        await wait_ready(self.port)
        self.meter = CpuMeter(self.proc.pid, self.kafka.pid() or 0)
        print(
            f"\ningest: {self.workers} worker(s) (pids {self.meter.workers}) on 127.0.0.1:{self.port}"
            f", code from {root}",
            flush=True,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_ingest(self.proc)

    async def batch(self, requests: list[bytes], connections: int, label: str = "") -> Measured:
        assert self.meter is not None
        m = await measure(self.port, self.meter, requests, 100, connections, self.args.duration)
        print(
            f"{label}/v1/batch (100 events), {connections:>3} connections opened at once: "
            f"{m.rate:>9,.0f} events/s\n    " + m.describe("event"),
            flush=True,
        )
        return m

    async def track(self, requests: list[bytes], connections: int, label: str = "") -> Measured:
        assert self.meter is not None
        m = await measure(self.port, self.meter, requests, 1, connections, self.args.duration)
        print(
            f"{label}/v1/track, {connections:>3} connections opened at once: {m.rate:>9,.0f} req/s"
            "\n    " + m.describe("request"),
            flush=True,
        )
        return m


def balance_detail(runs: list[Measured]) -> str:
    return "; ".join(
        f"{m.rate:,.0f} ev/s, per-worker CPU {m.cpu.workers_text()}, {m.cpu_us():.1f} us/event" for m in runs
    )


async def run(args: argparse.Namespace, machine: dict[str, Any]) -> None:
    home = REPO / ".local" / f"bench-{os.getpid()}"
    kafka = KafkaNode.on_free_ports(home / "kafka")
    durable = KafkaNode.on_free_ports(home / "kafka-durable", durable=True)
    rows: list[dict[str, Any]] = []
    print(f"starting a private Kafka on {kafka.bootstrap} ...", flush=True)
    kafka.start()
    try:
        await ensure_topics(kafka.bootstrap, args.partitions, (TOPIC,))
        bodies = [batch_body(i * 100, 100, args.users) for i in range(args.bodies)]
        now = datetime.now(UTC)
        payloads = [
            (ev.key, ev.value)
            for body in bodies[:50]
            for ev in prepare_events(
                "batch",
                orjson.loads(body),
                source_id="dev",
                received_at=now,
                body_size=len(body),
                limits=Limits(),
            )
        ]
        print(
            f"payload: {len(payloads[0][1])} bytes/event, {len(bodies[0]):,} bytes per "
            f"100-event batch; {args.partitions} partitions; {args.users:,} users",
            flush=True,
        )
        send_rate = await ceiling_send(kafka.bootstrap, payloads, args.duration)
        batch_rate = await ceiling_batches(kafka.bootstrap, payloads, args.duration)
        print(
            "\n[1] ceiling: a raw aiokafka producer (acks=all), the same payloads, no HTTP\n"
            f"    send() per event:           {send_rate:>9,.0f} events/s\n"
            f"    batch API, full batches:    {batch_rate:>9,.0f} events/s",
            flush=True,
        )
        batch_reqs = [http_request("/v1/batch", b) for b in bodies]
        track_reqs = [http_request("/v1/track", orjson.dumps(make_event(i, args.users))) for i in range(2000)]
        profile = None
        if args.profile:
            (REPO / "bench" / "results").mkdir(parents=True, exist_ok=True)
            profile = REPO / "bench" / "results" / "ingest-profile.txt"
        async with Service(args, kafka, profile) as service:
            batch16: float | None = None
            for conns in args.batch_connections:
                runs = [
                    await service.batch(batch_reqs, conns, f"[2] run {r + 1}: ") for r in range(args.repeat)
                ]
                worst = min(runs, key=lambda m: m.rate)
                if batch16 is None:
                    batch16 = sorted(m.rate for m in runs)[len(runs) // 2]  # the median run
                    goal = ">= 124000"
                else:
                    goal = f">= {batch16:.0f}"  # the first phase's median, on every run
                rows.append(
                    row(
                        f"ingest /v1/batch x100, {conns} conns opened at once"
                        + (f" (worst of {len(runs)})" if len(runs) > 1 else ""),
                        worst.rate,
                        "events/s",
                        goal=goal,
                        raw=batch_rate,
                        detail=balance_detail(runs) + f"; p99 {worst.p99_ms:.1f} ms",
                    )
                )
            if not args.profile:
                for conns in args.track_connections:
                    runs = [
                        await service.track(track_reqs, conns, f"[3] run {r + 1}: ")
                        for r in range(args.repeat)
                    ]
                    worst = min(runs, key=lambda m: m.rate)
                    slowest = max(m.p99_ms for m in runs)
                    rows.append(
                        row(
                            f"ingest /v1/track p99, {conns} conns"
                            + (f" (worst of {len(runs)})" if len(runs) > 1 else ""),
                            slowest,
                            "ms",
                            goal="<= 10" if conns == 64 else None,
                            detail=", ".join(f"{m.p99_ms:.1f} ms" for m in runs),
                        )
                    )
                    rows.append(
                        row(
                            f"ingest /v1/track, {conns} conns"
                            + (f" (worst of {len(runs)})" if len(runs) > 1 else ""),
                            worst.rate,
                            "req/s",
                            goal=">= 20000",
                            raw=send_rate,
                            detail=(
                                f"p99 {worst.p99_ms:.1f} ms; "
                                + "; ".join(
                                    f"{m.cpu_us():.0f} us CPU/request, per-worker CPU {m.cpu.workers_text()}"
                                    for m in runs
                                )
                            ),
                        )
                    )
        if args.durable and not args.profile:
            print(
                f"\nstarting a durable Kafka (log.flush.interval.messages=1) on {durable.bootstrap} ...",
                flush=True,
            )
            kafka.stop()  # one broker at a time on this machine
            durable.start()
            await ensure_topics(durable.bootstrap, args.partitions, (TOPIC,))
            durable_ceiling = await ceiling_batches(durable.bootstrap, payloads, args.duration)
            print(f"[4] ceiling, batch API, durable broker: {durable_ceiling:>9,.0f} events/s", flush=True)
            async with Service(args, durable) as service:
                m = await service.batch(batch_reqs, 16, "[4] durable: ")
                rows.append(
                    row(
                        "ingest /v1/batch x100, 16 conns, broker fsyncs each batch",
                        m.rate,
                        "events/s",
                        raw=durable_ceiling,
                        detail=f"p99 {m.p99_ms:.1f} ms; per-worker CPU {m.cpu.workers_text()}",
                    )
                )
                m = await service.track(track_reqs, 64, "[4] durable: ")
                rows.append(
                    row(
                        "ingest /v1/track, 64 conns, broker fsyncs each batch",
                        m.rate,
                        "req/s",
                        detail=f"p99 {m.p99_ms:.1f} ms; per-worker CPU {m.cpu.workers_text()}",
                    )
                )
        if args.profile:
            print("profile written to bench/results/ingest-profile.txt")
        print(f"\nload average after: {os.getloadavg()[0]:.2f} (other processes skew the figures)")
    finally:
        kafka.stop()
        durable.stop()
        shutil.rmtree(home, ignore_errors=True)
    if rows:
        write_results("ingest", rows, machine)


def connection_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: connection counts must be positive")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--batch-connections", type=connection_counts, default=[16, 64, 256])
    parser.add_argument("--track-connections", type=connection_counts, default=[64, 256])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each batch and track phase")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--bodies", type=int, default=200, help="distinct batch bodies cycled")
    parser.add_argument(
        "--no-durable", dest="durable", action="store_false", help="skip the fsync-per-batch broker phase"
    )
    parser.add_argument("--service-root", default=str(REPO), help="run the service from this checkout")
    parser.add_argument("--quick", action="store_true", help="3 s phases, one run each")
    parser.add_argument("--force", action="store_true", help="run even when the machine is busy")
    parser.add_argument(
        "--profile", action="store_true", help="run one worker under pyinstrument; skip the track phase"
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.repeat = min(args.duration, 3.0), 1
    machine = machine_header("ingest", force=args.force or None)
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the broker and service are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    uvloop.run(run(args, machine))


if __name__ == "__main__":
    main()
