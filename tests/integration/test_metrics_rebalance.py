"""Metric state moves with its partition: revoke on one stage, restore on another, exact counts.

Two `MetricsStage` objects stand for two workers; checkpoints go through the real broker's
compacted topic and closed windows into a real embedded ClickHouse store.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.checkpoints import CheckpointStore
from streams.config import Settings
from streams.metrics import MetricRecord, MetricsConfig, PartitionedMetrics, PricingTable
from streams.metrics_stage import MetricsStage
from streams.migrations import migrate
from streams.rows import METRIC_COLUMNS
from streams.sink import ClickHouseSink
from streams.store import ClickHouseStore
from streams.topics import ensure_topics_async
from tests.unit.metrics_fakes import Call

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
KEY = os.urandom(32)


class Event:
    """A faust event's ack, recorded."""

    def __init__(self, acked: list[int], offset: int) -> None:
        self.acked, self.offset = acked, offset

    def ack(self) -> None:
        self.acked.append(self.offset)


def _stage(kafka: str, topic: str, store: ClickHouseStore, out: list[MetricRecord]) -> MetricsStage:
    config = MetricsConfig(key_sets=(("app",),), window_seconds=60, allowed_lateness_seconds=0)
    pricing = PricingTable.load()

    async def publish(key: bytes, value: bytes) -> None:
        out.append(orjson.loads(value))

    sink = ClickHouseSink(store, "llm_metrics_1m", METRIC_COLUMNS, flush_interval_s=0.2)
    sink.start()
    return MetricsStage(
        PartitionedMetrics(config, pricing),
        CheckpointStore(kafka, {}, topic, KEY),
        "calls",
        publish,
        sink,
        checkpoint_interval_s=3600,
        pricing=pricing,
    )


def test_partition_moves_between_workers_without_loss_or_double_count(
    kafka: str, tmp_path: Path
) -> None:
    async def run() -> None:
        topic = f"llmpulse.state.{uuid.uuid4().hex[:8]}"
        await ensure_topics_async(Settings(kafka_bootstrap=kafka, topic_state=topic), (topic,))
        store = ClickHouseStore(f"chdb://{tmp_path / 'chdb'}")
        await store.run(migrate, store, 30)
        out_a: list[Any] = []
        out_b: list[Any] = []
        a = _stage(kafka, topic, store, out_a)
        b = _stage(kafka, topic, store, out_b)
        await a.checkpoints.start()
        await b.checkpoints.start()
        acked: list[int] = []
        try:
            await a.assign([0, 1, 2])
            # App "p<n>" lives on partition n: producers key by app.
            for i in range(300):
                p = i % 3
                call = Call(f"e{i}", T0 + timedelta(seconds=i / 10), app=f"p{p}")
                a.add_call(call, p, i)
                a.hold(Event(acked, i)).ack()  # its row is stored
            # Rebalance: partitions 1 and 2 move to worker B.
            await a.revoke([1, 2])
            assert sorted(acked) == list(range(300))  # released by the revoke's checkpoint
            await b.assign([1, 2])
            assert a.metrics.partitions == (0,) and b.metrics.partitions == (1, 2)
            # B gets some of A's last calls again (not yet committed when A let go) and new ones.
            for i in range(270, 600):
                p = i % 3
                call = Call(f"e{i}", T0 + timedelta(seconds=i / 10), app=f"p{p}")
                (a if p == 0 else b).add_call(call, p, i)
            closer = T0 + timedelta(seconds=125)
            a.add_call(Call("c0", closer, app="p0"), 0, 10_000)
            b.add_call(Call("c1", closer, app="p1"), 1, 10_000)
            await a.tick()
            await b.tick()
        finally:
            for stage in (a, b):
                await stage.sink.stop()
                await stage.checkpoints.stop()
        firsts = {(r["dimensions"]["app"], r["window_start"]): r["requests"] for r in out_a + out_b}
        # 600 calls within the first minute: 200 per app, each counted once; the closers'
        # window (2 minutes later) stays open.
        assert firsts == {(f"p{p}", T0.isoformat()): 200 for p in range(3)}
        assert b.metrics.replayed_skipped == 20  # calls 270..299 of partitions 1 and 2
        rows = await store.run(
            store.query,
            "SELECT app, sum(requests) FROM llmpulse.llm_metrics_1m FINAL "
            "GROUP BY app ORDER BY app",
        )
        assert rows.rows == [("p0", 200), ("p1", 200), ("p2", 200)]
        await store.aclose()

    asyncio.run(run())
