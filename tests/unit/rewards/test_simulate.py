"""`simulate`: recorded history replayed through new rules, with timers firing when due, reports
what each rule would have awarded and cost, per rule and per day."""

from __future__ import annotations

from datetime import date, timedelta

from services.rewards.domain.simulate import Replay, simulate
from tests.unit.rewards.support import T0, config, day, example_config, stage, track

CFG = example_config()


def history() -> list[object]:
    inputs: list[object] = [track("Lesson Completed", day(0, i), user="a") for i in range(7)]
    inputs += [track("Lesson Completed", day(1), user="b")]
    inputs += [track("Order Completed", day(1, 2), user="b", revenue=42.5, order_id="o1")]
    inputs += [track("Order Refunded", day(2), user="b", order_id="o1")]
    inputs += [
        stage("activated", day(1, 3), user="a"),
        stage("reactivated", day(40), user="b", activated=True),
    ]
    return inputs


def test_report_per_rule_and_per_day() -> None:
    report = simulate(reversed(history()), CFG, until=T0 + timedelta(days=400))  # type: ignore[arg-type]
    lessons = report.per_rule["lesson_completed"]
    assert (lessons.awards, lessons.awarded, lessons.skipped, lessons.expired) == (6, 60, 2, 60)
    purchase = report.per_rule["purchase"]
    assert (purchase.awarded, purchase.reversed, purchase.cost) == (42, 42, 0)
    assert report.per_rule["winback"].cost == 200
    assert report.budgets_remaining == {"winback": 1_000_000 - 200}
    first_day = report.per_day[date(2024, 3, 1)]["lesson_completed"]
    assert (first_day.awards, first_day.awarded) == (5, 50)
    # 6 lessons and the activation expired; the win-back expires on day 405, after `until`.
    assert report.output_counts["points_expired"] == 7
    assert report.inputs == 12
    rows = report.rows()
    assert rows[0][:2] == (date(2024, 3, 1), "lesson_completed")
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)


def test_new_rules_change_the_cost() -> None:
    cheaper = config(rules=[{"id": "lesson_completed", "event": "Lesson Completed", "points": 5}])
    report = simulate(history(), cheaper)  # type: ignore[arg-type]
    assert report.per_rule["lesson_completed"].awarded == 40
    assert set(report.per_rule) == {"lesson_completed"}


def test_simulation_equals_the_live_sequence_of_decisions() -> None:
    live = Replay(CFG)
    for inp in sorted(history(), key=lambda i: i.at):  # type: ignore[attr-defined]
        live.feed(inp)  # type: ignore[arg-type]
    report = simulate(history(), CFG)  # type: ignore[arg-type]
    assert report.per_rule == live.report.per_rule
