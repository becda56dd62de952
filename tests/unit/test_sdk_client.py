"""Unit tests for the SDK client without a broker: validation, the bounded buffer, drop counters."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from schemas import InvalidEvent, LLMCall, decode_call
from schemas.sdk import PulseClient, PulseConfig, PulseCounters
from schemas.sdk.buffer import EventBuffer

CALL = {"app": "support-bot", "provider": "openai", "model": "gpt-4o", "latency_ms": 812.5}
UNREACHABLE = "127.0.0.1:1"


def test_keyword_event_is_validated_completed_and_keyed_by_app() -> None:
    client = PulseClient(bootstrap=UNREACHABLE, defaults={"environment": "staging"})
    assert client.emit(**CALL, input_tokens=12, tags={"team": "cx"}) is True
    ((key, value),) = client._buffer.take(10)
    assert key == b"support-bot"
    call = decode_call(value)  # what the worker will do with it
    assert call.environment == "staging"
    assert call.input_tokens == 12 and call.tags == {"team": "cx"}
    assert len(call.event_id) == 36 and call.timestamp.tzinfo == UTC
    assert b"null" not in value  # unset fields are left out, not sent as null


def test_llmcall_object_is_sent_as_is() -> None:
    client = PulseClient(bootstrap=UNREACHABLE, defaults={"environment": "staging"})
    call = LLMCall.model_validate(
        {**CALL, "event_id": "e-1", "timestamp": datetime(2025, 1, 31, 12, tzinfo=UTC)}
    )
    assert client.emit(call)
    ((key, value),) = client._buffer.take(10)
    assert key == b"support-bot"
    assert LLMCall.model_validate_json(value) == call  # defaults apply to keyword events only
    assert orjson.loads(value)["timestamp"] == "2025-01-31T12:00:00Z"


def test_explicit_event_id_and_timestamp_are_kept() -> None:
    client = PulseClient(bootstrap=UNREACHABLE)
    client.emit(**CALL, event_id="mine", timestamp="2025-01-31T13:00:00+01:00")
    event = orjson.loads(client._buffer.take(1)[0][1])
    assert (event["event_id"], event["timestamp"]) == ("mine", "2025-01-31T12:00:00Z")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({**CALL, "latency_ms": -1}, "latency_ms"),
        ({**CALL, "input_tokens": "12"}, "input_tokens"),
        ({**CALL, "status": "failed"}, "status"),
        ({k: v for k, v in CALL.items() if k != "model"}, "model"),
        ({**CALL, "modle": "gpt-4o"}, "modle"),
    ],
)
def test_invalid_keyword_event_raises_at_the_call_site(fields: dict[str, Any], field: str) -> None:
    client = PulseClient(bootstrap=UNREACHABLE)
    with pytest.raises(InvalidEvent) as raised:
        client.emit(**fields)
    assert isinstance(raised.value, ValueError)
    assert raised.value.field == field
    assert client.counters() == PulseCounters()  # nothing was counted as emitted


def test_emit_takes_an_event_or_keywords_not_both() -> None:
    client = PulseClient(bootstrap=UNREACHABLE)
    call = LLMCall.model_validate({**CALL, "event_id": "e", "timestamp": "2025-01-31T12:00:00Z"})
    with pytest.raises(TypeError, match="not both"):
        client.emit(call, user_id="u")
    with pytest.raises(TypeError, match="dict"):
        client.emit(CALL)  # type: ignore[arg-type]


def test_full_buffer_drops_and_counts_without_waiting() -> None:
    client = PulseClient(bootstrap=UNREACHABLE, buffer_size=100)
    accepted = [client.emit(**CALL) for _ in range(100)]
    slowest = 0.0
    for _ in range(5_000):
        started = time.perf_counter()
        assert client.emit(**CALL) is False
        slowest = max(slowest, time.perf_counter() - started)
    assert all(accepted)
    # Validation and encoding only: far below one millisecond even on a busy machine.
    assert slowest < 0.05
    counters = client.counters()
    assert counters.emitted == 5_100
    assert counters.buffered == 100
    assert counters.dropped_buffer_full == 5_000 == counters.dropped


async def test_close_without_a_start_counts_what_was_buffered() -> None:
    client = PulseClient(bootstrap=UNREACHABLE)
    for _ in range(7):
        client.emit(**CALL)
    await client.close(timeout=0.1)
    assert client.emit(**CALL) is False
    counters = client.counters()
    assert (counters.dropped_closed, counters.buffered, counters.emitted) == (8, 0, 8)


def test_counters_add_up_under_concurrent_emitters() -> None:
    client = PulseClient(bootstrap=UNREACHABLE, buffer_size=3_000)

    def emit_many() -> None:
        for _ in range(1_000):
            client.emit(**CALL)

    threads = [threading.Thread(target=emit_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counters = client.counters()
    assert counters.emitted == 8_000
    assert counters.buffered == 3_000
    assert counters.dropped_buffer_full == 5_000


def test_buffer_settles_in_flight_records_once() -> None:
    buffer = EventBuffer(capacity=10)
    for i in range(5):
        buffer.put(b"k", str(i).encode())
    assert [value for _, value in buffer.take(3)] == [b"0", b"1", b"2"]
    buffer.settle(sent=True, count=2)
    buffer.settle(sent=False)
    buffer.take(1)
    buffer.close()
    buffer.settle(sent=True)  # a late delivery after close changes nothing
    counters = buffer.counters()
    assert (counters.sent, counters.dropped_kafka_error, counters.dropped_closed) == (2, 1, 2)
    assert counters.emitted == counters.sent + counters.dropped == 5
    with pytest.raises(ValueError, match="capacity"):
        EventBuffer(capacity=0)


def test_bootstrap_comes_from_the_argument_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LLMPULSE_KAFKA_BOOTSTRAP", raising=False)
    assert PulseConfig().bootstrap == "127.0.0.1:9092"
    monkeypatch.setenv("LLMPULSE_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    assert PulseConfig().bootstrap == "kafka-1:9092,kafka-2:9092"
    assert PulseConfig(bootstrap="other:9092").bootstrap == "other:9092"
    assert PulseConfig().topic == "llm.calls"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bootstrap": " "}, "bootstrap"),
        ({"topic": ""}, "topic"),
        ({"buffer_size": 0}, "buffer_size"),
        ({"linger_ms": -1}, "linger_ms"),
        ({"retry_initial_s": 5.0, "retry_max_s": 1.0}, "retry_initial_s"),
        ({"client_options": {"bootstrap_servers": "x:1"}}, "bootstrap_servers"),
        ({"defaults": {"application": "a"}}, "application"),
    ],
)
def test_config_is_checked_when_made(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PulseConfig(**kwargs)


def test_secrets_never_appear_in_repr() -> None:
    password = "pw-" + "x" * 12
    client = PulseClient(
        bootstrap="kafka:9093",
        client_options={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "svc-llm",
            "sasl_plain_password": password,
        },
    )
    for text in (repr(client), str(client.config), repr(client.config)):
        assert password not in text
        assert "SASL_SSL" in text and "'sasl_plain_password': '***'" in text
    assert client.config.producer_options()["sasl_plain_password"] == password
    assert client.config.producer_options()["bootstrap_servers"] == "kafka:9093"


async def test_bad_client_options_raise_at_start() -> None:
    client = PulseClient(bootstrap=UNREACHABLE, client_options={"no_such_option": 1})
    with pytest.raises(TypeError, match="no_such_option"):
        await client.start()
