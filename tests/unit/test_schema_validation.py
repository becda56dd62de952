"""Unit tests for decode_call/decode_feedback: hypothesis-generated valid and invalid events."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import (
    InvalidEvent,
    LLMCall,
    ValidationLimits,
    decode_call,
    decode_feedback,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LIMITS = ValidationLimits()
PROMPT = "PROMPT-TEXT-the customer said their password is hunter2"
BASE: dict[str, Any] = {
    "event_id": "evt-1",
    "timestamp": "2025-06-01T11:59:00Z",
    "app": "support-bot",
    "provider": "openai",
    "model": "gpt-4o",
    "latency_ms": 812.5,
}

schema_settings = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150
)

OFFSETS = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)
IN_WINDOW = st.datetimes(
    min_value=(NOW - LIMITS.max_past + timedelta(seconds=1)).replace(tzinfo=None),
    max_value=(NOW + LIMITS.max_future - timedelta(seconds=1)).replace(tzinfo=None),
    timezones=st.just(UTC),
)


def rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


TIMESTAMPS = st.builds(lambda moment, tz: rfc3339(moment.astimezone(tz)), IN_WINDOW, OFFSETS)
NAMES = st.text(min_size=1, max_size=40)
MILLIS = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
COUNTS = st.integers(min_value=0, max_value=2**32 - 1)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
KEYS = st.text(min_size=1, max_size=20)

VALID_CALLS = st.fixed_dictionaries(
    {
        "event_id": st.text(min_size=1, max_size=128),
        "timestamp": TIMESTAMPS,
        "app": NAMES,
        "provider": NAMES,
        "model": NAMES,
        "latency_ms": MILLIS | st.integers(min_value=0, max_value=10**6),
    },
    optional={
        "environment": NAMES,
        "operation": NAMES,
        "response_model": NAMES,
        "prompt_id": NAMES,
        "prompt_version": NAMES,
        "user_id": NAMES,
        "session_id": NAMES,
        "trace_id": NAMES,
        "span_id": NAMES,
        "ttft_ms": MILLIS,
        "input_tokens": COUNTS,
        "output_tokens": COUNTS,
        "cached_input_tokens": COUNTS,
        "cost_usd": MILLIS,
        "status": st.sampled_from(["ok", "error"]),
        "error_type": NAMES | st.none(),
        "finish_reason": NAMES,
        "streaming": st.booleans(),
        "input_chars": COUNTS,
        "output_chars": COUNTS,
        "input_text": st.text(max_size=200),
        "output_text": st.text(max_size=200),
        "scores": st.dictionaries(KEYS, FINITE, max_size=5),
        "tags": st.dictionaries(KEYS, st.text(max_size=30), max_size=5),
        "unknown_future_field": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    },
)

NEGATIVE_FLOATS = st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False)
# JSON integers beyond 64 bits cannot be encoded by orjson; they are tested as bad_json elsewhere.
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
NEGATIVE_INTS = st.integers(max_value=-1, min_value=-(2**63))
NOT_NUMBERS = st.text(max_size=10) | st.booleans() | st.lists(INT64, max_size=2)
NOT_INTS = (
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda value: not value.is_integer())
    | st.booleans()
    | st.text(alphabet="0123456789", min_size=1, max_size=5)
)
NOT_STRINGS = INT64 | st.booleans() | FINITE | st.lists(st.text(), max_size=2)
FLOAT_FIELDS = st.sampled_from(["latency_ms", "ttft_ms", "cost_usd"])
INT_FIELDS = st.sampled_from(
    ["input_tokens", "output_tokens", "cached_input_tokens", "input_chars", "output_chars"]
)
STRING_FIELDS = st.sampled_from(["event_id", "app", "provider", "model", "user_id", "trace_id"])
LONG_NAMES = st.integers(min_value=257, max_value=600).map(lambda size: "n" * size)

# (field, bad value) pairs that must fail schema validation.
SCHEMA_VIOLATIONS = st.one_of(
    st.tuples(FLOAT_FIELDS, NEGATIVE_FLOATS),
    st.tuples(INT_FIELDS, NEGATIVE_INTS),
    st.tuples(FLOAT_FIELDS, NOT_NUMBERS),
    st.tuples(INT_FIELDS, NOT_INTS),
    st.tuples(STRING_FIELDS, NOT_STRINGS),
    st.tuples(st.just("status"), st.text(max_size=20).filter(lambda s: s not in {"ok", "error"})),
    st.tuples(st.just("streaming"), INT64 | st.text(max_size=5)),
    st.tuples(st.sampled_from(["app", "provider", "model", "environment"]), LONG_NAMES),
    st.tuples(st.just("event_id"), st.integers(129, 400).map(lambda size: "e" * size)),
    st.tuples(st.just("scores"), st.dictionaries(KEYS, st.text(max_size=5), min_size=1)),
)


def encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def reject(raw: bytes | None, **kwargs: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        decode_call(raw, now=NOW, **kwargs)
    return info.value


@schema_settings
@given(VALID_CALLS)
def test_valid_events_decode_and_round_trip(event: dict[str, Any]) -> None:
    call = decode_call(encode(event), now=NOW)
    for field in ("event_id", "app", "provider", "model", "input_tokens", "scores", "tags"):
        if field in event:
            assert getattr(call, field) == event[field]
    assert call.latency_ms == event["latency_ms"]
    assert call.timestamp == datetime.fromisoformat(event["timestamp"])
    assert call.timestamp.tzinfo is UTC
    assert decode_call(encode(call.model_dump(mode="json")), now=NOW) == call
    assert LLMCall.model_validate_json(call.model_dump_json()) == call


@schema_settings
@given(VALID_CALLS, SCHEMA_VIOLATIONS)
def test_schema_violations_are_rejected_naming_the_field(
    event: dict[str, Any], violation: tuple[str, object]
) -> None:
    field, value = violation
    error = reject(encode({**event, field: value, "input_text": PROMPT}))
    assert error.code == "schema"
    assert error.field is not None and error.field.startswith(field)
    assert error.reason.startswith(f"{field}")
    assert PROMPT not in error.reason
    assert len(error.reason) < 400


@schema_settings
@given(VALID_CALLS, st.integers(min_value=1, max_value=10**8))
def test_stale_and_future_timestamps_are_rejected(event: dict[str, Any], seconds: int) -> None:
    too_old = NOW - LIMITS.max_past - timedelta(seconds=seconds)
    error = reject(encode({**event, "timestamp": rfc3339(too_old)}))
    assert (error.code, error.field) == ("timestamp_too_old", "timestamp")
    assert error.reason.startswith("timestamp: ") and "7 days" in error.reason

    in_future = NOW + LIMITS.max_future + timedelta(seconds=seconds)
    error = reject(encode({**event, "timestamp": rfc3339(in_future)}))
    assert (error.code, error.field) == ("timestamp_in_future", "timestamp")
    assert "5 minutes" in error.reason


def test_window_edges_are_inclusive_and_configurable() -> None:
    oldest = rfc3339(NOW - LIMITS.max_past)
    newest = rfc3339(NOW + LIMITS.max_future)
    assert decode_call(encode({**BASE, "timestamp": oldest}), now=NOW).event_id == "evt-1"
    assert decode_call(encode({**BASE, "timestamp": newest}), now=NOW).event_id == "evt-1"
    tight = ValidationLimits(max_past=timedelta(seconds=30))
    assert reject(encode(BASE), limits=tight).code == "timestamp_too_old"


def test_default_now_is_the_current_time() -> None:
    fresh = {**BASE, "timestamp": rfc3339(datetime.now(UTC))}
    assert decode_call(encode(fresh)).app == "support-bot"
    with pytest.raises(InvalidEvent) as info:
        decode_call(encode(BASE | {"timestamp": "2001-01-01T00:00:00Z"}))
    assert info.value.code == "timestamp_too_old"


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decode_call(encode(BASE), now=NOW.replace(tzinfo=None))


def test_precise_reason_for_a_negative_latency() -> None:
    error = reject(encode({**BASE, "latency_ms": -3}))
    assert error.reason == "latency_ms: Input should be greater than or equal to 0 (got -3)"
    assert str(error) == f"schema: {error.reason}"


def test_missing_field_and_alias_paths_in_reasons() -> None:
    missing = {key: value for key, value in BASE.items() if key != "provider"}
    assert reject(encode(missing)).reason == "provider: Field required"
    otel = {**BASE, "gen_ai.response.finish_reasons": [7]}
    assert reject(encode(otel)).reason.startswith("gen_ai.response.finish_reasons[0]: ")


@pytest.mark.parametrize("raw", [None, b""])
def test_empty_values_are_rejected(raw: bytes | None) -> None:
    assert reject(raw).code == "empty"


@pytest.mark.parametrize("raw", [b'{"app": "\xff"}', b"\xc3\x28", b'{"a": "\xed\xa0\x80"}'])
def test_non_utf8_values_are_rejected(raw: bytes) -> None:
    assert reject(raw).code == "not_utf8"


def test_oversized_values_are_rejected_before_parsing() -> None:
    limits = ValidationLimits(max_event_bytes=100)
    error = reject(b"{" + b" " * 100, limits=limits)
    assert error.code == "too_large"
    assert "101 bytes" in error.reason and "100" in error.reason
    big = encode({**BASE, "input_text": "x" * (256 * 1024)})
    assert reject(big).code == "too_large"


@pytest.mark.parametrize("raw", [b"{", b'{"a": 1,}', b"nope", b"{'a': 1}", b"   ", b"NaN"])
def test_broken_json_is_rejected(raw: bytes) -> None:
    assert reject(raw).code == "bad_json"


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"[]", "an array"), (b'"x"', "a string"), (b"1", "a number"), (b"null", "null")],
)
def test_json_that_is_not_an_object_is_rejected(raw: bytes, kind: str) -> None:
    error = reject(raw)
    assert error.code == "not_object"
    assert kind in error.reason


@pytest.mark.parametrize(
    "changes",
    [
        {"input_text": PROMPT * 4000},
        {"output_text": {"nested": PROMPT}},
        {"input_text": [PROMPT]},
        {"input_text": PROMPT, "latency_ms": -1, "status": "bad"},
        {"tags": {PROMPT * 5: "v"}},
        {"app": PROMPT * 10},
    ],
)
def test_reasons_never_contain_prompt_text(changes: dict[str, Any]) -> None:
    error = reject(encode({**BASE, **changes}))
    assert error.code == "schema"
    assert PROMPT not in str(error)


def test_long_values_are_truncated_in_reasons() -> None:
    error = reject(encode({**BASE, "status": "s" * 5000}))
    assert error.reason.startswith("status: Input should be 'ok' or 'error' (got \"sss")
    assert "(5000 chars)" in error.reason
    assert len(error.reason) < 200


def test_many_errors_are_summarised() -> None:
    error = reject(encode({"timestamp": "2025-06-01T12:00:00Z"}))
    assert error.reason.count("Field required") == 3
    assert error.reason.endswith("and 2 more errors")


def test_invalid_event_pickles_for_dead_lettering() -> None:
    error = reject(encode({**BASE, "latency_ms": -1}))
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.reason, copy.field) == (error.code, error.reason, error.field)


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_event_bytes"):
        ValidationLimits(max_event_bytes=0)
    with pytest.raises(ValueError, match="max_past"):
        ValidationLimits(max_past=timedelta(seconds=-1))


FEEDBACK = {"event_id": "evt-1", "timestamp": "2025-06-01T12:01:00Z", "name": "thumbs", "value": 1}


def test_decode_feedback_accepts_and_rejects() -> None:
    feedback = decode_feedback(encode(FEEDBACK), now=NOW)
    assert (feedback.event_id, feedback.value, feedback.source) == ("evt-1", 1.0, "user")
    with pytest.raises(InvalidEvent) as info:
        decode_feedback(encode({**FEEDBACK, "value": "1"}), now=NOW)
    assert (info.value.code, info.value.field) == ("schema", "value")
    with pytest.raises(InvalidEvent) as info:
        decode_feedback(encode({**FEEDBACK, "comment": PROMPT * 200}), now=NOW)
    assert info.value.field == "comment" and PROMPT not in info.value.reason
    with pytest.raises(InvalidEvent) as info:
        decode_feedback(b"[1]", now=NOW)
    assert info.value.code == "not_object"
    with pytest.raises(InvalidEvent) as info:
        decode_feedback(encode({**FEEDBACK, "timestamp": "2025-06-01T13:00:00Z"}), now=NOW)
    assert info.value.code == "timestamp_in_future"
