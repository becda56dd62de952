"""Read token usage, finish reason and model from OpenAI- and Anthropic-style responses.

Works on the SDKs' response objects and on plain dicts alike, by attribute or key
access, without importing either SDK. Anything missing or of the wrong type is
left out rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from schemas.field_types import MAX_COUNT, MAX_NAME_CHARS

FINISH_REASONS: Mapping[str, str] = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "max_tokens": "length",
    "max_output_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "tool_use": "tool_calls",
    "content_filter": "content_filter",
    "refusal": "content_filter",
    "safety": "content_filter",
}
"""Provider stop reason (lower case) -> our ``finish_reason``: OpenAI's chat vocabulary."""


@dataclass(frozen=True, slots=True)
class Usage:
    """What a response says about the call; None where it says nothing.

    ``input_tokens`` includes cached tokens and ``cached_input_tokens`` is the
    cached part, the OpenAI convention the metrics and pricing expect.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    finish_reason: str | None = None
    response_model: str | None = None

    def fields(self) -> dict[str, Any]:
        """The known values as `LLMCall` keyword arguments."""
        return {name: value for name, value in asdict(self).items() if value is not None}


def normalise_finish_reason(reason: str) -> str:
    """Map a provider's stop reason onto ``stop``, ``length``, ``tool_calls`` or ``content_filter``.

    Unknown reasons are kept as they are.

    Examples
    --------
    >>> [normalise_finish_reason(r) for r in ("end_turn", "max_tokens", "tool_use", "refusal")]
    ['stop', 'length', 'tool_calls', 'content_filter']
    >>> normalise_finish_reason("pause_turn")
    'pause_turn'
    """
    return FINISH_REASONS.get(reason.lower(), reason)


def read_usage(response: object) -> Usage:
    """Read a chat completion, a Responses API response or an Anthropic message.

    Never raises: an object that is not a response gives an empty `Usage`.

    Examples
    --------
    >>> read_usage({
    ...     "model": "gpt-4o-2024-08-06",
    ...     "choices": [{"finish_reason": "length"}],
    ...     "usage": {"prompt_tokens": 120, "completion_tokens": 40,
    ...               "prompt_tokens_details": {"cached_tokens": 100}},
    ... }).fields()  # doctest: +NORMALIZE_WHITESPACE
    {'input_tokens': 120, 'output_tokens': 40, 'cached_input_tokens': 100,
     'finish_reason': 'length', 'response_model': 'gpt-4o-2024-08-06'}

    Anthropic counts cache reads apart from ``input_tokens``; they are added in:

    >>> usage = read_usage({
    ...     "type": "message", "model": "claude-sonnet-4-5", "stop_reason": "end_turn",
    ...     "usage": {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": 300},
    ... })
    >>> usage.input_tokens, usage.cached_input_tokens, usage.finish_reason
    (320, 300, 'stop')
    """
    usage = _get(response, "usage")
    return Usage(
        input_tokens=_input_tokens(usage),
        output_tokens=_count(_first(usage, "completion_tokens", "output_tokens")),
        cached_input_tokens=_cached_tokens(usage),
        finish_reason=_finish_reason(response),
        response_model=_name(_get(response, "model")),
    )


def _input_tokens(usage: object) -> int | None:
    prompt = _count(_get(usage, "prompt_tokens"))
    if prompt is not None:
        return prompt
    given = _count(_get(usage, "input_tokens"))
    # Anthropic counts cache reads and writes apart from input_tokens; ours include them.
    cache_read = _count(_get(usage, "cache_read_input_tokens"))
    cache_write = _count(_get(usage, "cache_creation_input_tokens"))
    if given is None:
        return None
    total = given + (cache_read or 0) + (cache_write or 0)
    return total if total <= MAX_COUNT else None


def _cached_tokens(usage: object) -> int | None:
    for details in ("prompt_tokens_details", "input_tokens_details"):
        cached = _count(_get(_get(usage, details), "cached_tokens"))
        if cached is not None:
            return cached
    return _count(_get(usage, "cache_read_input_tokens"))


def _finish_reason(response: object) -> str | None:
    choices = _get(response, "choices")
    if isinstance(choices, Sequence) and not isinstance(choices, str | bytes) and choices:
        reason = _name(_get(choices[0], "finish_reason"))
    else:
        reason = _name(_get(response, "stop_reason")) or _responses_api_reason(response)
    return normalise_finish_reason(reason) if reason is not None else None


def _responses_api_reason(response: object) -> str | None:
    """The Responses API has no finish reason: derive one from ``status`` and the output."""
    status = _get(response, "status")
    if status == "incomplete":
        return _name(_get(_get(response, "incomplete_details"), "reason"))
    if status != "completed":
        return None
    output = _get(response, "output")
    if isinstance(output, Sequence) and any(
        _get(item, "type") == "function_call" for item in output
    ):
        return "tool_calls"
    return "stop"


def _first(obj: object, *names: str) -> object:
    for name in names:
        value = _get(obj, name)
        if value is not None:
            return value
    return None


def _get(obj: object, name: str) -> object:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    try:
        return getattr(obj, name, None)
    except Exception:  # a property that fails is the same as a missing value here
        return None


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
        return value
    return None


def _name(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS:
        return value
    return None
