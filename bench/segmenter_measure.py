"""Measuring the segmenter process: CPU per process group, the service as a subprocess, py-spy.

Part of `bench/segmenter.py` (see there); not a test.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.stack import PostgresNode  # noqa: E402
from scripts.stack.procs import free_port  # noqa: E402

CONFIG = REPO / "config" / "segmenter.yaml"
RESULTS = REPO / "bench" / "results"
ADMIN_TOKEN = "bench-admin-token"

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


def postgres_pids(node: PostgresNode) -> list[int]:
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
    home: Path,
    bootstrap: str,
    db_url: str,
    topics: dict[str, str],
    group: str,
    extra: dict[str, str],
    *,
    root: Path | None = None,
) -> Service:
    """`python -m services.segmenter` of this checkout, or of the one at `root` (to compare)."""
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
    log = home / f"segmenter-{group}-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.segmenter"],
        env=env,
        cwd=root or REPO,
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
