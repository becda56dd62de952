"""The llmpulse event contract: `LLMCall` and `Feedback` events, their validation and redaction.

This package imports nothing else from llmpulse; streams, detectors and alerting
depend on it, never the other way round.
"""

from __future__ import annotations

from schemas.feedback import Feedback
from schemas.field_types import SCHEMA_VERSION
from schemas.llm_call import OTEL_ALIASES, LLMCall
from schemas.redaction import TextPolicy, apply_text_policy, redact
from schemas.validation import (
    DEFAULT_LIMITS,
    InvalidEvent,
    RejectionCode,
    ValidationLimits,
    decode_call,
    decode_feedback,
)

__all__ = [
    "DEFAULT_LIMITS",
    "OTEL_ALIASES",
    "SCHEMA_VERSION",
    "Feedback",
    "InvalidEvent",
    "LLMCall",
    "RejectionCode",
    "TextPolicy",
    "ValidationLimits",
    "apply_text_policy",
    "decode_call",
    "decode_feedback",
    "redact",
]
