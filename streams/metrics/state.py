"""The checkpoint format of `MetricsAggregator`, and its validation before a restore.

The state is plain JSON data (no pickle): it is read back from a Kafka changelog,
so every field is type-checked (pydantic, strict), cross-checked (counts within
requests, summaries within their error invariant) and compared with the running
configuration before any of it is used.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streams.metrics.config import MetricsConfig
from streams.metrics.quantiles import QuantileEstimator

STATE_VERSION = 1

NonNegative = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
DimensionValue = Annotated[str, Field(min_length=1)]


class MetricsStateError(ValueError):
    """A checkpoint cannot be restored; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class SummaryState(_Strict):
    values: list[float]
    g: list[Positive]
    delta: list[NonNegative]


class EstimatorState(_Strict):
    eps: Annotated[float, Field(gt=0, lt=0.5)]
    exact_capacity: Positive
    buffer: list[float]
    summary: SummaryState | None

    @model_validator(mode="after")
    def _invariants_hold(self) -> EstimatorState:
        # Raises ValueError naming the broken invariant; pydantic reports its location.
        QuantileEstimator.from_state(self.model_dump())
        return self

    @property
    def count(self) -> int:
        return len(self.buffer) + (sum(self.summary.g) if self.summary else 0)


class MeanState(_Strict):
    sum: float
    count: Positive


class AccumulatorState(_Strict):
    requests: NonNegative
    errors: NonNegative
    tps_count: NonNegative
    tps_sum: float
    input_tokens: NonNegative
    output_tokens: NonNegative
    cached_input_tokens: NonNegative
    cost_sum: float
    cost_missing: NonNegative
    finish_length: NonNegative
    finish_content_filter: NonNegative
    late_events: NonNegative
    last_wall: float
    latency: EstimatorState | None
    ttft: EstimatorState | None
    scores: dict[str, MeanState]
    feedback: dict[str, MeanState]

    @model_validator(mode="after")
    def _counts_within_requests(self) -> AccumulatorState:
        parts = {
            "errors": self.errors,
            "tps_count": self.tps_count,
            "cost_missing": self.cost_missing,
            "finish_length + finish_content_filter": self.finish_length
            + self.finish_content_filter,
            "latency values": self.latency.count if self.latency else 0,
            "ttft values": self.ttft.count if self.ttft else 0,
        }
        parts.update({f"scores[{k!r}].count": v.count for k, v in self.scores.items()})
        for name, count in parts.items():
            if count > self.requests:
                raise ValueError(f"{name} ({count}) exceeds requests ({self.requests})")
        return self


class WindowRef(_Strict):
    key_set: str
    dimensions: list[DimensionValue]
    window: int


class WindowState(WindowRef):
    accumulator: AccumulatorState


class AggregatorState(_Strict):
    version: Literal[1]
    window_seconds: float
    key_sets: list[list[str]]
    dimensions: list[str]
    watermark: float | None
    late_events: dict[str, NonNegative]
    feedback_late: dict[str, NonNegative]
    feedback_unjoined: NonNegative
    duplicate_calls: NonNegative
    windows: list[WindowState]
    idle_closed: list[WindowRef]
    calls: list[list[str | None]]
    """Join LRU entries, least recently used first: ``[event_id, *dimension values]``."""


_Model = TypeVar("_Model", bound=BaseModel)


def parse_state(model: type[_Model], state: Any, what: str) -> _Model:
    """``state`` (decoded JSON) validated as ``model``; `MetricsStateError` names ``what``."""
    if not isinstance(state, dict):
        raise MetricsStateError(f"{what} must be a JSON object, got {type(state).__name__}")
    try:
        return model.model_validate(state)
    except ValidationError as exc:
        raise MetricsStateError(f"malformed {what}: {exc}") from exc


def validate_state(
    state: Any, config: MetricsConfig, dimension_names: tuple[str, ...]
) -> AggregatorState:
    """Parse and check a checkpoint against the running configuration."""
    parsed = parse_state(AggregatorState, state, "metrics state")
    _check_against_config(parsed, config, dimension_names)
    return parsed


def _check_against_config(
    state: AggregatorState, config: MetricsConfig, dimension_names: tuple[str, ...]
) -> None:
    key_sets = [list(k) for k in config.key_sets]
    if state.key_sets != key_sets:
        raise MetricsStateError(
            f"metrics state was written for key sets {state.key_sets}, config has {key_sets}"
        )
    if state.window_seconds != config.window_seconds:
        raise MetricsStateError(
            f"metrics state was written with window_seconds={state.window_seconds}, "
            f"config has {config.window_seconds}"
        )
    if state.dimensions != list(dimension_names):
        raise MetricsStateError(
            f"metrics state dimensions {state.dimensions} do not match {list(dimension_names)}"
        )
    names = set(config.key_set_names)
    for counters in ("late_events", "feedback_late"):
        if set(getattr(state, counters)) != names:
            raise MetricsStateError(f"metrics state {counters} must have one count per key set")
    sizes = dict(zip(config.key_set_names, (len(k) for k in config.key_sets), strict=True))
    seen: set[tuple[str, tuple[str, ...], int]] = set()
    for where, ref in [("windows", w) for w in state.windows] + [
        ("idle_closed", r) for r in state.idle_closed
    ]:
        if ref.key_set not in sizes:
            raise MetricsStateError(f"metrics state {where}: unknown key set {ref.key_set!r}")
        if len(ref.dimensions) != sizes[ref.key_set]:
            raise MetricsStateError(
                f"metrics state {where}: {ref.key_set} needs {sizes[ref.key_set]} dimension "
                f"values, got {ref.dimensions}"
            )
        ident = (ref.key_set, tuple(ref.dimensions), ref.window)
        if where == "windows" and ident in seen:
            raise MetricsStateError(f"metrics state windows: duplicate window {ident}")
        seen.add(ident)
    for entry in state.calls:
        if len(entry) != 1 + len(dimension_names) or not entry[0]:
            raise MetricsStateError(
                f"metrics state calls: each entry is [event_id, *{list(dimension_names)}], "
                f"got {entry}"
            )
