"""Plain stand-ins for calls and feedback, and quantile checks, shared by the metrics tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from streams.metrics.quantiles import QuantileEstimator

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
QS = (0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)


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


def rank_error(data: np.ndarray, value: float, q: float) -> float:
    """Distance, as a fraction of n, from the target rank 1 + q(n-1) to value's rank range."""
    ordered = np.sort(data)
    n = len(ordered)
    lo = int(np.searchsorted(ordered, value, "left")) + 1
    hi = int(np.searchsorted(ordered, value, "right"))
    assert hi >= lo, "the estimate must be an observed value"
    target = 1 + q * (n - 1)
    return max(0.0, lo - target, target - hi) / n


def check_against_numpy(
    est: QuantileEstimator, data: np.ndarray, rel: float = 1e-12, abs_: float = 1e-12
) -> None:
    """Exact quantiles are numpy's (within ``rel``/``abs_``); summary ones are within the
    documented bound of max(eps * n, 1/2) ranks."""
    assert est.count == len(data)
    for q in QS:
        value = est.quantile(q)
        assert value is not None
        if est.is_exact:
            assert value == pytest.approx(np.quantile(data, q), rel=rel, abs=abs_)
        else:
            assert rank_error(data, value, q) <= max(est.eps, 0.5 / len(data)) + 1e-12
