"""What the worker's stages share: one place their records go out, and a checkpoint timer.

A stage (metrics, detections) produces records that go to a ClickHouse table, to a Kafka
topic, and to in-process listeners (the alert rules); `RecordOutputs` does the three in that
order. `CheckpointTimer` says when a stage's state is due to be saved and how old it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from streams.sink import ClickHouseSink

log = logging.getLogger(__name__)

R = TypeVar("R")
Publish = Callable[[bytes, bytes], Awaitable[None]]


class RecordOutputs(Generic[R]):
    """Sends records to a table (``row``), a topic (``key``, ``value``) and the listeners.

    A listener that raises is logged and skipped: alerting must not stop records being stored.
    `emit` returns once the broker has every record; the rows are in the sink's buffer.
    """

    def __init__(
        self,
        publish: Publish,
        sink: ClickHouseSink,
        row: Callable[[R], bytes],
        key: Callable[[R], bytes],
        value: Callable[[R], bytes],
    ) -> None:
        self.publish = publish
        self.sink = sink
        self._row, self._key, self._value = row, key, value
        self.listeners: list[Callable[[R], None]] = []
        self.published = 0

    async def emit(self, records: Sequence[R]) -> None:
        if not records:
            return
        for record in records:
            await self.sink.add(self._row(record))
            for listener in self.listeners:
                try:
                    listener(record)
                except Exception:
                    log.exception("%s listener failed", self.sink.table)
        await asyncio.gather(*(self.publish(self._key(r), self._value(r)) for r in records))
        self.published += len(records)


class CheckpointTimer:
    """When state was last saved (monotonic clock): is a save due, and how old is it."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._since = time.monotonic()
        self._saved: float | None = None

    def due(self) -> bool:
        return time.monotonic() - self._since >= self.interval_s

    def saved(self) -> None:
        self._since = self._saved = time.monotonic()

    def age_s(self) -> float | None:
        return None if self._saved is None else round(time.monotonic() - self._saved, 3)
