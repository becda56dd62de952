"""Deterministic sample events for tests and benchmarks (valid ones and every kind of invalid)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

MODELS = (("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-3-5-haiku"))


def valid_call(
    i: int, rng: random.Random, now: datetime | None = None, **overrides: Any
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    provider, model = MODELS[i % len(MODELS)]
    event: dict[str, Any] = {
        "event_id": f"evt-{i:08d}",
        "timestamp": (now - timedelta(seconds=rng.random() * 30)).isoformat(),
        "app": f"app-{i % 4}",
        "provider": provider,
        "model": model,
        "latency_ms": round(rng.lognormvariate(6.5, 0.4), 2),
        "ttft_ms": round(rng.lognormvariate(5.5, 0.3), 2),
        "input_tokens": rng.randint(20, 2000),
        "output_tokens": rng.randint(5, 800),
        "prompt_id": "support-answer",
        "prompt_version": f"v{1 + i % 2}",
        "status": "error" if rng.random() < 0.02 else "ok",
        "finish_reason": "stop",
        "scores": {"hallucination": round(rng.random() * 0.2, 4)},
        "tags": {"region": "eu"},
        "input_text": "Please mail jane.doe@example.com about card 4111 1111 1111 1111",
        "output_text": "Sure.",
    }
    event.update(overrides)
    return event


def invalid_payloads(n: int, rng: random.Random) -> list[tuple[str, bytes]]:
    """``n`` invalid records cycling through every rejection kind; (kind, bytes)."""
    now = datetime.now(UTC)
    makers = [
        ("bad_json", lambda i: b'{"event_id": "x", "timestamp": '),
        ("empty", lambda i: b""),
        ("not_utf8", lambda i: b'{"event_id": "\xff\xfe\xfa"}'),
        (
            "too_large",
            lambda i: orjson.dumps(valid_call(10**7 + i, rng, now, output_text="x" * 300_000)),
        ),
        ("negative", lambda i: orjson.dumps(valid_call(10**7 + i, rng, now, latency_ms=-5))),
        (
            "wrong_type",
            lambda i: orjson.dumps(valid_call(10**7 + i, rng, now, input_tokens="many")),
        ),
        ("bad_status", lambda i: orjson.dumps(valid_call(10**7 + i, rng, now, status="meh"))),
        (
            "too_old",
            lambda i: orjson.dumps(
                valid_call(10**7 + i, rng, now, timestamp="2001-01-01T00:00:00Z")
            ),
        ),
        ("not_object", lambda i: b"[1, 2, 3]"),
        ("missing_field", lambda i: orjson.dumps({"event_id": f"m{i}", "app": "a"})),
    ]
    return [(makers[i % len(makers)][0], makers[i % len(makers)][1](i)) for i in range(n)]
