"""Hot-path decoding of raw Kafka values into events, with a precise reason for every rejection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.feedback import Feedback
from schemas.llm_call import LLMCall

RejectionCode = Literal[
    "empty",
    "not_utf8",
    "too_large",
    "bad_json",
    "not_object",
    "schema",
    "timestamp_too_old",
    "timestamp_in_future",
]

_Event = TypeVar("_Event", LLMCall, Feedback)

# Free text may hold personal data or secrets, so its value is never echoed into a reason.
_NEVER_ECHOED = frozenset({"input_text", "output_text", "comment"})
_MAX_ECHO_CHARS = 48
_MAX_LOC_PART_CHARS = 48
_MAX_ERRORS_DESCRIBED = 3


@dataclass(frozen=True)
class ValidationLimits:
    """Limits applied to every event before and after schema validation.

    Parameters
    ----------
    max_event_bytes
        Largest accepted raw value, checked before parsing.
    max_past
        How far before ``now`` an event's timestamp may lie.
    max_future
        How far after ``now`` an event's timestamp may lie (clock skew).
    """

    max_event_bytes: int = 256 * 1024
    max_past: timedelta = timedelta(days=7)
    max_future: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.max_event_bytes <= 0:
            raise ValueError(f"max_event_bytes must be positive, got {self.max_event_bytes}")
        if self.max_past < timedelta(0):
            raise ValueError(f"max_past must not be negative, got {self.max_past}")
        if self.max_future < timedelta(0):
            raise ValueError(f"max_future must not be negative, got {self.max_future}")


DEFAULT_LIMITS = ValidationLimits()


class InvalidEvent(ValueError):
    """A raw event that cannot be accepted.

    Parameters
    ----------
    code
        Short machine-readable reason, suitable as a metric label.
    reason
        Human-readable explanation naming the offending field. Input values are
        truncated and free text is never included.
    field
        Path of the first offending field, or None when the whole value is bad.
    """

    def __init__(self, code: RejectionCode, reason: str, field: str | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code: RejectionCode = code
        self.reason = reason
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.reason, self.field))


def decode_call(
    raw: bytes | None,
    limits: ValidationLimits = DEFAULT_LIMITS,
    now: datetime | None = None,
) -> LLMCall:
    """Decode and validate one ``llm.calls`` value.

    Parameters
    ----------
    raw
        The Kafka record value: UTF-8 JSON object.
    limits
        Size and time-window limits.
    now
        Reference time for the timestamp window; default the current UTC time.

    Returns
    -------
    LLMCall

    Raises
    ------
    InvalidEvent
        With ``code`` one of `RejectionCode` and a precise ``reason``.

    Examples
    --------
    >>> raw = (b'{"event_id": "e-1", "timestamp": "2025-01-31T12:00:00Z", "app": "a",'
    ...        b' "provider": "openai", "model": "gpt-4o", "latency_ms": -3}')
    >>> try:
    ...     decode_call(raw, now=datetime(2025, 1, 31, 12, 1, tzinfo=UTC))
    ... except InvalidEvent as exc:
    ...     print(exc.code, "|", exc.reason)
    schema | latency_ms: Input should be greater than or equal to 0 (got -3)
    """
    return _decode(LLMCall, raw, limits, now)


def decode_feedback(
    raw: bytes | None,
    limits: ValidationLimits = DEFAULT_LIMITS,
    now: datetime | None = None,
) -> Feedback:
    """Decode and validate one ``llm.feedback`` value; see `decode_call`."""
    return _decode(Feedback, raw, limits, now)


def _decode(
    model: type[_Event], raw: bytes | None, limits: ValidationLimits, now: datetime | None
) -> _Event:
    data = _load_object(raw, limits.max_event_bytes)
    try:
        event = model.model_validate(data)
    except ValidationError as exc:
        field, reason = describe_validation_error(exc)
        # `from None`: the ValidationError holds the raw input, which may contain prompt text.
        raise InvalidEvent("schema", reason, field) from None
    _check_time_window(event.timestamp, limits, now)
    return event


def _load_object(raw: bytes | None, max_bytes: int) -> dict[str, Any]:
    if not raw:
        raise InvalidEvent("empty", "the record value is empty")
    size = len(raw)
    if size > max_bytes:
        raise InvalidEvent("too_large", f"the event is {size} bytes; the limit is {max_bytes}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson rejects invalid UTF-8 too; decoding tells the two causes apart.
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError as utf8_error:
            raise InvalidEvent(
                "not_utf8", f"the value is not valid UTF-8 (byte {utf8_error.start})"
            ) from None
        raise InvalidEvent("bad_json", f"the value is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidEvent("not_object", f"the JSON value is {_json_kind(data)}, not an object")
    return data


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"


def _check_time_window(timestamp: datetime, limits: ValidationLimits, now: datetime | None) -> None:
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if timestamp < now - limits.max_past:
        raise InvalidEvent(
            "timestamp_too_old",
            f"timestamp: {timestamp.isoformat()} is more than {_format_duration(limits.max_past)}"
            f" before now ({now.astimezone(UTC).isoformat()})",
            "timestamp",
        )
    if timestamp > now + limits.max_future:
        raise InvalidEvent(
            "timestamp_in_future",
            f"timestamp: {timestamp.isoformat()} is more than {_format_duration(limits.max_future)}"
            f" after now ({now.astimezone(UTC).isoformat()})",
            "timestamp",
        )


def describe_validation_error(exc: ValidationError) -> tuple[str | None, str]:
    """Summarise a pydantic error as (first field path, reason) without leaking free text.

    Parameters
    ----------
    exc
        The error raised by ``model_validate``.

    Returns
    -------
    tuple of (str or None, str)
        The path of the first failing field and a reason such as
        ``"latency_ms: Input should be greater than or equal to 0 (got -3)"``.
    """
    errors = exc.errors(include_url=False, include_context=False)
    parts = [_describe_error(error) for error in errors[:_MAX_ERRORS_DESCRIBED]]
    if len(errors) > _MAX_ERRORS_DESCRIBED:
        parts.append(f"and {len(errors) - _MAX_ERRORS_DESCRIBED} more errors")
    first_field = _format_loc(errors[0]["loc"]) if errors else None
    return first_field or None, "; ".join(parts)


def _describe_error(error: ErrorDetails) -> str:
    loc = error["loc"]
    text = f"{_format_loc(loc) or '(event)'}: {error['msg']}"
    value = error.get("input")
    if (
        error["type"] != "missing"
        and loc
        and loc[0] not in _NEVER_ECHOED
        and (value is None or isinstance(value, str | int | float | bool))
    ):
        text += f" (got {_echo(value)})"
    return text


def _format_loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            path += " (key)"
        elif not path:
            path = _truncate(part, _MAX_LOC_PART_CHARS)
        else:
            path += f"[{_echo(part, _MAX_LOC_PART_CHARS)}]"
    return path


def _echo(value: object, max_chars: int = _MAX_ECHO_CHARS) -> str:
    if isinstance(value, str):
        shown = orjson.dumps(_truncate(value, max_chars)).decode()
        return shown if len(value) <= max_chars else f"{shown} ({len(value)} chars)"
    return orjson.dumps(value).decode()


def _truncate(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def _format_duration(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{duration.total_seconds():g} seconds"
