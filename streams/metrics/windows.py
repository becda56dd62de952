"""`MetricsAggregator`: event-time tumbling windows of call metrics per key, with a watermark.

Semantics (see docs/metrics.md):

- Window ``k`` of a key covers event times ``[k * w, (k + 1) * w)``, aligned to the Unix epoch.
- The watermark is the largest call timestamp seen. A window is *closed by the
  watermark* once ``end + allowed_lateness <= watermark``; a call whose window is
  closed is late: it is counted in `late_events` and in the ``late_events`` of its
  key's window that holds the watermark, and never reopens its own window.
- A window that receives no event for ``idle_close_after`` wall-clock seconds is
  *closed idle*, so keys (or a whole stream) that go quiet still report. Later
  events for it are late too.
- Feedback joins its call by event_id through a bounded LRU and counts in each
  of the call's keys, in the window holding the *feedback's* timestamp.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from operator import itemgetter
from typing import Any

from streams.metrics.accumulator import PENDING_LIMIT, CallSample, WindowAccumulator
from streams.metrics.config import MetricsConfig
from streams.metrics.events import CallEvent, FeedbackEvent
from streams.metrics.join import CallIndex, Dimensions
from streams.metrics.pricing import PricingTable
from streams.metrics.reader import CallReader
from streams.metrics.record import MetricRecord
from streams.metrics.state import STATE_VERSION, validate_state

WindowKey = tuple[int, tuple[str, ...], int]
"""(key set index, the key's dimension values, window index)."""


_INF = math.inf
_MAX_ROUTES = 65536
"""Cached routes (see `MetricsAggregator.add_call`) kept before the cache starts over."""


class MetricsAggregator:
    """Rolling call metrics per configured key and event-time window, kept in memory.

    Parameters
    ----------
    config
        Key sets, window length, lateness and idle timeout.
    pricing
        Prices calls that carry no ``cost_usd``.
    clock
        Wall-clock seconds, used only for idle closing; injectable for tests.

    Attributes
    ----------
    watermark
        Largest call event time seen (Unix seconds), or None before the first call.
    late_events, feedback_late
        Late calls and late feedback per key set name.
    feedback_unjoined
        Feedback whose event_id is not (or no longer) in the join LRU.
    duplicate_calls
        Calls ignored because their event_id is still in the join LRU.
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
        self._width = config.window_seconds
        self._lateness = config.allowed_lateness_seconds
        self._idle_after = config.idle_close_after
        self._eps = config.quantile_rank_error
        self._exact_capacity = config.quantile_exact_capacity
        names: list[str] = []
        for key_set in config.key_sets:
            names.extend(n for n in key_set if n not in names)
        self.dimension_names: tuple[str, ...] = tuple(names)
        self._reader = CallReader(self.dimension_names, pricing)
        self._dims_end = 2 + len(names)
        self._key_sets = [
            (index, config.key_set_names[index], _tuple_getter([names.index(n) for n in key_set]))
            for index, key_set in enumerate(config.key_sets)
        ]
        self._windows: dict[WindowKey, WindowAccumulator] = {}
        self._keys_by_window: dict[int, list[WindowKey]] = {}
        self._idle_closed: set[WindowKey] = set()
        # (dimension values, window index) -> the open windows a call with them counts in,
        # once all of them are open; cleared whenever a window closes.
        self._routes: dict[tuple[Dimensions, int], tuple[WindowAccumulator, ...]] = {}
        self._calls = CallIndex(config.feedback_join_capacity)
        self.watermark: float | None = None
        self.late_events = dict.fromkeys(config.key_set_names, 0)
        self.feedback_late = dict.fromkeys(config.key_set_names, 0)
        self.feedback_unjoined = 0
        self.duplicate_calls = 0

    @property
    def config(self) -> MetricsConfig:
        return self._config

    @property
    def open_window_count(self) -> int:
        """Windows (key x window) currently held in memory."""
        return len(self._windows)

    def add_call(self, call: CallEvent) -> bool:
        """Count a call in each key set whose dimensions it has.

        Returns False when the call was not counted everywhere: it is late (its
        window closed, by the watermark or idle) or a duplicate event_id.
        """
        fields = self._reader.fields(call)
        event_id = fields[0]
        if event_id in self._calls:
            self.duplicate_calls += 1
            return False
        ts = _epoch_seconds(fields[1])
        dims = fields[2 : self._dims_end]
        if "" in dims:
            # An empty value counts as missing; normalising here keeps the per-key test short.
            dims = tuple(value or None for value in dims)
        self._calls.put(event_id, dims)
        watermark = self.watermark
        if watermark is None or ts > watermark:
            self.watermark = watermark = ts
        index = int(ts // self._width)
        now = self._clock()
        if (index + 1) * self._width + self._lateness <= watermark:  # _closed_by_watermark
            self._count_late(dims, now)
            return False
        sample = self._reader.sample(fields)
        route = self._routes.get((dims, index))
        if route is None:
            return self._add_routed(dims, index, sample, now)
        for acc in route:  # inlines WindowAccumulator.add_call
            pending = acc.pending
            pending.append(sample)
            acc.last_wall = now
            if len(pending) >= PENDING_LIMIT:
                acc.flush()
        return True

    def _add_routed(self, dims: Dimensions, index: int, sample: CallSample, now: float) -> bool:
        """Count a call in each key set's window, opening windows; cache the route."""
        windows = self._windows
        counted = True
        route: list[WindowAccumulator] = []
        for ks_index, name, key_of in self._key_sets:
            key = key_of(dims)
            if None in key:
                continue
            wkey = (ks_index, key, index)
            acc = windows.get(wkey)
            if acc is None:
                if wkey in self._idle_closed:
                    self._count_late_in(ks_index, name, key, now)
                    counted = False
                    continue
                acc = self._open(wkey, now)
            acc.add_call(sample, now)
            route.append(acc)
        if counted:
            if len(self._routes) >= _MAX_ROUTES:
                self._routes.clear()
            self._routes[dims, index] = tuple(route)
        return counted

    def add_feedback(self, feedback: FeedbackEvent) -> bool:
        """Count a feedback score for its call's keys, in the window of the feedback's time.

        Returns False when the call is unknown (`feedback_unjoined`), the value is not
        finite, or the window is closed for some key (`feedback_late`). Feedback does
        not move the watermark: its topic may run ahead of the calls.
        """
        dims = self._calls.get(feedback.event_id)
        if dims is None:
            self.feedback_unjoined += 1
            return False
        value = feedback.value
        if not -_INF < value < _INF:
            return False
        index = int(_epoch_seconds(feedback.timestamp) // self._width)
        now = self._clock()
        watermark = self.watermark
        closed = watermark is not None and self._closed_by_watermark(index, watermark)
        attributed = True
        for ks_index, name, key_of in self._key_sets:
            key = key_of(dims)
            if None in key:
                continue
            wkey = (ks_index, key, index)
            acc = None if closed else self._windows.get(wkey)
            if acc is None:
                if closed or wkey in self._idle_closed:
                    self.feedback_late[name] += 1
                    attributed = False
                    continue
                acc = self._open(wkey, now)
            acc.add_feedback(feedback.name, value, now)
        return attributed

    def close_due(self, now: float | None = None) -> list[MetricRecord]:
        """Close and report windows the watermark has passed, then windows idle too long.

        ``now`` is wall-clock seconds, by default the injected clock's. Records are
        ordered by window start, key set, then dimensions.
        """
        now = self._clock() if now is None else now
        closed = [(k, acc, "watermark") for k, acc in self.take_closed_by_watermark()]
        idle = [k for k, acc in self._windows.items() if now - acc.last_wall >= self._idle_after]
        closed += [(k, acc, "idle") for k, acc in self.take_idle(idle)]
        return window_records(self._config, closed)

    def open_windows(self) -> list[MetricRecord]:
        """Partial records of every open window, for a live view; nothing is closed."""
        return window_records(self._config, ((k, acc, None) for k, acc in self._windows.items()))

    # The steps of `close_due`, for `PartitionedMetrics` to close windows across partitions.
    def knows_call(self, event_id: str) -> bool:
        """Whether the join LRU holds this call (without refreshing it)."""
        return event_id in self._calls

    def take_closed_by_watermark(self) -> list[tuple[WindowKey, WindowAccumulator]]:
        """Remove and return the windows the watermark has passed."""
        closed: list[tuple[WindowKey, WindowAccumulator]] = []
        watermark = self.watermark
        if watermark is None:
            return closed
        for index in sorted(self._keys_by_window):
            if not self._closed_by_watermark(index, watermark):
                break
            for wkey in self._keys_by_window.pop(index):
                acc = self._windows.pop(wkey, None)
                if acc is not None:
                    closed.append((wkey, acc))
        self._idle_closed = {
            k for k in self._idle_closed if not self._closed_by_watermark(k[2], watermark)
        }
        if closed:
            self._routes.clear()  # they may lead to closed windows
        return closed

    def take_idle(self, keys: Iterable[WindowKey]) -> list[tuple[WindowKey, WindowAccumulator]]:
        """Close windows as idle: remove those held; later events for any of them are late."""
        closed = []
        for wkey in keys:
            acc = self._windows.pop(wkey, None)
            if acc is not None:
                closed.append((wkey, acc))
            self._idle_closed.add(wkey)
        if closed:
            self._routes.clear()  # they may lead to closed windows
        return closed

    @property
    def idle_closed(self) -> frozenset[WindowKey]:
        """Windows closed idle that the watermark has not passed yet."""
        return frozenset(self._idle_closed)

    def windows(self) -> Mapping[WindowKey, WindowAccumulator]:
        """The open windows' accumulators themselves (not copies)."""
        return self._windows

    def to_state(self) -> dict[str, Any]:
        """Everything needed to resume, as JSON-compatible data (see `streams.metrics.state`).

        Includes the join LRU, so its size grows with ``feedback_join_capacity``.
        """
        names = self._config.key_set_names
        return {
            "version": STATE_VERSION,
            "window_seconds": self._width,
            "key_sets": [list(k) for k in self._config.key_sets],
            "dimensions": list(self.dimension_names),
            "watermark": self.watermark,
            "late_events": dict(self.late_events),
            "feedback_late": dict(self.feedback_late),
            "feedback_unjoined": self.feedback_unjoined,
            "duplicate_calls": self.duplicate_calls,
            "windows": [
                {
                    "key_set": names[ks],
                    "dimensions": list(key),
                    "window": index,
                    "accumulator": acc.to_state(),
                }
                for (ks, key, index), acc in self._windows.items()
            ],
            "idle_closed": [
                {"key_set": names[ks], "dimensions": list(key), "window": index}
                for ks, key, index in self._idle_closed
            ],
            "calls": [[event_id, *dims] for event_id, dims in self._calls],
        }

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        config: MetricsConfig,
        pricing: PricingTable,
        clock: Callable[[], float] = time.time,
    ) -> MetricsAggregator:
        """Resume from `to_state` output; raises `MetricsStateError` if it is malformed
        or was written for other key sets, dimensions or window length."""
        agg = cls(config, pricing, clock)
        parsed = validate_state(state, config, agg.dimension_names)
        raw = state["windows"]
        index_of = {name: i for i, name in enumerate(config.key_set_names)}
        for window, raw_window in zip(parsed.windows, raw, strict=True):
            wkey = (index_of[window.key_set], tuple(window.dimensions), window.window)
            agg._windows[wkey] = WindowAccumulator.from_state(
                raw_window["accumulator"], agg._eps, agg._exact_capacity
            )
            agg._keys_by_window.setdefault(window.window, []).append(wkey)
        agg._idle_closed = {
            (index_of[r.key_set], tuple(r.dimensions), r.window) for r in parsed.idle_closed
        }
        for event_id, *dims in parsed.calls:
            assert event_id is not None
            agg._calls.put(event_id, tuple(dims))
        agg.watermark = parsed.watermark
        agg.late_events = dict(parsed.late_events)
        agg.feedback_late = dict(parsed.feedback_late)
        agg.feedback_unjoined = parsed.feedback_unjoined
        agg.duplicate_calls = parsed.duplicate_calls
        return agg

    def _open(self, wkey: WindowKey, now: float) -> WindowAccumulator:
        acc = WindowAccumulator(self._eps, self._exact_capacity, now)
        self._windows[wkey] = acc
        self._keys_by_window.setdefault(wkey[2], []).append(wkey)
        return acc

    def _closed_by_watermark(self, index: int, watermark: float) -> bool:
        return (index + 1) * self._width + self._lateness <= watermark

    def _count_late(self, dims: Dimensions, now: float) -> None:
        for ks_index, name, key_of in self._key_sets:
            key = key_of(dims)
            if None not in key:
                self._count_late_in(ks_index, name, key, now)

    def _count_late_in(self, ks_index: int, name: str, key: tuple[str, ...], now: float) -> None:
        """Count a late call for a key set, and in the key's window holding the watermark."""
        self.late_events[name] += 1
        assert self.watermark is not None
        wkey = (ks_index, key, int(self.watermark // self._width))
        acc = self._windows.get(wkey)
        if acc is None:
            if wkey in self._idle_closed:
                return
            acc = self._open(wkey, now)
        acc.late_events += 1


def window_records(
    config: MetricsConfig, items: Iterable[tuple[WindowKey, WindowAccumulator, str | None]]
) -> list[MetricRecord]:
    """Records of ``(window key, accumulator, closed_by)`` items, in `close_due` order."""
    ordered = sorted(items, key=lambda item: (item[0][2], item[0][0], item[0][1]))
    width = config.window_seconds
    return [
        acc.to_record(
            config.key_set_names[ks_index],
            dict(zip(config.key_sets[ks_index], key, strict=True)),
            index * width,
            width,
            closed_by,
        )
        for (ks_index, key, index), acc, closed_by in ordered
    ]


def _tuple_getter(positions: list[int]) -> Callable[[Dimensions], tuple[Any, ...]]:
    """A C-speed ``lambda t: tuple(t[i] for i in positions)``."""
    if len(positions) == 1:
        (position,) = positions
        return lambda dims: (dims[position],)
    return itemgetter(*positions)


def _epoch_seconds(timestamp: datetime) -> float:
    if timestamp.tzinfo is None:
        raise ValueError(f"event timestamp must be timezone-aware, got {timestamp!r}")
    return timestamp.timestamp()
