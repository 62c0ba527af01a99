"""Pydantic models that document the API in OpenAPI (`/docs`, `/openapi.json`).

They describe Segment's wire format for clients and fuzzers; the hot path does not use them (it
validates plain dicts in `domain/envelope.py`, which is the authority on what is accepted).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

Id = Annotated[
    str | int | None,
    Field(description="A string (numbers are turned into strings); null or empty is absent."),
]


_PRESENT_ID: JsonDict = {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]}


class _Call(BaseModel):
    """Fields every Segment call may carry. One of `userId` and `anonymousId` is required."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "anyOf": [
                {"required": ["userId"], "properties": {"userId": _PRESENT_ID}},
                {"required": ["anonymousId"], "properties": {"anonymousId": _PRESENT_ID}},
            ]
        },
    )

    userId: Id = None
    anonymousId: Id = None
    messageId: str | None = Field(
        None, max_length=100, description="Kept if given (at most 100 characters), else generated."
    )
    timestamp: datetime | None = Field(None, description="When the event happened (client clock).")
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = Field(
        None, description="When the client sent it; used to correct the client's clock skew."
    )
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    writeKey: str | None = Field(None, description="Alternative to HTTP Basic auth.")


class TrackCall(_Call):
    type: Literal["track"] = "track"
    event: str = Field(min_length=1, description="The action, e.g. `Order Completed`.")
    properties: dict[str, Any] | None = None


class IdentifyCall(_Call):
    type: Literal["identify"] = "identify"
    traits: dict[str, Any] | None = None


class PageCall(_Call):
    type: Literal["page"] = "page"
    name: str | None = None
    properties: dict[str, Any] | None = None


class ScreenCall(_Call):
    type: Literal["screen"] = "screen"
    name: str | None = None
    properties: dict[str, Any] | None = None


class GroupCall(_Call):
    type: Literal["group"] = "group"
    groupId: str | int = Field(description="The account or organisation the user belongs to.")
    traits: dict[str, Any] | None = None


class AliasCall(_Call):
    type: Literal["alias"] = "alias"
    previousId: str | int = Field(description="The user's previous id.")


BatchItem = Annotated[
    TrackCall | IdentifyCall | PageCall | ScreenCall | GroupCall | AliasCall,
    Field(discriminator="type"),
]


class BatchRequest(BaseModel):
    """Several calls at once; top-level `context`, `integrations` and `sentAt` apply to every
    item that lacks its own (for `context`, a shallow merge where the item wins)."""

    model_config = ConfigDict(extra="allow")

    batch: list[BatchItem] = Field(min_length=1, max_length=2500)
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    sentAt: datetime | None = None
    writeKey: str | None = None


class Success(BaseModel):
    """Every event of the request was acknowledged by Kafka."""

    success: Literal[True] = True


class ErrorBody(BaseModel):
    """Why a request was refused; `message` names the field and item index where it applies."""

    code: str = Field(examples=["invalid_request"])
    message: str = Field(examples=["batch[3].userId: userId or anonymousId is required"])


REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "track": TrackCall,
    "identify": IdentifyCall,
    "page": PageCall,
    "screen": ScreenCall,
    "group": GroupCall,
    "alias": AliasCall,
    "batch": BatchRequest,
}
