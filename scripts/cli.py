"""`userops`: the operator's command line (local stack, database migrations, replays)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import typer

from scripts.stack import StackError
from scripts.stack.procs import port_in_use, read_pid
from scripts.stack.settings import StackSettings
from scripts.stack.topics import ensure_topics

app = typer.Typer(help="userops command line.", no_args_is_help=True, add_completion=False)
dev = typer.Typer(help="The local stack: a real Kafka and PostgreSQL without Docker.", no_args_is_help=True)
app.add_typer(dev, name="dev")
db = typer.Typer(help="Service databases.", no_args_is_help=True)
app.add_typer(db, name="db")

DEV_WRITE_KEY = "dev-write-key"
DEV_ADMIN_TOKEN = "dev-admin-token"

# Services that own a database, with their migration histories.
MIGRATED_SERVICES = ("segmenter",)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


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
        _fail(str(exc))


@dev.command("up")
def dev_up() -> None:
    """Start Kafka and PostgreSQL (idempotent) and create topics and databases."""
    stack_up(StackSettings())


@dev.command("down")
def dev_down() -> None:
    """Stop Kafka and PostgreSQL (idempotent); data is kept under the stack home."""
    settings = StackSettings()
    settings.kafka.stop()
    settings.postgres.stop()
    typer.echo("stack stopped")


@dev.command("status")
def dev_status() -> None:
    """Say what runs."""
    settings = StackSettings()
    k, p = settings.kafka, settings.postgres
    typer.echo(f"kafka      {'running' if k.is_running() else 'stopped'}  {k.bootstrap}")
    typer.echo(f"postgres   {'running' if p.is_running() else 'stopped'}  127.0.0.1:{p.port}")
    run_pid = read_pid(settings.home / "run.pid")
    typer.echo(f"services   {f'running (pid {run_pid})' if run_pid else 'stopped'}")


@db.command("upgrade")
def db_upgrade(
    service: str = typer.Argument(..., help=f"one of: {', '.join(MIGRATED_SERVICES)}"),
    url: str | None = typer.Option(None, help="database URL (default: from USEROPS_* settings)"),
) -> None:
    """Run a service's migrations to the newest revision (services also do this at start)."""
    from shared.config import BaseServiceSettings
    from shared.runtime import migrations
    from shared.runtime.db import create_engine

    if service not in MIGRATED_SERVICES:
        _fail(f"unknown service '{service}'; choose one of {', '.join(MIGRATED_SERVICES)}")
    target = url or BaseServiceSettings().database_url(service)
    location = Path(__file__).resolve().parents[1] / "services" / service / "migrations"

    async def run() -> None:
        engine = create_engine(target, pool_size=1)
        try:
            await migrations.upgrade(engine, location)
        finally:
            await engine.dispose()

    asyncio.run(run())
    typer.echo(f"{service}: migrated to head")


@app.command("replay")
def replay_cmd(
    events: Path = typer.Argument(..., exists=True, dir_okay=False, help="NDJSON file of events (.gz ok)"),
    config: Path = typer.Option(Path("config/segmenter.yaml"), help="the segmenter config to try"),
    until: str | None = typer.Option(None, help="fire timers up to this ISO-8601 instant (default: now)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """Run the segmenter's rules over recorded events with a simulated clock.

    Prints stage populations, transitions and segment sizes, so a new config can be tried on
    history before it is rolled out. The live service runs the very same functions.
    """
    import orjson

    from services.segmenter.config import SegmenterConfig
    from services.segmenter.domain.replay import read_ndjson, replay
    from shared.config import ConfigError, load_yaml
    from shared.events import format_ts, parse_ts

    try:
        cfg = load_yaml(config, SegmenterConfig)
    except ConfigError as exc:
        _fail(str(exc))
    end = parse_ts(until, "--until") if until else datetime.now(UTC)
    try:
        result = replay(read_ndjson(events), cfg, end)
    except ValueError as exc:
        _fail(str(exc))
    stages = dict(sorted(result.stages.items()))
    transitions = sorted(result.transitions.items(), key=lambda kv: (-kv[1], str(kv[0])))
    segments = dict(sorted(result.segments.items()))
    if as_json:
        typer.echo(
            orjson.dumps(
                {
                    "until": format_ts(end),
                    "events": result.events_applied,
                    "timers": result.timers_fired,
                    "users": len(result.states),
                    "stages": stages,
                    "segments": segments,
                    "transitions": [{"from": f, "to": t, "count": n} for (f, t), n in transitions],
                },
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
        return
    typer.echo(
        f"replayed {result.events_applied} events for {len(result.states)} users up to {format_ts(end)}"
        f" ({result.timers_fired} timers fired)\n"
    )
    typer.echo("stage            users")
    for stage, n in stages.items():
        typer.echo(f"{stage:<16} {n:>5}")
    typer.echo("\ntransition                      count")
    for (f, t), n in transitions:
        typer.echo(f"{(f or '-') + ' -> ' + t:<31} {n:>5}")
    if segments:
        typer.echo("\nsegment                  members")
        for name, n in segments.items():
            typer.echo(f"{name:<24} {n:>7}")


def _service_commands(settings: StackSettings) -> dict[str, list[str]]:
    py = sys.executable
    return {
        "ingest": [py, "-m", "services.ingest"],
        "segmenter": [py, "-m", "services.segmenter"],
    }


def _service_ports(settings: StackSettings) -> dict[str, int]:
    return {"ingest": settings.ingest_port, "segmenter": settings.segmenter_port}


def _wait_ready(
    procs: dict[str, subprocess.Popen[bytes]], ports: dict[str, int], timeout: float = 90
) -> bool:
    """Poll every service's /ready; False if one exits or the deadline passes."""
    import httpx

    deadline = time.monotonic() + timeout
    pending = dict(ports)
    while pending and time.monotonic() < deadline:
        for name, port in list(pending.items()):
            if procs[name].poll() is not None:
                return False
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    typer.echo(f"{name:<10} ready on http://127.0.0.1:{port}")
                    del pending[name]
            except httpx.TransportError:
                pass
        time.sleep(0.3)
    return not pending


@dev.command("run")
def dev_run() -> None:
    """Start the stack and every service in the foreground; Ctrl-C stops the services."""
    settings = StackSettings()
    run_pid_file = settings.home / "run.pid"
    other = read_pid(run_pid_file)
    if other is not None:
        _fail(f"userops is already running (pid {other}); stop it with Ctrl-C there or `make stop`.")
    for name, port in _service_ports(settings).items():
        if port_in_use(port):
            _fail(f"port {port} ({name}) is already in use; set USEROPS_{name.upper()}_PORT to another port.")
    stack_up(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    run_pid_file.write_text(f"{os.getpid()}\n")
    env = {
        **os.environ,
        "USEROPS_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "USEROPS_PG_HOST": "127.0.0.1",
        "USEROPS_PG_PORT": str(settings.pg_port),
        "USEROPS_INGEST_PORT": str(settings.ingest_port),
        "USEROPS_SEGMENTER_PORT": str(settings.segmenter_port),
        # Local-only defaults so a fresh clone runs; set real secrets in the environment.
        "USEROPS_DEV_WRITE_KEY": os.environ.get("USEROPS_DEV_WRITE_KEY", DEV_WRITE_KEY),
        "USEROPS_ADMIN_TOKEN": os.environ.get("USEROPS_ADMIN_TOKEN", DEV_ADMIN_TOKEN),
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, cmd in _service_commands(settings).items():
            procs[name] = subprocess.Popen(cmd, env=env)
        if _wait_ready(procs, _service_ports(settings)):
            _print_banner(settings, env)
        else:
            typer.secho(
                "a service did not become ready; see its log lines above", fg=typer.colors.RED, err=True
            )
        stop = False

        def _on_signal(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        while not stop:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    typer.secho(f"{name} exited with {proc.returncode}", fg=typer.colors.RED, err=True)
                    stop = True
            time.sleep(0.5)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        run_pid_file.unlink(missing_ok=True)
        typer.echo("services stopped; the stack keeps running (`make stop` stops it)")


def _print_banner(settings: StackSettings, env: dict[str, str]) -> None:
    key, token = env["USEROPS_DEV_WRITE_KEY"], env["USEROPS_ADMIN_TOKEN"]
    typer.secho(f"\nuserops ingest on http://127.0.0.1:{settings.ingest_port}  (docs: /docs)", bold=True)
    typer.echo(
        "send an event:\n"
        f"  curl -s -u {key}: http://127.0.0.1:{settings.ingest_port}/v1/track \\\n"
        "    -H 'Content-Type: application/json' \\\n"
        '    -d \'{"userId": "u1", "event": "Order Completed", "properties": {"revenue": 42}}\'\n'
    )
    typer.secho(
        f"segmenter admin API on http://127.0.0.1:{settings.segmenter_port}  (docs: /docs)", bold=True
    )
    typer.echo(
        "see the user's stage and segments:\n"
        f"  curl -s -H 'Authorization: Bearer {token}' http://127.0.0.1:{settings.segmenter_port}/v1/users/u1\n"
    )


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
