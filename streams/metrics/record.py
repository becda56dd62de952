"""`MetricRecord`: the metrics of one key in one window, as published and stored."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class MetricRecord:
    """Metrics of one key of one key set over one event-time window.

    Rates and means are None when nothing was there to divide by. Latency
    quantiles cover every counted call, TTFT quantiles the calls that carry
    ``ttft_ms``; see `streams.metrics.quantiles` for their error.
    ``closed_by`` is ``"watermark"`` or ``"idle"`` for a final record and None
    for a partial one from `MetricsAggregator.open_windows`.
    """

    key_set: str
    dimensions: dict[str, str]
    window_start: datetime
    window_end: datetime
    requests: int
    errors: int
    error_rate: float | None
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    ttft_count: int
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    output_tokens_per_second_count: int
    output_tokens_per_second_mean: float | None
    input_tokens_sum: int
    output_tokens_sum: int
    cached_input_tokens_sum: int
    cost_usd_sum: float
    cost_missing: int
    cost_per_1k_requests: float | None
    finish_length_rate: float | None
    finish_content_filter_rate: float | None
    score_means: dict[str, float]
    score_counts: dict[str, int]
    feedback_means: dict[str, float]
    feedback_counts: dict[str, int]
    late_events: int
    closed_by: str | None

    def to_json_dict(self) -> dict[str, Any]:
        """A dict that orjson (or json) serialises; timestamps as ISO 8601 in UTC."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["window_start"] = self.window_start.isoformat()
        out["window_end"] = self.window_end.isoformat()
        for name in (
            "dimensions",
            "score_means",
            "score_counts",
            "feedback_means",
            "feedback_counts",
        ):
            out[name] = dict(out[name])
        return out
