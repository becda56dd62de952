"""Plain stand-ins for calls and feedback, shared by the metrics tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Call:
    event_id: str
    timestamp: datetime
    app: str = "bot"
    environment: str | None = "production"
    provider: str = "openai"
    model: str = "gpt-4o"
    prompt_id: str | None = "answer"
    prompt_version: str | None = "v1"
    latency_ms: float = 500.0
    ttft_ms: float | None = None
    input_tokens: int | None = 100
    output_tokens: int | None = 20
    cached_input_tokens: int | None = None
    cost_usd: float | None = None
    status: str = "ok"
    finish_reason: str | None = "stop"
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Feedback:
    event_id: str
    timestamp: datetime
    name: str
    value: float
