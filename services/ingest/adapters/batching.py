"""Record batches shared by concurrent requests, built with aiokafka's batch API.

aiokafka's `send()` costs a coroutine, a partitioner call and a future per record, and resolves
each of those futures on acknowledgement; at tens of thousands of events per second that was
most of a worker's CPU. Here every record is appended straight into the open `BatchBuilder` of
its partition, and a request waits on one future per partition it touched.

Per partition, one submitter hands builders to `send_batch` in order. Full builders go at once;
the open one is taken only after the partition's previous batch was acknowledged, so while a
batch is on its way every request arriving meanwhile fills the next one: batches grow with load
and round-trip time (what the broker pays for is batches, not records) without a fixed linger,
and a lone request still goes out at once. Order within a partition is arrival order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from aiokafka import AIOKafkaProducer


class RecordTooLarge(Exception):
    """A single record does not fit an empty batch (`max_batch_size`)."""


def _relay(done: asyncio.Future[None], result: asyncio.Future[Any]) -> None:
    """Copy a batch's outcome to the future the requests of that batch wait on."""
    if done.done():
        return
    if result.cancelled():
        done.set_exception(asyncio.CancelledError("batch cancelled"))
    elif (exc := result.exception()) is not None:
        done.set_exception(exc)
    else:
        done.set_result(None)


class _Partition:
    __slots__ = ("builder", "done", "in_flight", "sealed", "submitting")

    def __init__(self) -> None:
        self.builder: Any = None  # aiokafka BatchBuilder being filled
        self.done: asyncio.Future[None] | None = None  # resolves when `builder` is acknowledged
        self.sealed: deque[tuple[Any, asyncio.Future[None]]] = deque()  # full, not yet submitted
        self.in_flight: asyncio.Future[Any] | None = None  # the last submitted batch's outcome
        self.submitting = False


class PartitionBatcher:
    """Appends records for one topic of one producer; `append` returns the future to await."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._parts: dict[int, _Partition] = {}
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()

    def append(self, partition: int, key: bytes, value: bytes) -> asyncio.Future[None]:
        """Add a record to the partition's open batch; the future resolves once Kafka
        acknowledged that batch (or fails with the producer's error). Call `flush` after the
        request's appends so the batch gets submitted."""
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition()
        if part.builder is None:
            part.builder = self._producer.create_batch()
            part.done = self._loop.create_future()
        elif part.builder.append(key=key, value=value, timestamp=None) is not None:
            assert part.done is not None
            return part.done
        else:  # the open batch is full: seal it and start the next one
            assert part.done is not None
            part.sealed.append((part.builder, part.done))
            part.builder = self._producer.create_batch()
            part.done = self._loop.create_future()
        if part.builder.append(key=key, value=value, timestamp=None) is None:
            raise RecordTooLarge(f"a record of {len(value)} bytes does not fit a batch")
        assert part.done is not None
        return part.done

    def flush(self) -> None:
        """Make sure every partition with open records has a submitter running."""
        for partition, part in self._parts.items():
            if not part.submitting and (part.builder is not None or part.sealed):
                part.submitting = True
                task = self._loop.create_task(self._submit(partition, part))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def wait_submitted(self) -> None:
        """Wait until every appended record was handed to the producer (before stopping it)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def _submit(self, partition: int, part: _Partition) -> None:
        try:
            while True:
                if part.sealed:
                    builder, done = part.sealed.popleft()
                elif part.builder is not None:
                    if part.in_flight is not None and not part.in_flight.done():
                        await asyncio.wait([part.in_flight])  # meanwhile the open batch grows
                        continue
                    assert part.done is not None
                    builder, done = part.builder, part.done
                    part.builder = part.done = None
                else:
                    return
                builder.close()
                try:
                    result = await self._producer.send_batch(builder, self._topic, partition=partition)
                except Exception as exc:  # the waiting requests get the producer's error
                    if not done.done():
                        done.set_exception(exc)
                    continue
                result.add_done_callback(lambda r, done=done: _relay(done, r))
                part.in_flight = result
        finally:
            part.submitting = False

    def fail_pending(self, exc: BaseException) -> None:
        """Stop submitting and fail every future not yet handed to the producer."""
        for task in self._tasks:
            task.cancel()
        for part in self._parts.values():
            for _, done in part.sealed:
                if not done.done():
                    done.set_exception(exc)
            part.sealed.clear()
            if part.done is not None and not part.done.done():
                part.done.set_exception(exc)
            part.builder = part.done = None
