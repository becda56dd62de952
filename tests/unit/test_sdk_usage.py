"""Unit tests for the SDK's response readers: OpenAI and Anthropic shapes, as objects and dicts."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import pytest
from pydantic import BaseModel

from schemas import LLMCall
from schemas.sdk import FINISH_REASONS, Usage, normalise_finish_reason, read_usage

CHAT_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "tool_calls"}],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 80,
        "total_tokens": 1280,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    },
}
RESPONSES_API: dict[str, Any] = {
    "id": "resp_1",
    "object": "response",
    "model": "gpt-4.1-2025-04-14",
    "status": "completed",
    "output": [{"type": "message", "content": [{"type": "output_text", "text": "hi"}]}],
    "usage": {
        "input_tokens": 300,
        "output_tokens": 50,
        "input_tokens_details": {"cached_tokens": 128},
        "output_tokens_details": {"reasoning_tokens": 10},
    },
}
ANTHROPIC_MESSAGE: dict[str, Any] = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "max_tokens",
    "usage": {
        "input_tokens": 12,
        "output_tokens": 1024,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 2000,
    },
}


def as_object(value: Any) -> Any:
    """The same response as attribute-style objects, like the provider SDKs return."""
    if isinstance(value, dict):
        return SimpleNamespace(**{key: as_object(item) for key, item in value.items()})
    if isinstance(value, list):
        return [as_object(item) for item in value]
    return value


class AnthropicUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class AnthropicMessage(BaseModel):
    """A pydantic model shaped like ``anthropic.types.Message``, as the SDK builds it."""

    id: str
    model: str
    stop_reason: str | None
    usage: AnthropicUsage


@pytest.mark.parametrize("shape", [dict, as_object], ids=["dict", "object"])
def test_chat_completion(shape: Any) -> None:
    assert read_usage(shape(CHAT_COMPLETION)) == Usage(
        input_tokens=1200,
        output_tokens=80,
        cached_input_tokens=1024,
        finish_reason="tool_calls",
        response_model="gpt-4o-mini-2024-07-18",
    )


@pytest.mark.parametrize("shape", [dict, as_object], ids=["dict", "object"])
def test_responses_api(shape: Any) -> None:
    assert read_usage(shape(RESPONSES_API)) == Usage(
        input_tokens=300,
        output_tokens=50,
        cached_input_tokens=128,
        finish_reason="stop",
        response_model="gpt-4.1-2025-04-14",
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}, "length"),
        (
            {"status": "incomplete", "incomplete_details": {"reason": "content_filter"}},
            "content_filter",
        ),
        ({"output": [{"type": "reasoning"}, {"type": "function_call"}]}, "tool_calls"),
        ({"status": "failed"}, None),
        ({"status": "in_progress"}, None),
    ],
)
def test_responses_api_finish_reason_from_status(changes: dict[str, Any], reason: str) -> None:
    response = {**RESPONSES_API, **changes}
    assert read_usage(response).finish_reason == reason
    assert read_usage(as_object(response)).finish_reason == reason


@pytest.mark.parametrize("shape", [dict, as_object], ids=["dict", "object"])
def test_anthropic_message_adds_cache_tokens_to_input(shape: Any) -> None:
    assert read_usage(shape(ANTHROPIC_MESSAGE)) == Usage(
        input_tokens=12 + 100 + 2000,
        output_tokens=1024,
        cached_input_tokens=2000,
        finish_reason="length",
        response_model="claude-sonnet-4-5-20250929",
    )


def test_anthropic_pydantic_object_without_cache_fields() -> None:
    message = AnthropicMessage(
        id="msg_2",
        model="claude-haiku-4-5",
        stop_reason="tool_use",
        usage=AnthropicUsage(input_tokens=40, output_tokens=9),
    )
    assert read_usage(message) == Usage(40, 9, None, "tool_calls", "claude-haiku-4-5")


@pytest.mark.parametrize(
    ("provider_reason", "ours"),
    [
        ("stop", "stop"),
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("length", "length"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("function_call", "tool_calls"),
        ("content_filter", "content_filter"),
        ("refusal", "content_filter"),
        ("SAFETY", "content_filter"),
        ("MAX_TOKENS", "length"),
        ("pause_turn", "pause_turn"),
    ],
)
def test_finish_reasons_map_to_our_vocabulary(provider_reason: str, ours: str) -> None:
    assert normalise_finish_reason(provider_reason) == ours
    reply = {"stop_reason": provider_reason}
    assert read_usage(reply).finish_reason == ours


def test_vocabulary_is_what_metrics_and_detectors_count() -> None:
    assert set(FINISH_REASONS.values()) == {"stop", "length", "tool_calls", "content_filter"}


@pytest.mark.parametrize(
    "response",
    [None, "a plain string", 42, [], {}, SimpleNamespace(), object(), {"usage": "oops"}],
)
def test_anything_else_reads_as_empty(response: Any) -> None:
    assert read_usage(response) == Usage()
    assert read_usage(response).fields() == {}


def test_wrong_types_are_left_out_not_guessed() -> None:
    response = {
        "model": "",
        "choices": [{"finish_reason": None}],
        "usage": {
            "prompt_tokens": -1,
            "completion_tokens": True,
            "prompt_tokens_details": {"cached_tokens": "12"},
            "output_tokens": 2**40,
        },
    }
    assert read_usage(response) == Usage()


def test_mocks_and_failing_properties_do_not_raise() -> None:
    class Exploding:
        @property
        def usage(self) -> Any:
            raise RuntimeError("lazy load failed")

        model = "gpt-4o"

    assert read_usage(Exploding()) == Usage(response_model="gpt-4o")
    assert read_usage(MagicMock()) == Usage()


@pytest.mark.parametrize("response", [CHAT_COMPLETION, RESPONSES_API, ANTHROPIC_MESSAGE])
def test_fields_make_a_valid_event(response: dict[str, Any]) -> None:
    fields = read_usage(response).fields()
    call = LLMCall.model_validate(
        {
            "event_id": "e",
            "timestamp": "2025-01-31T12:00:00Z",
            "app": "a",
            "provider": "p",
            "model": "m",
            "latency_ms": 1,
            **fields,
        }
    )
    assert call.input_tokens == fields["input_tokens"]
    assert call.input_tokens is not None and call.cached_input_tokens is not None
    assert call.cached_input_tokens <= call.input_tokens
