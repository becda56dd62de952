"""The `Feedback` event: a score for a call that arrives after it, on ``llm.feedback``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.field_types import (
    SCHEMA_VERSION,
    Comment,
    EventId,
    Name,
    SchemaVersion,
    UtcTimestamp,
)


class Feedback(BaseModel):
    """A late score for one LLM call, schema version 1.

    Typical sources are an end user's thumbs up/down (``source="user"``) or an
    offline evaluator (``source="evaluator"``); any other non-empty source name
    is allowed. Typing rules, unknown keys and timestamps behave as in `LLMCall`.

    Examples
    --------
    >>> fb = Feedback.model_validate({
    ...     "event_id": "e-1", "timestamp": "2025-01-31T12:05:00Z",
    ...     "name": "thumbs_up", "value": 1,
    ... })
    >>> fb.source, fb.value
    ('user', 1.0)
    """

    model_config = ConfigDict(
        strict=True,
        frozen=True,
        extra="ignore",
        allow_inf_nan=False,
        hide_input_in_errors=True,
        title="Feedback",
        json_schema_extra={
            "description": (
                "A score for an LLM call that arrives after it, llmpulse event schema "
                "version 1. Unknown keys are ignored."
            )
        },
    )

    schema_version: SchemaVersion = Field(
        SCHEMA_VERSION, description="Event contract version; only 1 is accepted."
    )
    event_id: EventId = Field(description="The event_id of the LLMCall this scores.")
    timestamp: UtcTimestamp = Field(description="RFC 3339 time the feedback was given.")
    name: Name = Field(description="What is scored, e.g. thumbs_up or hallucination.")
    value: float = Field(description="The score, a finite number.")
    source: Name = Field("user", description='Who scored: "user", "evaluator" or another name.')
    comment: Comment | None = Field(None, description="Optional free-text comment.")
