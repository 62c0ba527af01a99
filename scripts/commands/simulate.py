"""`userops simulate`: a seeded product's traffic through the ingest API (or to NDJSON)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from scripts.commands import fail
from scripts.sim.model import SimSpec, Simulation, simulate
from scripts.sim.sender import SdkSender, write_ndjson
from scripts.sim.winback import winback_treatment
from shared.config import ConfigError
from shared.events import format_ts, parse_ts

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_WRITE_KEY = "dev-write-key"


def default_start(weeks: int, now: datetime | None = None) -> datetime:
    """`weeks` before now, to the minute: the simulated weeks end just before the wall clock."""
    now = now or datetime.now(UTC)
    return (now - timedelta(weeks=weeks)).replace(second=0, microsecond=0) - timedelta(minutes=1)


def build(seed: int, users: int, weeks: int, start: datetime, notifier_config: Path) -> Simulation:
    """The simulation of `spec`, with the win-back effect of `notifier_config`'s at-risk campaign."""
    treated = winback_treatment(notifier_config) if notifier_config.is_file() else (lambda _: False)
    return simulate(SimSpec(seed, users, weeks, start), treated)


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def deliver(sim: Simulation, url: str, write_key: str, ndjson: Path | None, console: Console) -> None:
    """Post `sim`'s events through ingest with the Segment SDK (or write them to `ndjson`),
    with a progress bar; exits 1 naming the problem if any event was refused or dropped."""
    with progress_bar(console) as bar:
        if ndjson is not None:
            task = bar.add_task(f"writing {ndjson}", total=len(sim.events))
            write_ndjson(ndjson, sim.events, lambda n: bar.advance(task, n))
            return
        try:
            httpx.get(f"{url.rstrip('/')}/health", timeout=5).raise_for_status()
        except httpx.HTTPError as exc:
            fail(f"ingest does not answer at {url} ({exc}); start it with `make run` or set --url")
        task = bar.add_task(f"posting to {url}", total=len(sim.events))
        report = SdkSender(url, write_key).send(sim.events, lambda n: bar.advance(task, n))
    if report.failed:
        detail = "; ".join(report.errors) or "no detail"
        fail(f"{report.failed} of {report.events} events were not accepted by {url}: {detail}")


def simulate_cmd(
    seed: int = typer.Option(7, help="random seed: the same seed, size and start give the same events"),
    users: int = typer.Option(1000, min=1, help="users acquired over the simulated weeks"),
    weeks: int = typer.Option(16, min=1, max=520, help="simulated weeks (>= 14 to see churned users)"),
    start: str | None = typer.Option(
        None, help="ISO-8601 instant the simulation starts (default: WEEKS ago)"
    ),
    url: str = typer.Option(DEFAULT_URL, envvar="USEROPS_INGEST_URL", help="ingest base URL"),
    write_key: str = typer.Option(DEFAULT_WRITE_KEY, envvar="USEROPS_DEV_WRITE_KEY", help="ingest write key"),
    ndjson: Path | None = typer.Option(
        None, help="write the events to this NDJSON file (.gz ok) instead of posting"
    ),
    notifier_config: Path = typer.Option(
        Path("config/notifier.yaml"), help="whose at-risk campaign's treatment group responds to win-backs"
    ),
) -> None:
    """Simulate a product's users (sign-ups by channel, activation, lessons, orders, check-ins,
    referrals, NPS and feedback, churn and reactivation) and post their events through ingest
    with the Segment SDK, timestamped in simulated time.

    The services take an event's time from its `timestamp`, so weeks of history arrive in
    minutes; the weeks end just before now (events later than now are taken as now). See the
    README's "Demo" section for what the services make of it.

    Example: userops simulate --seed 7 --users 500 --weeks 16 --ndjson events.ndjson.gz
    """
    console = Console(stderr=True)
    try:
        begin = parse_ts(start, "--start") if start else default_start(weeks)
    except ValueError as exc:
        fail(str(exc))
    if begin + timedelta(weeks=weeks) > datetime.now(UTC) + timedelta(minutes=5):
        fail(
            f"--start {format_ts(begin)} + {weeks} weeks lies in the future; the services would take those events as now"
        )
    try:
        sim = build(seed, users, weeks, begin, notifier_config)
    except ConfigError as exc:
        fail(str(exc))
    console.print(
        f"simulated {len(sim.users)} users over {weeks} weeks from {format_ts(begin)}: "
        f"{len(sim.events)} events (seed {seed})"
    )
    deliver(sim, url, write_key, ndjson, console)
    console.print(
        f"[green]done:[/green] {len(sim.events)} events {'written' if ndjson else 'accepted by ingest'}"
    )
