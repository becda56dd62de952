"""Constrained field types and size limits shared by the event models."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1
"""The event contract version this build reads and writes."""

MAX_ID_CHARS = 128
MAX_NAME_CHARS = 256
MAX_TEXT_CHARS = 200_000
MAX_COMMENT_CHARS = 4_000
MAX_MAP_ITEMS = 64
MAX_MAP_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 256
MAX_COUNT = 2**32 - 1
"""Upper bound for token and character counts; no real call comes near it."""

# RFC 3339 section 5.6 date-time; the offset is mandatory, so naive times never get this far.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})",
)


def _parse_timestamp(value: object, _handler: ValidatorFunctionWrapHandler) -> datetime:
    """Parse an RFC 3339 string (or take an aware datetime) and normalise it to UTC.

    Replaces pydantic's lax datetime parsing, which would also accept Unix
    timestamps and bare dates; one function is also faster on the hot path than
    chained validators. A wrap (not plain) validator keeps datetime serialisation.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise PydanticCustomError("timezone_aware", "Input should have timezone info")
        return value.astimezone(UTC)
    if isinstance(value, str) and _RFC3339.fullmatch(value):
        try:
            return datetime.fromisoformat(value.upper()).astimezone(UTC)
        except ValueError:
            pass  # well-formed but impossible, e.g. month 13
    raise PydanticCustomError(
        "rfc3339",
        "Input should be an RFC 3339 date-time with a timezone, e.g. 2025-01-31T12:00:00Z",
    )


def _require_schema_version(value: int) -> int:
    """Refuse any schema version this build does not understand."""
    if value != SCHEMA_VERSION:
        raise PydanticCustomError(
            "schema_version",
            "Unsupported schema version {version}; this build reads version {supported}",
            {"version": value, "supported": SCHEMA_VERSION},
        )
    return value


UtcTimestamp = Annotated[
    datetime,
    WrapValidator(_parse_timestamp),
]
"""RFC 3339 time with a timezone, normalised to UTC."""

SchemaVersion = Annotated[
    int,
    AfterValidator(_require_schema_version),
    Field(json_schema_extra={"const": SCHEMA_VERSION}),
]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
Comment = Annotated[str, StringConstraints(max_length=MAX_COMMENT_CHARS)]
MapKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_MAP_KEY_CHARS)]
TagValue = Annotated[str, StringConstraints(max_length=MAX_TAG_VALUE_CHARS)]
Milliseconds = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
