"""What every topic contract shares: the envelope fields, instants, and the parse error.

Every record on a userops output topic is one JSON object with camelCase keys:
`schemaVersion` (int, ≥ 1), `id` (the deterministic output id, `shared.ids.output_id`), `type`
(the discriminator naming the model), `userId` (also the Kafka key), `at` (ISO-8601 UTC with
milliseconds and `Z`) and `configVersion` (the producing service's config hash), plus the fields
of its type.

Versioning: the topic name carries the major version (`userops.lifecycle.v1`); within it,
`schemaVersion` counts additive revisions only (new optional fields, new types). A consumer
accepts any `schemaVersion`, ignores fields it does not know, and rejects a `type` it does not
know with `ContractError` (dead-letter it, upgrade, replay). A breaking change is a new topic.
A record written before `schemaVersion` existed has none and is read as revision 1.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
)
from pydantic.alias_generators import to_camel

SCHEMA_VERSION: Final = 1
"""The revision producers of this code write."""


class ContractError(ValueError):
    """A record that breaks its topic's contract; the message names the topic and the fields."""

    def __init__(self, topic: str, detail: str) -> None:
        super().__init__(f"{topic}: {detail}")
        self.topic = topic
        self.detail = detail


def _utc_ms(ts: datetime) -> datetime:
    """UTC, truncated to the millisecond the wire carries, so a parsed copy equals the original."""
    ts = ts.astimezone(UTC)
    return ts.replace(microsecond=ts.microsecond - ts.microsecond % 1000)


def _iso(ts: datetime) -> str:
    """ISO-8601 UTC with milliseconds and `Z` (`shared.events.format_ts`'s form, for any year)."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Instant = Annotated[AwareDatetime, AfterValidator(_utc_ms), PlainSerializer(_iso, return_type=str)]
"""An instant on the wire: ISO-8601 UTC with milliseconds and `Z`; a naive time is rejected."""

NonEmpty = Annotated[str, Field(min_length=1)]
Points = Annotated[int, Field(strict=True, gt=0)]
"""A positive whole number of points (JSON integers only: `1.5` or `"3"` is rejected)."""
Count = Annotated[int, Field(strict=True, ge=0)]


class ContractModel(BaseModel):
    """Base of every contract record: immutable, camelCase on the wire, unknown fields ignored."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        alias_generator=to_camel,
        populate_by_name=True,
        strict=False,
        str_strip_whitespace=False,
    )

    schema_version: Annotated[int, Field(strict=True, ge=1)] = SCHEMA_VERSION
    id: NonEmpty
    user_id: NonEmpty
    at: Instant
    config_version: str

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready object (camelCase keys, instants as text), e.g. for the outbox."""
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self) -> bytes:
        """The record's bytes on the topic."""
        return orjson.dumps(self.to_wire())


M = TypeVar("M")


def parse(adapter: TypeAdapter[M], topic: str, data: bytes | str | dict[str, Any]) -> M:
    """Parse one record of `topic` with `adapter`, raising `ContractError` naming the bad fields."""
    try:
        obj = orjson.loads(data) if isinstance(data, bytes | str) else data
    except orjson.JSONDecodeError as exc:
        raise ContractError(topic, f"not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ContractError(topic, "a record must be a JSON object")
    try:
        return adapter.validate_python(obj)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(record)'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ContractError(topic, problems) from exc
