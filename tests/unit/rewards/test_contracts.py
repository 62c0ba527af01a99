"""Every output the domain produces fits the `userops.rewards.v1` wire contract (positive points,
non-negative balances, referral roles), field for field, over arbitrary journeys."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from hypothesis import given, settings

from services.rewards.domain.simulate import Replay
from shared.contracts import parse_rewards
from tests.unit.rewards.journeys import JOURNEYS, play
from tests.unit.rewards.support import T0, example_config

CFG = example_config()


@settings(max_examples=60, deadline=None)
@given(JOURNEYS)
def test_outputs_fit_the_wire_contract(journey: list[Any]) -> None:
    r = Replay(CFG)
    r.keep_decisions = True
    play(r, journey)
    r.advance(T0 + timedelta(days=400))
    for decision in r.decisions:
        for out in decision.outputs:
            fields = {**dataclasses.asdict(out), "type": out.type}
            record = parse_rewards(fields)
            assert record.type == out.type and record.id == out.id and record.user_id == out.user_id
            assert parse_rewards(record.to_json()) == record
