"""Redemption and adjustment amounts are JSON integers: `true` or `"5"` is refused, not coerced.

FastAPI validates the parsed JSON body with these models, as the tests do.

In pydantic's lax mode `{"points": true}` reserved 1 point and `{"points": "5"}` 5 points.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.rewards.views import AdjustmentRequest, RedemptionRequest


@pytest.mark.parametrize("points", [True, False, "5", 5.0, None])
def test_a_redemption_refuses_an_amount_that_is_not_an_integer(points: Any) -> None:
    with pytest.raises(ValidationError, match="points"):
        RedemptionRequest.model_validate({"points": points})


@pytest.mark.parametrize("points", [True, "-5", 5.0])
def test_an_adjustment_refuses_an_amount_that_is_not_an_integer(points: Any) -> None:
    with pytest.raises(ValidationError, match="points"):
        AdjustmentRequest.model_validate({"points": points, "reason": "goodwill", "actor": "ops"})


def test_integer_amounts_are_accepted() -> None:
    assert RedemptionRequest.model_validate_json(b'{"points": 5}').points == 5
    assert AdjustmentRequest.model_validate_json(b'{"points": -5, "reason": "r", "actor": "a"}').points == -5
