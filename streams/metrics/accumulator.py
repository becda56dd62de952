"""`WindowAccumulator`: running sums and quantile estimators of one key in one window."""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from streams.metrics.quantiles import QuantileEstimator, exact_quantiles
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
    """

    __slots__ = (
        "_eps",
        "_exact_capacity",
        "_latency_sketch",
        "_ttft_sketch",
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
        "latency_values",
        "output_tokens",
        "requests",
        "score_counts",
        "score_sums",
        "tps_count",
        "tps_sum",
        "ttft_values",
    )

    def __init__(self, eps: float, exact_capacity: int, last_wall: float) -> None:
        self._eps = eps
        self._exact_capacity = exact_capacity
        self.requests = 0
        self.errors = 0
        # Values go into a flat array (one C call per value); past the exact capacity
        # they are handed to a sketch in batches. The sketch is None while exact.
        self.latency_values = array("d")
        self.ttft_values: array[float] | None = None
        self._latency_sketch: QuantileEstimator | None = None
        self._ttft_sketch: QuantileEstimator | None = None
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
        """Count one call; the caller has derived its values once for all key sets."""
        latency, ttft, tps, input_tokens, output_tokens, cached, cost, is_error, finish, scores = (
            sample
        )
        self.requests += 1
        if is_error:
            self.errors += 1
        if latency is not None:
            values = self.latency_values
            values.append(latency)
            if len(values) > self._exact_capacity:
                self._latency_sketch = self._spill(self._latency_sketch, values)
        if ttft is not None:
            values_or_none = self.ttft_values
            if values_or_none is None:
                values_or_none = self.ttft_values = array("d")
            values_or_none.append(ttft)
            if len(values_or_none) > self._exact_capacity:
                self._ttft_sketch = self._spill(self._ttft_sketch, values_or_none)
        if tps is not None:
            self.tps_sum += tps
            self.tps_count += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        if cached:
            self.cached_input_tokens += cached
        if cost is None:
            self.cost_missing += 1
        else:
            self.cost_sum += cost
        if finish:
            if finish == FINISH_LENGTH:
                self.finish_length += 1
            else:
                self.finish_content_filter += 1
        if scores:
            if self.score_sums is None or self.score_counts is None:
                self.score_sums, self.score_counts = {}, {}
            _add_means(self.score_sums, self.score_counts, scores)
        self.last_wall = now

    def _spill(self, sketch: QuantileEstimator | None, values: array[float]) -> QuantileEstimator:
        """Move pending values into the sketch (creating it), emptying ``values`` in place."""
        if sketch is None:
            sketch = QuantileEstimator(self._eps, self._exact_capacity)
        sketch.extend(values)
        del values[:]
        return sketch

    def _estimator(
        self, sketch: QuantileEstimator | None, values: array[float] | None
    ) -> QuantileEstimator | None:
        """The sketch with pending values folded in, or None while exact."""
        if sketch is not None and values:
            sketch.extend(values)
            del values[:]
        return sketch

    def _quantiles(
        self, sketch: QuantileEstimator | None, values: array[float] | None, qs: tuple[float, ...]
    ) -> list[float | None]:
        sketch = self._estimator(sketch, values)
        if sketch is not None:
            return sketch.quantiles(qs)
        return exact_quantiles(values or (), qs)

    def _estimator_state(
        self, sketch: QuantileEstimator | None, values: array[float] | None
    ) -> dict[str, Any] | None:
        # Pending values stay pending (not merged), so a restored window goes on
        # exactly as the uninterrupted one would.
        if sketch is None and values is None:
            return None
        state = (sketch or QuantileEstimator(self._eps, self._exact_capacity)).to_state()
        state["buffer"] = state["buffer"] + (values.tolist() if values else [])
        return state

    @property
    def latency_count(self) -> int:
        """Latency values held (all calls with a valid latency)."""
        sketch = self._latency_sketch
        return len(self.latency_values) + (sketch.count if sketch else 0)

    @property
    def ttft_count(self) -> int:
        """Calls with a TTFT."""
        sketch, values = self._ttft_sketch, self.ttft_values
        return (len(values) if values else 0) + (sketch.count if sketch else 0)

    def add_feedback(self, name: str, value: float, now: float) -> None:
        """Count one feedback score for this key and window."""
        if self.feedback_sums is None or self.feedback_counts is None:
            self.feedback_sums, self.feedback_counts = {}, {}
        _add_means(self.feedback_sums, self.feedback_counts, {name: value})
        self.last_wall = now

    def merge(self, other: WindowAccumulator) -> None:
        """Fold in the same key's window from another partition; ``other`` is not changed.

        Counters and sums add, mean pairs add per name, quantile estimators merge (see
        `QuantileEstimator.merge` for their error) and ``last_wall`` is the later one.
        """
        if other is self:
            raise ValueError("cannot merge an accumulator into itself")
        for name in _COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.tps_sum += other.tps_sum
        self.cost_sum += other.cost_sum
        self._latency_sketch = self._merged(
            self._latency_sketch, self.latency_values, other._latency_sketch, other.latency_values
        )
        if other.ttft_values is not None or other._ttft_sketch is not None:
            if self.ttft_values is None:
                self.ttft_values = array("d")
            self._ttft_sketch = self._merged(
                self._ttft_sketch, self.ttft_values, other._ttft_sketch, other.ttft_values
            )
        if other.score_sums and other.score_counts:
            self.score_sums, self.score_counts = _merge_means(
                self.score_sums, self.score_counts, other.score_sums, other.score_counts
            )
        if other.feedback_sums and other.feedback_counts:
            self.feedback_sums, self.feedback_counts = _merge_means(
                self.feedback_sums, self.feedback_counts, other.feedback_sums, other.feedback_counts
            )
        self.last_wall = max(self.last_wall, other.last_wall)

    def copy(self) -> WindowAccumulator:
        """An independent copy (counting into or reporting from it leaves this one as is)."""
        acc = WindowAccumulator(self._eps, self._exact_capacity, self.last_wall)
        acc.merge(self)
        return acc

    def _merged(
        self,
        sketch: QuantileEstimator | None,
        values: array[float],
        other_sketch: QuantileEstimator | None,
        other_values: array[float] | None,
    ) -> QuantileEstimator | None:
        """Our sketch with the other's merged in; pending values stay pending until full."""
        if other_sketch is not None:
            if sketch is None:
                sketch = QuantileEstimator(self._eps, self._exact_capacity)
            sketch.merge(other_sketch)
        if other_values:
            values.extend(other_values)
            if len(values) > self._exact_capacity:
                sketch = self._spill(sketch, values)
        return sketch

    def to_record(
        self,
        key_set: str,
        dimensions: dict[str, str],
        window_start: float,
        window_seconds: float,
        closed_by: str | None,
    ) -> MetricRecord:
        """The reported metrics; quantiles are computed here, not per event."""
        requests = self.requests
        lat = self._quantiles(self._latency_sketch, self.latency_values, LATENCY_QUANTILES)
        ttft = self._quantiles(self._ttft_sketch, self.ttft_values, TTFT_QUANTILES)
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
            ttft_count=self.ttft_count,
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
            score_means=_means(self.score_sums, self.score_counts),
            score_counts=dict(self.score_counts or {}),
            feedback_means=_means(self.feedback_sums, self.feedback_counts),
            feedback_counts=dict(self.feedback_counts or {}),
            late_events=self.late_events,
            closed_by=closed_by,
        )

    def to_state(self) -> dict[str, Any]:
        """JSON-compatible snapshot; `streams.metrics.state` validates it on the way back."""
        state: dict[str, Any] = {name: getattr(self, name) for name in _COUNTERS}
        state["tps_sum"] = self.tps_sum
        state["cost_sum"] = self.cost_sum
        state["last_wall"] = self.last_wall
        state["latency"] = self._estimator_state(self._latency_sketch, self.latency_values)
        state["ttft"] = self._estimator_state(self._ttft_sketch, self.ttft_values)
        state["scores"] = _pairs(self.score_sums, self.score_counts)
        state["feedback"] = _pairs(self.feedback_sums, self.feedback_counts)
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
        acc._latency_sketch, latency_values = _restore_values(state["latency"])
        acc.latency_values = array("d") if latency_values is None else latency_values
        acc._ttft_sketch, acc.ttft_values = _restore_values(state["ttft"])
        if state["scores"]:
            acc.score_sums = {k: v["sum"] for k, v in state["scores"].items()}
            acc.score_counts = {k: v["count"] for k, v in state["scores"].items()}
        if state["feedback"]:
            acc.feedback_sums = {k: v["sum"] for k, v in state["feedback"].items()}
            acc.feedback_counts = {k: v["count"] for k, v in state["feedback"].items()}
        return acc


def _restore_values(
    state: dict[str, Any] | None,
) -> tuple[QuantileEstimator | None, array[float] | None]:
    """(sketch, pending values) from an estimator state."""
    if state is None:
        return None, None
    estimator = QuantileEstimator.from_state(state | {"buffer": []})
    return (None if estimator.is_exact else estimator), array("d", state["buffer"])


def _add_means(sums: dict[str, float], counts: dict[str, int], values: Mapping[str, float]) -> None:
    for name, value in values.items():
        sums[name] = sums.get(name, 0.0) + value
        counts[name] = counts.get(name, 0) + 1


def _merge_means(
    sums: dict[str, float] | None,
    counts: dict[str, int] | None,
    other_sums: dict[str, float],
    other_counts: dict[str, int],
) -> tuple[dict[str, float], dict[str, int]]:
    sums, counts = sums or {}, counts or {}
    for name, total in other_sums.items():
        sums[name] = sums.get(name, 0.0) + total
        counts[name] = counts.get(name, 0) + other_counts[name]
    return sums, counts


def _means(sums: dict[str, float] | None, counts: dict[str, int] | None) -> dict[str, float]:
    if not sums or not counts:
        return {}
    return {name: total / counts[name] for name, total in sums.items()}


def _pairs(
    sums: dict[str, float] | None, counts: dict[str, int] | None
) -> dict[str, dict[str, float | int]]:
    if not sums or not counts:
        return {}
    return {name: {"sum": total, "count": counts[name]} for name, total in sums.items()}


def _ratio(numerator: float, denominator: int) -> float | None:
    return numerator / denominator if denominator else None
