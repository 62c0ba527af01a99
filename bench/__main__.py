"""`make bench` / `python -m bench`: run every benchmark, then print one table of their figures.

Each benchmark (bench/<name>.py) runs as its own subprocess, in order, with its output shown as
it goes; each writes bench/results/<name>.json (see bench/common.py). The table has one row per
figure: measure, value, goal, whether it is met, the raw ceiling where one exists and the ratio to
it, and a detail; a benchmark that failed, refused to start under load or wrote no results shows
as such. Exits non-zero, naming them, when a benchmark failed or refused.

    python -m bench                       # all of them
    python -m bench --only ingest,segmenter
    python -m bench --quick               # smaller workloads (benchmarks that offer --quick)
    python -m bench --force               # run even though the machine is busy (figures skewed)
    python -m bench --table               # only print the table of the last results
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench.common import (  # noqa: E402
    FORCE_ENV,
    REFUSED_EXIT,
    REFUSED_MARK,
    RESULTS,
    BenchInputError,
    check_row,
    machine_header,
    parse_goal,
    too_loaded,
)

BENCHES = ("ingest", "segmenter", "timers", "rewards", "notifier")
FAILING = ("failed", "refused", "bad results")


@dataclass
class Outcome:
    """What one benchmark left: a status and, when it recorded them, its results."""

    name: str
    status: str  # ok | failed | refused | bad results | no results | not present
    note: str = ""
    results: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)


def read_results(name: str, results: Path = RESULTS, since: float | None = None) -> Outcome:
    """The outcome recorded in `<results>/<name>.json` (written after `since`, if given)."""
    path = results / f"{name}.json"
    if not path.exists() or (since is not None and path.stat().st_mtime < since):
        return Outcome(name, "no results")
    try:
        body = json.loads(path.read_text())
        if not isinstance(body, dict) or not isinstance(body.get("rows"), list):
            raise BenchInputError(f"{path.name}: no 'rows' list")
        rows = [check_row(r, f"{path.name} row {i}") for i, r in enumerate(body["rows"])]
    except (ValueError, BenchInputError) as exc:  # json.JSONDecodeError is a ValueError
        return Outcome(name, "bad results", str(exc))
    return Outcome(name, "ok", results=body, rows=rows)


# --------------------------------------------------------------------------- the table


def number(x: float) -> str:
    """A figure with as many digits as it deserves: 131,000 / 12.3 / 0.42."""
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def goal_text(goal: str | None) -> str:
    if goal is None:
        return ""
    op, target, unit = parse_goal(goal)
    shown = f"{int(target):,}" if target.is_integer() else number(target)
    return f"{op} {shown}" + (f" {unit}" if unit else "")


def met_text(met: bool | None) -> Text:
    if met is None:
        return Text("")
    return Text("yes", style="green") if met else Text("no", style="bold red")


STATUS_STYLE = {"failed": "bold red", "refused": "bold yellow", "bad results": "bold red"}


def build_table(outcomes: Sequence[Outcome]) -> Table:
    table = Table(title="userops benchmarks", show_lines=False)
    for column, justify in (
        ("bench", "left"),
        ("measure", "left"),
        ("value", "right"),
        ("goal", "right"),
        ("met", "center"),
        ("raw", "right"),
        ("ratio", "right"),
        ("detail", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for o in outcomes:
        if not o.rows:
            what = f"{o.status}" + (f": {o.note}" if o.note else "")
            table.add_row(o.name, Text(what, style=STATUS_STYLE.get(o.status, "dim")), *[""] * 6)
            continue
        for i, r in enumerate(o.rows):
            table.add_row(
                o.name if i == 0 else "",
                r["measure"],
                f"{number(r['value'])} {r['unit']}",
                goal_text(r["goal"]),
                met_text(r["goal_met"]),
                number(r["raw"]) if r["raw"] is not None else "",
                f"{r['ratio']:.2f}" if r["ratio"] is not None else "",
                r["detail"],
            )
        table.add_section()
    return table


def machine_line(outcomes: Sequence[Outcome]) -> str:
    """The machine and the load at each benchmark's start."""
    machines = [o.results["machine"] for o in outcomes if o.results and "machine" in o.results]
    if not machines:
        return "machine: no benchmark recorded one"
    first = machines[0]
    cpu = f", {first['cpu']}" if first.get("cpu") else ""
    loads = ", ".join(
        f"{o.name} {o.results['machine']['load_at_start'][0]:.2f}"
        for o in outcomes
        if o.results and "load_at_start" in o.results.get("machine", {})
    )
    started = min(str(o.results.get("started_at", "")) for o in outcomes if o.results)
    when = started[:16].replace("T", " ") + " UTC" if started else "?"
    return f"machine: {first.get('cores', '?')} cores{cpu}; 1-minute load at each start: {loads}; from {when}"


def render(outcomes: Sequence[Outcome], console: Console) -> None:
    console.print(build_table(outcomes))
    console.print(machine_line(outcomes))


# --------------------------------------------------------------------------- running


def supports(path: Path, flag: str) -> bool:
    """Whether a benchmark script declares `flag` (so the runner may pass it)."""
    return f'"{flag}"' in path.read_text()


def wait_until_quiet(name: str, settle: float) -> None:
    """Give the previous benchmark's load time to decay (up to `settle` seconds)."""
    cores = os.cpu_count() or 1
    deadline = time.monotonic() + settle
    said = 0.0
    while too_loaded(os.getloadavg()[0], cores) and time.monotonic() < deadline:
        if time.monotonic() - said > 15:
            print(f"-- waiting for the load to settle before {name} (1-minute load {os.getloadavg()[0]:.2f})")
            said = time.monotonic()
        time.sleep(2)


def run_one(name: str, *, quick: bool, force: bool) -> Outcome:
    path = BENCH / f"{name}.py"
    if not path.exists():
        return Outcome(name, "not present", f"no bench/{name}.py")
    command = [sys.executable, str(path)]
    if quick and supports(path, "--quick"):
        command.append("--quick")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", FORCE_ENV: "1" if force else "0"}
    print(f"\n==== {name}: {' '.join([f'bench/{path.name}', *command[2:]])}", flush=True)
    launched = time.time()
    tail: deque[str] = deque(maxlen=8)
    refused = False
    with subprocess.Popen(
        command, cwd=BENCH.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                tail.append(line.rstrip())
                refused = refused or line.startswith(REFUSED_MARK)
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)  # so that it stops its Kafka and PostgreSQL
            proc.wait(60)
            raise
    code = proc.returncode
    if code == REFUSED_EXIT and refused:
        return Outcome(name, "refused", "machine too busy at start (--force to run anyway)")
    if code != 0:
        last = next((line for line in reversed(tail) if line.strip()), "")
        return Outcome(name, "failed", f"exit {code}" + (f"; {last[:160]}" if last else ""))
    return read_results(name, since=launched - 1)


def selected(only: str | None) -> list[str]:
    if not only:
        return list(BENCHES)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise SystemExit(f"--only: unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    return [n for n in BENCHES if n in names]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHES)}")
    p.add_argument("--quick", action="store_true", help="smaller workloads, for a smoke run")
    p.add_argument("--force", action="store_true", help="run even when the machine is already busy")
    p.add_argument(
        "--settle", type=float, default=180.0, help="seconds to wait for the load to drop between benchmarks"
    )
    p.add_argument("--table", action="store_true", help="print the table of the last results, run nothing")
    args = p.parse_args(argv)
    names = selected(args.only)
    console = Console(width=None if sys.stdout.isatty() else 160)
    if args.table:
        render([read_results(n) for n in names], console)
        return 0
    machine_header("bench", force=args.force)
    outcomes: list[Outcome] = []
    try:
        for i, name in enumerate(names):
            if i and not args.force:
                wait_until_quiet(name, args.settle)
            outcomes.append(run_one(name, quick=args.quick, force=args.force))
    except KeyboardInterrupt:  # the benchmark got the Ctrl-C too; show what finished
        outcomes.append(Outcome(names[len(outcomes)], "failed", "interrupted"))
    print()
    render(outcomes, console)
    bad = [f"{o.name} ({o.status}: {o.note})" for o in outcomes if o.status in FAILING]
    if bad:
        console.print(Text("benchmarks without figures: " + "; ".join(bad), style="bold red"))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
