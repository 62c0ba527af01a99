"""Serving ingest: one process per worker, each accepting on its own `SO_REUSEPORT` socket.

With one listening socket shared by every worker, whichever process wakes first accepts a whole
burst of new connections, so 64 connections opened at once could all land on one worker while
the other idled (measured with bench/ingest.py: 3 runs in 4). Here the parent opens one socket
per worker on the same address with `SO_REUSEPORT`; the kernel spreads incoming connections
over the sockets of that group by a hash of the connection's addresses, so no worker can take
another's share. The parent then hands each socket to its worker process (`serve.py <fd>`) and
closes its own copy: a worker that is gone takes its socket out of the group with it, and no
connection is queued where nobody accepts.

The parent supervises: SIGTERM or SIGINT stops every worker gracefully (uvicorn finishes the
requests in flight, the lifespan flushes the producer) and it exits 0 if they all did; a worker
that ends on its own stops the others and the parent exits non-zero, so whatever supervises the
service restarts all of it. With one worker the service runs in the parent process alone.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.logging import get_logger

log = get_logger(__name__)

APP = "services.ingest.main:app_from_env"
BACKLOG = 2048
# How long stopping workers may take (in-flight requests and the producer's flush are bounded
# by the produce timeout) before they are killed.
STOP_TIMEOUT = 30.0
# A worker ending on its own with exit code 0 is still a failure of the service.
WORKER_LOST = 1
# How a worker told to stop ends: uvicorn finishes gracefully, then re-raises the signal it
# caught, so a clean stop is exit code 0 or death by that signal.
_STOPPED_CLEANLY = frozenset({0, -signal.SIGTERM, -signal.SIGINT})


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` sockets listening on `host:port`, all in one `SO_REUSEPORT` group (port 0: the
    first picks a free port and the others join it)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            address = sock.getsockname()  # the port chosen, if 0 was asked for
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _CoalescedWrites:
    """A transport whose writes within one event-loop iteration leave in one send.

    uvicorn writes a response's status line and headers, then its body, each with its own
    `transport.write`: two system calls (and two TCP segments) for every response. Here they
    are joined and written once, at the end of the loop iteration (or at `close`)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:  # asked for every request: spare it the __getattr__ detour
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with each response written in one send."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, _CoalescedWrites(transport, self.loop)))


def uvicorn_config() -> uvicorn.Config:
    return uvicorn.Config(
        APP,
        factory=True,
        loop="uvloop",
        http=HttpProtocol,
        lifespan="on",
        log_config=None,
        access_log=False,  # access logs would print `?writeKey=` query strings
        server_header=False,
        proxy_headers=False,  # nothing uses the client's address; saves a layer per request
        backlog=BACKLOG,
    )


def serve_socket(sock: socket.socket) -> None:
    """Run one worker on `sock` until SIGTERM/SIGINT; exit 3 if the app failed to start."""
    server = uvicorn.Server(uvicorn_config())
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(3)


def spawn_worker(sock: socket.socket) -> subprocess.Popen[bytes]:
    """A worker process serving `sock` (inherited as a file descriptor)."""
    fd = sock.fileno()
    return subprocess.Popen([sys.executable, "-m", "services.ingest.serve", str(fd)], pass_fds=(fd,))


class _Stop(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def supervise(
    sockets: Sequence[socket.socket],
    spawn: Callable[[socket.socket], subprocess.Popen[bytes]] = spawn_worker,
    *,
    stop_timeout: float = STOP_TIMEOUT,
) -> int:
    """Run one worker per socket until a signal (exit code 0 if every worker stopped cleanly)
    or until a worker ends by itself (its exit code, at least 1)."""
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    workers: dict[int, subprocess.Popen[bytes]] = {}
    code = 0
    try:
        try:
            for sock in sockets:
                proc = spawn(sock)
                workers[proc.pid] = proc
                sock.close()
            log.info("ingest_workers_started", pids=sorted(workers))
            exits = {os.pidfd_open(pid): proc for pid, proc in workers.items()}
            try:
                ready, _, _ = select.select(list(exits), [], [])
            finally:
                for fd in exits:
                    os.close(fd)
            lost = exits[ready[0]]
            exit_code = lost.wait()
            del workers[lost.pid]
            log.error("ingest_worker_exited", pid=lost.pid, exit_code=exit_code)
            code = exit_code if exit_code > 0 else WORKER_LOST
        except _Stop as stop:
            log.info("ingest_stopping", signal=signal.Signals(stop.signum).name)
        for s in previous:
            signal.signal(s, signal.SIG_IGN)  # stopping already; a second signal changes nothing
        stopped = _stop_workers(list(workers.values()), stop_timeout)
        return code or (0 if stopped else 1)
    finally:
        for sock in sockets:
            sock.close()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _stop_workers(workers: list[subprocess.Popen[bytes]], timeout: float) -> bool:
    """SIGTERM every worker still running, then wait; kill those that outlast `timeout`.
    True if every worker stopped cleanly."""
    for proc in workers:
        if proc.returncode is None:
            proc.terminate()
    clean = True
    for proc in workers:
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.error("ingest_worker_killed", pid=proc.pid, after_seconds=timeout)
            proc.kill()
            returncode = proc.wait()
        if returncode not in _STOPPED_CLEANLY:
            log.error("ingest_worker_failed", pid=proc.pid, exit_code=returncode)
            clean = False
    return clean


def _worker_main(argv: list[str]) -> None:
    """`python -m services.ingest.serve <fd>`: one worker on an inherited listening socket."""
    if len(argv) != 1 or not argv[0].isdigit():
        raise SystemExit("usage: python -m services.ingest.serve <listening socket fd>")
    serve_socket(socket.socket(fileno=int(argv[0])))


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
