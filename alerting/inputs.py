"""What the alert engine consumes: metric window records and detections."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class MetricWindow:
    """One closed window of rolling metrics for one key of one key set."""

    key_set: str
    dimensions: Mapping[str, str]
    window_start: datetime
    window_end: datetime
    requests: int
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Detection:
    """A change reported by a drift or anomaly detector for one key and signal."""

    dimensions: Mapping[str, str]
    signal: str
    detector: str
    score: float
    before_mean: float | None
    before_quantile: float | None
    after_level: float | None
    event_time: datetime
