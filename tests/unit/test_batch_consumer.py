"""Offsets are committed only up to the first unacknowledged record of each partition."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

from streams.batch_consumer import Batch, OffsetTracker, RecordAck, batch_events


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int


def _records(partition: int, offsets: range) -> list[Record]:
    return [Record("calls", partition, o) for o in offsets]


def test_commits_the_acked_prefix_per_partition() -> None:
    tracker = OffsetTracker()
    a = tracker.track("tp0", _records(0, range(10, 15)))
    b = tracker.track("tp1", _records(1, range(0, 3)))
    assert tracker.committable() == {}
    a[0].ack()
    a[1].ack()
    a[3].ack()  # out of order: waits for a[2]
    b[2].ack()
    assert tracker.committable() == {"tp0": 12}
    assert tracker.committable() == {}  # nothing new
    a[2].ack()
    b[0].ack()
    b[1].ack()
    assert tracker.committable() == {"tp0": 14, "tp1": 3}
    assert tracker.unacked() == 1
    a[4].ack()
    assert tracker.committable(["tp1"]) == {}
    assert tracker.committable(["tp0"]) == {"tp0": 15}


def test_forget_drops_a_revoked_partition() -> None:
    tracker = OffsetTracker()
    acks = tracker.track("tp0", _records(0, range(3)))
    tracker.forget(["tp0"])
    for ack in acks:
        ack.ack()
    assert tracker.committable() == {}
    assert tracker.unacked() == 0


def test_batch_events_flattens_and_marks_batches_done() -> None:
    async def run() -> None:
        batches = [
            Batch("calls", 0, [RecordAck(r) for r in _records(0, range(3))]),
            Batch("calls", 1, [RecordAck(r) for r in _records(1, range(2))]),
        ]

        async def stream() -> AsyncIterator[Any]:
            for batch in batches:
                yield batch

        seen = []
        async for record in batch_events(stream()):
            seen.append((record.message.partition, record.message.offset))
            # A batch is done only once its last record has been processed.
            assert not batches[record.message.partition].done.is_set()
        assert seen == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
        assert all(batch.done.is_set() for batch in batches)

    asyncio.run(run())
