"""`userops dev`: the local stack (a real Kafka and PostgreSQL without Docker) and its services."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Callable

import typer

from scripts.commands import fail
from scripts.stack import StackError
from scripts.stack.procs import port_in_use, read_pid
from scripts.stack.services import (
    SINKS_HTTP_PORT,
    SINKS_SMTP_PORT,
    service_env,
    service_port,
    service_specs,
)
from scripts.stack.settings import StackSettings
from scripts.stack.supervisor import Supervisor
from scripts.stack.topics import ensure_topics

dev = typer.Typer(help="The local stack: a real Kafka and PostgreSQL without Docker.", no_args_is_help=True)

DEV_WRITE_KEY = "dev-write-key"
DEV_ADMIN_TOKEN = "dev-admin-token"


def stack_up(settings: StackSettings) -> None:
    kafka, pg = settings.kafka, settings.postgres
    try:
        typer.echo(f"kafka      starting on {kafka.bootstrap} ...")
        kafka.start()
        created = asyncio.run(ensure_topics(kafka.bootstrap, settings.topic_partitions))
        typer.echo(f"kafka      ready; topics created: {', '.join(created) or 'none (all exist)'}")
        pg.start()
        pg.ensure_databases()
        typer.echo(f"postgres   ready on 127.0.0.1:{pg.port} (databases segmenter, rewards, notifier)")
    except StackError as exc:
        fail(str(exc))


@dev.command("up")
def dev_up() -> None:
    """Start Kafka and PostgreSQL (idempotent) and create topics and databases.

    Example: userops dev up
    """
    stack_up(StackSettings())


@dev.command("down")
def dev_down() -> None:
    """Stop Kafka and PostgreSQL (idempotent); data is kept under the stack home.

    Example: userops dev down
    """
    settings = StackSettings()
    settings.kafka.stop()
    settings.postgres.stop()
    typer.echo("stack stopped")


@dev.command("status")
def dev_status() -> None:
    """Say what runs.

    Example: userops dev status
    """
    settings = StackSettings()
    k, p = settings.kafka, settings.postgres
    typer.echo(f"kafka      {'running' if k.is_running() else 'stopped'}  {k.bootstrap}")
    typer.echo(f"postgres   {'running' if p.is_running() else 'stopped'}  127.0.0.1:{p.port}")
    run_pid = read_pid(settings.home / "run.pid")
    typer.echo(f"services   {f'running (pid {run_pid})' if run_pid else 'stopped'}")


@dev.command("run")
def dev_run(
    ready_timeout: float = typer.Option(120.0, help="seconds every service has to answer /ready"),
) -> None:
    """Start the stack and every service in the foreground and keep them running.

    A service that dies is restarted with exponential backoff while the others keep serving;
    a service that exits before it is ready is reported (exit code, last log lines) and the
    command exits 1. Ctrl-C stops the services; the stack keeps running (`make stop`).

    Example: userops dev run
    """
    settings = StackSettings()
    run_pid_file = settings.home / "run.pid"
    other = read_pid(run_pid_file)
    if other is not None:
        fail(f"userops is already running (pid {other}); stop it with Ctrl-C there or `make stop`.")
    services = [s.name for s in service_specs(settings, {}) if s.name != "sinks"]
    for name in services:
        port = service_port(settings, name)
        if port_in_use(port):
            fail(f"port {port} ({name}) is already in use; set USEROPS_{name.upper()}_PORT to another port.")
    if "notifier" in services:
        for port in (SINKS_HTTP_PORT, SINKS_SMTP_PORT):
            if port_in_use(port):
                fail(f"port {port} (the local webhook/SMTP sinks) is already in use.")
    stack_up(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    run_pid_file.write_text(f"{os.getpid()}\n")
    env = service_env(settings, os.environ, tuple(services))
    # Local-only defaults so a fresh clone runs; set real secrets in the environment.
    env.setdefault("USEROPS_DEV_WRITE_KEY", DEV_WRITE_KEY)
    env.setdefault("USEROPS_ADMIN_TOKEN", DEV_ADMIN_TOKEN)
    supervisor = Supervisor(service_specs(settings, env))
    try:
        code = serve(
            supervisor,
            ready_timeout=ready_timeout,
            on_ready=lambda name: typer.echo(
                f"{name:<10} ready on http://127.0.0.1:"
                f"{SINKS_HTTP_PORT if name == 'sinks' else service_port(settings, name)}",
                err=True,
            ),
            banner=lambda: _print_banner(settings, env),
        )
    finally:
        run_pid_file.unlink(missing_ok=True)
    typer.echo("services stopped; the stack keeps running (`make stop` stops it)", err=True)
    if code:
        raise typer.Exit(code)


def serve(
    supervisor: Supervisor,
    *,
    ready_timeout: float,
    on_ready: Callable[[str], None],
    banner: Callable[[], None],
) -> int:
    """Start the services, print the banner once all are ready, supervise until SIGINT/SIGTERM.

    Returns the exit code: 0 after a requested stop, 1 if a service exited (or was not ready)
    before every service was ready (reported with its exit code and last lines, no banner),
    130 if interrupted while starting. The services are stopped in every case.
    """
    supervising = threading.Event()
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        if not supervising.is_set():  # still starting: unwind now; `finally` stops the services
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        supervisor.start()
        failure = supervisor.wait_ready(ready_timeout, on_ready=on_ready)
        if failure is not None:
            typer.secho(f"error: {failure.describe()}", fg=typer.colors.RED, err=True)
            return 1
        banner()
        supervising.set()
        supervisor.run(stop)
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        supervising.set()  # a second Ctrl-C must not interrupt the orderly stop
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_banner(settings: StackSettings, env: dict[str, str]) -> None:
    key, token = env["USEROPS_DEV_WRITE_KEY"], env["USEROPS_ADMIN_TOKEN"]
    out = sys.stderr  # stdout carries the services' JSON log lines
    ingest = f"http://127.0.0.1:{settings.ingest_port}"
    auth = f"-H 'Authorization: Bearer {token}'"

    def section(title: str, body: str) -> None:
        typer.secho(title, bold=True, file=out)
        typer.echo(body, file=out)

    def track(body: str) -> str:
        return (
            f"  curl -s -u {key}: {ingest}/v1/track -H 'Content-Type: application/json' \\\n    -d '{body}'\n"
        )

    section(
        f"\nuserops ingest on {ingest}  (docs: /docs)",
        "send an event:\n"
        + track('{"userId": "u1", "event": "Order Completed", "properties": {"revenue": 42}}'),
    )
    section(
        f"segmenter admin API on http://127.0.0.1:{settings.segmenter_port}  (docs: /docs)",
        "the user's stage and segments:\n"
        f"  curl -s {auth} http://127.0.0.1:{settings.segmenter_port}/v1/users/u1\n",
    )
    names = {s.name for s in service_specs(settings, {})}
    if "rewards" in names:
        section(
            f"rewards admin API on http://127.0.0.1:{settings.rewards_port}  (docs: /docs)",
            "the user's points, tier and statement (the order above earned points):\n"
            f"  curl -s {auth} http://127.0.0.1:{settings.rewards_port}/v1/users/u1\n"
            f"  curl -s {auth} http://127.0.0.1:{settings.rewards_port}/v1/users/u1/statement\n",
        )
    if "notifier" in names:
        section(
            f"notifier admin API on http://127.0.0.1:{settings.notifier_port}  (docs: /docs)",
            "a detractor's NPS answer triggers the support follow-up webhook:\n"
            + track('{"userId": "u1", "event": "NPS Submitted", "properties": {"score": 3}}')
            + f"  curl -s http://127.0.0.1:{SINKS_HTTP_PORT}/received   "
            "# LOCAL DEVELOPMENT webhook sink (mail: /mail)\n"
            f"  curl -s {auth} http://127.0.0.1:{settings.notifier_port}/v1/campaigns/detractor_followup/report\n",
        )
