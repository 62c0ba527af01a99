from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.conftest import Stack, unique
from tests.integration.segmenter.harness import SegmenterProcess, segmenter_env

SHORT_CONFIG = """
lifecycle:
  at_risk_after: 3s
  dormant_after: 6s
  churned_after: 9s
  reactivation_gap: 6s
  reactivated_hold: 3s
  new_window: 1d
  activated_window: 2s
activation:
  any_of: [{event: Order Completed}]
segments:
  - name: big_spenders
    rule: {field: revenue, op: gte, value: 100}
"""


@pytest.fixture
def short_config(tmp_path: Path) -> Path:
    path = tmp_path / "segmenter.yaml"
    path.write_text(SHORT_CONFIG)
    return path


SegmenterFactory = Callable[..., SegmenterProcess]


@pytest.fixture
async def segmenter_factory(
    stack: Stack, topics: dict[str, str], database: str, tmp_path: Path
) -> AsyncIterator[SegmenterFactory]:
    """Build segmenter processes sharing one test database, topics and consumer group."""
    group = unique("segmenter")
    made: list[SegmenterProcess] = []

    def make(config: Path, **extra: str) -> SegmenterProcess:
        env, port = segmenter_env(
            bootstrap=stack.bootstrap, db_url=database, topics=topics, config=config, group=group, extra=extra
        )
        proc = SegmenterProcess(env, port, tmp_path / f"segmenter-{len(made)}.log")
        made.append(proc)
        return proc

    yield make
    for p in made:
        p.kill9()
