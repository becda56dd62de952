"""MetricsAggregator windows against an independent numpy computation, and their semantics."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from streams.metrics import MetricRecord, MetricsAggregator, MetricsConfig, PricingTable
from tests.unit.metrics_fakes import Call, at


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def generate(n: int, seed: int, span_s: float = 100.0) -> list[Call]:
    rng = random.Random(seed)
    calls = []
    for i in range(n):
        calls.append(
            Call(
                event_id=f"e{i}",
                timestamp=at(rng.uniform(0, span_s)),  # shuffled: out of order
                app=rng.choice(["bot", "search"]),
                environment=rng.choice(["production", "staging", None]),
                provider="openai",
                model=rng.choice(["gpt-4o", "gpt-4o-mini", "acme-unpriced"]),
                prompt_id=rng.choice(["answer", None]),
                latency_ms=rng.lognormvariate(6.0, 0.8),
                ttft_ms=rng.lognormvariate(4.0, 0.5) if rng.random() < 0.7 else None,
                input_tokens=rng.randint(0, 4000),
                output_tokens=rng.choice([None, rng.randint(0, 900)]),
                cached_input_tokens=rng.choice([None, 50]),
                cost_usd=rng.choice([None, None, round(rng.random() / 100, 6)]),
                status="error" if rng.random() < 0.1 else "ok",
                finish_reason=rng.choice(["stop", "length", "content_filter", None]),
                scores={"toxicity": rng.random()} if rng.random() < 0.5 else {},
            )
        )
    return calls


def by_key(
    records: list[MetricRecord],
) -> dict[tuple[str, tuple[str, ...], datetime], MetricRecord]:
    return {(r.key_set, tuple(r.dimensions.values()), r.window_start): r for r in records}


def reference(calls: list[Call], dims: tuple[str, ...], window_s: float, pricing: PricingTable):
    """Independent per-key, per-window computation with numpy."""
    groups: dict[tuple[tuple[str, ...], datetime], list[Call]] = defaultdict(list)
    for c in calls:
        key = tuple(getattr(c, d) for d in dims)
        if all(key):
            start = int(c.timestamp.timestamp() // window_s) * window_s
            groups[(key, datetime.fromtimestamp(start, UTC))].append(c)
    for (key, start), group in groups.items():
        lat = np.array([c.latency_ms for c in group])
        ttft = np.array([c.ttft_ms for c in group if c.ttft_ms is not None])
        costs = [
            c.cost_usd
            if c.cost_usd is not None
            else pricing.price(c.model)
            and pricing.cost(
                c.model, c.input_tokens or 0, c.output_tokens or 0, c.cached_input_tokens or 0
            )
            for c in group
        ]
        tps = [
            c.output_tokens / (c.latency_ms / 1000) for c in group if c.output_tokens is not None
        ]
        yield key, start, group, lat, ttft, costs, tps


@pytest.mark.parametrize("window_s", [60.0, 10.0])
def test_closed_windows_match_numpy(window_s: float) -> None:
    calls = generate(4000, seed=int(window_s))
    pricing = PricingTable.load()
    agg = MetricsAggregator(MetricsConfig(window_seconds=window_s), pricing, clock=FakeClock())
    for c in calls:
        assert agg.add_call(c)  # every event is within the lateness: nothing is late
    assert agg.close_due() == []  # the watermark (<= 100 s) has passed no end + 120 s
    records = agg.close_due(now=1_000 + 10_000)  # idle close flushes everything
    got = by_key(records)
    expected_keys = set()
    for key_set in agg.config.key_sets:
        name = "_".join(key_set)
        for key, start, group, lat, ttft, costs, tps in reference(
            calls, key_set, window_s, pricing
        ):
            expected_keys.add((name, key, start))
            r = got[(name, key, start)]
            n = len(group)
            assert r.window_end - r.window_start == timedelta(seconds=window_s)
            assert r.requests == n
            assert r.errors == sum(c.status == "error" for c in group)
            assert r.error_rate == r.errors / n
            assert r.input_tokens_sum == sum(c.input_tokens or 0 for c in group)
            assert r.output_tokens_sum == sum(c.output_tokens or 0 for c in group)
            assert r.cost_missing == sum(cost is None for cost in costs)
            priced = [cost for cost in costs if cost is not None]
            assert r.cost_usd_sum == pytest.approx(sum(priced), rel=1e-12, abs=1e-15)
            if priced:
                assert r.cost_per_1k_requests == pytest.approx(1000 * sum(priced) / len(priced))
            assert r.finish_length_rate == sum(c.finish_reason == "length" for c in group) / n
            assert r.finish_content_filter_rate == (
                sum(c.finish_reason == "content_filter" for c in group) / n
            )
            assert r.output_tokens_per_second_count == len(tps)
            if tps:
                assert r.output_tokens_per_second_mean == pytest.approx(np.mean(tps), rel=1e-12)
            tox = [c.scores["toxicity"] for c in group if "toxicity" in c.scores]
            assert r.score_counts.get("toxicity", 0) == len(tox)
            if tox:
                assert r.score_means["toxicity"] == pytest.approx(np.mean(tox), rel=1e-12)
            # At most 1024 values per window here, so quantiles are exact.
            for q, value in zip(
                (0.5, 0.9, 0.95, 0.99),
                (r.latency_p50_ms, r.latency_p90_ms, r.latency_p95_ms, r.latency_p99_ms),
                strict=True,
            ):
                assert value == pytest.approx(np.quantile(lat, q), rel=1e-12)
            assert r.ttft_count == len(ttft)
            if len(ttft):
                assert r.ttft_p50_ms == pytest.approx(np.quantile(ttft, 0.5), rel=1e-12)
                assert r.ttft_p95_ms == pytest.approx(np.quantile(ttft, 0.95), rel=1e-12)
            else:
                assert r.ttft_p50_ms is None
    assert set(got) == expected_keys  # calls lacking a dimension are not in that key set


def test_large_window_quantiles_are_within_the_rank_error() -> None:
    rng = np.random.default_rng(5)
    latencies = rng.lognormal(6, 1, 30_000)
    agg = MetricsAggregator(MetricsConfig(key_sets=(("model",),)), PricingTable.load())
    for i, x in enumerate(latencies.tolist()):
        agg.add_call(Call(f"e{i}", at(i * 0.001), latency_ms=x))
    (record,) = agg.open_windows()
    ordered = np.sort(latencies)
    for q, value in ((0.5, record.latency_p50_ms), (0.99, record.latency_p99_ms)):
        lo = np.searchsorted(ordered, value, "left") + 1
        hi = np.searchsorted(ordered, value, "right")
        target = 1 + q * (len(ordered) - 1)
        assert max(0, lo - target, target - hi) <= 0.005 * len(ordered)


def test_out_of_order_events_land_in_their_own_window() -> None:
    agg = MetricsAggregator(MetricsConfig(key_sets=(("app",),)), PricingTable.load())
    for i, second in enumerate([70, 10, 130, 59.999, 60, 0]):
        assert agg.add_call(Call(f"e{i}", at(second)))
    counts = {r.window_start: r.requests for r in agg.open_windows()}
    assert counts == {at(0): 3, at(60): 2, at(120): 1}


def test_lateness_boundary_and_late_events_are_never_double_counted() -> None:
    cfg = MetricsConfig(key_sets=(("app",), ("model",)), allowed_lateness_seconds=120)
    agg = MetricsAggregator(cfg, PricingTable.load(), clock=FakeClock())
    assert agg.add_call(Call("a", at(30)))
    assert agg.add_call(Call("b", at(179.999)))  # watermark just before 60 + 120
    assert agg.add_call(Call("c", at(59)))  # window [0, 60) still open
    assert [r.window_start for r in agg.close_due()] == []
    assert agg.add_call(Call("d", at(180)))  # watermark reaches 60 + 120: [0, 60) closes
    assert not agg.add_call(Call("late", at(1)))
    assert agg.late_events == {"app": 1, "model": 1}
    closed = agg.close_due()
    assert [(r.key_set, r.window_start, r.requests, r.closed_by) for r in closed] == [
        ("app", at(0), 2, "watermark"),
        ("model", at(0), 2, "watermark"),
    ]
    assert not agg.add_call(Call("late2", at(2)))  # still late, nothing reopens
    assert agg.close_due() == []
    # Late calls are reported in the key's window that holds the watermark.
    current = {r.key_set: r for r in agg.open_windows() if r.window_start == at(180)}
    assert current["app"].late_events == 2 and current["app"].requests == 1


def test_idle_windows_close_on_the_wall_clock() -> None:
    clock = FakeClock(1_000.0)
    cfg = MetricsConfig(key_sets=(("app",),), idle_close_seconds=30)
    agg = MetricsAggregator(cfg, PricingTable.load(), clock=clock)
    agg.add_call(Call("a", at(5), app="quiet"))
    clock.now = 1_020.0
    agg.add_call(Call("b", at(6), app="busy"))
    clock.now = 1_029.9
    assert agg.close_due() == []
    clock.now = 1_030.0
    (record,) = agg.close_due()
    assert (record.dimensions, record.requests, record.closed_by) == ({"app": "quiet"}, 1, "idle")
    # A later event for the idle-closed window is late; it does not reopen it.
    assert not agg.add_call(Call("c", at(7), app="quiet"))
    assert agg.late_events == {"app": 1}
    clock.now = 1_050.0
    assert [r.dimensions["app"] for r in agg.close_due()] == ["busy"]


def test_missing_dimensions_and_duplicates_are_not_counted() -> None:
    agg = MetricsAggregator(MetricsConfig(), PricingTable.load())
    assert agg.add_call(Call("a", at(1), prompt_id=None, environment=""))
    assert not agg.add_call(Call("a", at(1)))  # replayed event_id
    assert agg.duplicate_calls == 1
    assert [r.key_set for r in agg.open_windows()] == ["provider_model"]


def test_cost_comes_from_the_event_else_the_table_else_is_missing() -> None:
    pricing = PricingTable.load()
    agg = MetricsAggregator(MetricsConfig(key_sets=(("app",),)), pricing)
    agg.add_call(Call("a", at(1), cost_usd=0.5))
    agg.add_call(Call("b", at(2), input_tokens=1_000_000, output_tokens=0))  # gpt-4o: $2.50
    agg.add_call(Call("c", at(3), model="acme-unpriced"))
    agg.add_call(Call("d", at(4), input_tokens=None, output_tokens=None))
    (r,) = agg.open_windows()
    assert r.cost_usd_sum == pytest.approx(3.0)
    assert r.cost_missing == 2
    assert r.cost_per_1k_requests == pytest.approx(1500.0)
    assert pricing.misses == {"acme-unpriced": 1}


def test_records_serialise_with_iso_timestamps() -> None:
    agg = MetricsAggregator(MetricsConfig(key_sets=(("app",),)), PricingTable.load())
    agg.add_call(replace(Call("a", at(1)), scores={"toxicity": 0.25}))
    data = agg.open_windows()[0].to_json_dict()
    assert data["window_start"] == "2025-03-01T12:00:00+00:00"
    assert data["score_means"] == {"toxicity": 0.25} and data["closed_by"] is None


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown dimensions"):
        MetricsConfig(key_sets=(("app", "region"),))
    with pytest.raises(ValueError, match="window_seconds"):
        MetricsConfig(window_seconds=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        MetricsAggregator(MetricsConfig(), PricingTable.load()).add_call(
            Call("a", datetime(2025, 1, 1))
        )
