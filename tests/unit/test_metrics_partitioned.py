"""PartitionedMetrics against one aggregator and numpy; lateness, idle closing and feedback."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from streams.metrics import (
    MetricRecord,
    MetricsAggregator,
    MetricsConfig,
    PartitionedMetrics,
    PricingTable,
)
from tests.unit.metrics_fakes import Call, Feedback, at, rank_error

PRICING = PricingTable.load()
CONFIG = MetricsConfig(
    key_sets=(("app", "model"), ("app",), ("model",)),
    window_seconds=60.0,
    allowed_lateness_seconds=60.0,
    quantile_rank_error=0.01,
    quantile_exact_capacity=64,
)
QUANTILES = {
    "latency_p50_ms": 0.5,
    "latency_p90_ms": 0.9,
    "latency_p95_ms": 0.95,
    "latency_p99_ms": 0.99,
}
TTFT_QUANTILES = {"ttft_p50_ms": 0.5, "ttft_p95_ms": 0.95}
Event = tuple[int, Any]  # (partition, call or feedback); a partition of -1 for feedback


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def generate(n: int, seed: int, partitions: int) -> list[Event]:
    """Calls moving forward 0.1 s each with up to 100 s of disorder, split at random.

    Sums are dyadic (so exact in any order): costs k / 2**20, scores k / 16, and
    tokens per second only from latencies of 125 * 2**j ms.
    """
    rng = random.Random(seed)
    events: list[Event] = []
    for i in range(n):
        tokens = rng.randint(0, 900) if rng.random() < 0.5 else None
        latency = 125.0 * 2 ** rng.randint(0, 5) if tokens is not None else None
        call = Call(
            event_id=f"e{i}",
            timestamp=at(i * 0.1 - rng.uniform(0, 100) ** 2 / 100),
            app=rng.choice(["bot", "search", "agent"]),
            model=rng.choice(["gpt-4o", "gpt-4o-mini", "acme-unpriced"]),
            latency_ms=latency or rng.lognormvariate(6.0, 0.8),
            ttft_ms=rng.lognormvariate(4.0, 0.5) if rng.random() < 0.7 else None,
            input_tokens=rng.randint(0, 4000),
            output_tokens=tokens,
            cached_input_tokens=rng.choice([None, 64]),
            cost_usd=rng.randint(1, 4096) / 2**20 if rng.random() < 0.8 else None,
            status="error" if rng.random() < 0.1 else "ok",
            finish_reason=rng.choice(["stop", "length", "content_filter", None]),
            scores={"tox": rng.randint(0, 16) / 16} if rng.random() < 0.5 else {},
        )
        if call.cost_usd is None:
            call = replace(call, model="acme-unpriced")  # priced nowhere: cost_missing
        events.append((rng.randrange(partitions), call))
        if rng.random() < 0.2:
            target = f"e{rng.randint(max(0, i - 50), i)}" if rng.random() < 0.9 else "unknown"
            feedback = Feedback(target, at(i * 0.1 - rng.uniform(0, 30)), "thumbs_up", i % 2)
            events.append((-1, feedback))
    return events


def kafka_offsets(events: list[Event]) -> list[int]:
    """Each call's offset in its partition (-1 for feedback)."""
    next_offset: dict[int, int] = defaultdict(int)
    out = []
    for partition, _ in events:
        out.append(next_offset[partition] if partition >= 0 else -1)
        next_offset[partition] += 1
    return out


def run_single(events: list[Event], clock: FakeClock) -> Any:
    agg = MetricsAggregator(CONFIG, PRICING, clock=clock)
    records: list[MetricRecord] = []
    counted = []
    for i, (partition, event) in enumerate(events):
        clock.now = 1_000.0 + i * 0.01
        if partition < 0:
            agg.add_feedback(event)
        else:
            counted.append((event, agg.add_call(event)))
        if i % 50 == 0:
            records += agg.close_due()
    return agg, records + agg.close_due(now=1e9), counted


def run_partitioned(
    events: list[Event], partitions: int, config: MetricsConfig = CONFIG, live_every: int = 0
) -> tuple[PartitionedMetrics, list[MetricRecord], list[tuple[Call, bool]]]:
    """Feed every event, closing due windows every 50 events (and reading the live view)."""
    clock = FakeClock()
    metrics = PartitionedMetrics(config, PRICING, clock=clock)
    for p in range(partitions):
        metrics.assign(p, None)
    records: list[MetricRecord] = []
    counted = []
    for i, ((partition, event), offset) in enumerate(
        zip(events, kafka_offsets(events), strict=True)
    ):
        clock.now = 1_000.0 + i * 0.01
        if partition < 0:
            metrics.add_feedback(event)
        else:
            counted.append((event, metrics.add_call(partition, offset, event)))
        if i % 50 == 0:
            records += metrics.close_due()
        if live_every and i % live_every == 0:
            live = metrics.open_windows()
            assert all(r.closed_by is None for r in live)
            assert len(live) == metrics.open_window_count
    return metrics, records + metrics.close_due(now=1e9), counted


def without(record: MetricRecord, fields: Any) -> dict[str, Any]:
    return {k: v for k, v in record.to_json_dict().items() if k not in fields}


@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 6])
def test_partitions_report_as_one_aggregator_and_as_numpy(partitions: int) -> None:
    events = generate(6000, seed=partitions, partitions=partitions)
    # Closing every 50 events: windows close by the watermark as the stream moves on.
    single, expected, counted_single = run_single(events, FakeClock())
    metrics, got, counted = run_partitioned(events, partitions)

    # (a) The same decisions and records as one aggregator fed every event.
    assert [c for _, c in counted] == [c for _, c in counted_single]
    assert sum(not c for _, c in counted) > 100  # some calls were late
    assert metrics.late_events == single.late_events
    assert metrics.feedback_late == single.feedback_late
    assert metrics.feedback_unjoined == single.feedback_unjoined > 0
    assert metrics.duplicate_calls == single.duplicate_calls == 0
    assert len(got) == len(expected) and metrics.open_window_count == 0
    quantile_fields = {*QUANTILES, *TTFT_QUANTILES}
    for mine, theirs in zip(got, expected, strict=True):
        assert without(mine, quantile_fields) == without(theirs, quantile_fields)
        if mine.requests <= CONFIG.quantile_exact_capacity:
            assert mine == theirs

    # (b) An independent computation over the calls counted.
    groups: dict[tuple[str, tuple[str, ...], float], list[Call]] = defaultdict(list)
    for call, ok in counted:
        if ok:
            start = call.timestamp.timestamp() // 60 * 60
            for key_set, name in zip(CONFIG.key_sets, CONFIG.key_set_names, strict=True):
                groups[(name, tuple(getattr(call, d) for d in key_set), start)].append(call)
    with_calls = [r for r in got if r.requests]
    assert len(with_calls) == len(groups)
    assert any(r.requests > CONFIG.quantile_exact_capacity for r in with_calls)
    for record in with_calls:
        group = groups[
            (record.key_set, tuple(record.dimensions.values()), record.window_start.timestamp())
        ]
        assert record.requests == len(group)
        assert record.errors == sum(c.status == "error" for c in group)
        assert record.input_tokens_sum == sum(c.input_tokens or 0 for c in group)
        assert record.cost_usd_sum == sum(c.cost_usd or 0.0 for c in group)
        assert record.cost_missing == sum(c.cost_usd is None for c in group)
        assert record.score_counts.get("tox", 0) == sum("tox" in c.scores for c in group)
        latencies = np.array([c.latency_ms for c in group])
        ttfts = np.array([c.ttft_ms for c in group if c.ttft_ms is not None])
        check_quantiles(record, QUANTILES, latencies)
        check_quantiles(record, TTFT_QUANTILES, ttfts)


def check_quantiles(record: MetricRecord, fields: dict[str, float], values: np.ndarray) -> None:
    for name, q in fields.items():
        value = getattr(record, name)
        if not len(values):
            assert value is None
        elif len(values) <= CONFIG.quantile_exact_capacity:
            assert value == pytest.approx(np.quantile(values, q), rel=1e-12)
        else:
            assert rank_error(values, value, q) <= CONFIG.quantile_rank_error


def test_replayed_offsets_are_skipped_per_partition() -> None:
    metrics = PartitionedMetrics(CONFIG, PRICING, clock=FakeClock())
    metrics.assign(0, None)
    metrics.assign(1, None)
    assert metrics.add_call(0, 5, Call("a", at(1)))
    assert not metrics.add_call(0, 5, Call("b", at(2)))
    assert not metrics.add_call(0, 4, Call("c", at(2)))
    assert metrics.add_call(1, 0, Call("d", at(2)))  # offsets are per partition
    assert metrics.add_call(0, 6, Call("e", at(3)))
    assert metrics.replayed_skipped == 2
    assert sum(r.requests for r in metrics.open_windows() if r.key_set == "app") == 3
    with pytest.raises(KeyError, match="partition 7 is not assigned"):
        metrics.add_call(7, 0, Call("f", at(3)))


def test_the_watermark_is_shared_so_lateness_is_the_same_in_every_partition() -> None:
    cfg = MetricsConfig(key_sets=(("app",),), allowed_lateness_seconds=120)
    metrics = PartitionedMetrics(cfg, PRICING, clock=FakeClock())
    for p in range(3):
        metrics.assign(p, None)
    assert metrics.add_call(1, 0, Call("a", at(10)))
    assert metrics.add_call(0, 0, Call("b", at(300)))  # the watermark passes [0, 60) + 120 s
    assert metrics.watermark == at(300).timestamp()
    # Partition 1 has seen only t=10, but its [0, 60) window closes by the shared watermark.
    (closed,) = metrics.close_due()
    assert (closed.window_start, closed.requests, closed.closed_by) == (at(0), 1, "watermark")
    assert not metrics.add_call(2, 0, Call("late", at(20)))  # late in a fresh partition too
    assert metrics.late_events == {"app": 1}
    # Counted in the key's window holding the watermark, merged with partition 0's call.
    (current,) = metrics.open_windows()
    assert (current.window_start, current.requests, current.late_events) == (at(300), 1, 1)


def test_windows_close_idle_only_when_idle_in_every_partition() -> None:
    clock = FakeClock(1_000.0)
    cfg = MetricsConfig(key_sets=(("app",),), idle_close_seconds=30)
    metrics = PartitionedMetrics(cfg, PRICING, clock=clock)
    metrics.assign(0, None)
    metrics.assign(1, None)
    metrics.add_call(0, 0, Call("a", at(5), latency_ms=100.0))
    clock.now = 1_020.0
    metrics.add_call(1, 0, Call("b", at(6), latency_ms=300.0))
    metrics.add_call(1, 1, Call("c", at(7), app="other"))
    clock.now = 1_030.0  # idle 30 s in partition 0, only 10 s in partition 1
    assert metrics.close_due() == []
    clock.now = 1_050.0
    closed = metrics.close_due()
    assert [(r.dimensions["app"], r.requests, r.closed_by) for r in closed] == [
        ("bot", 2, "idle"),
        ("other", 1, "idle"),
    ]
    assert closed[0].latency_p50_ms == 200.0 and metrics.open_window_count == 0
    # Later events of the closed windows are late in every partition, also one that
    # never held the window and one assigned after the close.
    metrics.assign(2, None)
    assert not metrics.add_call(0, 1, Call("d", at(8)))
    assert not metrics.add_call(0, 2, Call("e", at(9), app="other"))
    assert not metrics.add_call(2, 0, Call("f", at(10)))
    assert metrics.late_events == {"app": 3}
    assert metrics.open_window_count == 0 and metrics.close_due(now=10**6) == []


def test_open_windows_merge_copies_and_change_nothing() -> None:
    events = generate(3000, seed=5, partitions=3)
    _, expected, _ = run_partitioned(events, 3)
    _, got, _ = run_partitioned(events, 3, live_every=97)
    assert got == expected


def test_feedback_goes_to_the_partition_that_knows_its_call() -> None:
    cfg = MetricsConfig(key_sets=(("app",),))
    metrics = PartitionedMetrics(cfg, PRICING, clock=FakeClock())
    assert not metrics.add_feedback(Feedback("a", at(1), "x", 1.0))  # nothing assigned yet
    for p in (4, 2, 0):
        metrics.assign(p, None)
    metrics.add_call(2, 0, Call("a", at(1), app="bot"))
    metrics.add_call(4, 0, Call("b", at(2), app="search"))
    assert metrics.add_feedback(Feedback("b", at(3), "x", 1.0))
    assert metrics.add_feedback(Feedback("a", at(4), "x", 0.0))
    assert not metrics.add_feedback(Feedback("nope", at(4), "x", 1.0))
    assert metrics.feedback_unjoined == 2  # once, not once per partition
    windows = {r.dimensions["app"]: r for r in metrics.open_windows()}
    assert windows["search"].feedback_counts == {"x": 1}
    assert windows["bot"].feedback_means == {"x": 0.0}
    # The count is kept with the lowest partition's state, so it is checkpointed.
    assert metrics.partition_state(0)["aggregator"]["feedback_unjoined"] == 1
    metrics.revoke(4)
    assert not metrics.add_feedback(Feedback("b", at(5), "x", 1.0))
    assert metrics.partitions == (0, 2)


def test_docstring_examples() -> None:
    import doctest

    from streams.metrics import partitioned

    assert doctest.testmod(partitioned).failed == 0
