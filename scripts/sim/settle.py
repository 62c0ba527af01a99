"""Has the stack caught up? Consumer lag from Kafka itself, backlogs from each service's /metrics.

Caught up means: every consumer group has committed the end of every partition it reads (a
group commits only after its database transaction), and no service holds unsent outbox rows,
overdue timers or queued jobs. The chain segmenter → rewards → notifier produces new input as it
goes, so it must hold on two checks in a row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared import topics as t

DEFAULT_GROUPS: dict[str, tuple[str, ...]] = {
    "segmenter": (t.EVENTS,),
    "rewards": (t.EVENTS, t.LIFECYCLE),
    "notifier": (t.EVENTS, t.LIFECYCLE, t.REWARDS),
}
"""Consumer group → the topics it reads (the services' defaults)."""
BACKLOG_METRICS = ("userops_outbox_backlog", "userops_timer_backlog", "userops_jobs_queued")


@dataclass(frozen=True, slots=True)
class Behind:
    """What is still to do: messages not yet committed per group, backlog per service metric."""

    lag: dict[str, int]
    backlog: dict[str, float]

    @property
    def done(self) -> bool:
        return not any(self.lag.values()) and not any(self.backlog.values())

    def describe(self) -> str:
        parts = [f"{g} lag {n}" for g, n in self.lag.items() if n]
        parts += [f"{k} {v:g}" for k, v in self.backlog.items() if v]
        return ", ".join(parts) or "nothing"


async def group_lag(bootstrap: str, groups: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Per group: end offsets minus committed offsets, summed over its topics' partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        await consumer.topics()  # fetch metadata, so partitions are known
        out = {}
        for group, topics in groups.items():
            committed = await admin.list_consumer_group_offsets(group)
            tps = [
                TopicPartition(tp, p)
                for tp in topics
                for p in sorted(consumer.partitions_for_topic(tp) or ())
            ]
            ends = await consumer.end_offsets(tps) if tps else {}
            out[group] = sum(
                max(0, ends[tp] - (committed[tp].offset if tp in committed else 0)) for tp in tps
            )
        return out
    finally:
        await consumer.stop()
        await admin.close()


def metric_sums(text: str, names: Sequence[str]) -> dict[str, float]:
    """Sum each named metric's samples in a Prometheus text exposition."""
    sums = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in sums:
            sums[name] += float(line.rsplit(" ", 1)[1])
    return sums


async def behind(bootstrap: str, groups: Mapping[str, Sequence[str]], metrics_urls: Sequence[str]) -> Behind:
    lag = await group_lag(bootstrap, groups)
    backlog = dict.fromkeys(BACKLOG_METRICS, 0.0)
    async with httpx.AsyncClient(timeout=10) as client:
        for url in metrics_urls:
            sums = metric_sums((await client.get(url)).text, BACKLOG_METRICS)
            for name, value in sums.items():
                backlog[name] += value
    return Behind(lag, backlog)


async def wait_caught_up(
    bootstrap: str,
    groups: Mapping[str, Sequence[str]],
    metrics_urls: Sequence[str],
    timeout: float,
    on_check: Callable[[Behind], None] = lambda _: None,
) -> Behind:
    """Poll until caught up on two checks in a row a second apart, or `timeout` seconds pass;
    returns the last check (`done` tells which)."""
    deadline = time.monotonic() + timeout
    streak = 0
    while True:
        state = await behind(bootstrap, groups, metrics_urls)
        on_check(state)
        streak = streak + 1 if state.done else 0
        if streak >= 2 or time.monotonic() > deadline:
            return state
        await asyncio.sleep(1.0)  # the services work meanwhile; there is nothing to wait on
