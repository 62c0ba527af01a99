"""Replay recorded inputs through `decide` with a simulated clock: what rules award and cost.

`Replay` is the one driver of the decision function over time: inputs are applied in timestamp
order, and every timer a decision armed (expiry, expiring-soon warning, pending release, hold
expiry, tier review) fires at its due instant, between inputs, exactly as the live timer worker
would fire it. Budgets start at their configured limits (or given remaining amounts) and are
consumed as the live adapter consumes them. The referrer's side of a referral is applied to the
referrer's state, as the adapter does. `simulate` is what `userops rewards simulate` prints.

Costs: `awarded` is gross points awarded, `reversed` what reversals took back, `cost` their
difference (what the rule's budget is charged); `expired` is reported beside it. Days are UTC.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from services.rewards.config import RewardsConfig
from services.rewards.domain.awards import Decision
from services.rewards.domain.decide import apply_foreign_award, decide
from services.rewards.domain.inputs import RewardsInput, Timer, TimerInput, TimerKind
from services.rewards.domain.outputs import Output, PointsAwarded, PointsExpired, PointsReversed
from services.rewards.domain.state import UserRewardsState


@dataclass(slots=True)
class RuleTotals:
    awards: int = 0
    awarded: int = 0
    reversed: int = 0
    expired: int = 0
    skipped: int = 0

    @property
    def cost(self) -> int:
        return self.awarded - self.reversed


@dataclass(slots=True)
class SimulationReport:
    """Per rule, and per UTC day and rule, what was awarded and what it cost."""

    per_rule: dict[str, RuleTotals] = field(default_factory=dict)
    per_day: dict[date, dict[str, RuleTotals]] = field(default_factory=dict)
    output_counts: dict[str, int] = field(default_factory=dict)
    budgets_remaining: dict[str, int] = field(default_factory=dict)
    inputs: int = 0
    timers_fired: int = 0

    def rows(self) -> list[tuple[date, str, RuleTotals]]:
        """(day, rule, totals) for every day and rule with activity, in day then rule order."""
        return [
            (d, rule, self.per_day[d][rule]) for d in sorted(self.per_day) for rule in sorted(self.per_day[d])
        ]

    def _totals(self, rule_id: str, at: datetime) -> tuple[RuleTotals, RuleTotals]:
        day = self.per_day.setdefault(at.date(), {})
        return self.per_rule.setdefault(rule_id, RuleTotals()), day.setdefault(rule_id, RuleTotals())


class Replay:
    """Drives `decide` over time for many users. `states` holds every user's state; `timers` the
    armed timers (the latest arming of a (user, kind, key) replaces earlier ones)."""

    def __init__(self, cfg: RewardsConfig, budgets: Mapping[str, int] | None = None) -> None:
        self.cfg = cfg
        self.states: dict[str, UserRewardsState] = {}
        self.budgets: dict[str, int] = {r.id: r.budget.limit for r in cfg.rules if r.budget is not None}
        self.budgets.update(budgets or {})
        self.report = SimulationReport()
        self.decisions: list[Decision] = []
        self._heap: list[tuple[datetime, int, Timer]] = []
        self._armed: dict[tuple[str, TimerKind, str], datetime] = {}
        self._seq = 0
        self.keep_decisions = False

    def feed(self, inp: RewardsInput, now: datetime | None = None) -> Decision:
        """Fire the timers due before the input, then apply it at `now` (default: its instant)."""
        at = inp.at if now is None else now
        self.advance(at, inclusive=False)
        self.report.inputs += 1
        return self._apply(inp, at)

    def advance(self, until: datetime, *, inclusive: bool = True) -> None:
        """Fire every armed timer due before (or at, if `inclusive`) `until`, in due order."""
        while self._heap and (self._heap[0][0] < until or (inclusive and self._heap[0][0] == until)):
            due, _, timer = heapq.heappop(self._heap)
            if self._armed.get((timer.user_id, timer.kind, timer.key)) != due:
                continue
            del self._armed[(timer.user_id, timer.kind, timer.key)]
            self.report.timers_fired += 1
            self._apply(TimerInput(timer), due)

    def _apply(self, inp: RewardsInput, now: datetime) -> Decision:
        state = self.states.get(inp.user_id)
        decision = decide(state, inp, self.cfg, now, self.budgets)
        self._absorb(decision)
        for award in decision.foreign:
            self._absorb(apply_foreign_award(self.states.get(award.user_id), award, self.cfg))
        return decision

    def _absorb(self, decision: Decision) -> None:
        self.states[decision.state.user_id] = decision.state
        if self.keep_decisions:
            self.decisions.append(decision)
        for rule_id, n in decision.budget_consumed.items():
            self.budgets[rule_id] -= n
        for timer in decision.timers:
            self._seq += 1
            self._armed[(timer.user_id, timer.kind, timer.key)] = timer.due_at
            heapq.heappush(self._heap, (timer.due_at, self._seq, timer))
        for out in decision.outputs:
            self._count(out)
        for skip in decision.skipped:
            when = decision.state.as_of
            if when is not None:
                for totals in self.report._totals(skip.rule_id, when):
                    totals.skipped += 1

    def _count(self, out: Output) -> None:
        report = self.report
        report.output_counts[out.type] = report.output_counts.get(out.type, 0) + 1
        if isinstance(out, PointsAwarded):
            for totals in report._totals(out.rule_id, out.at):
                totals.awards += 1
                totals.awarded += out.points
        elif isinstance(out, PointsReversed):
            for totals in report._totals(out.rule_id, out.at):
                totals.reversed += out.points
        elif isinstance(out, PointsExpired):
            for totals in report._totals(out.rule_id, out.at):
                totals.expired += out.points


def simulate(
    inputs: Iterable[RewardsInput],
    cfg: RewardsConfig,
    *,
    until: datetime | None = None,
    budgets: Mapping[str, int] | None = None,
) -> SimulationReport:
    """Replay `inputs` in timestamp order (stable for equal instants), firing timers when due,
    and up to `until` afterwards if given; report what the rules awarded and cost."""
    replay = Replay(cfg, budgets)
    for inp in sorted(inputs, key=lambda i: i.at):
        replay.feed(inp)
    if until is not None:
        replay.advance(until)
    replay.report.budgets_remaining = dict(replay.budgets)
    return replay.report
