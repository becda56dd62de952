"""The sink acknowledges only what is durably written, retries forever, and applies backpressure."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from streams.sink import ClickHouseSink, RetryPolicy
from streams.store import StoreRejected, StoreUnavailable


class FlakyStore:
    """Stands in for ClickHouseStore.run/insert_json_rows; fails while ``down`` is set."""

    def __init__(self) -> None:
        self.down = False
        self.poison: set[bytes] = set()
        self.written: list[bytes] = []
        self.attempts = 0

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def insert_json_rows(
        self, table: str, columns: Sequence[str], body: bytes, token: str | None = None
    ) -> None:
        self.attempts += 1
        if self.down:
            raise StoreUnavailable("connection refused")
        rows = body.split(b"\n")
        if self.poison & set(rows):
            raise StoreRejected("Code: 27. CANNOT_PARSE_INPUT_ASSERTION_FAILED")
        self.written.extend(rows)


class Ack:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def ack(self) -> None:
        self.log.append(self.name)


async def _no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def _sink(store: FlakyStore, **kwargs: Any) -> ClickHouseSink:
    options: dict[str, Any] = {
        "batch_rows": 3, "flush_interval_s": 60.0, "max_pending_batches": 1,
        "retry": RetryPolicy(0.01, 0.02), "sleep": _no_sleep,
    }  # fmt: skip
    options.update(kwargs)
    return ClickHouseSink(store, "t", ["x"], **options)  # type: ignore[arg-type]


async def test_acks_follow_the_write_and_failed_writes_ack_nothing() -> None:
    store = FlakyStore()
    store.down = True
    acked: list[str] = []
    sink = _sink(store)
    sink.start()
    for i in range(3):
        await sink.add(f"r{i}".encode(), Ack(f"r{i}", acked))
    for _ in range(50):
        await asyncio.sleep(0)
    assert store.attempts > 3 and sink.stats.retries > 3
    assert acked == [] and store.written == []
    store.down = False
    await sink.flush()
    assert acked == ["r0", "r1", "r2"]
    assert store.written == [b"r0", b"r1", b"r2"]
    await sink.stop()


async def test_stop_during_outage_leaves_rows_unacknowledged() -> None:
    store = FlakyStore()
    store.down = True
    acked: list[str] = []
    sink = _sink(store, batch_rows=100)
    sink.start()
    await sink.add(b"r0", Ack("r0", acked))
    await sink.stop(flush_timeout=0.05)
    assert acked == [] and store.written == []


async def test_backpressure_blocks_add_with_bounded_memory() -> None:
    store = FlakyStore()
    store.down = True
    sink = _sink(store)
    sink.start()
    added = 0

    async def producer() -> None:
        nonlocal added
        for i in range(100):
            await sink.add(f"r{i}".encode())
            added += 1

    task = asyncio.create_task(producer())
    for _ in range(200):
        await asyncio.sleep(0)
    # one batch in the writer, one pending, one being filled: at most 3 batches of 3 rows
    assert added <= 9 and not task.done()
    assert sink.stats.backpressure
    store.down = False
    await asyncio.wait_for(task, 5)
    await sink.flush()
    assert len(store.written) == 100
    await sink.stop()


async def test_rejected_row_is_isolated_and_dead_lettered() -> None:
    store = FlakyStore()
    store.poison = {b"bad"}
    acked: list[str] = []
    rejected: list[tuple[bytes, str]] = []

    async def on_rejected(row: bytes, reason: str, ack: Any) -> None:
        rejected.append((row, reason))
        ack.ack()

    sink = _sink(store, batch_rows=5, on_rejected=on_rejected)
    sink.start()
    for name in ("a", "b", "bad", "c", "d"):
        await sink.add(name.encode(), Ack(name, acked))
    await sink.flush()
    assert sorted(store.written) == [b"a", b"b", b"c", b"d"]
    assert [row for row, _ in rejected] == [b"bad"]
    assert sorted(acked) == ["a", "b", "bad", "c", "d"]
    assert sink.stats.rows_rejected == 1
    await sink.stop()


async def test_partial_batch_flushes_on_interval() -> None:
    now = [0.0]
    store = FlakyStore()
    sink = ClickHouseSink(
        store, "t", ["x"], batch_rows=1000, flush_interval_s=1.0,  # type: ignore[arg-type]
        clock=lambda: now[0],
    )  # fmt: skip
    sink.start()
    await sink.add(b"r0")
    await asyncio.sleep(0.3)
    assert store.written == []
    now[0] = 1.5
    for _ in range(40):
        if store.written:
            break
        await asyncio.sleep(0.05)
    assert store.written == [b"r0"]
    await sink.stop()


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="batch_rows"):
        ClickHouseSink(FlakyStore(), "t", ["x"], batch_rows=0)  # type: ignore[arg-type]
