"""The runner's Kafka ports on aiokafka: the group consumer and the dead-letter producer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, for_code

from shared.logging import get_logger
from shared.runtime.ports import OnAssigned, OnRevoked
from shared.runtime.records import Record

log = get_logger(__name__)

_CONNECT_TIMEOUT = 1.0


async def bootstrap_reachable(bootstrap: str) -> bool:
    """True when any bootstrap address accepts a TCP connection within a second.

    Deliberately below the client: aiokafka retries metadata forever on its own, so its state says
    little about whether the broker is there right now, and asking it costs a request timeout.
    """
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), _CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return True
    return False


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self, on_assigned: OnAssigned, on_revoked: OnRevoked, forget: Callable[[set[TopicPartition]], None]
    ) -> None:
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._forget = forget

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._on_revoked(set(revoked))
        self._forget(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._on_assigned(set(assigned))


class KafkaConsumerPort:
    """`ports.ConsumerPort` on an `AIOKafkaConsumer` (no auto-commit, read_committed)."""

    def __init__(
        self,
        *,
        bootstrap: str,
        group: str,
        topics: Sequence[str],
        max_batch: int,
        session_timeout_ms: int,
        max_poll_interval_ms: int,
        instance_id: str | None,
    ) -> None:
        self._bootstrap = bootstrap
        self._group = group
        self._topics = list(topics)
        self._options: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": max_batch,
            "session_timeout_ms": session_timeout_ms,
            "max_poll_interval_ms": max_poll_interval_ms,
            "group_instance_id": instance_id,
            "isolation_level": "read_committed",
        }
        self._client: AIOKafkaConsumer | None = None
        self._committed: dict[TopicPartition, int] = {}
        self._subscribed = False

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        if self._client is None:
            raise RuntimeError("the consumer is not started")
        return self._client

    async def start(self, on_assigned: OnAssigned, on_revoked: OnRevoked) -> None:
        if self._client is None:  # built here, inside the running loop that will use it
            self._client = AIOKafkaConsumer(**self._options)
        await self._client.start()
        if not self._subscribed:
            listener = _Listener(on_assigned, on_revoked, self._forget)
            self._client.subscribe(self._topics, listener=listener)
            self._subscribed = True

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.stop()

    def _forget(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:  # the next owner commits them; our last commit says nothing any more
            self._committed.pop(tp, None)

    async def getmany(
        self, partitions: Sequence[TopicPartition], timeout_ms: int, max_records: int
    ) -> Mapping[TopicPartition, Sequence[Record]]:
        batches = await self._consumer.getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        return {
            tp: [
                Record(tp.topic, tp.partition, r.offset, r.key, r.value, tuple(r.headers or ()))
                for r in records
            ]
            for tp, records in batches.items()
            if records
        }

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        mine = self._consumer.assignment()
        self._consumer.pause(*(tp for tp in partitions if tp in mine))

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        mine = self._consumer.assignment()
        self._consumer.resume(*(tp for tp in partitions if tp in mine))

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit(dict(offsets))
        except (CommitFailedError, IllegalStateError) as exc:
            # Lost the partitions in a rebalance; the effects are committed and deduped, so the
            # new owner re-reading these messages changes nothing.
            log.warning("offset commit rejected after rebalance", consumer=self._group, error=repr(exc))
            return
        except KafkaError as exc:
            log.warning(
                "offset commit failed; messages will be redelivered and deduped",
                consumer=self._group,
                error=repr(exc),
            )
            return
        self._committed.update(offsets)

    async def lag(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        lags: dict[TopicPartition, int] = {}
        for tp in partitions:
            try:
                highwater = self._consumer.highwater(tp)
                if highwater is None:  # no fetch answered for it yet
                    continue
                position = self._committed.get(tp)
                if position is None:
                    position = await asyncio.wait_for(self._consumer.position(tp), 1.0)
            except (IllegalStateError, TimeoutError):  # revoked meanwhile, or position not known yet
                continue
            lags[tp] = max(0, highwater - position)
        return lags

    async def retention(self, topics: Sequence[str]) -> dict[str, timedelta | None]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        await admin.start()
        try:
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, t, {"retention.ms": None}) for t in topics]
            )
        finally:
            await admin.close()
        found: dict[str, timedelta | None] = {}
        for response in responses:
            for resource in response.resources:
                error_code, error_message, _, name, entries = resource[:5]
                if error_code:
                    raise for_code(error_code)(f"describe_configs({name}): {error_message}")
                for entry in entries:
                    if entry[0] == "retention.ms":
                        ms = int(entry[1])
                        found[name] = None if ms < 0 else timedelta(milliseconds=ms)
        missing = set(topics) - set(found)
        if missing:
            raise KafkaError(f"the broker did not report retention.ms for {sorted(missing)}")
        return found

    async def reachable(self) -> bool:
        return await bootstrap_reachable(self._bootstrap)


class KafkaDeadLetters:
    """`ports.DeadLetterPort` on the service's (idempotent, acks=all) producer."""

    def __init__(self, producer: AIOKafkaProducer, bootstrap: str, send_timeout: float = 30.0) -> None:
        self._producer = producer
        self._bootstrap = bootstrap
        self._send_timeout = send_timeout

    async def send(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        fut: Any = await self._producer.send(topic, value=value, key=key, headers=list(headers))
        await asyncio.wait_for(fut, self._send_timeout)

    async def reachable(self) -> bool:
        return await bootstrap_reachable(self._bootstrap)
