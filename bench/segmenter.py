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
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.stack import KafkaNode, PostgresNode  # noqa: E402
from scripts.stack.procs import free_port  # noqa: E402
from scripts.stack.topics import ensure_topics  # noqa: E402
from services.segmenter.config import SegmenterConfig, load_config  # noqa: E402
from services.segmenter.consumer import IDLE_TIMER  # noqa: E402
from services.segmenter.domain.decide import apply_event, apply_timer  # noqa: E402
from services.segmenter.domain.state import UserState  # noqa: E402
from shared.events import Event, format_ts  # noqa: E402
from shared.kafka import create_producer  # noqa: E402

CONFIG = REPO / "config" / "segmenter.yaml"
RESULTS = REPO / "bench" / "results"
ADMIN_TOKEN = "bench-admin-token"
DAY = timedelta(days=1)

# --------------------------------------------------------------------------- process accounting


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        if ppid == pid:
            out.append(int(entry))
    return out


@dataclass
class CpuMeter:
    """CPU seconds used by named process groups between `start()` and `stop()`."""

    groups: dict[str, Callable[[], list[int]]]
    _start: dict[str, dict[int, float]] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def _sample(self) -> dict[str, dict[int, float]]:
        return {name: {p: _cpu_seconds(p) for p in pids()} for name, pids in self.groups.items()}

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> None:
        end = self._sample()
        for name, pids in end.items():
            before = self._start.get(name, {})
            self.used[name] = sum(cpu - before.get(pid, 0.0) for pid, cpu in pids.items())

    def report(self, seconds: float, items: int, unit: str) -> str:
        """CPU per process group: seconds, share of one core, and microseconds per item."""
        parts = [
            f"{name} {cpu:.1f} s ({cpu / seconds:.0%} of a core, {cpu / items * 1e6:.0f} us/{unit})"
            for name, cpu in self.used.items()
        ]
        return "CPU used: " + ", ".join(parts)


def _postgres_pids(node: PostgresNode) -> list[int]:
    try:
        main = int((node.pgdata / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return []
    return [main, *_children(main)]


# --------------------------------------------------------------------------- the service


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    started: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds from process start to /ready answering 200."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SystemExit(
                        f"segmenter exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                    )
                try:
                    if (await client.get(f"{self.url}/ready")).status_code == 200:
                        return time.monotonic() - self.started
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise SystemExit(f"segmenter not ready in {timeout:.0f}s:\n{self.log.read_text()[-3000:]}")

    async def metric(self, client: httpx.AsyncClient, name: str, **labels: str) -> float:
        text = (await client.get(f"{self.url}/metrics")).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_service(
    home: Path, bootstrap: str, db_url: str, topics: dict[str, str], group: str, extra: dict[str, str]
) -> Service:
    port = free_port()
    env = {
        **os.environ,
        "USEROPS_KAFKA_BOOTSTRAP": bootstrap,
        "USEROPS_SEGMENTER_DATABASE_URL": db_url,
        "USEROPS_SEGMENTER_PORT": str(port),
        "USEROPS_SEGMENTER_CONFIG": str(CONFIG),
        "USEROPS_SEGMENTER_GROUP": group,
        "USEROPS_ADMIN_TOKEN": ADMIN_TOKEN,
        "USEROPS_EVENTS_TOPIC": topics["events"],
        "USEROPS_LIFECYCLE_TOPIC": topics["lifecycle"],
        "USEROPS_DEADLETTER_TOPIC": topics["deadletter"],
        "USEROPS_LOG_LEVEL": "WARNING",
        **extra,
    }
    log = home / f"segmenter-{group}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.segmenter"],
        env=env,
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    return Service(proc, port, log, time.monotonic())


class Profiler:
    """py-spy attached to a live process (CPU samples only), summarised on `stop()`."""

    def __init__(self, pid: int, name: str) -> None:
        exe = shutil.which("py-spy") or str(REPO / ".tools" / "bin" / "py-spy")
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.out = RESULTS / f"segmenter-{name}.pyspy.txt"
        self.proc: subprocess.Popen[bytes] | None = None
        if not Path(exe).exists():
            print("  (py-spy not found: `pip install py-spy` to profile)")
            return
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "97",
                "--format",
                "raw",
                "--nonblocking",
                "-o",
                str(self.out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return
        if self.out.exists():
            print(summarise_profile(self.out))


def summarise_profile(path: Path, top: int = 25) -> str:
    """Self and inclusive shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [
            re.sub(r"\((?:/[^()]*/site-packages/)?([^()]*?):\d+\)$", r"(\1)", f) for f in stack.split(";")
        ]
        own[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    if not total:
        return "  (no samples)"
    lines = [f"  profile: {total} samples -> {path.relative_to(REPO)}", "  self time:"]
    lines += [f"    {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines.append("  inclusive (project code):")
    ours = [(f, n) for f, n in incl.most_common() if "services/" in f or "shared/" in f or "runtime/" in f]
    lines += [f"    {n / total:6.1%}  {f}" for f, n in ours[:top]]
    return "\n".join(lines)


# --------------------------------------------------------------------------- phase 1: events

TRACKS = (  # (name, weight)
    ("Product Viewed", 15),
    ("Lesson Completed", 14),
    ("Search Performed", 8),
    ("Added to Cart", 6),
    ("Order Completed", 5),
    ("Application Backgrounded", 4),
)
PLANS = ("free", "free", "free", "pro", "team")
TIMEZONES = ("Europe/Paris", "America/New_York", "Asia/Shanghai", "Asia/Tokyo", "Europe/London")


@dataclass
class _User:
    """One user of the generated stream; `emit` stamps and keys an event as ingest would."""

    index: int
    anon: str | None
    identified_at: float  # before this offset the user is known by `anon` only
    tz: str
    now: datetime
    window: float
    rng: random.Random
    out: list[tuple[float, bytes, bytes]]

    @property
    def uid(self) -> str:
        return f"user-{self.index:06d}"

    def emit(self, offset: float, body: dict[str, Any]) -> None:
        rng, u = self.rng, self.index
        ts = self.now - timedelta(seconds=self.window - offset)
        if self.anon is not None and offset < self.identified_at:
            body["anonymousId"] = self.anon
        else:
            body["userId"] = self.uid
            if self.anon is not None:
                body["anonymousId"] = self.anon
        stamp = format_ts(ts)
        received = format_ts(ts + timedelta(milliseconds=rng.randint(20, 900)))
        body.update(
            messageId=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            timestamp=stamp,
            originalTimestamp=stamp,
            receivedAt=received,
            sentAt=received,
            sourceId="bench-source",
            integrations={},
        )
        body.setdefault("context", {}).update(
            library={"name": "analytics.js" if self.anon else "analytics-python", "version": "2.4.0"},
            ip=f"10.{u % 250}.{u // 250 % 250}.{u % 7}",
            locale="en-US",
            timezone=self.tz,
        )
        key = body.get("userId") or body["anonymousId"]
        self.out.append((offset, key.encode(), orjson.dumps(body)))


def make_events(users: int, total: int, now: datetime, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """`total` (key, value) pairs as ingest publishes them, in timestamp order.

    Activity is skewed (a few heavy users, many light ones). Every user signs up at their first
    event. 30% of users come from a browser/app SDK that sends an `anonymousId` beside the
    `userId`; a third of those browse anonymously first and are identified later. 1% of users
    carry a legacy id aliased to their user id.
    """
    rng = random.Random(seed)
    per_user = [0] * users
    for _ in range(total - users):
        per_user[int(users * rng.random() ** 1.6)] += 1
    tracks = [name for name, _ in TRACKS]
    weights = [w for _, w in TRACKS]
    window = 60 * 86400.0
    out: list[tuple[float, bytes, bytes]] = []
    for u in range(users):
        anon = f"anon-{uuid.UUID(int=rng.getrandbits(128))}" if u % 10 < 3 else None
        first = rng.random() * window
        n = per_user[u]
        times = sorted(first + rng.random() * (window - first) for _ in range(n))
        late = anon is not None and u % 10 == 0 and n >= 3  # browses anonymously, identified later
        plan = rng.choice(PLANS)
        user = _User(u, anon, times[n // 3] if late else first, rng.choice(TIMEZONES), now, window, rng, out)
        uid, tz, emit = user.uid, user.tz, user.emit
        emit(first, {"type": "track", "event": "Signed Up", "properties": {"method": "email"}})
        if u % 100 == 0:
            emit(first, {"type": "alias", "previousId": f"legacy-{u}"})
        for i, t in enumerate(times):
            if late and i == n // 3:
                emit(t, {"type": "identify", "traits": {"email": f"{uid}@example.com", "plan": plan}})
                continue
            r = rng.random()
            if r < 0.28:
                path = rng.choice(("/", "/pricing", "/courses", "/courses/python", "/blog"))
                emit(
                    t,
                    {
                        "type": "page",
                        "name": path.strip("/") or "home",
                        "properties": {"path": path, "url": f"https://example.com{path}", "title": "Example"},
                        "context": {"page": {"path": path, "referrer": "https://www.google.com/"}},
                    },
                )
            elif r < 0.40:
                emit(
                    t,
                    {
                        "type": "screen",
                        "name": rng.choice(("Home", "Lesson", "Profile", "Cart")),
                        "properties": {"variant": "b"},
                    },
                )
            elif r < 0.47:
                emit(
                    t,
                    {
                        "type": "identify",
                        "traits": {
                            "email": f"{uid}@example.com",
                            "plan": plan,
                            "name": f"User {u}",
                            "age": 18 + u % 50,
                            "timezone": tz,
                        },
                    },
                )
            else:
                name = rng.choices(tracks, weights)[0]
                props: dict[str, Any] = {"sku": f"sku-{rng.randint(1, 500)}", "category": "courses"}
                if name == "Order Completed":
                    props = {
                        "order_id": f"o-{u}-{i}",
                        "revenue": round(rng.uniform(5, 400), 2),
                        "currency": "EUR",
                        "products": [{"sku": props["sku"], "quantity": 1}],
                    }
                elif name == "Lesson Completed":
                    props = {
                        "course": "python",
                        "lesson": rng.randint(1, 40),
                        "duration_s": rng.randint(60, 1800),
                    }
                emit(t, {"type": "track", "event": name, "properties": props})
    out.sort(key=lambda e: e[0])
    return [(k, v) for _, k, v in out]


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


def _wire(user: str, at: datetime, etype: str, event: str | None = None, **fields: Any) -> Event:
    body: dict[str, Any] = {
        "type": etype,
        "messageId": str(uuid.uuid4()),
        "userId": user,
        "timestamp": format_ts(at),
        "receivedAt": format_ts(at),
        **fields,
    }
    if event is not None:
        body["event"] = event
    return Event.from_wire(body)


@dataclass
class Template:
    name: str
    state: UserState
    due: datetime
    expect: str  # the stage the timer moves the user to


def build_templates(cfg: SegmenterConfig, now: datetime) -> list[Template]:
    """Real states, each settled 10 minutes ago with its next deadline in the last 10 minutes.

    Each timer fires one stage change: active → at_risk (a slipping learner; a pro user, who
    also enters `pro_plan_slipping`), at_risk → dormant (a lapsed buyer), dormant → churned,
    new → active (a trial that never activated) and activated → active.
    """
    settle = now - timedelta(minutes=10)
    lag = timedelta(minutes=5)  # the deadline falls 5 minutes before now
    templates = []

    def build(name: str, events: list[Event], expect: str) -> None:
        state: UserState | None = None
        for e in sorted(events, key=lambda e: e.timestamp):
            state = apply_event(state, e, cfg, e.timestamp).state
        assert state is not None
        decision = apply_timer(state, cfg, settle)
        due = decision.next_timer_at
        assert due is not None and settle < due <= now, (name, due)
        fired = apply_timer(state.copy(), cfg, due, due_at=due)
        assert fired.state.stage == expect, (name, state.stage, fired.state.stage)
        templates.append(Template(name, state, due, expect))

    def session(user: str, at: datetime, lessons: int = 1) -> list[Event]:
        evs = [_wire(user, at, "page", name="courses", properties={"path": "/courses"})]
        evs += [
            _wire(
                user, at + timedelta(minutes=5 * i + 1), "track", "Lesson Completed", properties={"lesson": i}
            )
            for i in range(lessons)
        ]
        return evs

    # active -> at_risk: 40 days of lessons, last activity 7 days (minus 5 min) before the deadline.
    last = now - lag - timedelta(days=7)
    evs = [_wire("x", last - timedelta(days=40), "track", "Signed Up")]
    for d in range(0, 40, 3):
        evs += session("x", last - timedelta(days=40 - d), lessons=2)
    evs += session("x", last - timedelta(minutes=6), lessons=1)
    evs.append(_wire("x", last, "screen", name="Home"))
    evs.append(
        _wire("x", last - timedelta(days=39), "identify", traits={"plan": "free", "email": "x@example.com"})
    )
    build("slipping learner", evs, "at_risk")
    # A pro user going at risk, who also enters pro_plan_slipping.
    evs = [e for e in evs if e.type != "identify"]
    evs.append(
        _wire("x", last - timedelta(days=39), "identify", traits={"plan": "pro", "email": "x@example.com"})
    )
    build("pro slipping", evs, "at_risk")
    # at_risk -> dormant: a buyer whose last visit was 30 days ago.
    last = now - lag - timedelta(days=30)
    evs = [_wire("x", last - timedelta(days=50), "track", "Signed Up")]
    for d in range(0, 50, 5):
        evs.append(
            _wire(
                "x",
                last - timedelta(days=50 - d),
                "track",
                "Order Completed",
                properties={"revenue": 60.0 + d, "order_id": f"o{d}"},
            )
        )
        evs.append(_wire("x", last - timedelta(days=50 - d, minutes=-3), "page", name="receipt"))
    evs.append(_wire("x", last, "page", name="home"))
    build("lapsed buyer", evs, "dormant")
    # dormant -> churned.
    last = now - lag - timedelta(days=90)
    evs = [_wire("x", last - timedelta(days=10), "track", "Signed Up")]
    evs += session("x", last - timedelta(days=5), lessons=2)
    evs.append(_wire("x", last, "page", name="home"))
    build("gone", evs, "churned")
    # new -> active: signed up 7 days ago, still around, never activated.
    signup = now - lag - timedelta(days=7)
    evs = [_wire("x", signup, "track", "Signed Up")]
    for d in range(1, 7):
        evs.append(_wire("x", signup + timedelta(days=d, hours=1), "page", name="pricing"))
    evs += session("x", now - timedelta(hours=20), lessons=1)
    build("trial ending", evs, "active")
    # activated -> active: first order 7 days ago, active since.
    signup = now - lag - timedelta(days=7, hours=2)
    evs = [
        _wire("x", signup, "track", "Signed Up"),
        _wire(
            "x",
            signup + timedelta(hours=2),
            "track",
            "Order Completed",
            properties={"revenue": 120.0, "order_id": "first"},
        ),
    ]
    for d in range(1, 7):
        evs += session("x", signup + timedelta(days=d, hours=3), lessons=1)
    build("fresh customer", evs, "active")
    return templates


async def fill_timers(conn: asyncpg.Connection, templates: list[Template], n: int) -> None:
    """`n` profiles (ids t-0000000 ...) copied from the templates, round robin, each with a due timer."""
    await conn.execute(
        "CREATE TEMP TABLE tpl (k int, state jsonb, stage text, activated bool, "
        "first_seen timestamptz, last_activity_at timestamptz, due timestamptz, "
        "segments text[], seg_since timestamptz)"
    )
    await conn.executemany(
        "INSERT INTO tpl VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8, $9)",
        [
            (
                k,
                t.state.to_json().decode(),
                t.state.stage,
                t.state.activated,
                t.state.first_seen,
                t.state.last_activity_at,
                t.due,
                t.state.segments,
                t.state.as_of,
            )
            for k, t in enumerate(templates)
        ],
    )
    k = len(templates)
    await conn.execute(
        """
        INSERT INTO profiles (user_id, state, stage, activated, first_seen, last_activity_at)
        SELECT 't-' || lpad(g::text, 7, '0'), jsonb_set(p.state, '{userId}', to_jsonb('t-' || lpad(g::text, 7, '0'))),
               p.stage, p.activated, p.first_seen, p.last_activity_at
        FROM generate_series(0, $1 - 1) g JOIN tpl p ON p.k = g % $2
        """,
        n,
        k,
    )
    await conn.execute(
        """
        INSERT INTO timers (kind, key, due_at)
        SELECT $3, 't-' || lpad(g::text, 7, '0'), p.due FROM generate_series(0, $1 - 1) g JOIN tpl p ON p.k = g % $2
        """,
        n,
        k,
        IDLE_TIMER,
    )
    await conn.execute(
        """
        INSERT INTO segment_members (segment, user_id, since)
        SELECT s, 't-' || lpad(g::text, 7, '0'), p.seg_since
        FROM generate_series(0, $1 - 1) g JOIN tpl p ON p.k = g % $2, unnest(p.segments) s
        """,
        n,
        k,
    )
    await conn.execute(
        "INSERT INTO activity_days (user_id, day) "
        "SELECT 't-' || lpad(g::text, 7, '0'), current_date - (g % 30) FROM generate_series(0, $1 - 1) g",
        n,
    )


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
                "postgres": lambda: _postgres_pids(self.postgres),
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
    kafka = KafkaNode(
        home=home / "kafka",
        libs=REPO / ".local" / "kafka" / "libs",
        port=free_port(),
        controller_port=free_port(),
    )
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
