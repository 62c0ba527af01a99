"""What the services made of a simulation, read from their admin APIs and printed with rich."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass
from typing import IO, Any, Final

import httpx
from rich.console import Console
from rich.table import Table

from scripts.commands.endpoints import Endpoints
from scripts.sim.model import Simulation

# Columns of the summary when stdout is not a terminal (`make demo > file`): rich would use 80
# and wrap campaign names and cohort dates across lines.
FILE_WIDTH: Final = 160


def summary_console(file: IO[str] | None = None) -> Console:
    """The console the summary prints to: the terminal's width, or at least FILE_WIDTH columns
    when the output is a file or a pipe."""
    console = Console(file=file)
    if console.is_terminal:
        return console
    return Console(file=file, width=max(FILE_WIDTH, shutil.get_terminal_size().columns))


@dataclass(slots=True)
class Summary:
    """The numbers `print_summary` shows (also what tests assert on)."""

    stages: dict[str, int]
    """Users per stage, all of the stack's users (`/v1/stages`)."""
    run_stages: dict[str, int]
    """Users per stage, this simulation's users only (`/v1/users`)."""
    activated: dict[str, tuple[int, int]]
    """Channel → (activated, simulated users the segmenter knows)."""
    active: dict[str, Any]
    retention: list[dict[str, Any]]
    nps: list[dict[str, Any]]
    economy: dict[str, Any]
    campaigns: dict[str, dict[str, Any]]
    """Campaign → its report (`/v1/campaigns/{name}/report`)."""


def collect(ep: Endpoints, sim: Simulation) -> Summary:
    with httpx.Client(headers=ep.admin_headers(), timeout=max(ep.timeout, 30)) as c:

        def get(url: str, **params: Any) -> Any:
            r = c.get(url, params=params)
            r.raise_for_status()
            return r.json()

        stages = get(ep.url("segmenter", "v1", "stages"))["stages"]
        flags: dict[str, bool] = {}
        stage_of: dict[str, str] = {}
        after: str | None = ""
        while after is not None:
            page = get(ep.url("segmenter", "v1", "users"), after=after, limit=1000)
            flags.update({u["userId"]: bool(u["activated"]) for u in page["users"]})
            stage_of.update({u["userId"]: u["stage"] for u in page["users"]})
            after = page["next"]
        activated: Counter[str] = Counter()
        known: Counter[str] = Counter()
        for user in sim.users:
            if user.user_id in flags:
                known[user.channel] += 1
                activated[user.channel] += flags[user.user_id]
        active = get(ep.url("segmenter", "v1", "analytics", "active"))
        retention = get(ep.url("segmenter", "v1", "analytics", "retention"), interval="week", periods=8)[
            "cohorts"
        ]
        nps = get(ep.url("segmenter", "v1", "analytics", "nps"), weeks=8)["weeks"]
        economy = get(ep.url("rewards", "v1", "economy"))
        names = [x["name"] for x in get(ep.url("notifier", "v1", "campaigns"))]
        campaigns = {n: get(ep.url("notifier", "v1", "campaigns", n, "report")) for n in names}
    return Summary(
        stages,
        {st: sum(1 for u in sim.users if stage_of.get(u.user_id) == st) for st in stages},
        {ch: (activated[ch], known[ch]) for ch in sorted(known)},
        active,
        retention,
        nps,
        economy,
        campaigns,
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def print_summary(s: Summary, console: Console) -> None:
    total = sum(s.stages.values())
    mine = sum(s.run_stages.values())
    stages = Table(title="Lifecycle stages (segmenter /v1/users and /v1/stages)")
    for col in ("stage", "simulated users", "share", "all users"):
        stages.add_column(col, justify="left" if col == "stage" else "right")
    for stage, n in s.stages.items():
        ran = s.run_stages.get(stage, 0)
        stages.add_row(stage, str(ran), _pct(ran / mine if mine else None), str(n))
    stages.add_row("total", str(mine), "", str(total))
    console.print(stages)

    act = Table(title="Activation by acquisition channel (segmenter /v1/users)")
    for col in ("channel", "users", "activated", "rate"):
        act.add_column(col, justify="left" if col == "channel" else "right")
    for ch, (yes, n) in s.activated.items():
        act.add_row(ch, str(n), str(yes), _pct(yes / n if n else None))
    console.print(act)
    console.print(
        f"DAU {s.active['dau']}  WAU {s.active['wau']}  MAU {s.active['mau']}  "
        f"stickiness (DAU/MAU) {_pct(s.active['stickiness'])}"
    )

    ret = Table(title="Weekly retention by first-active week (segmenter /v1/analytics/retention)")
    ret.add_column("cohort")
    ret.add_column("users", justify="right")
    width = max((len(c["rates"]) for c in s.retention), default=0)
    for k in range(width):
        ret.add_column(f"w{k}", justify="right")
    for c in s.retention:
        ret.add_row(str(c["start"]), str(c["size"]), *[_pct(r) for r in c["rates"]])
    console.print(ret)
    answered = [w for w in s.nps if w.get("responses")]
    if answered:
        console.print(
            "NPS by week: " + "  ".join(f"{w['start']}: {w['nps']} ({w['responses']})" for w in answered)
        )

    eco = s.economy
    pts = Table(
        title=f"Points (rewards /v1/economy): awarded {eco['awarded']}, redeemed {eco['redeemed']}, expired {eco['expired']}"
    )
    for col in ("rule", "awarded", "reversed", "expired"):
        pts.add_column(col, justify="left" if col == "rule" else "right")
    for rule, t in eco["by_rule"].items():
        pts.add_row(rule, str(t["awarded"]), str(t["reversed"]), str(t["expired"]))
    console.print(pts)

    msgs = Table(title="Messages by campaign (notifier /v1/campaigns/{name}/report)")
    for col in (
        "campaign",
        "sent",
        "deferred",
        "capped",
        "suppressed",
        "cancelled",
        "failed",
        "goal T/H",
        "uplift",
    ):
        msgs.add_column(col, justify="left" if col == "campaign" else "right")
    for name, rep in s.campaigns.items():
        totals = rep["totals"]
        up = rep.get("uplift")
        goal = uplift = "-"
        if up and up.get("difference") is not None:
            goal = f"{_pct(up['treatment_rate'])}/{_pct(up['holdout_rate'])}"
            uplift = f"{100 * up['difference']:+.1f} pts" + ("*" if up.get("significant") else "")
        cells = [
            str(totals.get(k, 0)) for k in ("sent", "deferred", "capped", "suppressed", "cancelled", "failed")
        ]
        msgs.add_row(name, *cells, goal, uplift)
    console.print(msgs)
    console.print(
        "goal T/H: the campaign's goal rate in treatment / holdout; * = the 95 % interval excludes 0"
    )
