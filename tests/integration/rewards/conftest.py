from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.conftest import Stack, unique
from tests.integration.rewards.harness import RewardsProcess, rewards_env

REPO = Path(__file__).resolve().parents[3]
EXAMPLE_CONFIG = REPO / "config" / "rewards.yaml"

RewardsFactory = Callable[..., RewardsProcess]


@pytest.fixture
async def rewards_factory(
    stack: Stack, topics: dict[str, str], database: str, tmp_path: Path
) -> AsyncIterator[RewardsFactory]:
    """Build rewards processes sharing one test database, topics and consumer group."""
    group = unique("rewards")
    made: list[RewardsProcess] = []

    def make(config: Path = EXAMPLE_CONFIG, **extra: str) -> RewardsProcess:
        env, port = rewards_env(
            bootstrap=stack.bootstrap, db_url=database, topics=topics, config=config, group=group, extra=extra
        )
        proc = RewardsProcess(env, port, tmp_path / f"rewards-{len(made)}.log")
        made.append(proc)
        return proc

    yield make
    for p in made:
        p.kill9()


@pytest.fixture
async def rewards(rewards_factory: RewardsFactory) -> AsyncIterator[RewardsProcess]:
    proc = rewards_factory()
    proc.start()
    await proc.wait_ready()
    yield proc
    proc.terminate()


def config_with(tmp_path: Path, name: str = "rewards.yaml", **overrides: object) -> Path:
    """The example rules with top-level sections replaced, written to a file."""
    import yaml

    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    raw.update(overrides)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path
