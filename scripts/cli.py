"""`userops`: the operator's command line (local stack, database migrations, replays)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import typer

from scripts.commands import demo, fail, simulate
from scripts.commands.config_check import config_check_cmd
from scripts.commands.deadletter import deadletter
from scripts.commands.dev import dev
from scripts.commands.jobs import jobs_app, timers_app
from scripts.commands.report import report_cmd
from scripts.commands.rewards import rewards_app
from scripts.commands.send import send_cmd
from scripts.commands.user import user_app

REPO_ROOT = Path(__file__).resolve().parents[1]

app = typer.Typer(help="userops command line.", no_args_is_help=True, add_completion=False)
app.add_typer(dev, name="dev")
app.add_typer(deadletter, name="deadletter")
db = typer.Typer(help="Service databases.", no_args_is_help=True)
app.add_typer(db, name="db")
app.add_typer(jobs_app, name="jobs")
app.add_typer(timers_app, name="timers")
app.add_typer(rewards_app, name="rewards")
app.add_typer(user_app, name="user")
app.command("send")(send_cmd)
config_app = typer.Typer(help="Service configuration files and settings.", no_args_is_help=True)
config_app.command("check")(config_check_cmd)
app.add_typer(config_app, name="config")
app.command("report")(report_cmd)
app.command("simulate")(simulate.simulate_cmd)
app.command("demo")(demo.demo_cmd)


def migrated_services() -> tuple[str, ...]:
    """Services that own a database: those with a `services/<name>/migrations` folder."""
    root = REPO_ROOT / "services"
    return tuple(sorted(p.parent.name for p in root.glob("*/migrations") if p.is_dir()))


@db.command("upgrade")
def db_upgrade(
    service: str = typer.Argument(..., help="a service with migrations, e.g. segmenter"),
    url: str | None = typer.Option(None, help="database URL (default: from USEROPS_* settings)"),
) -> None:
    """Run a service's migrations to the newest revision (services also do this at start).

    Example: userops db upgrade segmenter --url postgresql+asyncpg://postgres@127.0.0.1:5432/segmenter
    """
    from sqlalchemy.exc import SQLAlchemyError

    from shared.config import BaseServiceSettings
    from shared.runtime import migrations
    from shared.runtime.db import create_engine

    known = migrated_services()
    if service not in known:
        fail(f"unknown service '{service}'; choose one of {', '.join(known)}")
    target = url or BaseServiceSettings().database_url(service)
    location = REPO_ROOT / "services" / service / "migrations"

    async def run() -> None:
        engine = create_engine(target, pool_size=1, statement_timeout=None)  # migrations take their time
        try:
            await migrations.upgrade(engine, location)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except (OSError, SQLAlchemyError) as exc:
        fail(f"{service}: migration failed: {exc}")
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

    Example: userops replay events.ndjson.gz --config config/segmenter.yaml --until 2026-01-01T00:00:00Z
    """
    import orjson

    from services.segmenter.config import SegmenterConfig
    from services.segmenter.domain.replay import read_ndjson, replay
    from shared.config import ConfigError, load_yaml
    from shared.events import format_ts, parse_ts

    try:
        cfg = load_yaml(config, SegmenterConfig)
    except ConfigError as exc:
        fail(str(exc))
    end = parse_ts(until, "--until") if until else datetime.now(UTC)
    try:
        result = replay(read_ndjson(events), cfg, end)
    except ValueError as exc:
        fail(str(exc))
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


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
