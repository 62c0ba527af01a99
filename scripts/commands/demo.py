"""`userops demo`: the local stack, a simulated product's weeks of traffic, and what came of it."""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import typer
from rich.console import Console

from scripts.commands import fail
from scripts.commands.dev import DEV_ADMIN_TOKEN, DEV_WRITE_KEY, stack_up
from scripts.commands.endpoints import EndpointError, Endpoints, load_endpoints
from scripts.commands.simulate import build, default_start, deliver
from scripts.sim.model import Redemption
from scripts.sim.settle import DEFAULT_GROUPS, Behind, wait_caught_up
from scripts.sim.summary import collect, print_summary, summary_console
from scripts.stack.procs import port_in_use, read_pid
from scripts.stack.services import service_env, service_port, service_specs
from scripts.stack.settings import StackSettings
from scripts.stack.supervisor import Supervisor


@dataclass
class Running:
    """Services this command started (None: it found `make run`'s already serving)."""

    supervisor: Supervisor | None
    thread: threading.Thread | None
    stop: threading.Event
    log: IO[bytes] | None


def start_services(settings: StackSettings, console: Console, ready_timeout: float) -> Running:
    """Start Kafka, PostgreSQL and every service the way `make run` does, unless it runs."""
    stop = threading.Event()
    if read_pid(settings.home / "run.pid") is not None:
        console.print("using the services `make run` is serving")
        return Running(None, None, stop, None)
    names = [s.name for s in service_specs(settings, {}) if s.name != "sinks"]
    for name in names:
        if port_in_use(port := service_port(settings, name)):
            fail(
                f"port {port} ({name}) is already in use; stop what uses it or set USEROPS_{name.upper()}_PORT."
            )
    stack_up(settings)
    env = service_env(settings, os.environ, tuple(names))
    env.setdefault("USEROPS_DEV_WRITE_KEY", DEV_WRITE_KEY)
    env.setdefault("USEROPS_ADMIN_TOKEN", DEV_ADMIN_TOKEN)
    settings.home.mkdir(parents=True, exist_ok=True)
    log_path = settings.home / "demo-services.log"
    log = log_path.open("ab")
    supervisor = Supervisor(service_specs(settings, env), sink=log, say=lambda line: console.print(line))
    (settings.home / "run.pid").write_text(f"{os.getpid()}\n")
    supervisor.start()
    console.print(f"starting {', '.join(names)} (logs: {log_path}) ...")
    failure = supervisor.wait_ready(ready_timeout)
    if failure is not None:
        supervisor.stop()
        log.close()
        (settings.home / "run.pid").unlink(missing_ok=True)
        settings.kafka.stop()
        settings.postgres.stop()
        fail(f"{failure.describe()}\n(the services' logs: {log_path}; the stack was stopped)")
    thread = threading.Thread(target=supervisor.run, args=(stop,), name="supervisor", daemon=True)
    thread.start()
    return Running(supervisor, thread, stop, log)


def stop_services(settings: StackSettings, running: Running, keep: bool, console: Console) -> None:
    if running.supervisor is None:
        return
    running.stop.set()
    if running.thread is not None:
        running.thread.join(30)
    running.supervisor.stop()
    (settings.home / "run.pid").unlink(missing_ok=True)
    if running.log is not None:
        running.log.close()
    if keep:
        console.print(
            "services stopped; Kafka and PostgreSQL keep running with the demo's data (`make stop`)"
        )
        return
    settings.kafka.stop()
    settings.postgres.stop()
    console.print("stack stopped (its data stays under .local; `make run` shows it again)")


def redeem(ep: Endpoints, wishes: list[Redemption]) -> int:
    """Each wish spends what the user can afford of it, in hundreds (reserve, then confirm);
    returns the points newly redeemed. A wish is one redemption (its Idempotency-Key): asked
    again, it redeems nothing more."""
    spent = 0
    with httpx.Client(headers=ep.admin_headers(), timeout=max(ep.timeout, 30)) as c:
        for wish in wishes:
            confirm = ep.url("rewards", "v1", "users", wish.user_id, "redemptions", wish.key, "confirm")
            if c.post(confirm).status_code != 404:  # this wish was redeemed (or tried) before
                continue
            got = c.get(ep.url("rewards", "v1", "users", wish.user_id))
            if got.status_code == 404:
                continue
            got.raise_for_status()
            points = min(wish.points, got.json()["balance"]["available"] // 100 * 100)
            if points <= 0:
                continue
            held = c.post(
                ep.url("rewards", "v1", "users", wish.user_id, "redemptions"),
                json={"points": points},
                headers={"Idempotency-Key": wish.key},
            )
            if held.status_code in (409, 422):  # too little now, or this key already redeemed
                continue
            held.raise_for_status()
            done = c.post(confirm)
            if done.status_code == 409:  # confirmed before (or the hold lapsed)
                continue
            done.raise_for_status()
            spent += points
    return spent


def users_known(ep: Endpoints) -> int:
    """How many users the segmenter already knows (`/v1/stages` total)."""
    with httpx.Client(headers=ep.admin_headers(), timeout=max(ep.timeout, 30)) as c:
        got = c.get(ep.url("segmenter", "v1", "stages"))
        got.raise_for_status()
        return int(got.json()["total"])


def demo_cmd(
    seed: int = typer.Option(7, help="random seed of the simulation"),
    users: int = typer.Option(1200, min=1, help="simulated users"),
    weeks: int = typer.Option(16, min=1, max=520, help="simulated weeks, ending now"),
    keep: bool = typer.Option(
        False, "--keep", help="keep serving afterwards (Ctrl-C stops); Kafka and PostgreSQL stay up"
    ),
    settle_timeout: float = typer.Option(300.0, help="seconds to wait for the services to catch up"),
    ready_timeout: float = typer.Option(300.0, help="seconds every service has to answer /ready"),
) -> None:
    """Start the local stack as `make run` does (or use the one it serves), post a simulated
    product's weeks of traffic through ingest, wait until every consumer has caught up, and
    print what happened: stage populations, activation by channel, retention, NPS, points
    awarded and redeemed per rule, messages per campaign with their uplift. Then stop the stack
    (unless --keep, or it was already running).

    Example: userops demo --seed 7 --users 1200 --weeks 16 --keep
    """
    console = summary_console()
    settings = StackSettings()
    try:
        ep = load_endpoints()
    except EndpointError as exc:
        fail(str(exc))
    sim = build(seed, users, weeks, default_start(weeks), Path("config/notifier.yaml"))
    console.print(
        f"[bold]simulated[/bold] {len(sim.users)} users over {weeks} weeks (seed {seed}): "
        f"{len(sim.events)} events, {len(sim.redemptions)} users who want to redeem points"
    )
    running = start_services(settings, console, ready_timeout)
    metrics = [ep.url(s, "metrics") for s in ("segmenter", "rewards", "notifier")]

    def settle(what: str) -> Behind:
        with console.status(f"waiting for the services to catch up ({what}) ...") as status:
            state = asyncio.run(
                wait_caught_up(
                    settings.kafka.bootstrap,
                    DEFAULT_GROUPS,
                    metrics,
                    settle_timeout,
                    on_check=lambda b: status.update(f"waiting for the services to catch up: {b.describe()}"),
                )
            )
        if not state.done:
            console.print(f"[yellow]still behind after {settle_timeout:.0f} s:[/yellow] {state.describe()}")
        return state

    try:
        earlier = users_known(ep)
        deliver(sim, ep.base("ingest"), ep.write_key.get_secret_value(), None, console)
        settle("events")
        redeemed = redeem(ep, sim.redemptions)
        console.print(f"redeemed {redeemed} points for the users who wanted to spend theirs")
        settle("redemptions")
        print_summary(collect(ep, sim), console)
        if earlier:
            console.print(
                f"[yellow]the stack held {earlier} users before this run[/yellow] (earlier demos or `make run`): "
                "'all users', DAU/WAU/MAU, retention, NPS, points and messages above include theirs"
            )
    except httpx.HTTPError as exc:
        fail(f"a service did not answer as expected: {exc}")
        if keep and running.thread is not None:
            console.print("the services keep serving with the demo's data; Ctrl-C stops them")
            while running.thread.is_alive():
                running.thread.join(1.0)
    except KeyboardInterrupt:
        console.print("interrupted")
    finally:
        stop_services(settings, running, keep, console)
