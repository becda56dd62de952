"""Settings of the rolling metrics: which keys, how long the windows, how late is too late."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from streams.metrics.quantiles import DEFAULT_EXACT_CAPACITY, DEFAULT_RANK_ERROR

DIMENSIONS = ("app", "environment", "provider", "model", "prompt_id", "prompt_version")
"""Event attributes that can be grouped by."""

DEFAULT_KEY_SETS: tuple[tuple[str, ...], ...] = (
    ("app", "environment", "provider", "model"),
    ("app", "prompt_id", "prompt_version"),
    ("provider", "model"),
)


def key_set_name(key_set: tuple[str, ...]) -> str:
    """The name records carry, e.g. ``app_prompt_id_prompt_version``."""
    return "_".join(key_set)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """How `MetricsAggregator` groups and windows calls.

    Parameters
    ----------
    key_sets
        Group-by dimension sets, each a tuple of names from `DIMENSIONS`.
    window_seconds
        Tumbling event-time window length; windows are aligned to the Unix epoch.
    allowed_lateness_seconds
        How far the watermark may pass a window's end before the window closes.
    idle_close_seconds
        Wall-clock seconds without any event for a window after which it closes
        even though the watermark has not passed it. None means
        ``window_seconds + allowed_lateness_seconds``.
    feedback_join_capacity
        Most recent call event_ids remembered for the feedback join (an LRU).
    quantile_rank_error, quantile_exact_capacity
        See `streams.metrics.quantiles`.
    """

    key_sets: tuple[tuple[str, ...], ...] = DEFAULT_KEY_SETS
    window_seconds: float = 60.0
    allowed_lateness_seconds: float = 120.0
    idle_close_seconds: float | None = None
    feedback_join_capacity: int = 100_000
    quantile_rank_error: float = DEFAULT_RANK_ERROR
    quantile_exact_capacity: int = DEFAULT_EXACT_CAPACITY
    key_set_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not self.key_sets:
            raise ValueError("key_sets must name at least one set of dimensions")
        for key_set in self.key_sets:
            if not key_set or not isinstance(key_set, tuple):
                raise ValueError(f"each key set must be a non-empty tuple, got {key_set!r}")
            unknown = [name for name in key_set if name not in DIMENSIONS]
            if unknown:
                raise ValueError(f"unknown dimensions {unknown} in {key_set}; use {DIMENSIONS}")
            if len(set(key_set)) != len(key_set):
                raise ValueError(f"key set {key_set} repeats a dimension")
        names = tuple(key_set_name(k) for k in self.key_sets)
        if len(set(names)) != len(names):
            raise ValueError(f"key sets must be distinct, got {self.key_sets}")
        object.__setattr__(self, "key_set_names", names)
        _require(self.window_seconds > 0, "window_seconds must be > 0", self.window_seconds)
        _require(
            self.allowed_lateness_seconds >= 0,
            "allowed_lateness_seconds must be >= 0",
            self.allowed_lateness_seconds,
        )
        if self.idle_close_seconds is not None:
            _require(
                self.idle_close_seconds > 0,
                "idle_close_seconds must be > 0",
                self.idle_close_seconds,
            )
        _require(
            self.feedback_join_capacity >= 0,
            "feedback_join_capacity must be >= 0",
            self.feedback_join_capacity,
        )
        _require(
            0 < self.quantile_rank_error < 0.5,
            "quantile_rank_error must be in (0, 0.5)",
            self.quantile_rank_error,
        )
        _require(
            self.quantile_exact_capacity >= 1,
            "quantile_exact_capacity must be >= 1",
            self.quantile_exact_capacity,
        )

    @property
    def idle_close_after(self) -> float:
        """Effective idle timeout in wall-clock seconds."""
        if self.idle_close_seconds is not None:
            return self.idle_close_seconds
        return self.window_seconds + self.allowed_lateness_seconds


def _require(ok: bool, message: str, value: float) -> None:
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"{message}, got {value!r}")
