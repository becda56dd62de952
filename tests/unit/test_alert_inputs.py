"""The worker's inputs to alerting: every rule metric name resolves on a real MetricRecord."""

from __future__ import annotations

import math
from dataclasses import fields, replace
from datetime import UTC, datetime

import pytest

from alerting.rules import KNOWN_METRICS, check_metric_name
from alerting.rules_file import check_rules_text, load_default_rules
from streams.alert_inputs import detection_input, metric_window, record_metrics
from streams.detections_stage import DetectionRecord
from streams.metrics import MetricRecord, MetricsAggregator, MetricsConfig, PricingTable
from tests.unit.metrics_fakes import Call, Feedback, at


def real_record() -> MetricRecord:
    """A closed window from the real aggregator, with every optional metric present."""
    config = MetricsConfig(key_sets=(("app", "model"),), allowed_lateness_seconds=0)
    agg = MetricsAggregator(config, PricingTable.load(), clock=lambda: 0.0)
    for i in range(40):
        agg.add_call(
            Call(
                f"e{i}", at(i), latency_ms=100.0 + 10 * i, ttft_ms=50.0 + i, output_tokens=20,
                cost_usd=0.001 if i % 2 else None, cached_input_tokens=8,
                status="error" if i % 10 == 0 else "ok",
                finish_reason="length" if i % 4 == 0 else "content_filter" if i == 3 else "stop",
                scores={"toxicity": 0.25},
            )
        )  # fmt: skip
    assert agg.add_feedback(Feedback("e1", at(5), "thumbs_up", 1.0))
    agg.add_call(Call("late", at(61)))  # the watermark passes the first window's end
    [record] = agg.close_due()
    assert record.closed_by == "watermark" and record.requests == 40
    return record


def scalar_numeric_fields(record: MetricRecord) -> set[str]:
    return {
        f.name
        for f in fields(record)
        if isinstance(getattr(record, f.name), int | float)
        and not isinstance(getattr(record, f.name), bool)
    }


def test_every_known_metric_resolves_on_a_real_record() -> None:
    record = real_record()
    metrics = record_metrics(record)
    assert set(metrics) >= KNOWN_METRICS, sorted(KNOWN_METRICS - set(metrics))
    assert metrics["requests"] == 40 and metrics["errors"] == 4
    assert metrics["latency_p95_ms"] == record.latency_p95_ms
    assert metrics["cost_usd_sum"] == record.cost_usd_sum > 0
    assert metrics["score_means.toxicity"] == 0.25
    assert metrics["feedback_means.thumbs_up"] == 1.0
    for name in metrics:
        check_metric_name(name)  # raises for a name a rule could not use


def test_known_metrics_are_exactly_the_records_numbers() -> None:
    # A record field missing here is a metric no rule can use; an extra name is a typo trap.
    assert scalar_numeric_fields(real_record()) == KNOWN_METRICS


def test_missing_values_are_left_out_not_zero() -> None:
    record = replace(
        real_record(), ttft_p95_ms=None, error_rate=math.nan, score_means={"x": math.inf}
    )
    metrics = record_metrics(record)
    assert "ttft_p95_ms" not in metrics and "error_rate" not in metrics
    assert "score_means.x" not in metrics


def test_metric_window_keeps_key_and_times() -> None:
    record = real_record()
    window = metric_window(record)
    assert window.key_set == "app_model" and window.dimensions == {"app": "bot", "model": "gpt-4o"}
    assert (window.window_start, window.window_end) == (at(0), at(60))
    assert window.requests == 40 and window.metrics["error_rate"] == 0.1


def test_rules_use_record_names_and_old_names_get_a_hint() -> None:
    for group in load_default_rules().groups:
        for rule in group.rules:
            if rule.metric is not None:
                check_metric_name(rule.metric)
    text = """
groups:
  - name: g
    rules:
      - {alert: A, metric: latency_p95, by: [model], op: ">", threshold: 1,
         labels: {severity: info}}
      - {alert: B, metric: score_mean.tox, by: [model], op: ">", threshold: 1,
         labels: {severity: info}}
route: {receiver: c}
receivers: [{name: c, type: console}]
"""
    assert check_rules_text(text, "r.yaml") == [
        "r.yaml:5: groups[0].rules[0].metric: unknown metric 'latency_p95' "
        "(did you mean 'latency_p95_ms'?)",
        "r.yaml:7: groups[0].rules[1].metric: unknown metric 'score_mean.tox' "
        "(did you mean 'score_means.tox'?)",
    ]


def test_detection_input_from_a_detection_record() -> None:
    when = datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC)
    record = DetectionRecord(
        key_set="provider_model", dimensions={"provider": "openai", "model": "gpt-4o"},
        signal="latency", detector="adwin", params={"delta": 0.002}, score=math.inf,
        before_mean=100.0, before_quantile=math.nan, after_level=250.0, event_time=when,
        event_id="e9", source_partition=1, source_offset=7, detected_at=when,
    )  # fmt: skip
    detection = detection_input(record)
    assert detection.dimensions == {"provider": "openai", "model": "gpt-4o"}
    assert (detection.signal, detection.detector, detection.score) == ("latency", "adwin", 0.0)
    assert (detection.before_mean, detection.before_quantile) == (100.0, None)
    assert detection.after_level == 250.0 and detection.event_time == when
    with pytest.raises(ValueError, match="time zone"):
        detection_input(replace(record, event_time=when.replace(tzinfo=None)))
