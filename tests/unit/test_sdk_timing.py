"""Unit tests for `track`: timing, outcome and usage of a call, as context manager and decorator."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas import InvalidEvent, LLMCall
from schemas.sdk import PulseClient, TrackedCall

BASE = {"app": "support-bot", "provider": "openai", "model": "gpt-4o"}
START = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)
CHAT = {
    "model": "gpt-4o-2024-08-06",
    "choices": [{"finish_reason": "stop"}],
    "usage": {"prompt_tokens": 50, "completion_tokens": 7},
}


class RateLimitError(Exception):
    pass


class FakeClock:
    """Monotonic seconds that advance only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> list[dict[str, Any]]:
    return []


def tracked(
    events: list[dict[str, Any]], clock: FakeClock, read_response: bool = True, **fields: Any
) -> TrackedCall:
    return TrackedCall(
        {**BASE, **fields},
        events.append,
        read_response=read_response,
        clock=clock,
        wall_clock=lambda: START,
    )


def test_context_manager_fills_timing_status_and_usage(
    events: list[dict[str, Any]], clock: FakeClock
) -> None:
    with tracked(events, clock, user_id="u-1") as call:
        clock.advance(0.8125)
        call.record_response(CHAT)
        assert events == []  # nothing is emitted before the block ends
    (event,) = events
    assert event == {
        **BASE,
        "user_id": "u-1",
        "timestamp": START,
        "latency_ms": 812.5,
        "status": "ok",
        "input_tokens": 50,
        "output_tokens": 7,
        "finish_reason": "stop",
        "response_model": "gpt-4o-2024-08-06",
    }


def test_exception_is_reraised_unchanged_after_the_event(
    events: list[dict[str, Any]], clock: FakeClock
) -> None:
    error = RateLimitError("429")
    with pytest.raises(RateLimitError) as raised, tracked(events, clock):
        clock.advance(0.05)
        raise error
    assert raised.value is error
    (event,) = events
    assert event["status"] == "error"
    assert event["error_type"] == "RateLimitError"
    assert event["latency_ms"] == pytest.approx(50.0)


def test_explicit_error_type_and_status_are_kept(
    events: list[dict[str, Any]], clock: FakeClock
) -> None:
    with pytest.raises(TimeoutError), tracked(events, clock) as call:
        call.set(error_type="provider_timeout")
        raise TimeoutError
    assert events[0]["error_type"] == "provider_timeout"
    with tracked(events, clock) as call:
        call.set(status="error", error_type="empty_answer")
    assert (events[1]["status"], events[1]["error_type"]) == ("error", "empty_answer")


def test_first_token_time_for_streams(events: list[dict[str, Any]], clock: FakeClock) -> None:
    with tracked(events, clock, streaming=True) as call:
        clock.advance(0.12)
        call.mark_first_token()
        clock.advance(1.0)
        call.mark_first_token()  # only the first one counts
    assert events[0]["ttft_ms"] == pytest.approx(120.0)
    assert events[0]["latency_ms"] == pytest.approx(1120.0)


def test_invalid_fields_raise_where_they_are_given(
    events: list[dict[str, Any]], clock: FakeClock
) -> None:
    with pytest.raises(InvalidEvent, match="input_tokens") as raised:
        tracked(events, clock, input_tokens=-5)
    assert isinstance(raised.value, ValueError)
    with pytest.raises(InvalidEvent, match="unknown field 'modle'"):
        TrackedCall({"app": "a", "provider": "p", "modle": "m"}, events.append)
    with pytest.raises(InvalidEvent, match="model"):
        TrackedCall({"app": "a", "provider": "p"}, events.append)
    with tracked(events, clock) as call:
        with pytest.raises(InvalidEvent, match="cost_usd"):
            call.set(cost_usd=-1.0)
        call.set(cost_usd=0.25)
    assert events[0]["cost_usd"] == 0.25


def test_a_tracked_call_times_one_block(events: list[dict[str, Any]], clock: FakeClock) -> None:
    call = tracked(events, clock)
    with call:
        pass
    with pytest.raises(RuntimeError, match="one call"), call:
        pass
    assert len(events) == 1


def test_a_failing_sink_never_reaches_the_application(clock: FakeClock) -> None:
    def broken_sink(fields: dict[str, Any]) -> None:
        raise ConnectionError("monitoring is down")

    with TrackedCall(BASE, broken_sink, clock=clock) as call:
        call.record_response(CHAT)
    with pytest.raises(KeyError), TrackedCall(BASE, broken_sink, clock=clock):
        raise KeyError("the application's own error wins")


def test_decorator_times_each_call_with_fresh_fields(
    events: list[dict[str, Any]], clock: FakeClock
) -> None:
    @tracked(events, clock, prompt_id="answer")
    def ask(question: str, tokens: int) -> dict[str, Any]:
        """Ask the model."""
        clock.advance(0.25)
        if question == "fail":
            raise RateLimitError(question)
        return {**CHAT, "usage": {"prompt_tokens": tokens, "completion_tokens": 1}}

    assert ask("one", 10)["usage"]["prompt_tokens"] == 10
    with pytest.raises(RateLimitError):
        ask("fail", 0)
    ask("three", 30)

    assert ask.__name__ == "ask" and ask.__doc__ == "Ask the model."
    assert [event.get("input_tokens") for event in events] == [10, None, 30]
    assert [event["status"] for event in events] == ["ok", "error", "ok"]
    assert [event["latency_ms"] for event in events] == [250.0, 250.0, 250.0]
    assert all(event["prompt_id"] == "answer" for event in events)


def test_decorator_can_leave_the_return_value_alone(
    events: list[dict[str, Any]], clock: FakeClock
) -> None:
    @tracked(events, clock, read_response=False)
    def ask() -> dict[str, Any]:
        return CHAT

    ask()
    assert "input_tokens" not in events[0]


async def test_async_context_manager_and_decorator(
    events: list[dict[str, Any]], clock: FakeClock
) -> None:
    async with tracked(events, clock) as call:
        await asyncio.sleep(0)
        clock.advance(0.5)
        call.record_response(CHAT)

    @tracked(events, clock)
    async def ask(fail: bool) -> dict[str, Any]:
        await asyncio.sleep(0)
        clock.advance(0.1)
        if fail:
            raise RateLimitError
        return CHAT

    assert await ask(False) == CHAT
    with pytest.raises(RateLimitError):
        await ask(True)
    assert [(e["status"], e["latency_ms"]) for e in events] == [
        ("ok", 500.0),
        ("ok", pytest.approx(100.0)),
        ("error", pytest.approx(100.0)),
    ]
    assert events[1]["output_tokens"] == 7 and "output_tokens" not in events[2]


async def test_cancelled_call_is_recorded_and_cancellation_propagates(
    events: list[dict[str, Any]], clock: FakeClock
) -> None:
    started = asyncio.Event()

    @tracked(events, clock)
    async def slow() -> None:
        started.set()
        await asyncio.sleep(60)

    task = asyncio.create_task(slow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events[0]["status"] == "error"
    assert events[0]["error_type"] == "CancelledError"


@pytest.fixture
def client() -> Iterator[PulseClient]:
    client = PulseClient(bootstrap="127.0.0.1:1", defaults={"app": "support-bot"})
    yield client
    assert not client.connected


def test_client_track_emits_a_valid_keyed_event(client: PulseClient) -> None:
    with client.track(provider="anthropic", model="claude-haiku-4-5") as call:
        call.record_response({"stop_reason": "end_turn", "usage": {"input_tokens": 3}})
    with pytest.raises(ZeroDivisionError), client.track(provider="openai", model="gpt-4o"):
        _ = 1 / 0
    ((key, first), (_, second)) = client._buffer.take(10)
    assert key == b"support-bot"
    ok, failed = LLMCall.model_validate_json(first), LLMCall.model_validate_json(second)
    assert (ok.status, ok.finish_reason, ok.input_tokens) == ("ok", "stop", 3)
    assert (failed.status, failed.error_type) == ("error", "ZeroDivisionError")
    assert uuid.UUID(ok.event_id) != uuid.UUID(failed.event_id)
    assert ok.timestamp.tzinfo == UTC
    assert abs((datetime.now(UTC) - ok.timestamp).total_seconds()) < 60


def test_client_track_counts_a_call_that_ends_invalid(client: PulseClient) -> None:
    with client.track(provider="openai", model="gpt-4o") as call:
        call._fields["latency_ms"] = -1.0  # a bug that bypasses set(): counted, not raised
    counters = client.counters()
    assert (counters.dropped_invalid, counters.emitted, counters.buffered) == (1, 0, 0)


def test_decorated_function_used_from_many_threads(client: PulseClient) -> None:
    @client.track(provider="openai", model="gpt-4o")
    def ask(i: int) -> dict[str, Any]:
        return {"usage": {"prompt_tokens": i, "completion_tokens": 1}}

    threads = [
        threading.Thread(target=lambda base=base: [ask(base + i) for i in range(100)])
        for base in range(0, 800, 100)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = client._buffer.take(10_000)
    tokens = sorted(LLMCall.model_validate_json(value).input_tokens or 0 for _, value in records)
    assert tokens == list(range(800))


def test_generators_are_refused_as_decorated_functions(
    events: list[dict[str, Any]], clock: FakeClock
) -> None:
    def stream() -> Iterator[str]:
        yield "chunk"

    async def astream() -> AsyncIterator[str]:
        yield "chunk"

    for func in (stream, astream):
        with pytest.raises(TypeError, match="generator"):
            tracked(events, clock)(func)
