"""Builders for rewards domain tests: inputs at simulated instants and a config from YAML text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import yaml

from services.rewards.config import RewardsConfig, load_config
from services.rewards.domain.inputs import EventInput, LifecycleInput, RedemptionInput
from services.rewards.domain.outputs import Output
from shared.events import Event, format_ts
from shared.ids import input_id

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "config" / "rewards.yaml"
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
_ids = count()


def day(n: float, hours: float = 0) -> datetime:
    return T0 + timedelta(days=n, hours=hours)


def example_config() -> RewardsConfig:
    return load_config(EXAMPLE)


def config(**overrides: Any) -> RewardsConfig:
    """The example config with top-level sections replaced."""
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw.update(overrides)
    return RewardsConfig.model_validate(raw)


def track(
    name: str,
    at: datetime,
    user: str = "u1",
    *,
    traits: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    message_id: str | None = None,
    **properties: Any,
) -> EventInput:
    mid = message_id or f"msg-{next(_ids)}"
    wire: dict[str, Any] = {
        "messageId": mid,
        "type": "track",
        "userId": user,
        "event": name,
        "timestamp": format_ts(at),
        "receivedAt": format_ts(at),
        "properties": properties,
    }
    if traits is not None:
        wire["traits"] = traits
    if context is not None:
        wire["context"] = context
    return EventInput(input_id("userops.events.v1", user, mid), Event.from_wire(wire))


def stage(
    to: str, at: datetime, user: str = "u1", *, activated: bool | None = None, message_id: str | None = None
) -> LifecycleInput:
    mid = message_id or f"life-{next(_ids)}"
    return LifecycleInput(
        input_id("userops.lifecycle.v1", user, mid),
        user,
        "stage_changed",
        at,
        to_stage=to,
        activated=to == "activated" if activated is None else activated,
    )


def reserve(amount: int, at: datetime, user: str = "u1", key: str | None = None) -> RedemptionInput:
    k = key or f"idem-{next(_ids)}"
    return RedemptionInput(input_id("rewards.api", user, k), user, "reserve", at, amount=amount)


def command(
    action: str, hold_id: str, at: datetime, user: str = "u1", key: str | None = None
) -> RedemptionInput:
    k = key or f"idem-{next(_ids)}"
    return RedemptionInput(input_id("rewards.api", user, k), user, action, at, hold_id=hold_id)  # type: ignore[arg-type]


def of_type(outputs: list[Output], kind: type[Any]) -> list[Any]:
    return [o for o in outputs if isinstance(o, kind)]
