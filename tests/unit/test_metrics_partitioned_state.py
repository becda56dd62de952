"""PartitionedMetrics checkpoints: a restart replays committed calls without double counting."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import orjson
import pytest

from streams.metrics import MetricRecord, MetricsConfig, MetricsStateError, PartitionedMetrics
from tests.unit.metrics_fakes import Call, at
from tests.unit.test_metrics_partitioned import (
    CONFIG,
    PRICING,
    Event,
    FakeClock,
    generate,
    kafka_offsets,
    run_partitioned,
)


def replay_run(
    events: list[Event], partitions: int, checkpoint_at: int, commit_at: int, config: MetricsConfig
) -> Any:
    """Run to ``checkpoint_at``, checkpoint, run on and crash; restore and re-feed the
    calls from ``commit_at`` (the offsets committed before the checkpoint)."""
    clock = FakeClock()
    first = PartitionedMetrics(config, PRICING, clock=clock)
    for p in range(partitions):
        first.assign(p, None)
    offsets = kafka_offsets(events)
    records: list[MetricRecord] = []
    states: dict[int, bytes] = {}
    for i, (partition, event) in enumerate(events):
        clock.now = 1_000.0 + i * 0.01
        if partition < 0:
            first.add_feedback(event)
        else:
            first.add_call(partition, offsets[i], event)
        if i % 50 == 0 and i <= checkpoint_at:
            records += first.close_due()
        if i == checkpoint_at:
            states = {p: orjson.dumps(first.partition_state(p)) for p in first.partitions}
        if i == checkpoint_at + 700:
            break  # crash: whatever was done since the checkpoint is lost
    # An instant restart: restored idle timers start where the checkpoint left them.
    clock.now = 1_000.0 + checkpoint_at * 0.01
    restored = PartitionedMetrics(config, PRICING, clock=clock)
    for p in random.Random(checkpoint_at).sample(sorted(states), len(states)):
        restored.assign(p, orjson.loads(states[p]))
    for i in range(commit_at, len(events)):
        partition, event = events[i]
        clock.now = 1_000.0 + i * 0.01
        if partition < 0:
            if i > checkpoint_at:  # feedback offsets are committed with the checkpoint
                restored.add_feedback(event)
        else:
            restored.add_call(partition, offsets[i], event)
        if i % 50 == 0 and i > checkpoint_at:
            records += restored.close_due()
    return restored, records + restored.close_due(now=1e9)


@pytest.mark.parametrize("idle_close_seconds", [None, 2.0])
@pytest.mark.parametrize(("partitions", "checkpoint_at"), [(1, 2000), (3, 3001), (5, 4500)])
def test_restart_from_checkpoint_skips_replayed_calls_and_reports_identically(
    partitions: int, checkpoint_at: int, idle_close_seconds: float | None
) -> None:
    # With a 2 s idle timeout (200 events of fake wall time) windows also close idle.
    config = replace(CONFIG, idle_close_seconds=idle_close_seconds)
    events = generate(5000, seed=10 + partitions, partitions=partitions)
    whole, expected, _ = run_partitioned(events, partitions, config)
    assert whole.watermark is not None
    closed_idle_early = [
        r
        for r in expected
        if r.closed_by == "idle" and r.window_end.timestamp() + 60 <= whole.watermark
    ]
    assert bool(closed_idle_early) == (idle_close_seconds is not None)
    commit_at = checkpoint_at - 400
    restored, got = replay_run(events, partitions, checkpoint_at, commit_at, config)
    assert got == expected  # every field, quantiles included
    replayed = sum(p >= 0 for p, _ in events[commit_at : checkpoint_at + 1])
    assert restored.replayed_skipped == replayed > 0
    assert restored.late_events == whole.late_events
    assert restored.feedback_unjoined == whole.feedback_unjoined


def test_restored_partition_raises_the_shared_watermark() -> None:
    cfg = MetricsConfig(key_sets=(("app",),))
    donor = PartitionedMetrics(cfg, PRICING, clock=FakeClock())
    donor.assign(3, None)
    donor.assign(5, None)
    donor.add_call(3, 41, Call("a", at(400)))
    donor.add_call(5, 0, Call("z", at(500)))
    state = orjson.loads(orjson.dumps(donor.partition_state(3)))
    assert state["offset"] == 41 and state["partition"] == 3
    # Partition 3 carries the watermark its calls were judged by: the shared one.
    assert state["aggregator"]["watermark"] == at(500).timestamp()
    metrics = PartitionedMetrics(cfg, PRICING, clock=FakeClock())
    metrics.assign(0, None)
    metrics.add_call(0, 0, Call("b", at(100)))
    metrics.assign(3, state)
    assert metrics.watermark == at(500).timestamp()
    assert not metrics.add_call(0, 1, Call("c", at(110)))  # [60, 120) is closed at 500
    assert not metrics.add_call(3, 41, Call("a", at(500)))  # already counted
    assert metrics.add_call(3, 42, Call("d", at(501)))
    assert [r.requests for r in metrics.close_due()] == [1]  # [60, 120) by the watermark


def valid_state() -> dict[str, Any]:
    metrics = PartitionedMetrics(CONFIG, PRICING, clock=FakeClock())
    metrics.assign(1, None)
    metrics.add_call(1, 7, Call("a", at(1)))
    state: dict[str, Any] = orjson.loads(orjson.dumps(metrics.partition_state(1)))
    return state


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "version"),
        ({"partition": 2}, "written for partition 2"),
        ({"offset": -1}, "greater than or equal"),
        ({"offset": "7"}, "valid integer"),
        ({"replayed_skipped": None}, "valid integer"),
        ({"surprise": 1}, "Extra inputs"),
        ({"aggregator": []}, "valid dictionary"),
        ({"aggregator": {"version": 1}}, "malformed metrics state"),
    ],
)
def test_malformed_partition_state_is_rejected(change: dict[str, Any], message: str) -> None:
    metrics = PartitionedMetrics(CONFIG, PRICING)
    with pytest.raises(MetricsStateError, match=message):
        metrics.assign(1, valid_state() | change)
    assert metrics.partitions == ()  # nothing half-assigned: a fresh start is possible
    metrics.assign(1, None)
    with pytest.raises(MetricsStateError, match="JSON object"):
        PartitionedMetrics(CONFIG, PRICING).assign(1, [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already assigned"):
        metrics.assign(1, None)


def test_downtime_is_not_idleness() -> None:
    """Windows restored after a long stop wait a full idle timeout for the replay."""
    cfg = MetricsConfig(key_sets=(("app",),), idle_close_seconds=30.0)
    clock = FakeClock()
    clock.now = 1_000.0
    before = PartitionedMetrics(cfg, PRICING, clock=clock)
    before.assign(0, None)
    before.add_call(0, 7, Call("e-1", at(400), app="a"))
    state = orjson.loads(orjson.dumps(before.partition_state(0)))
    clock.now = 5_000.0  # down for more than an hour
    after = PartitionedMetrics(cfg, PRICING, clock=clock)
    after.assign(0, state)
    assert after.close_due() == []
    after.add_call(0, 8, Call("e-2", at(401), app="a"))
    clock.now = 5_031.0
    (record,) = after.close_due()
    assert (record.requests, record.closed_by) == (2, "idle")
