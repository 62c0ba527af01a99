"""What every benchmark shares: the machine header (cores, load, refusal under load) and its results file.

A benchmark calls `machine_header(name)` first and `write_results(name, rows, machine)` last;
`python -m bench` reads the files and prints one table. A results file
(`bench/results/<name>.json`, not versioned) looks like:

    {"bench": "ingest", "started_at": "2026-12-01T03:00:00+00:00",
     "machine": {"cores": 2, "load_at_start": [0.4, 0.6, 0.9], "cpu": "..."},
     "rows": [{"measure": "...", "value": 131000.0, "unit": "events/s", "goal": ">= 124000",
               "goal_met": true, "raw": 260000.0, "ratio": 0.5, "detail": "..."}]}

`raw` is the ceiling in the same unit where one exists (a raw producer for ingest, a bare SQL loop
for the segmenter's writes) and `ratio` is value / raw.
"""

from __future__ import annotations

import json
import math
import operator
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
FORCE_ENV = "BENCH_FORCE"
REFUSED_EXIT = 2
REFUSED_MARK = "bench refused:"  # the runner recognises a refusal by this line
LOAD_SHARE = 0.5  # refuse when the 1-minute load average exceeds this share of the cores

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
ROW_KEYS = ("measure", "value", "unit", "goal", "goal_met", "raw", "ratio", "detail")


class BenchInputError(ValueError):
    """A row or a goal that cannot be recorded as given; the message names what is wrong."""


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo ("" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def too_loaded(load_1m: float, cores: int) -> bool:
    """Whether the machine is already too busy for figures worth recording."""
    return load_1m > LOAD_SHARE * cores


def forced(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> bool:
    """--force on the command line or BENCH_FORCE=1 in the environment."""
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    return "--force" in argv or env.get(FORCE_ENV, "") not in ("", "0")


def machine_header(
    name: str,
    *,
    force: bool | None = None,
    load: tuple[float, float, float] | None = None,
    cores: int | None = None,
) -> dict[str, Any]:
    """Print "<name>: cores N, load a/b/c" and return the machine record for `write_results`.

    When the 1-minute load is over half the cores the benchmark's figures would mostly measure
    the other work: it exits with status 2 unless forced (`force=True`, `--force` on the command
    line, or BENCH_FORCE=1 as `python -m bench --force` sets it), in which case it warns loudly
    and goes on.
    """
    cores = cores or os.cpu_count() or 1
    load = load or os.getloadavg()
    force = bool(force) or forced()
    model = cpu_model()
    print(
        f"{name}: cores {cores}, load {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}"
        + (f"; {model}" if model else ""),
        flush=True,
    )
    if too_loaded(load[0], cores):
        limit = LOAD_SHARE * cores
        if not force:
            print(
                f"{REFUSED_MARK} {name}: 1-minute load {load[0]:.2f} is over {limit:.1f} "
                f"({LOAD_SHARE:.0%} of {cores} cores); the figures would measure the other work. "
                "Wait for a quiet machine, or pass --force (BENCH_FORCE=1) to run anyway.",
                flush=True,
            )
            raise SystemExit(REFUSED_EXIT)
        bar = "!" * 72
        print(
            f"{bar}\n!! WARNING {name}: 1-minute load {load[0]:.2f} is over {limit:.1f} "
            f"({LOAD_SHARE:.0%} of {cores} cores);\n!! running anyway (forced): the figures are "
            f"skewed by the other work.\n{bar}",
            flush=True,
        )
    return {
        "cores": cores,
        "load_at_start": [round(x, 2) for x in load],
        "cpu": model,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


_GOAL = re.compile(r"^\s*(>=|<=|>|<)\s*([-+]?[\d,_]*\.?\d+(?:[eE][-+]?\d+)?)\s*([^\d\s,.].*)?$")


def parse_goal(goal: str) -> tuple[str, float, str]:
    """Split a goal: ">= 124000" -> (">=", 124000.0, ""); "< 60 s" -> ("<", 60.0, "s")."""
    match = _GOAL.match(goal)
    if match is None:
        raise BenchInputError(f"goal {goal!r} is not '<op> <number> [unit]' with op one of >=, <=, >, <")
    op, number, unit = match.groups()
    return op, float(number.replace(",", "").replace("_", "")), (unit or "").strip()


def goal_met(value: float, goal: str | None) -> bool | None:
    """Whether `value` meets `goal` (None when there is no goal)."""
    if goal is None:
        return None
    op, target, _ = parse_goal(goal)
    return _COMPARE[op](value, target)


def row(
    measure: str,
    value: float,
    unit: str,
    *,
    goal: str | None = None,
    raw: float | None = None,
    detail: str = "",
) -> dict[str, Any]:
    """One table row; `goal_met` and `ratio` (value / raw) are computed here."""
    return check_row(
        {
            "measure": measure,
            "value": value,
            "unit": unit,
            "goal": goal,
            "goal_met": goal_met(value, goal),
            "raw": raw,
            "ratio": value / raw if raw else None,
            "detail": detail,
        }
    )


def _number(r: Mapping[str, Any], key: str, where: str, optional: bool) -> float | None:
    value = r.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BenchInputError(f"{where}: {key!r} must be a finite number, got {value!r}")
    return float(value)


def check_row(r: Mapping[str, Any], where: str = "row") -> dict[str, Any]:
    """A complete, valid row from `r` (missing optional fields filled), or BenchInputError."""
    if not isinstance(r, Mapping):
        raise BenchInputError(f"{where}: a row must be a mapping, got {type(r).__name__}")
    for key in ("measure", "unit"):
        if not isinstance(r.get(key), str) or not r[key]:
            raise BenchInputError(f"{where}: {key!r} must be a non-empty string, got {r.get(key)!r}")
    value = _number(r, "value", where, optional=False)
    assert value is not None
    raw = _number(r, "raw", where, optional=True)
    goal = r.get("goal")
    if goal is not None and not isinstance(goal, str):
        raise BenchInputError(f"{where}: 'goal' must be a string such as '>= 5000' or null, got {goal!r}")
    try:
        met = goal_met(value, goal)
    except BenchInputError as exc:
        raise BenchInputError(f"{where}: {exc}") from exc
    ratio = _number(r, "ratio", where, optional=True)
    if ratio is None and raw:
        ratio = value / raw
    unknown = set(r) - set(ROW_KEYS)
    if unknown:
        raise BenchInputError(f"{where}: unknown keys {sorted(unknown)}; a row has {', '.join(ROW_KEYS)}")
    return {
        "measure": r["measure"],
        "value": value,
        "unit": r["unit"],
        "goal": goal,
        "goal_met": met,
        "raw": raw,
        "ratio": ratio,
        "detail": str(r.get("detail") or ""),
    }


def write_results(
    name: str, rows: Sequence[Mapping[str, Any]], machine: Mapping[str, Any], results: Path = RESULTS
) -> Path:
    """Write `bench/results/<name>.json` (see the module docstring) and return its path."""
    if not name or "/" in name or name.startswith("."):
        raise BenchInputError(f"bench name {name!r} is not a plain file name")
    if not rows:
        raise BenchInputError(f"{name}: no rows to record")
    checked = [check_row(r, f"{name} row {i}") for i, r in enumerate(rows)]
    body = {
        "bench": name,
        "started_at": machine.get("started_at") or datetime.now(UTC).isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {k: v for k, v in machine.items() if k != "started_at"},
        "rows": checked,
    }
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    tmp.replace(path)
    print(f"results written to {path}", flush=True)
    return path
