"""`PartitionedMetrics`: a `MetricsAggregator` per Kafka input partition, reported as one.

State is kept per partition so that it moves with its partition on a rebalance and
is checkpointed with the highest offset it has counted; records are merged across
partitions so that the worker publishes one record per key and window:

- One watermark for all partitions (the largest call time any of them has seen), so
  a call is late, or a window closed by the watermark, the same way in every partition.
- A window closes idle only once it has been idle in every partition holding it (the
  latest ``last_wall`` of its parts); from then on its events are late in every partition.
- The parts of a closed window are merged (`WindowAccumulator.merge`) in partition
  order into one `MetricRecord`. Counts and sums are those of one aggregator fed every
  call (float sums up to the order of addition); quantiles keep the bound of
  `QuantileEstimator.merge`.
- A call at or below its partition's counted offset is a replay of one the state
  already counts (re-delivered after a restart from a checkpoint): it is skipped.

Duplicate detection and the feedback join are per partition (each with its own LRU of
``feedback_join_capacity`` calls); feedback goes to the partition that knows its call.
One difference from a single aggregator: a late call counted in a partition that does
not hold its key's current window opens it there, which can delay that window's idle
close by up to ``idle_close_after``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from streams.metrics.accumulator import WindowAccumulator
from streams.metrics.config import MetricsConfig
from streams.metrics.events import CallEvent, FeedbackEvent
from streams.metrics.pricing import PricingTable
from streams.metrics.record import MetricRecord
from streams.metrics.state import MetricsStateError, parse_state
from streams.metrics.windows import MetricsAggregator, WindowKey, window_records

PARTITION_STATE_VERSION = 1

_NO_OFFSET = -1
"""The counted offset of a partition that has counted nothing (Kafka offsets are >= 0)."""


class PartitionState(BaseModel):
    """The checkpoint of one partition; ``aggregator`` is checked by `MetricsAggregator`."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    version: Literal[1]
    partition: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=0)] | None
    replayed_skipped: Annotated[int, Field(ge=0)]
    aggregator: dict[str, Any]


class _Partition:
    __slots__ = ("aggregator", "offset", "replayed_skipped")

    def __init__(self, aggregator: MetricsAggregator, offset: int, replayed_skipped: int) -> None:
        self.aggregator = aggregator
        self.offset = offset
        self.replayed_skipped = replayed_skipped


class PartitionedMetrics:
    """Rolling call metrics kept per input partition and reported across partitions.

    Parameters
    ----------
    config, pricing, clock
        As for `MetricsAggregator`; every partition's aggregator uses them.

    Examples
    --------
    >>> from streams.metrics import MetricsConfig, PricingTable
    >>> metrics = PartitionedMetrics(MetricsConfig(), PricingTable.load(), clock=lambda: 0.0)
    >>> metrics.assign(0, None); metrics.assign(3, None)
    >>> metrics.partitions, metrics.watermark, metrics.close_due()
    ((0, 3), None, [])
    """

    def __init__(
        self,
        config: MetricsConfig,
        pricing: PricingTable,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._pricing = pricing
        self._clock = clock
        self._idle_after = config.idle_close_after
        self._partitions: dict[int, _Partition] = {}
        self._order: tuple[int, ...] = ()
        self._watermark: float | None = None
        # Feedback that arrived while no partition was assigned; otherwise unjoined
        # feedback is counted (and checkpointed) by the lowest partition's aggregator.
        self._unrouted_feedback = 0

    @property
    def config(self) -> MetricsConfig:
        return self._config

    @property
    def partitions(self) -> tuple[int, ...]:
        """The assigned partitions, in ascending order."""
        return self._order

    @property
    def watermark(self) -> float | None:
        """Largest call event time seen by any partition (Unix seconds), or None."""
        return self._watermark

    def add_call(self, partition: int, offset: int, call: CallEvent) -> bool:
        """Count a call read at ``offset`` of ``partition``, unless that offset is counted.

        Returns False when the call is a replay at or below the partition's counted
        offset (`replayed_skipped`), or as `MetricsAggregator.add_call` does.
        Raises KeyError for a partition that is not assigned.
        """
        try:
            part = self._partitions[partition]
        except KeyError:
            raise KeyError(f"partition {partition} is not assigned") from None
        if offset <= part.offset:
            part.replayed_skipped += 1
            return False
        agg = part.aggregator
        shared = self._watermark
        if shared is not None:
            own = agg.watermark
            if own is None or own < shared:
                agg.watermark = shared
        counted = agg.add_call(call)
        part.offset = offset
        own = agg.watermark
        if own is not None and (shared is None or own > shared):
            self._watermark = own
        return counted

    def add_feedback(self, feedback: FeedbackEvent) -> bool:
        """Count feedback in the partition whose join LRU knows its call.

        Feedback for an unknown call is counted once in `feedback_unjoined`. Returns
        as `MetricsAggregator.add_feedback` does.
        """
        if not self._order:
            self._unrouted_feedback += 1
            return False
        parts = self._partitions
        target = parts[self._order[0]]
        for partition in self._order:
            if parts[partition].aggregator.knows_call(feedback.event_id):
                target = parts[partition]
                break
        agg = self._synced(target)
        return agg.add_feedback(feedback)

    def close_due(self, now: float | None = None) -> list[MetricRecord]:
        """Close and report windows due in all partitions together, one record per window.

        A window closes by the shared watermark, or idle once ``now`` (wall-clock
        seconds, by default the clock's) is ``idle_close_after`` past the latest event
        for it in any partition. Records are ordered as by `MetricsAggregator.close_due`.
        """
        now = self._clock() if now is None else now
        aggs = [self._synced(self._partitions[p]) for p in self._order]
        by_watermark: dict[WindowKey, list[WindowAccumulator]] = {}
        for agg in aggs:
            for wkey, acc in agg.take_closed_by_watermark():
                by_watermark.setdefault(wkey, []).append(acc)
        last_wall: dict[WindowKey, float] = {}
        for agg in aggs:
            for wkey, acc in agg.windows().items():
                wall = last_wall.get(wkey)
                if wall is None or acc.last_wall > wall:
                    last_wall[wkey] = acc.last_wall
        idle_keys = [k for k, wall in last_wall.items() if now - wall >= self._idle_after]
        idle: dict[WindowKey, list[WindowAccumulator]] = {}
        if idle_keys:
            for agg in aggs:
                for wkey, acc in agg.take_idle(idle_keys):
                    idle.setdefault(wkey, []).append(acc)
        closed = [(k, _merge(accs), "watermark") for k, accs in by_watermark.items()]
        closed += [(k, _merge(accs), "idle") for k, accs in idle.items()]
        return window_records(self._config, closed)

    def open_windows(self) -> list[MetricRecord]:
        """Partial records of every open window, merged across partitions; nothing changes."""
        merged: dict[WindowKey, WindowAccumulator] = {}
        for partition in self._order:
            for wkey, acc in self._partitions[partition].aggregator.windows().items():
                copy = merged.get(wkey)
                if copy is None:
                    merged[wkey] = acc.copy()
                else:
                    copy.merge(acc)
        return window_records(self._config, ((k, acc, None) for k, acc in merged.items()))

    @property
    def open_window_count(self) -> int:
        """Distinct windows (key x window) open in any partition."""
        keys: set[WindowKey] = set()
        for part in self._partitions.values():
            keys.update(part.aggregator.windows())
        return len(keys)

    def assign(self, partition: int, state: dict[str, Any] | None) -> None:
        """Take on a partition, empty or from its `partition_state` checkpoint.

        Restored windows restart their idle timers. Raises `MetricsStateError` for a
        malformed checkpoint (nothing is assigned then) and ValueError if the partition
        is already assigned.
        """
        if partition in self._partitions:
            raise ValueError(f"partition {partition} is already assigned")
        if state is None:
            agg = MetricsAggregator(self._config, self._pricing, self._clock)
            part = _Partition(agg, _NO_OFFSET, 0)
        else:
            parsed = _parse_state(state, partition)
            agg = MetricsAggregator.from_state(
                parsed.aggregator, self._config, self._pricing, self._clock
            )
            offset = _NO_OFFSET if parsed.offset is None else parsed.offset
            part = _Partition(agg, offset, parsed.replayed_skipped)
            # Time spent down is not idleness: restart the idle timers of restored windows,
            # so they wait for the replay instead of closing before it.
            now = self._clock()
            for acc in agg.windows().values():
                acc.last_wall = max(acc.last_wall, now)
        agg = part.aggregator
        # Windows this worker closed idle stay closed for the new partition's events too.
        closed: set[WindowKey] = set()
        for other in self._partitions.values():
            closed.update(other.aggregator.idle_closed)
        agg.take_idle(closed.difference(agg.windows()))
        own = agg.watermark
        if own is not None and (self._watermark is None or own > self._watermark):
            self._watermark = own
        self._partitions[partition] = part
        self._order = tuple(sorted(self._partitions))

    def revoke(self, partition: int) -> None:
        """Drop a partition and its windows (checkpoint it first); unknown ones are ignored."""
        if self._partitions.pop(partition, None) is not None:
            self._order = tuple(sorted(self._partitions))

    def partition_state(self, partition: int) -> dict[str, Any]:
        """JSON-compatible checkpoint of one partition, for `assign`.

        Holds the aggregator's state (at the shared watermark) and the counted offset.
        """
        part = self._partitions[partition]
        return {
            "version": PARTITION_STATE_VERSION,
            "partition": partition,
            "offset": None if part.offset == _NO_OFFSET else part.offset,
            "replayed_skipped": part.replayed_skipped,
            "aggregator": self._synced(part).to_state(),
        }

    @property
    def late_events(self) -> dict[str, int]:
        """Late calls per key set name, over all partitions."""
        return self._sum_by_key_set("late_events")

    @property
    def feedback_late(self) -> dict[str, int]:
        """Late feedback per key set name, over all partitions."""
        return self._sum_by_key_set("feedback_late")

    @property
    def feedback_unjoined(self) -> int:
        """Feedback whose call no partition knows."""
        total = self._unrouted_feedback
        return total + sum(p.aggregator.feedback_unjoined for p in self._partitions.values())

    @property
    def duplicate_calls(self) -> int:
        """Calls ignored because their partition's join LRU still holds their event_id."""
        return sum(p.aggregator.duplicate_calls for p in self._partitions.values())

    @property
    def replayed_skipped(self) -> int:
        """Calls skipped because their offset was already counted."""
        return sum(p.replayed_skipped for p in self._partitions.values())

    def _synced(self, part: _Partition) -> MetricsAggregator:
        """The partition's aggregator, its watermark raised to the shared one."""
        agg = part.aggregator
        shared = self._watermark
        if shared is not None and (agg.watermark is None or agg.watermark < shared):
            agg.watermark = shared
        return agg

    def _sum_by_key_set(self, counter: str) -> dict[str, int]:
        totals = dict.fromkeys(self._config.key_set_names, 0)
        for part in self._partitions.values():
            for name, count in getattr(part.aggregator, counter).items():
                totals[name] += count
        return totals


def _merge(parts: list[WindowAccumulator]) -> WindowAccumulator:
    """One window's accumulators from several partitions (taken, so merged in place)."""
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    return merged


def _parse_state(state: Any, partition: int) -> PartitionState:
    parsed = parse_state(PartitionState, state, "partition state")
    if parsed.partition != partition:
        raise MetricsStateError(
            f"partition state was written for partition {parsed.partition}, not {partition}"
        )
    return parsed
