"""The `LLMCall` event: one request to an LLM provider, as published to ``llm.calls``."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import AliasChoices, AliasPath, BaseModel, BeforeValidator, ConfigDict, Field

from schemas.field_types import (
    MAX_MAP_ITEMS,
    SCHEMA_VERSION,
    Count,
    EventId,
    MapKey,
    Milliseconds,
    Name,
    SchemaVersion,
    TagValue,
    Text,
    UtcTimestamp,
)

OTEL_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "gen_ai.provider.name": "provider",
        "gen_ai.request.model": "model",
        "gen_ai.response.model": "response_model",
        "gen_ai.operation.name": "operation",
        "gen_ai.usage.input_tokens": "input_tokens",
        "gen_ai.usage.output_tokens": "output_tokens",
        "gen_ai.usage.cache_read.input_tokens": "cached_input_tokens",
        "gen_ai.response.finish_reasons": "finish_reason",
        "error.type": "error_type",
        "gen_ai.request.stream": "streaming",
        "gen_ai.conversation.id": "session_id",
    }
)
"""OpenTelemetry GenAI attribute name -> canonical field name, accepted on input only."""

_FINISH_REASONS = "gen_ai.response.finish_reasons"
_OTEL_NAME_OF = {field: otel for otel, field in OTEL_ALIASES.items()}


def _or_otel(field: str) -> AliasChoices:
    """Accept ``field`` or its OpenTelemetry name; the canonical name is tried first and wins."""
    return AliasChoices(field, _OTEL_NAME_OF[field])


def _empty_list_to_none(value: object) -> object:
    """Read an empty ``gen_ai.response.finish_reasons`` list as "no finish reason"."""
    if isinstance(value, list) and not value:
        return None
    return value


class LLMCall(BaseModel):
    """One LLM call, schema version 1.

    JSON keys are the field names. Unknown keys are ignored so that newer
    producers can add fields without breaking older workers. OpenTelemetry
    GenAI attribute names (see `OTEL_ALIASES`) are accepted on input; when an
    event carries both the canonical key and its alias, the canonical key wins.
    Serialisation always uses the canonical names.

    Types are strict: ``"12"`` is not a number and ``1.5`` or ``true`` is not
    a token count, but integers are accepted where a float is expected.
    Timestamps must carry a timezone and are normalised to UTC.

    Examples
    --------
    >>> call = LLMCall.model_validate({
    ...     "event_id": "e-1", "timestamp": "2025-01-31T13:00:00+01:00",
    ...     "app": "support-bot", "gen_ai.provider.name": "openai",
    ...     "model": "gpt-4o", "latency_ms": 812,
    ... })
    >>> call.provider, call.latency_ms, call.timestamp.isoformat()
    ('openai', 812.0, '2025-01-31T12:00:00+00:00')
    """

    model_config = ConfigDict(
        strict=True,
        frozen=True,
        extra="ignore",
        allow_inf_nan=False,
        hide_input_in_errors=True,
        title="LLMCall",
        json_schema_extra={
            "description": (
                "One LLM call, llmpulse event schema version 1. Unknown keys are ignored; "
                "OpenTelemetry GenAI names (x-otel-alias) are accepted on input and the "
                "canonical key wins when both are present."
            )
        },
    )

    schema_version: SchemaVersion = Field(
        SCHEMA_VERSION, description="Event contract version; only 1 is accepted."
    )
    event_id: EventId = Field(description="Unique per call; the idempotency key.")
    timestamp: UtcTimestamp = Field(description="RFC 3339 start of the request, with timezone.")
    app: Name = Field(description="The calling application.")
    provider: Name = Field(description="The LLM provider.", validation_alias=_or_otel("provider"))
    model: Name = Field(description="The requested model.", validation_alias=_or_otel("model"))
    latency_ms: Milliseconds = Field(description="Duration of the call in milliseconds.")

    environment: Name = Field("production", description="Deployment environment.")
    operation: Name = Field(
        "chat",
        description="Kind of call, e.g. chat or embeddings.",
        validation_alias=_or_otel("operation"),
    )
    response_model: Name | None = Field(
        None, description="The model that answered.", validation_alias=_or_otel("response_model")
    )
    prompt_id: Name | None = Field(None, description="Prompt template identifier.")
    prompt_version: Name | None = Field(None, description="Prompt template version.")
    user_id: Name | None = Field(None, description="End user, as known to the app.")
    session_id: Name | None = Field(
        None, description="Conversation or session.", validation_alias=_or_otel("session_id")
    )
    trace_id: Name | None = Field(None, description="Distributed trace id.")
    span_id: Name | None = Field(None, description="Span id within the trace.")
    ttft_ms: Milliseconds | None = Field(None, description="Time to first token in milliseconds.")
    input_tokens: Count | None = Field(
        None, description="Prompt tokens.", validation_alias=_or_otel("input_tokens")
    )
    output_tokens: Count | None = Field(
        None, description="Completion tokens.", validation_alias=_or_otel("output_tokens")
    )
    cached_input_tokens: Count | None = Field(
        None,
        description="Prompt tokens served from the provider's cache.",
        validation_alias=_or_otel("cached_input_tokens"),
    )
    cost_usd: Annotated[float, Field(ge=0)] | None = Field(None, description="Cost in US dollars.")
    status: Literal["ok", "error"] = Field("ok", description="Outcome of the call.")
    error_type: Name | None = Field(
        None,
        description="Error class when status is error.",
        validation_alias=_or_otel("error_type"),
    )
    finish_reason: Annotated[Name | None, BeforeValidator(_empty_list_to_none)] = Field(
        None,
        description="Why generation stopped; from OpenTelemetry, the first finish reason.",
        validation_alias=AliasChoices(
            "finish_reason", AliasPath(_FINISH_REASONS, 0), _FINISH_REASONS
        ),
    )
    streaming: bool | None = Field(
        None,
        description="Whether the response was streamed.",
        validation_alias=_or_otel("streaming"),
    )
    input_chars: Count | None = Field(None, description="Length of the prompt text.")
    output_chars: Count | None = Field(None, description="Length of the completion text.")
    input_text: Text | None = Field(None, description="Raw prompt; dropped before storage.")
    output_text: Text | None = Field(None, description="Raw completion; dropped before storage.")
    scores: dict[MapKey, float] = Field(
        default_factory=dict,
        max_length=MAX_MAP_ITEMS,
        description="Evaluator or guardrail name -> finite number.",
    )
    tags: dict[MapKey, TagValue] = Field(
        default_factory=dict, max_length=MAX_MAP_ITEMS, description="Free-form labels."
    )
