"""`userops user show`: one panel from three services, each failure shown, ids encoded."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import orjson
from pydantic import SecretStr
from rich.console import Console
from typer.testing import CliRunner

from scripts.cli import app
from scripts.commands.endpoints import Endpoints
from scripts.commands.user import gather, known, render
from scripts.stack.procs import free_port

ENDPOINTS = Endpoints(
    ingest_url="http://ingest.test",
    segmenter_url="http://segmenter.test",
    rewards_url="http://rewards.test/",
    notifier_url="http://notifier.test",
    write_key=SecretStr("k"),
    admin_token=SecretStr("t"),
)
PROFILE = {
    "userId": "ada/é 1",
    "stage": "at_risk",
    "activated": True,
    "firstSeen": "2026-01-01T10:00:00Z",
    "lastActivityAt": "2026-01-02T10:00:00Z",
    "segments": [{"segment": "champions", "since": "2026-01-02T10:00:00Z"}],
    "history": [{"from": None, "to": "new", "reason": "signed up", "at": "2026-01-01T10:00:00Z"}],
    "profile": {"traits": {"plan": "pro"}},
}
REWARDS = {
    "userId": "ada/é 1",
    "balance": {"available": 120, "pending": 5, "held": 0, "owed": 0},
    "tier": {"name": "silver", "periodEnd": None, "earnedInWindow": 1200},
    "badges": {"week_streak": 2},
    "streak": {"days": 3, "longest": 9, "lastDate": None, "freezesUsed": 0},
    "expiring": [],
}
STATEMENT = {
    "lines": [{"at": "2026-01-02T10:00:00Z", "available": 10, "description": "Earned 10 points: lesson [1]"}]
}
MESSAGES = [
    {
        "created_at": "2026-01-02T10:00:00Z",
        "sent_at": None,
        "campaign": "at_risk_winback",
        "channel": "webhook",
        "state": "sent",
        "reason": "",
    }
]


def client(routes: Mapping[str, httpx.Response | Exception], seen: list[str]) -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        assert request.headers["authorization"] == "Bearer t"
        answer = routes[f"{request.url.host}{request.url.raw_path.decode().split('?')[0]}"]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.Client(transport=httpx.MockTransport(handle))


def text(panel: object) -> str:
    console = Console(record=True, width=160)
    console.print(panel)
    return console.export_text()


USER = "/v1/users/ada%2F%C3%A9%201"


def test_every_part_of_the_user_in_one_panel_with_the_id_encoded_as_one_segment() -> None:
    seen: list[str] = []
    routes = {
        f"segmenter.test{USER}": httpx.Response(200, json=PROFILE),
        f"rewards.test{USER}": httpx.Response(200, json=REWARDS),
        f"rewards.test{USER}/statement": httpx.Response(200, json=STATEMENT),
        f"notifier.test{USER}/messages": httpx.Response(200, json=MESSAGES),
    }
    answers = gather(client(routes, seen), ENDPOINTS, "ada/é 1", 10)
    assert known(answers)
    out = text(render("ada/é 1", answers))
    for expected in (
        "at_risk",
        "champions",
        "plan=pro",
        "120 available",
        "silver",
        "week_streak x2",
        "3 days",
        "lesson [1]",
        "at_risk_winback",
        "signed up",
    ):
        assert expected in out, expected
    assert sorted(p.split("?")[0] for p in seen) == sorted(
        [USER, USER, f"{USER}/statement", f"{USER}/messages"]
    )


def test_a_service_down_or_not_knowing_the_user_is_shown_not_raised() -> None:
    seen: list[str] = []
    routes: dict[str, httpx.Response | Exception] = {
        f"segmenter.test{USER}": httpx.Response(200, json=PROFILE),
        f"rewards.test{USER}": httpx.Response(
            404, json={"code": "not_found", "message": "no rewards account"}
        ),
        f"rewards.test{USER}/statement": httpx.Response(
            404, json={"code": "not_found", "message": "no rewards account"}
        ),
        f"notifier.test{USER}/messages": httpx.ConnectError("refused"),
    }
    answers = gather(client(routes, seen), ENDPOINTS, "ada/é 1", 10)
    out = text(render("ada/é 1", answers))
    assert "rewards: does not know this user (no rewards account)" in out
    assert "notifier: unavailable (cannot reach http://notifier.test" in out
    assert known(answers)


def test_cli_exits_1_when_no_service_can_answer_and_prints_json() -> None:
    port = free_port()
    env = {f"USEROPS_{s}_URL": f"http://127.0.0.1:{port}" for s in ("SEGMENTER", "REWARDS", "NOTIFIER")}
    result = CliRunner().invoke(app, ["user", "show", "nobody", "--json"], env=env)
    assert result.exit_code == 1
    body = orjson.loads(result.stdout)
    assert body["known"] is False
    assert body["profile"]["status"] == "down"
    assert "no service could be asked" in result.output
