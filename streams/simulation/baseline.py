"""The static-threshold baseline: what a monitor in Langfuse, Datadog & co. would do.

Per key, every ``every_s`` (60 s) a monitor looks at the last ``window_s`` (5 minutes):
p95 latency, error rate, mean cost and output tokens per call, mean of each evaluator score
and feedback. It alerts when a metric crosses a fixed threshold, once per crossing (it must
come back below before it alerts again), and only on windows of at least ``min_requests``.

Thresholds are set the way a user sets them from a dashboard of normal days: 1.5 x the
normal level for what should not grow (latency, errors, cost, tokens), 0.9 x the normal
level for what should not fall (scores, feedback). The normal level of a key is the median
of the metric over its windows that overlap no incident on that key: the user's history.
A key with no such window (a brand-new prompt version) has no thresholds, so no monitor.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from streams.simulation.labels import Key, KeyHit
from streams.simulation.offline import Alarm, StreamRecord
from streams.simulation.traffic import SimulatedEvent

__all__ = ["StaticThresholdMethod", "StaticThresholds"]

_LOG_GAMMA = math.log(1.02)  # latency histogram bins 2 % wide: p95 to about 1 %
_RISING = ("latency", "error", "cost", "output_tokens")


@dataclass(frozen=True, slots=True)
class StaticThresholds:
    """The baseline's monitor settings."""

    window_s: float = 300.0
    every_s: float = 60.0
    min_requests: int = 100
    increase_factor: float = 1.5
    decrease_factor: float = 0.9

    def __post_init__(self) -> None:
        ratio = self.window_s / self.every_s
        if not (self.every_s > 0 and ratio >= 1 and abs(ratio - round(ratio)) < 1e-9):
            raise ValueError("window_s must be a positive multiple of every_s")
        if self.increase_factor <= 1 or not 0 < self.decrease_factor < 1:
            raise ValueError("increase_factor must be > 1 and decrease_factor in (0, 1)")


@dataclass(slots=True)
class _Bucket:
    """One key's calls over one ``every_s`` interval."""

    requests: int = 0
    errors: int = 0
    latency: Counter[int] = field(default_factory=Counter)
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


class StaticThresholdMethod:
    """Evaluates `StaticThresholds` monitors on every key; see the module docstring."""

    def __init__(
        self,
        thresholds: StaticThresholds | None = None,
        *,
        settle_s: float = 120.0,
        name: str = "static",
    ) -> None:
        self.name = name
        self.thresholds = thresholds or StaticThresholds()
        self.settle_s = settle_s
        self._buckets: dict[Key, dict[int, _Bucket]] = {}
        self._last_index: dict[int, int] = {}

    def observe(
        self,
        event: SimulatedEvent,
        features: Mapping[str, float],
        categorical: Mapping[str, str],
        keys: Sequence[KeyHit],
    ) -> None:
        number = int(event.offset_s // self.thresholds.every_s)
        self._last_index[number] = event.index
        # What the event adds is the same for every key it counts in.
        error = features.get("error", 0.0) > 0
        latency = features.get("latency")
        latency_bin = (
            math.floor(math.log(latency) / _LOG_GAMMA)
            if latency is not None and latency > 0
            else None
        )
        averaged = [
            (name, value)
            for name, value in features.items()
            if name in ("cost", "output_tokens") or name.startswith(("score.", "feedback."))
        ]
        for key_set, key, _ in keys:
            buckets = self._buckets.setdefault((key_set, key), {})
            bucket = buckets.get(number)
            if bucket is None:
                bucket = buckets[number] = _Bucket()
            bucket.requests += 1
            bucket.errors += error
            if latency_bin is not None:
                bucket.latency[latency_bin] += 1
            for name, value in averaged:
                bucket.sums[name] = bucket.sums.get(name, 0.0) + value
                bucket.counts[name] = bucket.counts.get(name, 0) + 1

    def alarms(self, stream: StreamRecord) -> list[Alarm]:
        config = self.thresholds
        width = round(config.window_s / config.every_s)
        ends = range(width, int(stream.duration_s // config.every_s) + 1)
        out: list[Alarm] = []
        for (key_set, key), buckets in self._buckets.items():
            windows = {end: _metrics(buckets, end - width, end) for end in ends}
            quiet = self._quiet_periods(stream, key_set, key)
            normal = [
                metrics
                for end, metrics in windows.items()
                if metrics["requests"] >= config.min_requests
                and not any(
                    (end - width) * config.every_s < stop and end * config.every_s > begin
                    for begin, stop in quiet
                )
            ]
            if not normal:
                continue
            limits = self._limits(normal)
            breached: set[str] = set()
            offsets = stream.key_offsets.get((key_set, key))
            for end, metrics in windows.items():
                if metrics["requests"] < config.min_requests:
                    continue
                at = end * config.every_s
                for signal, limit in limits.items():
                    value = metrics.get(signal)
                    if value is None:
                        continue
                    if not (value > limit if signal in _RISING else value < limit):
                        breached.discard(signal)
                    elif signal not in breached:
                        breached.add(signal)
                        position = bisect.bisect_left(offsets, at) - 1 if offsets else 0
                        index = self._index_before(end)
                        out.append(Alarm(index, at, key_set, key, position, signal, "static"))
        return sorted(out, key=lambda a: (a.index, a.key_set, a.key, a.signal))

    def _quiet_periods(
        self, stream: StreamRecord, key_set: str, key: tuple[str, ...]
    ) -> list[tuple[float, float]]:
        """Incident periods (plus settling time) of the incidents that touched this key."""
        return [
            (label.start_s, label.end_s + self.settle_s)
            for label in stream.labels
            if any(a.key_set == key_set and a.key == key for a in label.affected)
        ]

    def _limits(self, normal: list[dict[str, float]]) -> dict[str, float]:
        config = self.thresholds
        limits: dict[str, float] = {}
        for signal in {name for metrics in normal for name in metrics} - {"requests"}:
            level = statistics.median(m[signal] for m in normal if signal in m)
            factor = config.increase_factor if signal in _RISING else config.decrease_factor
            limits[signal] = level * factor
        return limits

    def _index_before(self, end: int) -> int:
        """Index of the last event before bucket ``end`` starts."""
        for number in range(end - 1, -1, -1):
            if number in self._last_index:
                return self._last_index[number]
        return 0


def _metrics(buckets: Mapping[int, _Bucket], first: int, end: int) -> dict[str, float]:
    """The monitored metrics over buckets ``first`` .. ``end - 1``."""
    window = [buckets[n] for n in range(first, end) if n in buckets]
    requests = sum(b.requests for b in window)
    out: dict[str, float] = {"requests": float(requests)}
    if not requests:
        return out
    out["error"] = sum(b.errors for b in window) / requests
    latency: Counter[int] = Counter()
    for bucket in window:
        latency.update(bucket.latency)
    if latency:
        out["latency"] = _quantile(latency, 0.95)
    sums: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for bucket in window:
        sums.update(bucket.sums)
        counts.update(bucket.counts)
    for name, count in counts.items():
        out[name] = sums[name] / count
    return out


def _quantile(histogram: Counter[int], q: float) -> float:
    """The ``q`` quantile of a log-binned histogram (bin midpoint, relative error ~1 %)."""
    total = sum(histogram.values())
    rank = q * (total - 1)
    seen = 0
    for number in sorted(histogram):
        seen += histogram[number]
        if seen > rank:
            return math.exp((number + 0.5) * _LOG_GAMMA)
    return math.exp((max(histogram) + 0.5) * _LOG_GAMMA)
