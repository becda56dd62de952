"""A realistic ``GET /live`` body for the ``llmpulse top`` tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.metrics import MetricRecord

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY_SET = "app_environment_provider_model"


def record(model: str, requests: int, **overrides: Any) -> dict[str, Any]:
    """A partial window of ``bot/production/openai/<model>`` as the worker would publish it."""
    base = MetricRecord(
        key_set=KEY_SET,
        dimensions={
            "app": "bot",
            "environment": "production",
            "provider": "openai",
            "model": model,
        },
        window_start=START,
        window_end=START + timedelta(seconds=60),
        requests=requests,
        errors=0,
        error_rate=0.0,
        latency_p50_ms=420.0,
        latency_p90_ms=900.0,
        latency_p95_ms=1_100.0,
        latency_p99_ms=2_400.0,
        ttft_count=requests,
        ttft_p50_ms=180.0,
        ttft_p95_ms=350.0,
        output_tokens_per_second_count=requests,
        output_tokens_per_second_mean=61.25,
        input_tokens_sum=900 * requests,
        output_tokens_sum=120 * requests,
        cached_input_tokens_sum=0,
        cost_usd_sum=0.0031 * requests,
        cost_missing=0,
        cost_per_1k_requests=3.1,
        finish_length_rate=0.01,
        finish_content_filter_rate=0.0,
        score_means={"hallucination": 0.04},
        score_counts={"hallucination": requests},
        feedback_means={},
        feedback_counts={},
        late_events=0,
        closed_by=None,
    )
    return replace(base, **overrides).to_json_dict()


def payload(records: list[dict[str, Any]], watermark_s: float | None = 30.0) -> dict[str, Any]:
    watermark = None if watermark_s is None else (START + timedelta(seconds=watermark_s))
    return {
        "generated_at": (START + timedelta(seconds=31)).isoformat(),
        "watermark": None if watermark is None else watermark.isoformat(),
        "events_per_second": 412.5,
        "window_seconds": 60.0,
        "records": records,
    }


def realistic() -> dict[str, Any]:
    """Five keys of the default key set (one slow and failing) and one of another key set."""
    records = [
        record("gpt-4o", 1_200),
        record("gpt-4o-mini", 3_400, latency_p95_ms=640.0, cost_usd_sum=1.02),
        record("o1", 90, errors=9, error_rate=0.1, latency_p95_ms=9_800.0),
        record("gpt-4.1", 450, errors=9, error_rate=0.02, latency_p95_ms=1_500.0),
        # no call carried ttft_ms or tokens: those metrics are null
        record(
            "acme-unpriced",
            15,
            ttft_count=0,
            ttft_p50_ms=None,
            ttft_p95_ms=None,
            output_tokens_per_second_mean=None,
            cost_per_1k_requests=None,
            cost_missing=15,
            latency_p95_ms=None,
        ),
        record("gpt-4o", 5_000, key_set="provider_model"),
    ]
    records[-1]["dimensions"] = {"provider": "openai", "model": "gpt-4o"}
    return payload(records)
