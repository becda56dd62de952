"""What the worker hands the alert engine: metric records and detections in alerting's terms.

Rules name metrics as the ``llm_metrics_1m`` columns (``latency_p95_ms``, ``cost_usd_sum``);
``score_means.<name>`` and ``feedback_means.<name>`` pick one entry of those maps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING

from alerting.inputs import Detection, MetricWindow
from streams.metrics import MetricRecord

if TYPE_CHECKING:
    from streams.detections_stage import DetectionRecord

MAP_METRICS = ("score_means", "feedback_means")


def record_metrics(record: MetricRecord) -> dict[str, float]:
    """Every number the record carries, by rule metric name; None, NaN and inf are left out.

    Scalar fields keep their names (``latency_p95_ms``); map entries become
    ``score_means.<name>`` and ``feedback_means.<name>``.
    """
    out: dict[str, float] = {}
    for field in fields(record):
        value = getattr(record, field.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[field.name] = float(value)
    for name in MAP_METRICS:
        values: Mapping[str, float] = getattr(record, name)
        for key, value in values.items():
            if math.isfinite(value):
                out[f"{name}.{key}"] = float(value)
    return out


def metric_window(record: MetricRecord) -> MetricWindow:
    """The alert engine's view of one closed metrics window."""
    return MetricWindow(
        key_set=record.key_set,
        dimensions=dict(record.dimensions),
        window_start=record.window_start,
        window_end=record.window_end,
        requests=record.requests,
        metrics=record_metrics(record),
    )


def _optional(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def detection_input(record: DetectionRecord) -> Detection:
    """The alert engine's view of one detection.

    Non-finite levels become None and a non-finite score 0.0, so that alert state and
    ``llm.alerts`` records stay plain JSON.
    """
    if record.event_time.tzinfo is None:
        raise ValueError(f"detection event_time {record.event_time!r} has no time zone")
    score = float(record.score)
    return Detection(
        dimensions={str(k): str(v) for k, v in record.dimensions.items()},
        signal=record.signal,
        detector=record.detector,
        score=score if math.isfinite(score) else 0.0,
        before_mean=_optional(record.before_mean),
        before_quantile=_optional(record.before_quantile),
        after_level=_optional(record.after_level),
        event_time=record.event_time,
    )
