"""The worker sockets and the supervisor of `services.ingest.serve`, with real sockets and
real child processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from services.ingest.serve import _CoalescedWrites, listening_sockets, supervise

# A stand-in worker: exits 0 on SIGTERM, like uvicorn after a graceful shutdown.
GRACEFUL = "import signal, time; signal.signal(signal.SIGTERM, lambda *a: exit(0)); time.sleep(60)"
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"


def spawner(*programs: str, after_all: Callable[[], None] | None = None):  # type: ignore[no-untyped-def]
    """A `spawn` for `supervise` that runs `programs[i]` as the i-th worker."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(sock: socket.socket) -> subprocess.Popen[bytes]:
        program = programs[len(started)]
        proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE)
        started.append(proc)
        if len(started) == len(programs) and after_all is not None:
            after_all()
        return proc

    return spawn, started


def signal_self_soon(signum: int, delay: float = 0.5) -> Callable[[], None]:
    def arm() -> None:
        threading.Timer(delay, os.kill, (os.getpid(), signum)).start()

    return arm


def test_worker_sockets_share_one_port_and_the_kernel_spreads_connections_over_them() -> None:
    sockets = listening_sockets("127.0.0.1", 0, 3)
    clients: list[socket.socket] = []
    try:
        ports = {s.getsockname()[1] for s in sockets}
        assert len(ports) == 1
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in sockets)
        port = ports.pop()
        for _ in range(48):  # all opened before any is accepted, as a burst would be
            clients.append(socket.create_connection(("127.0.0.1", port)))
        accepted = []
        for s in sockets:
            s.setblocking(False)
            n = 0
            while True:
                try:
                    conn, _ = s.accept()
                except BlockingIOError:
                    break
                conn.close()
                n += 1
            accepted.append(n)
        assert sum(accepted) == 48
        assert min(accepted) >= 4, accepted  # a hash spread: about 16 each, never all on one
    finally:
        for c in clients:
            c.close()
        for s in sockets:
            s.close()


def test_a_port_in_use_without_reuseport_is_refused() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(OSError, match="in use"):
            listening_sockets("127.0.0.1", taken.getsockname()[1], 2)
    finally:
        taken.close()


def test_sigterm_stops_every_worker_and_the_supervisor_exits_0() -> None:
    sockets = listening_sockets("127.0.0.1", 0, 2)
    spawn, started = spawner(GRACEFUL, GRACEFUL, after_all=signal_self_soon(signal.SIGTERM))
    assert supervise(sockets, spawn, stop_timeout=20) == 0
    assert [p.returncode for p in started] in ([0, 0], [0, -15], [-15, 0], [-15, -15])
    assert all(s.fileno() == -1 for s in sockets)  # the supervisor keeps no copy of a socket


def test_a_worker_that_dies_stops_the_others_and_the_supervisor_exits_non_zero() -> None:
    sockets = listening_sockets("127.0.0.1", 0, 2)
    spawn, started = spawner(GRACEFUL, "raise SystemExit(3)")
    assert supervise(sockets, spawn, stop_timeout=20) == 3
    assert started[0].returncode in (0, -15)  # stopped, not left running


def test_a_worker_that_exits_0_on_its_own_is_still_a_failure() -> None:
    sockets = listening_sockets("127.0.0.1", 0, 2)
    spawn, started = spawner(GRACEFUL, "pass")
    assert supervise(sockets, spawn, stop_timeout=20) == 1
    assert started[0].returncode is not None


def test_a_worker_that_ignores_sigterm_is_killed_after_the_timeout_and_counts_as_unclean() -> None:
    sockets = listening_sockets("127.0.0.1", 0, 1)
    holder: list[subprocess.Popen[bytes]] = []

    def wait_then_signal() -> None:
        def run() -> None:
            assert holder[0].stdout is not None
            holder[0].stdout.readline()  # its handler is installed
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=run, daemon=True).start()

    spawn, started = spawner(STUBBORN, after_all=wait_then_signal)
    holder = started
    assert supervise(sockets, spawn, stop_timeout=0.5) == 1
    assert started[0].returncode == -signal.SIGKILL


class RecordingTransport:
    """Stands in for the socket transport: records what reaches it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_writes_of_one_loop_iteration_leave_as_one_send() -> None:
    transport = RecordingTransport()
    coalesced = _CoalescedWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    coalesced.write(b"HTTP/1.1 200 OK\r\ncontent-length: 16\r\n\r\n")
    coalesced.write(b'{"success":true}')
    assert transport.writes == []
    await asyncio.sleep(0)
    assert transport.writes == [b'HTTP/1.1 200 OK\r\ncontent-length: 16\r\n\r\n{"success":true}']
    coalesced.write(b"next")
    await asyncio.sleep(0)
    assert transport.writes[1:] == [b"next"]
    assert coalesced.get_extra_info("peername") == "info:peername"  # the rest is the transport's


async def test_close_sends_what_is_pending_first() -> None:
    transport = RecordingTransport()
    coalesced = _CoalescedWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    coalesced.write(b"last response")
    coalesced.close()
    assert transport.writes == [b"last response"]
    assert transport.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing more to send
    assert transport.writes == [b"last response"]
