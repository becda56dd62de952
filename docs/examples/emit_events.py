"""A plain script that reports its (fake) LLM calls to llmpulse with the synchronous SDK.

    python docs/examples/emit_events.py --bootstrap 127.0.0.1:9092 --count 20

Every call is emitted three ways: by keyword arguments, with ``track`` as a context
manager and with ``track`` as a decorator. One call in five fails, as a rate limit
would; the failure is re-raised to this script after the event is emitted. The SDK's
counters are printed at the end.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from schemas.sdk import SyncPulseClient


class RateLimitError(Exception):
    """Stands in for the error a provider SDK raises on HTTP 429."""


def fake_chat_completion(prompt: str, rng: random.Random) -> dict[str, Any]:
    """Pretend to call OpenAI's chat completions API; return its response as a dict."""
    time.sleep(rng.uniform(0.001, 0.005))
    if rng.random() < 0.2:
        raise RateLimitError("slow down")
    completion_tokens = rng.randint(5, 200)
    return {
        "id": "chatcmpl-example",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"answer to {prompt!r}"},
                "finish_reason": "length" if completion_tokens == 200 else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 40 + len(prompt),
            "completion_tokens": completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 32},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=None, help="Kafka host:port (default: env)")
    parser.add_argument("--topic", default="llm.calls")
    parser.add_argument("--count", type=int, default=10, help="calls per style")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    pulse = SyncPulseClient(
        bootstrap=args.bootstrap,
        topic=args.topic,
        defaults={"app": "example-app", "environment": "dev", "provider": "openai"},
    )
    rate_limited = 0
    with pulse:
        # 1. Keyword arguments: the application measures the call itself.
        for i in range(args.count):
            started = time.perf_counter()
            try:
                response = fake_chat_completion(f"question {i}", rng)
            except RateLimitError:
                latency_ms = (time.perf_counter() - started) * 1000
                pulse.emit(
                    model="gpt-4o-mini",
                    latency_ms=latency_ms,
                    status="error",
                    error_type="RateLimitError",
                    tags={"style": "kwargs"},
                )
                rate_limited += 1
                continue
            usage = response["usage"]
            pulse.emit(
                model="gpt-4o-mini",
                latency_ms=(time.perf_counter() - started) * 1000,
                input_tokens=usage["prompt_tokens"],
                output_tokens=usage["completion_tokens"],
                finish_reason=response["choices"][0]["finish_reason"],
                tags={"style": "kwargs"},
            )

        # 2. Context manager: timing, status and error type are filled in.
        for i in range(args.count):
            try:
                with pulse.track(model="gpt-4o-mini", tags={"style": "with"}) as call:
                    call.set(user_id=f"user-{i % 3}")
                    call.record_response(fake_chat_completion(f"question {i}", rng))
            except RateLimitError:  # the event, status "error", was emitted before this runs
                rate_limited += 1

        # 3. Decorator: usage is read from the return value.
        @pulse.track(model="gpt-4o-mini", tags={"style": "decorator"})
        def answer(question: str) -> dict[str, Any]:
            return fake_chat_completion(question, rng)

        for i in range(args.count):
            try:
                answer(f"question {i}")
            except RateLimitError:
                rate_limited += 1

    # Leaving the with block closed the client: everything sendable was sent.
    counters = pulse.counters()
    print(f"calls={3 * args.count} rate_limited={rate_limited}")
    print(f"emitted={counters.emitted} sent={counters.sent} dropped={counters.dropped}")
    print(counters)


if __name__ == "__main__":
    main()
