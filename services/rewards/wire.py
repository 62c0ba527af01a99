"""The domain's outputs as `userops.rewards.v1` records (the typed contract in `shared/`)."""

from __future__ import annotations

from typing import Any

from services.rewards.domain.outputs import Output
from shared.contracts import RewardsEvent, parse_rewards


def to_record(out: Output) -> RewardsEvent:
    """The contract record of one domain output; `ContractError` if it breaks the contract
    (a bug: the domain's outputs are property-tested against it)."""
    fields: dict[str, Any] = {name: getattr(out, name) for name in out.__dataclass_fields__}
    fields["type"] = out.type
    return parse_rewards(fields)


def to_wire(out: Output) -> dict[str, Any]:
    """The JSON-ready record written to the outbox."""
    return to_record(out).to_wire()
