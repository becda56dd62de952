"""Rolling metrics through the real worker: exact records in llm.metrics and llm_metrics_1m.

Event times are chosen by the test (a recent past, aligned to the window), so every expected
value is computed here independently with numpy from the events themselves.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest

from streams.metrics import PricingTable
from tests.events import valid_call
from tests.integration.conftest import consume_all, produce, wait_until

pytestmark = pytest.mark.integration

WINDOW = 10.0
LATENESS = 5.0
KEY_SETS = ("app_environment_provider_model", "app_prompt_id_prompt_version", "provider_model")
METRICS_ENV = {
    "LLMPULSE_METRICS_WINDOW_S": str(WINDOW),
    "LLMPULSE_METRICS_LATENESS_S": str(LATENESS),
    "LLMPULSE_METRICS_IDLE_CLOSE_S": "15",
    "LLMPULSE_CHECKPOINT_INTERVAL_S": "1",
}


def _base() -> float:
    """A window boundary two minutes ago: recent enough to pass validation."""
    return (time.time() // WINDOW) * WINDOW - 120.0


def _call(i: int, ts: float, rng: random.Random, **overrides: Any) -> dict[str, Any]:
    event = valid_call(i, rng, provider="openai", model="gpt-4o", app="shop", environment="prod")
    event.update(
        timestamp=datetime.fromtimestamp(ts, UTC).isoformat(),
        latency_ms=float(100 + 37 * (i % 50)),
        ttft_ms=float(20 + i % 13),
        status="error" if i % 7 == 0 else "ok",
        cost_usd=round(0.001 * (1 + i % 5), 6),
        prompt_version="v1",
    )
    event.update(overrides)
    return event


def _expected(events: list[dict[str, Any]], late: int = 0) -> dict[str, Any]:
    latency = np.array([e["latency_ms"] for e in events])
    pricing = PricingTable.load()
    cost = 0.0
    for e in events:
        if e.get("cost_usd") is not None:
            cost += e["cost_usd"]
        else:
            priced = pricing.cost(e["model"], e["input_tokens"], e["output_tokens"])
            assert priced is not None
            cost += priced
    errors = sum(e["status"] == "error" for e in events)
    return {
        "requests": len(events),
        "errors": errors,
        "error_rate": errors / len(events),
        "latency_p50_ms": float(np.percentile(latency, 50)),
        "latency_p95_ms": float(np.percentile(latency, 95)),
        "latency_p99_ms": float(np.percentile(latency, 99)),
        "ttft_p95_ms": float(np.percentile([e["ttft_ms"] for e in events], 95)),
        "input_tokens_sum": sum(e["input_tokens"] for e in events),
        "output_tokens_sum": sum(e["output_tokens"] for e in events),
        "cost_usd_sum": cost,
        "late_events": late,
    }


def _check(record: dict[str, Any], expected: dict[str, Any]) -> None:
    for name, value in expected.items():
        if isinstance(value, float):
            assert record[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
        else:
            assert record[name] == value, name


def _by_window(records: list[dict[str, Any]]) -> dict[tuple[str, float], dict[str, Any]]:
    out = {}
    for record in records:
        start = datetime.fromisoformat(record["window_start"]).timestamp()
        key = (record["key_set"], start)
        assert key not in out, f"two records for {key}"
        out[key] = record
    return out


def _published(kafka: str, env: dict[str, str], expected: int) -> list[dict[str, Any]]:
    return [
        orjson.loads(m.value) for m in consume_all(kafka, env["LLMPULSE_TOPIC_METRICS"], expected)
    ]


def _feed(kafka: str, worker: Any, topic: str, events: list[dict[str, Any]], total: int) -> None:
    """Produce and wait until the worker has consumed ``total`` calls in all.

    The watermark is the largest event time the worker has seen over all partitions, so a
    test that wants an event after another produces them in separate steps.
    """
    produce(kafka, topic, [orjson.dumps(e) for e in events])
    wait_until(
        lambda: (worker.health() or {}).get("events_in", {}).get(topic, 0) >= total,
        timeout=120,
        message=f"{total} calls consumed",
    )


def test_windows_out_of_order_and_late(
    kafka: str, worker_env: dict[str, str], make_worker: Any
) -> None:
    topic = worker_env["LLMPULSE_TOPIC_CALLS"]
    rng = random.Random(3)
    base = _base()
    # Windows A = [base, base+10), B = [base+10, base+20), C = [base+30, base+40).
    a = [_call(i, base + 9.9 - i * 0.4, rng) for i in range(24)]  # newest first: out of order
    a[3]["cost_usd"] = None  # priced from the table
    a[5]["cost_usd"] = None
    b = [_call(100 + i, base + 10 + (i * 7) % 10, rng) for i in range(10)]
    c_early = [_call(200 + i, base + 31 + i, rng) for i in range(3)]
    watermark = _call(300, base + 40.5, rng)
    # Then a call for window A, which the watermark closed: late. And one for C (end
    # base+40, closes at watermark base+45): out of order but on time.
    late = _call(400, base + 5.0, rng)
    c_late = _call(401, base + 36.0, rng)
    fed = 0
    worker = make_worker(**METRICS_ENV).start()
    # Each step is consumed before the next: the watermark is the largest time seen over all
    # partitions, so a B call (>= base+15) read before an A call would make that A call late.
    for step in (a, b, c_early, [watermark], [late, c_late]):
        fed += len(step)
        _feed(kafka, worker, topic, step, fed)

    # A, B and C close (C and the watermark's own window by the idle timer): 4 windows x 3 sets.
    records = _published(kafka, worker_env, expected=12)
    got = _by_window(records)
    assert len(got) == 12, sorted(got)
    expected = {
        base: _expected(a),
        base + 10: _expected(b),
        base + 30: _expected([*c_early, c_late]),
        # The watermark's window also holds the late call's count for every key set.
        base + 40: _expected([watermark], late=1),
    }
    for key_set in KEY_SETS:
        for start, values in expected.items():
            record = got[(key_set, start)]
            _check(record, values)
            assert record["window_end"] == datetime.fromtimestamp(start + WINDOW, UTC).isoformat()
    assert got[("provider_model", base)]["dimensions"] == {"provider": "openai", "model": "gpt-4o"}
    assert got[("app_prompt_id_prompt_version", base)]["dimensions"] == {
        "app": "shop", "prompt_id": "support-answer", "prompt_version": "v1",
    }  # fmt: skip

    # The same records in ClickHouse; the late call is still stored as a raw call.
    rows = worker.sql(
        "SELECT key_set, toUnixTimestamp(window_start), requests, errors, latency_p95_ms, "
        "late_events FROM llmpulse.llm_metrics_1m FINAL ORDER BY 2, 1"
    )
    assert len(rows) == 12
    for key_set, start, requests, errors, p95, late_events in rows:
        values = expected[float(start)]
        assert (requests, errors, late_events) == (
            values["requests"], values["errors"], values["late_events"],
        ), key_set  # fmt: skip
        assert p95 == pytest.approx(values["latency_p95_ms"])
    wait_until(
        lambda: worker.scalar("SELECT count() FROM llmpulse.llm_calls FINAL") == fed,
        timeout=30,
        message="every call stored, the late one too",
    )
    health = worker.health()
    assert health is not None
    assert health["metrics"]["late_events"]["app_environment_provider_model"] == 1


def test_restart_mid_window_counts_exactly(
    kafka: str, worker_env: dict[str, str], make_worker: Any
) -> None:
    topic = worker_env["LLMPULSE_TOPIC_CALLS"]
    rng = random.Random(5)
    base = _base()
    first = [_call(i, base + (i % 100) * 0.099, rng) for i in range(3000)]
    second = [_call(5000 + i, base + (i % 100) * 0.099, rng) for i in range(2000)]
    closer = _call(9000, base + WINDOW + LATENESS + 1, rng)
    env = {**METRICS_ENV, "LLMPULSE_CHECKPOINT_INTERVAL_S": "2"}

    worker = make_worker(**env).start()
    _feed(kafka, worker, topic, first, len(first))
    worker.kill()  # SIGKILL in the middle of the window: nothing is flushed on the way out

    restarted = make_worker(**env).start()
    produce(kafka, topic, [orjson.dumps(e) for e in second])
    # Replayed calls (consumed but not committed before the kill) are skipped by the metrics.
    # The closer comes once every call is in, so no call of the window can arrive after it.
    wait_until(
        lambda: restarted.scalar("SELECT uniqExact(event_id) FROM llmpulse.llm_calls") == 5000,
        timeout=120,
        message="every call stored",
    )
    produce(kafka, topic, [orjson.dumps(closer)])
    records = _published(kafka, worker_env, expected=3)
    start = datetime.fromtimestamp(base, UTC).isoformat()
    got = _by_window([r for r in records if r["window_start"] == start])
    assert len(got) == 3
    everything = first + second
    exact = {k: v for k, v in _expected(everything).items() if "_p" not in k}
    latency = np.sort([e["latency_ms"] for e in everything])
    for key_set in KEY_SETS:
        record = got[(key_set, base)]
        _check(record, exact)
        # 5,000 values are past the exact capacity (1,024): within the 0.5% rank error.
        for q, name in (
            (0.5, "latency_p50_ms"),
            (0.95, "latency_p95_ms"),
            (0.99, "latency_p99_ms"),
        ):
            low = np.searchsorted(latency, record[name], side="left")
            high = np.searchsorted(latency, record[name], side="right")
            target = q * (len(latency) - 1)
            slack = 0.005 * len(latency) + 1
            assert low - slack <= target <= high + slack, (name, record[name])
    health = restarted.health()
    assert health is not None
    assert health["metrics"]["checkpoints"]["rejected"] == {}
    assert health["metrics"]["checkpoints"]["loaded"] >= 1
    rows = restarted.sql(
        "SELECT key_set, requests FROM llmpulse.llm_metrics_1m FINAL "
        f"WHERE window_start = toDateTime({int(base)}) ORDER BY key_set"
    )
    assert rows == [(k, 5000) for k in sorted(KEY_SETS)]
