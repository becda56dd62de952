"""Turn keyword arguments into a validated `LLMCall` and into the Kafka key and value."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from schemas.llm_call import LLMCall
from schemas.validation import InvalidEvent, describe_validation_error

FIELD_NAMES = frozenset(LLMCall.model_fields)
"""Keyword arguments an event accepts: the canonical `LLMCall` field names."""

_PLACEHOLDER_LATENCY_MS = 0.0


def check_field_names(fields: Mapping[str, Any]) -> None:
    """Refuse names that are not `LLMCall` fields; the schema would silently ignore them.

    Raises
    ------
    InvalidEvent
        With code ``schema``, naming the unknown fields.

    Examples
    --------
    >>> check_field_names({"app": "a", "modle": "gpt-4o"})
    Traceback (most recent call last):
    ...
    schemas.validation.InvalidEvent: schema: unknown field 'modle'; LLMCall has no such field
    """
    unknown = sorted(name for name in fields if name not in FIELD_NAMES)
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise InvalidEvent(
            "schema", f"unknown field{plural} {names}; LLMCall has no such field", unknown[0]
        )


def build_call(fields: Mapping[str, Any]) -> LLMCall:
    """Validate ``fields`` as an `LLMCall`, generating ``event_id`` and ``timestamp`` if absent.

    ``event_id`` becomes a random UUID and ``timestamp`` the current UTC time.

    Raises
    ------
    InvalidEvent
        With code ``schema`` and a reason naming the offending field; the raw
        values of free-text fields are never echoed.
    """
    check_field_names(fields)
    data = dict(fields)
    if data.get("event_id") is None:
        data["event_id"] = str(uuid.uuid4())
    if data.get("timestamp") is None:
        data["timestamp"] = datetime.now(UTC)
    try:
        return LLMCall.model_validate(data)
    except ValidationError as exc:
        field, reason = describe_validation_error(exc)
        raise InvalidEvent("schema", reason, field) from None


def check_partial_call(fields: Mapping[str, Any]) -> None:
    """Validate the fields known before a timed call ends (``latency_ms`` may still be missing)."""
    if "latency_ms" in fields:
        build_call(fields)
    else:
        build_call({**fields, "latency_ms": _PLACEHOLDER_LATENCY_MS})


def encode_call(call: LLMCall) -> tuple[bytes, bytes]:
    """The Kafka record for ``call``: key ``app`` (UTF-8), value compact JSON without nulls."""
    return call.app.encode(), call.__pydantic_serializer__.to_json(call, exclude_none=True)
