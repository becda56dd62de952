"""Turn validated events and rejected records into ClickHouse rows.

A row is one JSONCompactEachRow line: a JSON array in the order of the table's ``*_COLUMNS``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

from alerting.state import AlertTransition
from schemas import Feedback, LLMCall, redact
from streams.detections_stage import DetectionRecord
from streams.metrics import DIMENSIONS, MetricRecord

CALL_COLUMNS: tuple[str, ...] = (
    "event_id", "timestamp", "app", "environment", "operation", "provider", "model",
    "response_model", "prompt_id", "prompt_version", "user_id", "session_id", "trace_id",
    "span_id", "latency_ms", "ttft_ms", "input_tokens", "output_tokens", "cached_input_tokens",
    "cost_usd", "cost_source", "status", "error_type", "finish_reason", "streaming",
    "input_chars", "output_chars", "input_text", "output_text", "scores", "tags",
    "schema_version", "kafka_partition", "kafka_offset",
)  # fmt: skip

FEEDBACK_COLUMNS: tuple[str, ...] = (
    "event_id", "timestamp", "name", "value", "source", "comment",
    "kafka_partition", "kafka_offset",
)  # fmt: skip

DEAD_LETTER_COLUMNS: tuple[str, ...] = (
    "received_at", "source_topic", "source_partition", "source_offset", "reason_code", "reason",
    "payload_bytes", "payload_sha256", "payload_excerpt",
)  # fmt: skip

_TEXT_KEYS = (b'"input_text"', b'"output_text"')
EXCERPT_CHARS = 512


def call_row(call: LLMCall, partition: int, offset: int) -> bytes:
    """One ``llm_calls`` row. ``call`` must already have passed the text policy."""
    row = (
        call.event_id, call.timestamp, call.app, call.environment, call.operation,
        call.provider, call.model, call.response_model or "", call.prompt_id or "",
        call.prompt_version or "", call.user_id or "", call.session_id or "", call.trace_id or "",
        call.span_id or "", call.latency_ms, call.ttft_ms, call.input_tokens, call.output_tokens,
        call.cached_input_tokens, call.cost_usd, "" if call.cost_usd is None else "event",
        call.status,
        call.error_type or "", call.finish_reason or "", call.streaming, call.input_chars,
        call.output_chars, call.input_text, call.output_text, call.scores, call.tags,
        1, partition, offset,
    )  # fmt: skip
    return orjson.dumps(row)


def feedback_row(fb: Feedback, partition: int, offset: int) -> bytes:
    row = (
        fb.event_id,
        fb.timestamp,
        fb.name,
        fb.value,
        fb.source,
        fb.comment or "",
        partition,
        offset,
    )
    return orjson.dumps(row)


def payload_excerpt(payload: bytes) -> str:
    """A short, redacted view of a rejected payload; prompt and response text never survive it."""
    text = payload[:65536].decode("utf-8", errors="replace")
    if any(key in payload for key in _TEXT_KEYS):
        try:
            obj: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            for key in ("input_text", "output_text"):
                if key in obj:
                    obj[key] = "[DROPPED]"
            text = orjson.dumps(obj).decode()
        else:
            return "[payload withheld: it may contain prompt text]"
    return redact(text)[:EXCERPT_CHARS]


def dead_letter_row(
    topic: str, partition: int, offset: int, code: str, reason: str, payload: bytes | None
) -> bytes:
    data = payload or b""
    row = (
        datetime.now(UTC), topic, partition, offset, code, reason, len(data),
        hashlib.sha256(data).hexdigest(), payload_excerpt(data),
    )  # fmt: skip
    return orjson.dumps(row)


METRIC_COLUMNS: tuple[str, ...] = (
    "key_set", "app", "environment", "provider", "model", "prompt_id", "prompt_version",
    "dimensions", "window_start", "window_end", "requests", "errors", "error_rate",
    "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms", "ttft_count",
    "ttft_p50_ms", "ttft_p95_ms", "output_tokens_per_second_count",
    "output_tokens_per_second_mean", "input_tokens_sum", "output_tokens_sum",
    "cached_input_tokens_sum", "cost_usd_sum", "cost_missing", "cost_per_1k_requests",
    "finish_length_rate", "finish_content_filter_rate", "score_means", "score_counts",
    "feedback_means", "feedback_counts", "late_events", "closed_by",
)  # fmt: skip

_METRIC_FIELDS = METRIC_COLUMNS[len(DIMENSIONS) + 1 :]


def metric_row(record: MetricRecord) -> bytes:
    """One ``llm_metrics_1m`` row; dimensions outside the record's key set are ``""``."""
    dims = record.dimensions
    row = [record.key_set, *(dims.get(name, "") for name in DIMENSIONS)]
    row.extend(getattr(record, name) for name in _METRIC_FIELDS)
    return orjson.dumps(row)


DETECTION_COLUMNS: tuple[str, ...] = (
    "key_set", "app", "environment", "provider", "model", "prompt_id", "prompt_version",
    "dimensions", "signal", "detector", "params", "score", "before_mean", "before_quantile",
    "after_level", "event_time", "event_id", "source_partition", "source_offset", "detected_at",
)  # fmt: skip


def detection_row(record: DetectionRecord) -> bytes:
    """One ``llm_detections`` row: dimensions outside the key set are ``""``, params JSON text."""
    data = record.to_json_dict()  # non-finite numbers become None (the columns are Nullable)
    data.update((name, record.dimensions.get(name, "")) for name in DIMENSIONS)
    data["params"] = orjson.dumps(record.params, option=orjson.OPT_SORT_KEYS).decode()
    return orjson.dumps([data[name] for name in DETECTION_COLUMNS])


ALERT_COLUMNS: tuple[str, ...] = (
    "at", "rule_group", "rule", "fingerprint", "sequence", "kind", "severity", "labels",
    "annotations", "state", "previous_state", "reason", "value", "threshold",
    "recovery_threshold", "op", "metric", "key_set", "started_at", "fired_at", "resolved_at",
    "detection",
)  # fmt: skip


def alert_row(transition: AlertTransition) -> bytes:
    """One ``llm_alerts`` row: a state change of one alert (rule and label set)."""
    t = transition
    detection = t.to_dict()["detection"]
    row = (
        t.at, t.rule_id.split("/", 1)[0], t.rule, t.fingerprint, t.sequence, t.kind,
        t.severity, dict(t.labels), dict(t.annotations), t.state.value, t.previous_state.value,
        t.reason, t.value, t.threshold, t.recovery_threshold, t.op or "", t.metric or "",
        t.key_set or "", t.active_since, t.fired_at, t.resolved_at,
        "" if detection is None else orjson.dumps(detection).decode(),
    )  # fmt: skip
    return orjson.dumps(row)
