"""The outbox value the segmenter builds by hand for a lifecycle record is `to_wire()`'s,
byte for byte once encoded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
from hypothesis import given
from hypothesis import strategies as st

from services.segmenter.consumer import _WIRE_FIELDS, wire
from shared.contracts.base import ContractModel
from shared.contracts.lifecycle import STAGES, SegmentEntered, SegmentExited, StageChanged

texts = st.text(min_size=1, max_size=20)
instants = st.builds(
    lambda t, offset: t.replace(tzinfo=UTC).astimezone(timezone(timedelta(minutes=offset))),
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),
    st.integers(min_value=-12 * 60, max_value=14 * 60),
)


def stage_changed(
    id: str,
    user_id: str,
    at: datetime,
    config_version: str,
    from_stage: str | None,
    to_stage: str,
    reason: str,
    activated: bool,
) -> StageChanged:
    return StageChanged(
        id=id,
        user_id=user_id,
        at=at,
        config_version=config_version,
        from_stage=from_stage,
        to_stage=to_stage,
        reason=reason,
        activated=activated,
    )


records = st.one_of(
    st.builds(
        stage_changed,
        id=texts,
        user_id=texts,
        at=instants,
        config_version=st.text(max_size=12),
        from_stage=st.none() | st.sampled_from(STAGES),
        to_stage=st.sampled_from(STAGES),
        reason=st.text(max_size=40),
        activated=st.booleans(),
    ),
    st.builds(SegmentEntered, id=texts, user_id=texts, at=instants, config_version=st.text(), segment=texts),
    st.builds(SegmentExited, id=texts, user_id=texts, at=instants, config_version=st.text(), segment=texts),
)


@given(records)
def test_wire_is_to_wire(record: StageChanged | SegmentEntered | SegmentExited) -> None:
    assert orjson.dumps(wire(record)) == orjson.dumps(record.to_wire())


def test_wire_knows_every_field_of_its_models() -> None:
    """A field added to a lifecycle model must be added to `wire` too."""
    common = set(ContractModel.model_fields) | {"type"}
    for model, fields in _WIRE_FIELDS.items():
        assert set(model.model_fields) - common == set(fields), model.__name__
