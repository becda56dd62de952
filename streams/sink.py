"""Batching ClickHouse sink: rows are acknowledged to Kafka only after they are durably written.

A sink buffers JSONEachRow lines with an acknowledgement handle each (the faust event). A batch is
sealed on size or age and handed to one writer task. The writer retries an unavailable store with
capped exponential backoff, forever: rows are never dropped. While it retries, sealed batches pile
up to ``max_pending_batches`` and then ``add`` blocks, which stops the agent and so pauses
consumption (backpressure) with memory bounded by ``(max_pending_batches + 1) * batch_rows`` rows.
Rows the store refuses as data (not as availability) are isolated by bisection and handed to
``on_rejected`` — the dead-letter path — so one bad row cannot hold back the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from streams.store import StoreRejected, StoreUnavailable

log = logging.getLogger(__name__)


class Ackable(Protocol):
    def ack(self) -> Any: ...


class BatchStore(Protocol):
    """Where a sink writes: `streams.store.ClickHouseStore`, or `streams.rows_topic.RowsTopicStore`
    (the batches go to Kafka for the writer). The sink awaits
    ``store.run(store.insert_json_rows, table, columns, body, token)``."""

    def run(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]: ...

    def insert_json_rows(
        self, table: str, columns: Sequence[str], body: bytes, dedup_token: str | None = None
    ) -> Any: ...


RejectHandler = Callable[[bytes, str, Any], Awaitable[None]]

BATCH_ROWS_BOUNDS: tuple[float, ...] = (1, 10, 100, 500, 1000, 2000, 5000, 10_000, 50_000)
WRITE_SECONDS_BOUNDS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


@dataclass
class BucketCounts:
    """Observations per bucket (``value <= bound``; the last bucket is +Inf), not cumulative:
    one list increment per written batch, read at scrape time as a Prometheus histogram."""

    bounds: tuple[float, ...]
    counts: list[int] = field(init=False)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


@dataclass
class SinkStats:
    rows_written: int = 0
    batches_written: int = 0
    retries: int = 0
    rows_rejected: int = 0
    backpressure: bool = False
    last_batch_rows: int = 0
    last_write_seconds: float = 0.0
    batch_rows: BucketCounts = field(default_factory=lambda: BucketCounts(BATCH_ROWS_BOUNDS))
    # Per written batch, from the first attempt: time spent retrying is included.
    write_seconds: BucketCounts = field(default_factory=lambda: BucketCounts(WRITE_SECONDS_BOUNDS))


@dataclass
class _Batch:
    rows: list[bytes] = field(default_factory=list)
    acks: list[Any] = field(default_factory=list)
    started: float = 0.0


@dataclass(frozen=True)
class RetryPolicy:
    initial_s: float = 0.2
    max_s: float = 10.0

    def delays(self) -> Iterator[float]:
        delay = self.initial_s
        while True:
            yield delay
            delay = min(delay * 2, self.max_s)


class ClickHouseSink:
    """One table's buffer and writer. Use ``add`` on the hot path and ``flush`` at checkpoints."""

    def __init__(
        self,
        store: BatchStore,
        table: str,
        columns: Sequence[str],
        *,
        batch_rows: int = 5000,
        flush_interval_s: float = 1.0,
        max_pending_batches: int = 2,
        retry: RetryPolicy | None = None,
        on_rejected: RejectHandler | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if batch_rows < 1 or max_pending_batches < 1 or flush_interval_s <= 0:
            raise ValueError("batch_rows, max_pending_batches must be >= 1; flush interval > 0")
        self.store = store
        self.table = table
        self.columns = tuple(columns)
        self.batch_rows = batch_rows
        self.flush_interval_s = flush_interval_s
        self.retry = retry or RetryPolicy()
        self.on_rejected = on_rejected
        self.stats = SinkStats()
        self._clock = clock
        self._sleep = sleep
        self._buffer = _Batch()
        self._queue: asyncio.Queue[_Batch] = asyncio.Queue(maxsize=max_pending_batches)
        self._seal_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._writer(), name=f"sink-writer-{self.table}"),
                asyncio.create_task(self._ticker(), name=f"sink-ticker-{self.table}"),
            ]

    async def stop(self, flush_timeout: float = 10.0) -> None:
        """Flush what can be flushed in time; anything unwritten stays unacknowledged."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), flush_timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    @property
    def pending_batches(self) -> int:
        return self._queue.qsize()

    @property
    def buffered_rows(self) -> int:
        return len(self._buffer.rows) + self.pending_batches * self.batch_rows

    async def add(self, row: bytes, ack: Any = None) -> None:
        buffer = self._buffer
        if not buffer.rows:
            buffer.started = self._clock()
        buffer.rows.append(row)
        buffer.acks.append(ack)
        if len(buffer.rows) >= self.batch_rows:
            await self._seal()

    async def flush(self) -> None:
        """Seal the current buffer and wait until every sealed batch is written."""
        await self._seal()
        await self._queue.join()

    async def _seal(self) -> None:
        async with self._seal_lock:
            batch = self._buffer
            if not batch.rows:
                return
            self._buffer = _Batch()
            self.stats.backpressure = self._queue.full()
            await self._queue.put(batch)

    async def _ticker(self) -> None:
        period = min(self.flush_interval_s / 4, 0.25)
        while True:
            await self._sleep(period)
            buffer = self._buffer
            if buffer.rows and self._clock() - buffer.started >= self.flush_interval_s:
                await self._seal()

    async def _writer(self) -> None:
        while True:
            batch = await self._queue.get()
            try:
                await self._write(batch.rows, batch.acks)
            finally:
                self._queue.task_done()
                self.stats.backpressure = False

    async def _write(self, rows: list[bytes], acks: list[Any]) -> None:
        body = b"\n".join(rows)
        token = hashlib.blake2b(body, digest_size=16).hexdigest()
        delays = self.retry.delays()
        started = time.perf_counter()
        while True:
            try:
                await self.store.run(
                    self.store.insert_json_rows, self.table, self.columns, body, token
                )
                break
            except StoreUnavailable as exc:
                delay = next(delays)
                self.stats.retries += 1
                self.stats.backpressure = True
                log.warning("%s: store unavailable (%s); retrying in %.1fs", self.table, exc, delay)
                await self._sleep(delay)
            except StoreRejected as exc:
                await self._isolate(rows, acks, str(exc))
                return
        elapsed = time.perf_counter() - started
        self.stats.rows_written += len(rows)
        self.stats.batches_written += 1
        self.stats.last_batch_rows = len(rows)
        self.stats.last_write_seconds = elapsed
        self.stats.batch_rows.observe(len(rows))
        self.stats.write_seconds.observe(elapsed)
        for ack in acks:
            if ack is not None:
                ack.ack()

    async def _isolate(self, rows: list[bytes], acks: list[Any], reason: str) -> None:
        if len(rows) == 1:
            self.stats.rows_rejected += 1
            if self.on_rejected is None:
                log.error("%s: row rejected by the store: %s", self.table, reason[:500])
                raise StoreRejected(reason)
            # The store's reason quotes the row, prompt text included when it is stored: the
            # handler, which knows what the row holds, decides whether to log it.
            log.error("%s: row rejected by the store; handed to its reject handler", self.table)
            await self.on_rejected(rows[0], reason, acks[0])
            return
        middle = len(rows) // 2
        await self._write(rows[:middle], acks[:middle])
        await self._write(rows[middle:], acks[middle:])
