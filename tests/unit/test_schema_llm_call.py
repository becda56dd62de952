"""Unit tests for the LLMCall and Feedback models: types, timestamps, aliases, serialisation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas import OTEL_ALIASES, SCHEMA_VERSION, Feedback, LLMCall

BASE: dict[str, Any] = {
    "event_id": "evt-1",
    "timestamp": "2025-01-31T12:00:00Z",
    "app": "support-bot",
    "provider": "openai",
    "model": "gpt-4o",
    "latency_ms": 812.5,
}


def call_with(**changes: Any) -> LLMCall:
    return LLMCall.model_validate({**BASE, **changes})


def error_types(exc: ValidationError) -> set[str]:
    return {error["type"] for error in exc.errors()}


def test_minimal_event_gets_documented_defaults() -> None:
    call = LLMCall.model_validate(BASE)
    assert call.schema_version == SCHEMA_VERSION == 1
    assert call.environment == "production"
    assert call.operation == "chat"
    assert call.status == "ok"
    assert call.scores == {} and call.tags == {}
    assert call.input_text is None and call.input_tokens is None


def test_int_is_accepted_for_float_fields() -> None:
    call = call_with(latency_ms=12, ttft_ms=3, cost_usd=0)
    assert (call.latency_ms, call.ttft_ms, call.cost_usd) == (12.0, 3.0, 0.0)
    assert isinstance(call.latency_ms, float)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("latency_ms", "12"),
        ("latency_ms", True),
        ("latency_ms", None),
        ("input_tokens", 1.5),
        ("input_tokens", 2.0),
        ("input_tokens", True),
        ("input_tokens", "7"),
        ("app", 3),
        ("streaming", "true"),
        ("streaming", 1),
        ("scores", {"toxicity": "high"}),
        ("tags", {"team": 5}),
        ("scores", [1.0]),
    ],
)
def test_wrong_types_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        call_with(**{field: value})
    assert info.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_are_rejected(value: float) -> None:
    with pytest.raises(ValidationError):
        call_with(latency_ms=value)
    with pytest.raises(ValidationError):
        call_with(scores={"toxicity": value})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-31T12:00:00Z", datetime(2025, 1, 31, 12, tzinfo=UTC)),
        ("2025-01-31t12:00:00z", datetime(2025, 1, 31, 12, tzinfo=UTC)),
        ("2025-01-31T13:30:00+01:30", datetime(2025, 1, 31, 12, tzinfo=UTC)),
        ("2025-01-31T04:00:00.250-08:00", datetime(2025, 1, 31, 12, 0, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_timestamps_are_normalised_to_utc(text: str, expected: datetime) -> None:
    stamp = call_with(timestamp=text).timestamp
    assert stamp == expected
    assert stamp.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "2025-01-31T12:00:00",
        "2025-01-31",
        "2025-13-01T00:00:00Z",
        "31/01/2025 12:00 +00:00",
        "1738324800",
        1738324800,
        datetime(2025, 1, 31, 12),
    ],
)
def test_timestamps_without_timezone_or_not_rfc3339_are_rejected(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        call_with(timestamp=value)
    assert info.value.errors()[0]["loc"] == ("timestamp",)


def test_aware_datetime_objects_are_accepted_from_python() -> None:
    tz = timezone(timedelta(hours=2))
    call = call_with(timestamp=datetime(2025, 1, 31, 14, tzinfo=tz))
    assert call.timestamp == datetime(2025, 1, 31, 12, tzinfo=UTC)


@pytest.mark.parametrize("version", [0, 2, True, 1.0, "1"])
def test_other_schema_versions_are_rejected(version: object) -> None:
    with pytest.raises(ValidationError):
        call_with(schema_version=version)


def test_unknown_keys_are_ignored() -> None:
    call = call_with(added_in_v2="x", **{"gen_ai.system": "openai"})
    assert "added_in_v2" not in call.model_dump()


@pytest.mark.parametrize(
    ("changes", "error_type"),
    [
        ({"status": "failed"}, "literal_error"),
        ({"event_id": ""}, "string_too_short"),
        ({"event_id": "e" * 129}, "string_too_long"),
        ({"model": "m" * 257}, "string_too_long"),
        ({"input_text": "x" * 200_001}, "string_too_long"),
        ({"tags": {f"k{i}": "v" for i in range(65)}}, "too_long"),
        ({"tags": {"k" * 129: "v"}}, "string_too_long"),
        ({"input_tokens": 2**32}, "less_than_equal"),
    ],
)
def test_size_and_value_limits(changes: dict[str, Any], error_type: str) -> None:
    with pytest.raises(ValidationError) as info:
        call_with(**changes)
    assert error_type in error_types(info.value)


OTEL_EXAMPLES: dict[str, tuple[object, object]] = {
    "gen_ai.provider.name": ("anthropic", "anthropic"),
    "gen_ai.request.model": ("claude-sonnet-4", "claude-sonnet-4"),
    "gen_ai.response.model": ("gpt-4o-2024-08-06", "gpt-4o-2024-08-06"),
    "gen_ai.operation.name": ("embeddings", "embeddings"),
    "gen_ai.usage.input_tokens": (120, 120),
    "gen_ai.usage.output_tokens": (33, 33),
    "gen_ai.usage.cache_read.input_tokens": (64, 64),
    "gen_ai.response.finish_reasons": (["length", "stop"], "length"),
    "error.type": ("RateLimitError", "RateLimitError"),
    "gen_ai.request.stream": (True, True),
    "gen_ai.conversation.id": ("conv-42", "conv-42"),
}


def test_every_alias_has_an_example() -> None:
    assert set(OTEL_EXAMPLES) == set(OTEL_ALIASES)


@pytest.mark.parametrize("otel_name", sorted(OTEL_ALIASES))
def test_otel_alias_fills_canonical_field(otel_name: str) -> None:
    field = OTEL_ALIASES[otel_name]
    sent, expected = OTEL_EXAMPLES[otel_name]
    event = {key: value for key, value in BASE.items() if key != field}
    call = LLMCall.model_validate({**event, otel_name: sent})
    assert getattr(call, field) == expected
    dumped = call.model_dump()
    assert dumped[field] == expected
    assert not any("." in key for key in dumped)
    assert otel_name not in orjson.loads(call.model_dump_json())


# Each differs from the alias value in OTEL_EXAMPLES, so the winner is visible.
CANONICAL_VALUES: dict[str, object] = {
    "provider": "openai",
    "model": "gpt-4o",
    "response_model": "canonical-model",
    "operation": "chat",
    "input_tokens": 1,
    "output_tokens": 2,
    "cached_input_tokens": 3,
    "finish_reason": "stop",
    "error_type": "Timeout",
    "streaming": False,
    "session_id": "canonical-session",
}


@pytest.mark.parametrize("otel_name", sorted(OTEL_ALIASES))
def test_canonical_name_wins_over_alias(otel_name: str) -> None:
    field = OTEL_ALIASES[otel_name]
    canonical = CANONICAL_VALUES[field]
    call = LLMCall.model_validate(
        {**BASE, field: canonical, otel_name: OTEL_EXAMPLES[otel_name][0]}
    )
    assert getattr(call, field) == canonical


def test_otel_alias_type_errors_name_the_alias() -> None:
    with pytest.raises(ValidationError) as info:
        LLMCall.model_validate({**BASE, "gen_ai.usage.input_tokens": -1})
    assert info.value.errors()[0]["loc"] == ("gen_ai.usage.input_tokens",)


@pytest.mark.parametrize(("sent", "expected"), [([], None), ("stop", "stop"), (["stop"], "stop")])
def test_finish_reasons_shapes(sent: object, expected: str | None) -> None:
    call = LLMCall.model_validate({**BASE, "gen_ai.response.finish_reasons": sent})
    assert call.finish_reason == expected


def test_python_construction_and_json_round_trip() -> None:
    call = LLMCall(
        event_id="e",
        timestamp=datetime(2025, 1, 31, 12, tzinfo=UTC),
        app="a",
        provider="p",
        model="m",
        latency_ms=1.5,
        scores={"toxicity": 0.25},
        tags={"team": "cx"},
    )
    assert LLMCall.model_validate_json(call.model_dump_json()) == call
    assert call.model_dump(mode="json")["timestamp"] == "2025-01-31T12:00:00Z"


def test_models_are_frozen() -> None:
    call = LLMCall.model_validate(BASE)
    with pytest.raises(ValidationError):
        call.latency_ms = 1.0  # type: ignore[misc]


def test_feedback_defaults_and_limits() -> None:
    base = {"event_id": "evt-1", "timestamp": "2025-01-31T12:05:00Z", "name": "thumbs", "value": 1}
    feedback = Feedback.model_validate(base)
    assert (feedback.source, feedback.value, feedback.comment) == ("user", 1.0, None)
    assert Feedback.model_validate({**base, "source": "ragas"}).source == "ragas"
    for bad in ({"value": "1"}, {"value": float("nan")}, {"source": ""}, {"name": ""}):
        with pytest.raises(ValidationError):
            Feedback.model_validate({**base, **bad})
    with pytest.raises(ValidationError):
        Feedback.model_validate({**base, "comment": "c" * 4001})
