"""Response bodies of the notifier's API (documented in its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    code: str
    message: str


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Malformed request (names the parameter).",
        401: "Missing or invalid token.",
        404: "No such user, campaign, send or message.",
        409: "The request conflicts with the current state.",
    }
    return {code: {"model": ErrorBody, "description": text[code]} for code in codes}


class VariantInfo(BaseModel):
    name: str
    weight: float


class CampaignInfo(BaseModel):
    name: str
    description: str
    enabled: bool
    topic: str
    trigger: str
    channel: str
    endpoint: str | None
    delay_seconds: float
    holdout: float
    variants: list[VariantInfo]
    has_goal: bool


class GoalCounts(BaseModel):
    entries: int
    converted: int
    rate: float | None


class UpliftBody(BaseModel):
    treatment_entries: int
    treatment_goals: int
    holdout_entries: int
    holdout_goals: int
    treatment_rate: float | None
    holdout_rate: float | None
    difference: float | None
    interval_low: float | None
    interval_high: float | None
    confidence: float
    significant: bool


class CampaignReportBody(BaseModel):
    campaign: str
    outcomes: dict[str, dict[str, int]]
    """Per variant (and `holdout`): sent / capped / suppressed / deferred / cancelled / failed."""
    totals: dict[str, int]
    goals: dict[str, GoalCounts]
    uplift: UpliftBody | None
    variant_uplift: dict[str, UpliftBody]


class FailedDelivery(BaseModel):
    send_key: str
    user_id: str
    campaign: str
    variant: str
    channel: str
    reason: str
    attempts: int
    failed_at: datetime
    replayable: bool


class ReplayResult(BaseModel):
    send_key: str
    replayed: bool


class MessageRecord(BaseModel):
    send_key: str
    campaign: str
    variant: str
    channel: str
    state: str
    reason: str
    attempts: int
    message: dict[str, Any] | None
    due_at: datetime | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None


class UnsubscribeStatus(BaseModel):
    scope: str
    subscribed: bool


class InboxMessage(BaseModel):
    id: str
    campaign: str
    title: str
    body: str
    url: str | None
    created_at: datetime
    read_at: datetime | None


class InboxPage(BaseModel):
    messages: list[InboxMessage]
    unread: int


class UnreadCount(BaseModel):
    unread: int


class ReadResult(BaseModel):
    id: str
    read_at: datetime
