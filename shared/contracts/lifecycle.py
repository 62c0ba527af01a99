"""`userops.lifecycle.v1`: the segmenter's stage and segment changes (DESIGN.md §4).

Produced by the segmenter (one record per change, key = `userId`), consumed by rewards and the
notifier. Wire format (camelCase; see `shared.contracts.base` for the common fields):

- `stage_changed`: `from` (previous stage, null for a user's first), `to`, `reason` (words for
  people), `activated` (whether the user has met the activation condition);
- `segment_entered` / `segment_exited`: `segment` (the segment's name).

`at` is when the change took effect: the exact deadline for a change caused by time alone.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, Field, TypeAdapter

from shared import topics
from shared.contracts.base import ContractModel, NonEmpty, parse

STAGES: Final = ("new", "activated", "active", "at_risk", "dormant", "churned", "reactivated")
"""The operational lifecycle stages (DESIGN.md §4)."""


def _stage(value: str) -> str:
    if value not in STAGES:
        raise ValueError(f"unknown stage {value!r}; expected one of {', '.join(STAGES)}")
    return value


Stage = Annotated[str, AfterValidator(_stage)]


class StageChanged(ContractModel):
    """A user's operational stage changed from `from_stage` to `to_stage` at `at`."""

    type: Literal["stage_changed"] = "stage_changed"
    from_stage: Stage | None = Field(alias="from")
    to_stage: Stage = Field(alias="to")
    reason: str
    activated: bool


class SegmentEntered(ContractModel):
    """The user entered segment `segment` at `at`."""

    type: Literal["segment_entered"] = "segment_entered"
    segment: NonEmpty


class SegmentExited(ContractModel):
    """The user left segment `segment` at `at`."""

    type: Literal["segment_exited"] = "segment_exited"
    segment: NonEmpty


LifecycleEvent = Annotated[StageChanged | SegmentEntered | SegmentExited, Field(discriminator="type")]
_ADAPTER: Final[TypeAdapter[LifecycleEvent]] = TypeAdapter(LifecycleEvent)


def parse_lifecycle(data: bytes | str | dict[str, Any]) -> LifecycleEvent:
    """One `userops.lifecycle.v1` record, or `ContractError` naming what is wrong."""
    return parse(_ADAPTER, topics.LIFECYCLE, data)
