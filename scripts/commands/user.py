"""`userops user show ID`: one user as every service sees them, in one panel.

The segmenter (`GET /v1/users/{id}`: stage, history, segments, traits), rewards (`GET
/v1/users/{id}` and its statement: points, tier, badges, streak) and the notifier (`GET
/v1/users/{id}/messages`) are asked at once with the admin token. A service that is down, refuses
the token or does not know the user is shown as such in its section; the command fails only when
no service knows the user. The id is percent-encoded as one path segment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Literal

import httpx
import orjson
import typer
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from scripts.commands import fail
from scripts.commands.endpoints import EndpointError, Endpoints, Service, load_endpoints

user_app = typer.Typer(help="One user across the services.", no_args_is_help=True)

Status = Literal["ok", "not_found", "down", "error"]
PARTS: Final[tuple[tuple[str, Service, tuple[str, ...]], ...]] = (
    ("profile", "segmenter", ()),
    ("rewards", "rewards", ()),
    ("statement", "rewards", ("statement",)),
    ("messages", "notifier", ("messages",)),
)


@dataclass(frozen=True, slots=True)
class Answer:
    """One service's answer about the user: its data, or why there is none."""

    service: Service
    status: Status
    data: Any = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        if self.status == "ok":
            return {"status": "ok", "data": self.data}
        return {"status": self.status, "service": self.service, "detail": self.detail}


def fetch(
    client: httpx.Client, endpoints: Endpoints, service: Service, path: Sequence[str], limit: int
) -> Answer:
    """GET one admin resource; every failure becomes an Answer, never an exception."""
    url = endpoints.url(service, *path)
    try:
        response = client.get(url, headers=endpoints.admin_headers(), params={"limit": limit})
    except httpx.TransportError as exc:
        return Answer(service, "down", detail=f"cannot reach {endpoints.base(service)}: {type(exc).__name__}")
    if response.status_code == 200:
        try:
            return Answer(service, "ok", response.json())
        except ValueError:
            return Answer(service, "error", detail="200 with a body that is not JSON")
    try:
        body = response.json()
        message = str(body.get("message", response.text)) if isinstance(body, dict) else response.text
    except ValueError:
        message = response.text.strip()[:200]
    if response.status_code == 404:
        return Answer(service, "not_found", detail=message)
    if response.status_code == 401:
        message = f"{message} (set USEROPS_ADMIN_TOKEN)"
    status: Status = "down" if response.status_code in (502, 503, 504) else "error"
    return Answer(service, status, detail=f"{response.status_code}: {message}")


def gather(client: httpx.Client, endpoints: Endpoints, user_id: str, limit: int) -> dict[str, Answer]:
    """Every part of the user's view, asked in parallel."""
    with ThreadPoolExecutor(max_workers=len(PARTS)) as pool:
        futures = {
            name: pool.submit(fetch, client, endpoints, service, ("v1", "users", user_id, *tail), limit)
            for name, service, tail in PARTS
        }
        return {name: future.result() for name, future in futures.items()}


def known(answers: Mapping[str, Answer]) -> bool:
    """True if at least one service knows the user."""
    return any(a.status == "ok" for a in answers.values())


def as_json(user_id: str, answers: Mapping[str, Answer]) -> dict[str, Any]:
    return {"userId": user_id, "known": known(answers), **{k: a.as_dict() for k, a in answers.items()}}


def _at(value: Any) -> str:
    text = str(value or "-")
    return text[:19].replace("T", " ") if len(text) >= 19 else text


def _grid(rows: Sequence[tuple[str, RenderableType]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in rows:
        grid.add_row(key, value)
    return grid


def _unavailable(answer: Answer) -> Text:
    words = {"not_found": "does not know this user", "down": "unavailable", "error": "error"}[answer.status]
    style = "yellow" if answer.status == "not_found" else "red"
    return Text(f"{answer.service}: {words}" + (f" ({answer.detail})" if answer.detail else ""), style=style)


def _lifecycle(answer: Answer, limit: int) -> list[RenderableType]:
    if answer.status != "ok":
        return [_unavailable(answer)]
    p = answer.data
    traits = (p.get("profile") or {}).get("traits") or {}
    segments = (
        ", ".join(f"{s['segment']} (since {_at(s.get('since'))})" for s in p.get("segments", [])) or "-"
    )
    out: list[RenderableType] = [
        _grid(
            [
                ("stage", Text(str(p.get("stage")), style="bold cyan")),
                ("activated", str(p.get("activated"))),
                ("first seen", _at(p.get("firstSeen"))),
                ("last activity", _at(p.get("lastActivityAt"))),
                ("segments", Text(segments)),
                ("traits", Text(", ".join(f"{k}={v}" for k, v in sorted(traits.items())) or "-")),
            ]
        )
    ]
    history = p.get("history", [])
    if history:
        table = Table(title="stage history", title_justify="left", show_edge=False)
        for column in ("at", "from", "to", "reason"):
            table.add_column(column)
        for h in history[-limit:]:
            table.add_row(
                _at(h.get("at")), str(h.get("from") or "-"), str(h.get("to")), escape(str(h.get("reason")))
            )
        out.append(table)
    return out


def _rewards(answer: Answer, statement: Answer) -> list[RenderableType]:
    if answer.status != "ok":
        return [_unavailable(answer)]
    r = answer.data
    b, tier, streak = r.get("balance", {}), r.get("tier", {}), r.get("streak", {})
    badges = ", ".join(f"{k} x{n}" for k, n in sorted((r.get("badges") or {}).items())) or "-"
    expiring = (
        ", ".join(f"{e['points']} on {_at(e['expiresAt'])[:10]}" for e in r.get("expiring", [])[:3]) or "-"
    )
    out: list[RenderableType] = [
        _grid(
            [
                (
                    "points",
                    Text(
                        f"{b.get('available', 0)} available, {b.get('pending', 0)} pending, "
                        f"{b.get('held', 0)} held, {b.get('owed', 0)} owed"
                    ),
                ),
                (
                    "tier",
                    Text(
                        f"{tier.get('name') or '-'} ({tier.get('earnedInWindow', 0)} earned in the window, "
                        f"period ends {_at(tier.get('periodEnd'))})"
                    ),
                ),
                ("badges", Text(badges)),
                ("streak", Text(f"{streak.get('days', 0)} days (longest {streak.get('longest', 0)})")),
                ("expiring", Text(expiring)),
            ]
        )
    ]
    if statement.status == "ok" and statement.data.get("lines"):
        table = Table(title="recent points", title_justify="left", show_edge=False)
        for column in ("at", "change", "description"):
            table.add_column(column)
        for line in statement.data["lines"]:
            table.add_row(
                _at(line.get("at")), f"{line.get('available', 0):+d}", escape(str(line.get("description")))
            )
        out.append(table)
    elif statement.status != "ok":
        out.append(_unavailable(statement))
    return out


def _messages(answer: Answer) -> list[RenderableType]:
    if answer.status != "ok":
        return [_unavailable(answer)]
    if not answer.data:
        return [Text("no messages")]
    table = Table(show_edge=False)
    for column in ("at", "campaign", "channel", "state", "reason"):
        table.add_column(column)
    for m in answer.data:
        table.add_row(
            _at(m.get("sent_at") or m.get("created_at")),
            escape(str(m.get("campaign"))),
            str(m.get("channel")),
            str(m.get("state")),
            escape(str(m.get("reason") or "")),
        )
    return [table]


def render(user_id: str, answers: Mapping[str, Answer], limit: int = 10) -> Panel:
    """The user's panel: lifecycle (segmenter), rewards, recent messages (notifier)."""

    def heading(text: str) -> Text:
        return Text(f"\n{text}", style="bold underline")

    body = Group(
        heading("lifecycle (segmenter)"),
        *_lifecycle(answers["profile"], limit),
        heading("rewards"),
        *_rewards(answers["rewards"], answers["statement"]),
        heading("recent messages (notifier)"),
        *_messages(answers["messages"]),
    )
    return Panel(body, title=Text(f"user {user_id}", style="bold"), title_align="left")


@user_app.command("show")
def show_cmd(
    user_id: str = typer.Argument(..., help="the user id (an anonymous id resolves to its user)"),
    limit: int = typer.Option(10, "--limit", min=1, max=500, help="history lines and messages to show"),
    as_json_: bool = typer.Option(False, "--json", help="print the services' answers as one JSON object"),
) -> None:
    """Show one user: stage and history, segments, traits, points, tier, badges, streak, messages.

    Asks the segmenter, rewards and notifier admin APIs (USEROPS_SEGMENTER_URL, USEROPS_REWARDS_URL,
    USEROPS_NOTIFIER_URL, token USEROPS_ADMIN_TOKEN; local defaults). A service that is down or
    does not know the user is shown as such; exits 1 if no service knows the user.

    Example: userops user show u1 --limit 5
    """
    try:
        endpoints = load_endpoints()
    except EndpointError as exc:
        fail(str(exc), 2)
    with httpx.Client(timeout=endpoints.timeout) as client:
        answers = gather(client, endpoints, user_id, limit)
    if as_json_:
        typer.echo(orjson.dumps(as_json(user_id, answers), option=orjson.OPT_INDENT_2).decode())
    else:
        Console().print(render(user_id, answers, limit))
    if not known(answers):
        reachable = [a for a in answers.values() if a.status == "not_found"]
        fail(
            f"user {user_id!r} is unknown to every service"
            if reachable
            else f"user {user_id!r}: no service could be asked (see above)"
        )
