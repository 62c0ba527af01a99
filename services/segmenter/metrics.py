"""Business metrics of the segmenter, refreshed from its store (so every replica reports the truth)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.segmenter.adapters import analytics
from services.segmenter.domain.lifecycle import STAGES
from shared.logging import get_logger
from shared.runtime.errors import is_retryable

log = get_logger(__name__)


@dataclass
class SegmenterMetrics:
    users: Gauge
    transitions: Counter
    segment_members: Gauge
    amounts_rejected: Counter
    _last_history_id: int = field(default=-1)
    _known_segments: set[str] = field(default_factory=set)

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SegmenterMetrics:
        return cls(
            users=Gauge(
                "userops_segmenter_users", "Users per lifecycle stage.", ["stage"], registry=registry
            ),
            transitions=Counter(
                "userops_segmenter_transitions",
                "Lifecycle stage transitions.",
                ["from_stage", "to_stage"],
                registry=registry,
            ),
            segment_members=Gauge(
                "userops_segmenter_segment_members", "Users per segment.", ["segment"], registry=registry
            ),
            amounts_rejected=Counter(
                "userops_segmenter_amounts_rejected",
                "Orders applied without their amount: not a finite number within ±1e15.",
                registry=registry,
            ),
        )

    async def refresh(self, engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await analytics.fold_stage_counts(conn)
        async with engine.connect() as conn:
            stages = await analytics.stage_counts(conn)
            segments = await analytics.segment_counts(conn)
            if self._last_history_id < 0:
                # Count history written from now on; earlier transitions belong to earlier processes.
                self._last_history_id = int(
                    (await conn.execute(text("SELECT coalesce(max(id), 0) FROM stage_history"))).scalar_one()
                )
                moved: Sequence[Row[Any]] = []
            else:
                moved = (
                    await conn.execute(
                        text(
                            "SELECT from_stage, to_stage, count(*) AS n, max(id) AS last FROM stage_history "
                            "WHERE id > :after GROUP BY from_stage, to_stage"
                        ),
                        {"after": self._last_history_id},
                    )
                ).all()
        for stage in STAGES:
            self.users.labels(stage=stage).set(stages.get(stage, 0))
        for name in self._known_segments - segments.keys():
            self.segment_members.labels(segment=name).set(0)
        for name, n in segments.items():
            self.segment_members.labels(segment=name).set(n)
        self._known_segments |= segments.keys()
        for r in moved:
            self.transitions.labels(from_stage=r.from_stage or "none", to_stage=r.to_stage).inc(r.n)
            self._last_history_id = max(self._last_history_id, r.last)

    async def run(self, engine: AsyncEngine, every: float = 10.0) -> None:
        while True:
            try:
                await self.refresh(engine)
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                log.warning("metrics refresh failed", error=repr(exc))
            await asyncio.sleep(every)
