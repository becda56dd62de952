"""Batch ingestion: an aiokafka consumer hands ``getmany`` batches to faust agents via channels.

faust's per-message path (fetch loop, conductor, channel queue, ``Event``, stream, sensors) costs
about 100 µs per record (docs/performance.md). The worker's high-volume topics are therefore read
by this service inside the faust app: one aiokafka consumer in the consumer group, whose batches go
to the agents through in-memory faust channels, one put per batch. The agents still do the work,
and faust still runs the lifecycle, web pages and timers.

Offsets are committed by this service: a record's offset is committable once its acknowledgement
arrives (`RecordAck.ack`, called by a sink after the row is written, or after a checkpoint that
counts it), and only up to the first record that is still unacknowledged in its partition.

On a rebalance, before partitions are released, every batch already handed out is processed, the
revoke hook runs (sinks flush, state checkpoints), and the offsets of the released partitions are
committed; newly assigned partitions are restored by the assign hook before any of their records is
fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRebalanceListener
from mode import Service

log = logging.getLogger(__name__)

PartitionsHook = Callable[[str, list[int]], Awaitable[None]]


class RecordAck:
    """One consumed record as the ingestion path sees it: ``.message`` and ``.ack()``."""

    __slots__ = ("acked", "message")

    def __init__(self, message: Any) -> None:
        self.message = message
        self.acked = False

    def ack(self) -> None:
        self.acked = True


class OffsetTracker:
    """Per partition, the records handed out in order; what is committable is the acked prefix."""

    def __init__(self) -> None:
        self._pending: dict[Any, deque[RecordAck]] = {}

    def track(self, tp: Any, records: list[Any]) -> list[RecordAck]:
        acks = [RecordAck(record) for record in records]
        self._pending.setdefault(tp, deque()).extend(acks)
        return acks

    def committable(self, tps: Any = None) -> dict[Any, int]:
        """Next offset to commit per partition, for partitions that advanced; pops the prefix."""
        out: dict[Any, int] = {}
        for tp in list(self._pending) if tps is None else tps:
            queue = self._pending.get(tp)
            last = None
            while queue and queue[0].acked:
                last = queue.popleft().message.offset
            if last is not None:
                out[tp] = last + 1
        return out

    def unacked(self) -> int:
        return sum(len(queue) for queue in self._pending.values())

    def forget(self, tps: Any) -> None:
        for tp in tps:
            self._pending.pop(tp, None)


@dataclass(eq=False)
class Batch:
    """Records of one partition, handed to an agent; ``done`` is set once it is processed."""

    topic: str
    partition: int
    records: list[RecordAck]
    done: asyncio.Event = field(default_factory=asyncio.Event)


async def batch_events(batches: AsyncIterator[Any]) -> AsyncIterator[RecordAck]:
    """Flatten an agent's stream of `Batch` values into records, marking each batch done."""
    async for batch in batches:
        try:
            for record in batch.records:
                yield record
        finally:
            batch.done.set()


@dataclass(frozen=True)
class PartitionOffsets:
    """Where one assigned partition stands, as of the last fetch response.

    ``fetched`` is the next offset to fetch; ``committed`` the next offset a restarted
    consumer would read: the last commit by this worker, else where the partition resumed.
    """

    topic: str
    partition: int
    highwater: int
    fetched: int | None
    committed: int | None


@dataclass
class ConsumerStats:
    batches: int = 0
    records: int = 0
    commits: int = 0
    commit_failures: int = 0
    rebalances: int = 0


class BatchConsumer(Service):
    """Consumes ``topics`` in the consumer group and feeds their agents' channels.

    Parameters
    ----------
    channels
        Topic name -> the faust channel its agent iterates.
    client_options
        aiokafka connection options (bootstrap, security), see `Settings.kafka_client_options`.
    on_assigned, on_revoked
        Coroutines called with a topic and its partitions during a rebalance.
    """

    def __init__(
        self,
        channels: dict[str, Any],
        group_id: str,
        client_options: dict[str, Any],
        on_assigned: PartitionsHook,
        on_revoked: PartitionsHook,
        max_records: int = 2000,
        commit_interval_s: float = 1.0,
        revoke_timeout_s: float = 30.0,
        **kwargs: Any,
    ) -> None:
        self.channels = channels
        self.group_id = group_id
        self.client_options = client_options
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self.max_records = max_records
        self.commit_interval_s = commit_interval_s
        self.revoke_timeout_s = revoke_timeout_s
        self.tracker = OffsetTracker()
        self.stats = ConsumerStats()
        self.consumer: Any = None
        self._inflight: set[Batch] = set()
        self._fetched: dict[Any, int] = {}
        self._committed: dict[Any, int] = {}
        self._failed: dict[Any, int] = {}
        # Set once the assign hook has restored the current assignment's state.
        self._restored = asyncio.Event()
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        self.consumer = AIOKafkaConsumer(
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.max_records,
            # Backpressure may hold the fetch loop while the store is down; stay in the group.
            max_poll_interval_ms=3_600_000,
            **self.client_options,
        )
        self.consumer.subscribe(list(self.channels), listener=_Listener(self))
        await self.consumer.start()
        self.add_future(self._fetch_loop())
        self.add_future(self._commit_loop())

    async def on_stop(self) -> None:
        if self.consumer is None:
            return
        with contextlib.suppress(Exception):
            await self._commit()
        await self.consumer.stop()
        self.consumer = None

    def lag(self) -> dict[str, int]:
        """Records between the fetch position and the log end, per ``topic:partition``."""
        return {
            f"{p.topic}:{p.partition}": max(0, p.highwater - p.fetched)
            for p in self.offsets()
            if p.fetched is not None
        }

    def offsets(self) -> list[PartitionOffsets]:
        """Each assigned partition whose log end is known (from a fetch response)."""
        consumer = self.consumer
        if consumer is None:
            return []
        out = []
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is not None:
                fetched, committed = self._fetched.get(tp), self._committed.get(tp)
                out.append(PartitionOffsets(tp.topic, tp.partition, end, fetched, committed))
        return out

    async def _fetch_loop(self) -> None:
        consumer = self.consumer
        while not self.should_stop:
            fetched = await consumer.getmany(timeout_ms=500, max_records=self.max_records)
            if fetched and not self._restored.is_set():
                await self._restored.wait()
            for tp, records in fetched.items():
                if not records:
                    continue
                batch = Batch(tp.topic, tp.partition, self.tracker.track(tp, records))
                self._inflight.add(batch)
                self._fetched[tp] = records[-1].offset + 1
                self._committed.setdefault(tp, records[0].offset)
                self.stats.batches += 1
                self.stats.records += len(records)
                await self.channels[tp.topic].put(batch)
            self._reap()

    def _reap(self) -> None:
        self._inflight = {batch for batch in self._inflight if not batch.done.is_set()}

    async def _commit_loop(self) -> None:
        while not self.should_stop:
            await asyncio.sleep(self.commit_interval_s)
            await self._commit()

    async def _commit(self, tps: Any = None) -> None:
        offsets = self.tracker.committable(tps)
        for tp, offset in self._failed.items():
            if tps is None or tp in tps:
                offsets[tp] = max(offset, offsets.get(tp, offset))
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # retried with the next commit
            self.stats.commit_failures += 1
            self._failed.update(offsets)
            log.warning("offset commit failed (%s); will retry", exc)
            return
        self.stats.commits += 1
        self._committed.update(offsets)
        for tp in offsets:
            self._failed.pop(tp, None)

    async def wait_inflight(self) -> bool:
        """Wait until every batch handed out is processed; False on timeout."""
        self._reap()
        pending = [batch.done.wait() for batch in self._inflight]
        if not pending:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*pending), self.revoke_timeout_s)
        except TimeoutError:
            log.warning("batches still in flight after %.0fs of rebalance", self.revoke_timeout_s)
            return False
        self._reap()
        return True


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka rebalance listener: drain, flush and commit before partitions are released."""

    def __init__(self, owner: BatchConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        owner = self.owner
        owner._restored.clear()
        if not revoked:
            return
        owner.stats.rebalances += 1
        drained = await owner.wait_inflight()
        for topic, partitions in _by_topic(revoked).items():
            await owner.on_revoked(topic, partitions)
        if drained:
            await owner._commit(revoked)
        owner.tracker.forget(revoked)
        for tp in revoked:
            owner._failed.pop(tp, None)
            owner._fetched.pop(tp, None)
            owner._committed.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        for topic, partitions in _by_topic(assigned).items():
            await self.owner.on_assigned(topic, partitions)
        self.owner._restored.set()


def _by_topic(tps: Any) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for tp in tps:
        out.setdefault(tp.topic, []).append(tp.partition)
    return {topic: sorted(partitions) for topic, partitions in out.items()}
