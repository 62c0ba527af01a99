"""The bound on bytes awaiting Kafka's acknowledgement (adapters/kafka_publisher.py)."""

from __future__ import annotations

from services.ingest.adapters.in_flight import InFlightBudget


def test_requests_are_admitted_up_to_the_limit_and_refused_beyond() -> None:
    budget = InFlightBudget(limit=1000)
    assert budget.take(600)
    assert budget.take(400)
    assert not budget.take(1)
    budget.give_back(600)
    assert budget.take(500)
    assert budget.used == 900


def test_one_request_bigger_than_the_limit_still_goes_when_nothing_else_is_in_flight() -> None:
    budget = InFlightBudget(limit=1000)
    assert budget.take(5000)
    assert not budget.take(1)
    budget.give_back(5000)
    assert budget.used == 0
