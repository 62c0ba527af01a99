"""`userops send` and `userops user show` against the four real services.

A file with good and bad lines goes through `send`: the good events are accepted, each bad line
is reported with its number and ingest's own reason, and the command exits 1. The events then
show up in `user show` (the segmenter's stage, rewards' points and statement, the notifier's
messages) for an id with non-ASCII characters, spaces and slashes, percent-encoded on the way.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner, Result

from scripts.cli import app
from tests.conftest import eventually
from tests.integration.ops.live_stack import LiveStack


async def userops(live: LiveStack, *args: str) -> Result:
    env = {**live.cli_env, "COLUMNS": "250"}
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


def line(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


async def test_send_reports_bad_lines_by_number_and_user_show_finds_the_rest(
    live: LiveStack, tmp_path: Path
) -> None:
    user = f"team/zoë {uuid.uuid4().hex[:6]}/a"  # '/' travels as %2F: every admin route must take it
    events = [
        line({"type": "track", "userId": user, "event": "Signed Up"}),
        b'{"type": "track", "userId": "broken"',  # line 2: malformed
        line({"type": "track", "userId": user, "event": "Order Completed", "properties": {"revenue": 42}}),
        line({"type": "track", "userId": "x" * 300, "event": "Lesson Completed"}),  # line 4: id too long
        line({"type": "track", "event": "Lesson Completed"}),  # line 5: no user
        line({"type": "identify", "userId": user, "traits": {"plan": "pro"}}),
    ]
    file = tmp_path / "events.ndjson"
    file.write_bytes(b"\n".join(events) + b"\n")
    sent = await userops(live, "send", str(file))
    assert sent.exit_code == 1, sent.output
    rows = {
        cells[0]: cells
        for ln in sent.output.splitlines()
        if ln.startswith("│") and (cells := [c.strip() for c in ln.split("│")[1:-1]])[0]
    }
    assert (rows["accepted"][1], rows["rejected"][1], rows["failed"][1]) == ("3", "3", "0"), sent.output
    assert rows["2"][1:] == ["rejected", rows["2"][2]] and "malformed JSON" in rows["2"][2]
    assert rows["4"][2].startswith("userId: must be at most 256 bytes"), rows["4"]
    assert rows["5"][2].startswith("userId: userId or anonymousId is required"), rows["5"]

    async def everywhere() -> dict[str, Any] | None:
        shown = await userops(live, "user", "show", user, "--json")
        body = orjson.loads(shown.stdout)
        parts = ("profile", "rewards", "messages")
        return body if shown.exit_code == 0 and all(body[p]["status"] == "ok" for p in parts) else None

    body = await eventually(everywhere, timeout=60, interval=0.5)
    assert body["profile"]["data"]["userId"] == user
    assert body["profile"]["data"]["profile"]["traits"]["plan"] == "pro"
    assert any("Earned" in ln["description"] for ln in body["statement"]["data"]["lines"]), body["statement"]
    panel = await userops(live, "user", "show", user)
    assert panel.exit_code == 0, panel.output
    assert f"user {user}" in panel.output and "live_hook" in panel.output


async def test_user_show_exits_1_for_a_user_no_service_knows(live: LiveStack) -> None:
    shown = await userops(live, "user", "show", f"nobody-{uuid.uuid4().hex[:6]}")
    assert shown.exit_code == 1
    assert "unknown to every service" in shown.output
    assert "segmenter: does not know this user" in shown.output


async def test_send_with_a_wrong_write_key_exits_1_naming_it(live: LiveStack, tmp_path: Path) -> None:
    file = tmp_path / "one.ndjson"
    file.write_bytes(line({"type": "track", "userId": "u", "event": "x"}) + b"\n")
    env = {**live.cli_env, "USEROPS_WRITE_KEY": "not-a-key"}
    result = await asyncio.to_thread(CliRunner().invoke, app, ["send", str(file)], env=env)
    assert result.exit_code == 1
    assert "401" in result.output and "USEROPS_WRITE_KEY" in result.output
