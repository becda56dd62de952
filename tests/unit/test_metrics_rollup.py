"""The stream's window records and the llm_calls_1m view agree on the real embedded engine.

The same seeded calls go through the production path into ``llm_calls`` (and so into the
view) and into a `MetricsAggregator`; the closed records are written to ``llm_metrics_1m``.
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from schemas import LLMCall, TextPolicy, apply_text_policy, decode_call
from streams.metrics import MetricRecord, MetricsAggregator, MetricsConfig, PricingTable
from streams.migrations import migrate
from streams.rows import CALL_COLUMNS, METRIC_COLUMNS, call_row, metric_row
from streams.store import ClickHouseStore
from tests.events import valid_call

QS = (0.5, 0.9, 0.95, 0.99)
MINUTES = 6
HEAVY = 3000  # calls in one key and minute: past the stream's 1,024 exact values
KEY_SET = ("app", "environment", "provider", "model")
Key = tuple[str, str, str, str, datetime]


def _events(rng: random.Random) -> list[dict[str, Any]]:
    """~5,000 calls over MINUTES whole minutes an hour ago, shuffled out of order."""
    start = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
    events = []
    for i in range(2000 + HEAVY):
        heavy = i >= 2000
        minute = 2 if heavy else rng.randrange(MINUTES)
        at = start + timedelta(minutes=minute, seconds=rng.random() * 59.999)
        event = valid_call(
            i,
            rng,
            timestamp=at.isoformat(),
            app="app-heavy" if heavy else f"app-{i % 4}",
            environment="production" if heavy or rng.random() < 0.5 else "staging",
            status="error" if rng.random() < 0.05 else "ok",
            finish_reason=rng.choice(["stop", "stop", "stop", "length", "content_filter"]),
        )
        if heavy:
            event.update(provider="openai", model="gpt-4o")
        if rng.random() < 0.2:
            del event["ttft_ms"]
        if rng.random() < 0.3:
            event["cached_input_tokens"] = rng.randint(0, event["input_tokens"])
        if event["model"] != "claude-3-5-haiku":
            # Dyadic costs add up exactly in any order, so sums can be compared with ==.
            event["cost_usd"] = rng.randint(1, 4096) / 2**20
        events.append(event)
    rng.shuffle(events)
    return events


def _stream_records(calls: list[LLMCall]) -> list[MetricRecord]:
    config = MetricsConfig(key_sets=(KEY_SET,), allowed_lateness_seconds=3600.0)
    agg = MetricsAggregator(config, PricingTable.load(), clock=lambda: 0.0)
    assert all(agg.add_call(call) for call in calls)
    records = agg.close_due(now=1e9)
    assert agg.open_window_count == 0
    return records


def _key(dims: dict[str, str] | tuple[Any, ...], minute: datetime) -> Key:
    if isinstance(dims, dict):
        dims = tuple(dims[name] for name in KEY_SET)
    return (dims[0], dims[1], dims[2], dims[3], minute.replace(tzinfo=UTC))


def _view(store: ClickHouseStore) -> dict[Key, tuple[Any, ...]]:
    rows = store.query(
        "SELECT app, environment, provider, model, minute, countMerge(requests), sum(errors), "
        "sum(input_tokens_sum), sum(output_tokens_sum), sum(cached_input_tokens_sum), "
        "sum(cost_usd_sum), "
        "sum(cost_calls), sum(finish_length), sum(finish_content_filter), "
        "quantilesExactInclusiveMerge(0.5, 0.9, 0.95, 0.99)(latency_q), "
        "quantilesExactInclusiveMerge(0.5, 0.95)(ttft_q) "
        f"FROM {store.database}.llm_calls_1m "
        "GROUP BY app, environment, provider, model, minute"
    ).rows
    return {_key(row[:4], row[4]): row[5:] for row in rows}


def _within_rank(value: float, ordered: list[float], q: float, eps: float) -> bool:
    """Whether an observed ``value``'s rank is within ``eps * n`` of ``1 + q (n - 1)``."""
    n = len(ordered)
    target = 1 + q * (n - 1)
    low, high = bisect_left(ordered, value) + 1, bisect_right(ordered, value)
    return low - eps * n <= target <= high + eps * n


def _check_quantiles(
    record: MetricRecord, view_latency: list[float], latencies: list[float]
) -> None:
    stream = [record.latency_p50_ms, record.latency_p90_ms, record.latency_p95_ms,
              record.latency_p99_ms]  # fmt: skip
    if record.requests <= 1024:
        assert stream == pytest.approx(view_latency, rel=1e-12)
    else:
        ordered = sorted(latencies)
        for q, value in zip(QS, stream, strict=True):
            assert value is not None and _within_rank(value, ordered, q, 0.005)


def _read_metrics(store: ClickHouseStore) -> list[MetricRecord]:
    rows = store.query(
        f"SELECT {', '.join(METRIC_COLUMNS)} FROM {store.database}.llm_metrics_1m FINAL "
        "ORDER BY window_start, key_set, app, environment, provider, model"
    ).rows
    records = []
    for row in rows:
        data = dict(zip(METRIC_COLUMNS, row, strict=True))
        for name in ("window_start", "window_end"):
            data[name] = data[name].replace(tzinfo=UTC)
        for name in ("app", "environment", "provider", "model", "prompt_id", "prompt_version"):
            del data[name]
        records.append(MetricRecord(**data))
    return records


def test_stream_records_agree_with_the_rollup_view(tmp_path: Path) -> None:
    rng = random.Random(42)
    raw = _events(rng)
    calls = [apply_text_policy(decode_call(orjson.dumps(e)), TextPolicy()) for e in raw]
    records = _stream_records(calls)
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}")
    try:
        migrate(store, ttl_days=30)
        body = b"\n".join(call_row(c, 0, i) for i, c in enumerate(calls))
        for _ in range(2):  # a replayed batch with the same token is dropped before the view
            store.insert_json_rows("llm_calls", CALL_COLUMNS, body, "calls-0")
        metrics = b"\n".join(metric_row(r) for r in records)
        for _ in range(2):  # a replayed window record replaces itself
            store.insert_json_rows("llm_metrics_1m", METRIC_COLUMNS, metrics)
        view = _view(store)
        stored = _read_metrics(store)
    finally:
        store.close()

    latencies: dict[Key, list[float]] = defaultdict(list)
    priced_by_event: dict[Key, bool] = {}
    for call in calls:
        key = _key(call.model_dump(), call.timestamp.replace(second=0, microsecond=0))
        latencies[key].append(call.latency_ms)
        priced_by_event[key] = call.cost_usd is not None
    assert len(records) == len(view) == len(latencies) > MINUTES * 4
    assert sum(r.requests for r in records) == len(calls)
    assert any(r.requests > 1024 for r in records)
    for record in records:
        key = _key(record.dimensions, record.window_start)
        (requests, errors, input_tokens, output_tokens, cached, cost, cost_calls, length,
         content_filter, view_latency, view_ttft) = view[key]  # fmt: skip
        assert (requests, errors) == (record.requests, record.errors)
        assert (input_tokens, output_tokens, cached) == (
            record.input_tokens_sum, record.output_tokens_sum, record.cached_input_tokens_sum
        )  # fmt: skip
        assert record.finish_length_rate == length / requests
        assert record.finish_content_filter_rate == content_filter / requests
        if priced_by_event[key]:
            assert (cost, cost_calls, record.cost_missing) == (record.cost_usd_sum, requests, 0)
        else:  # priced from the table by the stream only; llm_calls keeps the event's cost
            assert (cost, cost_calls) == (0.0, 0) and record.cost_usd_sum > 0
        # The view is exact at any size: numpy's linear interpolation.
        assert view_latency == pytest.approx(np.quantile(latencies[key], QS).tolist(), rel=1e-12)
        _check_quantiles(record, view_latency, latencies[key])
        if 0 < record.ttft_count <= 1024:
            ttft = [record.ttft_p50_ms, record.ttft_p95_ms]
            assert ttft == pytest.approx(view_ttft, rel=1e-12)
    assert stored == records
