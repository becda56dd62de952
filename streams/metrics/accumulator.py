"""`WindowAccumulator`: running sums and quantile estimators of one key in one window."""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import reduce
from operator import add
from typing import Any

from streams.metrics.means import add_all_means, add_means, means, merge_means, pairs, unpair
from streams.metrics.quantiles import QuantileEstimator
from streams.metrics.record import MetricRecord

FINISH_OTHER, FINISH_LENGTH, FINISH_CONTENT_FILTER = 0, 1, 2
"""Codes for the finish reasons whose rates are reported."""

CallSample = tuple[
    float | None,  # latency_ms
    float | None,  # ttft_ms
    float | None,  # output tokens per second
    int,  # input tokens
    int,  # output tokens
    int,  # cached input tokens
    float | None,  # cost in USD, None when unknown
    bool,  # is an error
    int,  # finish code
    Mapping[str, float] | None,  # scores
]
"""One call's values as every key set counts them, derived once per call."""

LATENCY_QUANTILES = (0.5, 0.9, 0.95, 0.99)
TTFT_QUANTILES = (0.5, 0.95)

PENDING_LIMIT = 128
"""Calls an accumulator queues before folding them into its counters."""

_COUNTERS = (
    "requests",
    "errors",
    "tps_count",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost_missing",
    "finish_length",
    "finish_content_filter",
    "late_events",
)


class WindowAccumulator:
    """Everything needed to report one key's window; updated once per call and key set.

    ``last_wall`` is the wall-clock time of the latest event, for closing idle windows.
    Calls wait in ``pending`` until `flush`; the counters are up to date only after it
    (every method here that reads them flushes first).
    """

    __slots__ = (
        "_eps",
        "_exact_capacity",
        "cached_input_tokens",
        "cost_missing",
        "cost_sum",
        "errors",
        "feedback_counts",
        "feedback_sums",
        "finish_content_filter",
        "finish_length",
        "input_tokens",
        "last_wall",
        "late_events",
        "latency",
        "output_tokens",
        "pending",
        "requests",
        "score_counts",
        "score_sums",
        "tps_count",
        "tps_sum",
        "ttft",
    )

    def __init__(self, eps: float, exact_capacity: int, last_wall: float) -> None:
        self._eps = eps
        self._exact_capacity = exact_capacity
        self.pending: list[CallSample] = []
        self.requests = 0
        self.errors = 0
        # Quantile values, a batch per `flush`; ttft stays None until a call has one.
        self.latency = QuantileEstimator(eps, exact_capacity)
        self.ttft: QuantileEstimator | None = None
        self.tps_sum = 0.0
        self.tps_count = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cached_input_tokens = 0
        self.cost_sum = 0.0
        self.cost_missing = 0
        self.finish_length = 0
        self.finish_content_filter = 0
        # Score and feedback maps stay None until used: most windows never need them.
        self.score_sums: dict[str, float] | None = None
        self.score_counts: dict[str, int] | None = None
        self.feedback_sums: dict[str, float] | None = None
        self.feedback_counts: dict[str, int] | None = None
        self.late_events = 0
        self.last_wall = last_wall

    def add_call(self, sample: CallSample, now: float) -> None:
        """Count one call; the caller has derived its values once for all key sets.

        The call is queued in `pending` and folded in by `flush` (``PENDING_LIMIT`` at a
        time, and before anything reads the counters), with the same result as counting
        it right away. `MetricsAggregator` inlines this.
        """
        pending = self.pending
        pending.append(sample)
        self.last_wall = now
        if len(pending) >= PENDING_LIMIT:
            self.flush()

    def flush(self) -> None:
        """Fold the pending calls into the counters and quantile values, in arrival order.

        Float sums add the values one by one in arrival order (``reduce(add, ...)``, not
        `sum`, which may compensate) and `QuantileEstimator.extend` is `add` of each value,
        so the result is exactly that of counting each call as it came.
        """
        pending = self.pending
        if not pending:
            return
        n = len(pending)
        latency, ttft, tps, input_tokens, output_tokens, cached, cost, errors, finish, scores = zip(
            *pending, strict=True
        )
        pending.clear()
        self.requests += n
        self.errors += sum(errors)
        values = _floats(latency)
        if values:
            self.latency.extend(values)
        values = _floats(ttft)
        if values:
            if self.ttft is None:
                self.ttft = QuantileEstimator(self._eps, self._exact_capacity)
            self.ttft.extend(values)
        self.tps_sum, added = _total(self.tps_sum, tps)
        self.tps_count += added
        self.input_tokens += sum(input_tokens)
        self.output_tokens += sum(output_tokens)
        self.cached_input_tokens += sum(cached)
        self.cost_sum, added = _total(self.cost_sum, cost)
        self.cost_missing += n - added
        unfinished = finish.count(0)
        if unfinished != n:
            length = finish.count(FINISH_LENGTH)
            self.finish_length += length
            self.finish_content_filter += n - unfinished - length
        if any(scores):
            if self.score_sums is None or self.score_counts is None:
                self.score_sums, self.score_counts = {}, {}
            add_all_means(self.score_sums, self.score_counts, scores)

    def add_feedback(self, name: str, value: float, now: float) -> None:
        """Count one feedback score for this key and window."""
        if self.feedback_sums is None or self.feedback_counts is None:
            self.feedback_sums, self.feedback_counts = {}, {}
        add_means(self.feedback_sums, self.feedback_counts, {name: value})
        self.last_wall = now

    def merge(self, other: WindowAccumulator) -> None:
        """Fold in the same key's window from another partition; ``other`` is not changed.

        Counters and sums add, mean pairs add per name, quantile estimators merge (see
        `QuantileEstimator.merge` for their error) and ``last_wall`` is the later one.
        """
        if other is self:
            raise ValueError("cannot merge an accumulator into itself")
        self.flush()
        other.flush()
        for name in _COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.tps_sum += other.tps_sum
        self.cost_sum += other.cost_sum
        self.latency.merge(other.latency)
        if other.ttft is not None:
            if self.ttft is None:
                self.ttft = QuantileEstimator(self._eps, self._exact_capacity)
            self.ttft.merge(other.ttft)
        if other.score_sums and other.score_counts:
            self.score_sums, self.score_counts = merge_means(
                self.score_sums, self.score_counts, other.score_sums, other.score_counts
            )
        if other.feedback_sums and other.feedback_counts:
            self.feedback_sums, self.feedback_counts = merge_means(
                self.feedback_sums, self.feedback_counts, other.feedback_sums, other.feedback_counts
            )
        self.last_wall = max(self.last_wall, other.last_wall)

    def copy(self) -> WindowAccumulator:
        """An independent copy (counting into or reporting from it leaves this one as is)."""
        acc = WindowAccumulator(self._eps, self._exact_capacity, self.last_wall)
        acc.merge(self)
        return acc

    def to_record(
        self,
        key_set: str,
        dimensions: dict[str, str],
        window_start: float,
        window_seconds: float,
        closed_by: str | None,
    ) -> MetricRecord:
        """The reported metrics; quantiles are computed here, not per event."""
        self.flush()
        requests = self.requests
        lat = self.latency.quantiles(LATENCY_QUANTILES)
        ttft_est = self.ttft
        ttft = ttft_est.quantiles(TTFT_QUANTILES) if ttft_est else [None] * len(TTFT_QUANTILES)
        priced = requests - self.cost_missing
        return MetricRecord(
            key_set=key_set,
            dimensions=dimensions,
            window_start=datetime.fromtimestamp(window_start, UTC),
            window_end=datetime.fromtimestamp(window_start + window_seconds, UTC),
            requests=requests,
            errors=self.errors,
            error_rate=_ratio(self.errors, requests),
            latency_p50_ms=lat[0],
            latency_p90_ms=lat[1],
            latency_p95_ms=lat[2],
            latency_p99_ms=lat[3],
            ttft_count=ttft_est.count if ttft_est else 0,
            ttft_p50_ms=ttft[0],
            ttft_p95_ms=ttft[1],
            output_tokens_per_second_count=self.tps_count,
            output_tokens_per_second_mean=_ratio(self.tps_sum, self.tps_count),
            input_tokens_sum=self.input_tokens,
            output_tokens_sum=self.output_tokens,
            cached_input_tokens_sum=self.cached_input_tokens,
            cost_usd_sum=self.cost_sum,
            cost_missing=self.cost_missing,
            cost_per_1k_requests=_ratio(1000.0 * self.cost_sum, priced),
            finish_length_rate=_ratio(self.finish_length, requests),
            finish_content_filter_rate=_ratio(self.finish_content_filter, requests),
            score_means=means(self.score_sums, self.score_counts),
            score_counts=dict(self.score_counts or {}),
            feedback_means=means(self.feedback_sums, self.feedback_counts),
            feedback_counts=dict(self.feedback_counts or {}),
            late_events=self.late_events,
            closed_by=closed_by,
        )

    def to_state(self) -> dict[str, Any]:
        """JSON-compatible snapshot; `streams.metrics.state` validates it on the way back."""
        self.flush()
        state: dict[str, Any] = {name: getattr(self, name) for name in _COUNTERS}
        state["tps_sum"] = self.tps_sum
        state["cost_sum"] = self.cost_sum
        state["last_wall"] = self.last_wall
        state["latency"] = self.latency.to_state()
        state["ttft"] = self.ttft.to_state() if self.ttft else None
        state["scores"] = pairs(self.score_sums, self.score_counts)
        state["feedback"] = pairs(self.feedback_sums, self.feedback_counts)
        return state

    @classmethod
    def from_state(
        cls, state: dict[str, Any], eps: float, exact_capacity: int
    ) -> WindowAccumulator:
        """Rebuild from a validated `to_state` dict."""
        acc = cls(eps, exact_capacity, state["last_wall"])
        for name in _COUNTERS:
            setattr(acc, name, state[name])
        acc.tps_sum = state["tps_sum"]
        acc.cost_sum = state["cost_sum"]
        if state["latency"] is not None:
            acc.latency = QuantileEstimator.from_state(state["latency"])
        if state["ttft"] is not None:
            acc.ttft = QuantileEstimator.from_state(state["ttft"])
        acc.score_sums, acc.score_counts = unpair(state["scores"])
        acc.feedback_sums, acc.feedback_counts = unpair(state["feedback"])
        return acc


def _floats(values: Sequence[float | None]) -> array[float]:
    """The values that are not None, in order."""
    try:
        return array("d", values)  # type: ignore[arg-type]
    except TypeError:  # some are None (checking first would cost as much as this)
        return array("d", [x for x in values if x is not None])


def _total(start: float, values: Sequence[float | None]) -> tuple[float, int]:
    """``start`` plus each value that is not None, one by one in order; and how many."""
    try:
        return reduce(add, values, start), len(values)
    except TypeError:  # some are None: nothing was kept, add those that are not
        present = [x for x in values if x is not None]
        return reduce(add, present, start), len(present)


def _ratio(numerator: float, denominator: int) -> float | None:
    return numerator / denominator if denominator else None
