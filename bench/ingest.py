"""Ingest throughput benchmark (not a test): `make bench` or `.venv/bin/python bench/ingest.py`.

Starts its own private Kafka broker (scripts.stack, as the tests do) and the ingest service as a
real uvicorn subprocess with N workers, then measures in one run:

1. the ceiling: a raw aiokafka producer (acks=all, idempotent, as `shared.kafka` builds it)
   publishing the same enriched payloads with as many events in flight as it likes, once with
   `send()` per event (the usual way) and once with the batch API (`create_batch`/`send_batch`,
   full 256 KB batches, no per-event Python work at all: what the broker and client can take);
2. `POST /v1/batch` with 100-event batches from concurrent keep-alive connections -> events/s and
   the ratio to both ceilings;
3. `POST /v1/track` (one event per request) at a fixed concurrency -> req/s, p50 and p99.

For phases 2 and 3 it also prints the CPU time the ingest workers and the broker spent per event
(from /proc), which says where the machine's cores went. The load generator is a minimal
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
from pathlib import Path
from typing import Any

import orjson
import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

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
        self._send()

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
    loop = asyncio.get_running_loop()
    stats = Stats()
    stop_at = time.perf_counter() + duration
    waiters = []
    start = time.perf_counter()
    for c in range(concurrency):
        done: asyncio.Future[None] = loop.create_future()
        offset = c * (len(requests) // max(1, concurrency))
        await loop.create_connection(
            lambda done=done, offset=offset: _Client(
                requests, events_per_request, stats, stop_at, done, offset
            ),
            "127.0.0.1",
            port,
        )
        waiters.append(done)
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
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


class CpuMeter:
    """CPU seconds used by the ingest processes and the broker between `start` and `stop`."""

    def __init__(self, ingest_pid: int, kafka_pid: int) -> None:
        self.ingest = [ingest_pid, *children(ingest_pid)]
        self.kafka = kafka_pid
        self._before: dict[int, float] = {}

    def start(self) -> None:
        self._before = {p: cpu_seconds(p) for p in [*self.ingest, self.kafka]}

    def stop(self) -> tuple[float, float]:
        used = {p: cpu_seconds(p) - self._before[p] for p in self._before}
        return sum(used[p] for p in self.ingest), used[self.kafka]


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


def start_ingest(port: int, bootstrap: str, workers: int, profile: Path | None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "USEROPS_KAFKA_BOOTSTRAP": bootstrap,
        "USEROPS_INGEST_PORT": str(port),
        "USEROPS_INGEST_WORKERS": str(workers),
        "USEROPS_INGEST_CONFIG": str(REPO / "config" / "ingest.yaml"),
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
    return subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)


async def wait_ready(port: int, timeout: float = 60.0) -> None:
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


def describe(stats: Stats, elapsed: float, cpu: tuple[float, float], unit: str) -> str:
    ingest_cpu, kafka_cpu = cpu
    n = max(1, stats.events)
    return (
        f"p50 {pct(stats.latencies, 50) * 1000:.1f} ms, p99 {pct(stats.latencies, 99) * 1000:.1f} ms; "
        f"CPU per {unit}: ingest {ingest_cpu / n * 1e6:.0f} us, broker {kafka_cpu / n * 1e6:.0f} us "
        f"(ingest used {ingest_cpu / elapsed:.2f} cores); statuses {stats.statuses}"
    )


async def run(args: argparse.Namespace) -> None:
    home = REPO / ".local" / f"bench-{os.getpid()}"
    kafka = KafkaNode.on_free_ports(home / "kafka")
    print(f"starting a private Kafka on {kafka.bootstrap} ...", flush=True)
    kafka.start()
    proc = None
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
            f"100-event batch; {args.partitions} partitions; {args.users:,} users; "
            f"{os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.2f}",
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

        port = free_port()
        profile = None
        if args.profile:
            (REPO / "bench" / "results").mkdir(parents=True, exist_ok=True)
            profile = REPO / "bench" / "results" / "ingest-profile.txt"
        workers = 1 if args.profile else args.workers
        proc = start_ingest(port, kafka.bootstrap, workers, profile)
        await wait_ready(port)
        meter = CpuMeter(proc.pid, kafka.pid() or 0)
        print(f"\ningest: {workers} worker(s) on 127.0.0.1:{port}", flush=True)

        batch_reqs = [http_request("/v1/batch", b) for b in bodies]
        await load(port, batch_reqs, 100, args.batch_concurrency, 2.0)  # warm-up
        meter.start()
        stats, elapsed = await load(port, batch_reqs, 100, args.batch_concurrency, args.duration)
        cpu = meter.stop()
        eps = stats.events / elapsed
        print(
            f"[2] /v1/batch (100 events), {args.batch_concurrency} connections: {eps:>9,.0f} events/s"
            f" = {eps / send_rate:.2f} x send() ceiling, {eps / batch_rate:.2f} x batch-API ceiling"
            "\n    " + describe(stats, elapsed, cpu, "event"),
            flush=True,
        )

        if not args.profile:
            track_reqs = [
                http_request("/v1/track", orjson.dumps(make_event(i, args.users))) for i in range(2000)
            ]
            await load(port, track_reqs, 1, args.track_concurrency, 1.0)
            meter.start()
            stats, elapsed = await load(port, track_reqs, 1, args.track_concurrency, args.duration)
            cpu = meter.stop()
            print(
                f"[3] /v1/track, {args.track_concurrency} connections: "
                f"{stats.events / elapsed:>9,.0f} req/s\n    " + describe(stats, elapsed, cpu, "request"),
                flush=True,
            )
        verdicts = [
            (">= 50,000 events/s", eps >= 50_000),
            (">= 0.6 x send() ceiling", eps >= 0.6 * send_rate),
            (">= 0.6 x batch-API ceiling", eps >= 0.6 * batch_rate),
        ]
        print(
            "\nbatch path: "
            + "; ".join(f"{goal}: {'met' if ok else 'NOT met'}" for goal, ok in verdicts)
            + f"\nload average after: {os.getloadavg()[0]:.2f} (other processes skew the figures)"
        )
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            if args.profile:
                print("profile written to bench/results/ingest-profile.txt")
        kafka.stop()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--batch-concurrency", type=int, default=16)
    parser.add_argument("--track-concurrency", type=int, default=64)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--bodies", type=int, default=200, help="distinct batch bodies cycled")
    parser.add_argument(
        "--profile", action="store_true", help="run one worker under pyinstrument; skip the track phase"
    )
    args = parser.parse_args()
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the broker and service are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
