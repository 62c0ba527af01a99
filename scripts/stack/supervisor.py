"""Run the local services as child processes and keep them running (`userops dev run`).

The contract:
- `start()` then `wait_ready()`: every service answers 200 on its ready URL, or the first one that
  exits (or the deadline) is returned as a `StartupFailure` naming the service, its exit code and
  its last log lines, so the caller reports it instead of a "ready" banner.
- `run(stop)` supervises until `stop` is set: a service that dies is restarted after the delay
  of `RestartPolicy` (exponential, jittered, reset after a healthy run), and the supervisor says
  so (`segmenter exited with -9; restarting in 1.2 s (restart 2)`); the others keep serving.
- `stop()` sends SIGTERM to every service, waits, then SIGKILLs what is left.

Each child runs in its own process group: Ctrl-C in the terminal reaches only the supervisor,
which stops the services in order, and a dead service's leftover workers (uvicorn's worker
processes) are killed with it so the restarted one can bind its port. A child's stdout and stderr
are forwarded line by line, unchanged (they are JSON), and the last lines are kept for reports.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from scripts.stack.restart import RestartPolicy, RestartState

TAIL_LINES: Final = 20


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """How to start one service and how to tell it is ready (`ready_url` answers 200)."""

    name: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    ready_url: str | None = None
    cwd: Path | None = None


@dataclass(frozen=True, slots=True)
class StartupFailure:
    """A service that exited (`returncode` set) or was not ready in time (`returncode` None)."""

    service: str
    returncode: int | None
    last_lines: tuple[str, ...]
    was_ready: bool = False  # it had answered /ready, then died while the others started

    def describe(self) -> str:
        if self.returncode is None:
            what = f"{self.service} was not ready in time"
        elif self.was_ready:
            what = f"{self.service} exited with {self.returncode} while the other services were starting"
        else:
            what = f"{self.service} exited with {self.returncode} before it was ready"
        if not self.last_lines:
            return f"{what} (it printed nothing)"
        return f"{what}; its last log lines:\n" + "\n".join(f"  {line}" for line in self.last_lines)


def http_ready(url: str) -> bool:
    """True if `url` answers 200 within a second."""
    import httpx

    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class ServiceProcess:
    """One running child process: its output forwarded to `sink`, its last lines kept."""

    def __init__(self, spec: ServiceSpec, sink: BinaryIO, sink_lock: threading.Lock, started_at: float):
        self.spec = spec
        self.started_at = started_at
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.popen = subprocess.Popen(
            spec.command,
            env=dict(spec.env),
            cwd=spec.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        self._reader = threading.Thread(
            target=self._forward, args=(sink, sink_lock), name=f"{spec.name}-output", daemon=True
        )
        self._reader.start()

    def _forward(self, sink: BinaryIO, lock: threading.Lock) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._tail.append(line.decode(errors="replace").rstrip("\n"))
            with lock:
                sink.write(line)
                sink.flush()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def last_lines(self) -> tuple[str, ...]:
        """The last lines it printed; waits briefly for its output to drain if it has exited."""
        if self.popen.poll() is not None:
            self._reader.join(timeout=2)
        return tuple(self._tail)

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.popen.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


class Supervisor:
    """Start, watch and restart a set of services; see the module docstring for the contract."""

    def __init__(
        self,
        specs: Sequence[ServiceSpec],
        *,
        policy: RestartPolicy | None = None,
        say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
        sink: BinaryIO | None = None,
        probe: Callable[[str], bool] = http_ready,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.policy = policy or RestartPolicy()
        self._say = say
        self._sink = sink if sink is not None else sys.stdout.buffer
        self._sink_lock = threading.Lock()
        self._probe = probe
        self._clock = clock
        self._rand = rand
        self.procs: dict[str, ServiceProcess] = {}
        self.state = {name: RestartState() for name in self.specs}

    def _spawn(self, name: str) -> None:
        self.procs[name] = ServiceProcess(self.specs[name], self._sink, self._sink_lock, self._clock())

    def start(self) -> None:
        for name in self.specs:
            self._spawn(name)

    def wait_ready(
        self, timeout: float = 90.0, on_ready: Callable[[str], None] = lambda _: None
    ) -> StartupFailure | None:
        """Poll every ready URL; the first service to exit (or to miss the deadline) fails it."""
        deadline = self._clock() + timeout
        pending = [name for name, spec in self.specs.items() if spec.ready_url is not None]
        while True:
            for name, proc in self.procs.items():
                code = proc.poll()
                if code is not None:
                    was_ready = name not in pending and self.specs[name].ready_url is not None
                    return StartupFailure(name, code, proc.last_lines(), was_ready)
            for name in list(pending):
                url = self.specs[name].ready_url
                if url is not None and self._probe(url):
                    pending.remove(name)
                    on_ready(name)
            if not pending:
                return None
            if self._clock() > deadline:
                return StartupFailure(pending[0], None, self.procs[pending[0]].last_lines())
            time.sleep(0.25)

    def tick(self) -> None:
        """One supervision step: notice deaths, schedule restarts, start those that are due."""
        now = self._clock()
        for name, proc in self.procs.items():
            state = self.state[name]
            if state.due_at is None:
                code = proc.poll()
                if code is None:
                    continue
                proc.signal_group(signal.SIGKILL)  # leftovers of the dead service (its workers)
                delay = state.schedule(self.policy, now, now - proc.started_at, self._rand())
                self._say(
                    f"{name} exited with {code}; restarting in {delay:.1f} s (restart {state.restarts})"
                )
            elif state.due(now):
                state.due_at = None
                self._spawn(name)
                self._say(f"{name} restarted (pid {self.procs[name].pid}, restart {state.restarts})")

    def run(self, stop: threading.Event, interval: float = 0.2) -> None:
        """Supervise until `stop` is set."""
        while not stop.is_set():
            self.tick()
            stop.wait(interval)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every service, wait up to `timeout` in all, then SIGKILL what is left."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._say(f"{proc.spec.name} did not stop in {timeout:.0f} s; killing it")
            proc.signal_group(signal.SIGKILL)
            proc.popen.wait()
            proc.last_lines()  # drains the forwarder
