"""The bounded, thread-safe buffer between application and Kafka sender, and its counters."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

Record = tuple[bytes, bytes]
"""A Kafka record as (key, value)."""


@dataclass(frozen=True, slots=True)
class PulseCounters:
    """A snapshot of what happened to the events handed to a client.

    Every accepted emit ends in exactly one place, so
    ``emitted == sent + dropped_buffer_full + dropped_kafka_error + dropped_closed
    + buffered + in_flight``. ``dropped_invalid`` counts timed calls whose fields
    did not make a valid event; they were never emitted.
    """

    emitted: int = 0
    sent: int = 0
    dropped_buffer_full: int = 0
    dropped_kafka_error: int = 0
    dropped_closed: int = 0
    dropped_invalid: int = 0
    buffered: int = 0
    in_flight: int = 0
    connect_failures: int = 0

    @property
    def dropped(self) -> int:
        """All events lost, for any reason."""
        return (
            self.dropped_buffer_full
            + self.dropped_kafka_error
            + self.dropped_closed
            + self.dropped_invalid
        )


class EventBuffer:
    """A FIFO of at most ``capacity`` records; `put` never waits, a full buffer drops.

    ``put`` may be called from any thread. Records leave through `take` (counted
    in flight) and are settled by `settle`; `close` drops whatever remains.

    Examples
    --------
    >>> buffer = EventBuffer(capacity=2)
    >>> [buffer.put(b"app", b"{}") for _ in range(3)]
    [1, 2, 0]
    >>> len(buffer.take(10)), buffer.counters().in_flight, buffer.counters().dropped_buffer_full
    (2, 2, 1)
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._records: deque[Record] = deque()
        self._lock = threading.Lock()
        self._closed = False
        self._emitted = self._sent = self._full = self._kafka_error = 0
        self._closed_drops = self._invalid = self._in_flight = self._connect_failures = 0

    def __len__(self) -> int:
        return len(self._records)

    def put(self, key: bytes, value: bytes) -> int:
        """Append a record and return the new length; 0 (and counted) when full or closed."""
        with self._lock:
            self._emitted += 1
            if self._closed:
                self._closed_drops += 1
                return 0
            if len(self._records) >= self.capacity:
                self._full += 1
                return 0
            self._records.append((key, value))
            return len(self._records)

    def take(self, limit: int) -> list[Record]:
        """Remove up to ``limit`` records, oldest first; they count as in flight."""
        with self._lock:
            count = min(limit, len(self._records))
            taken = [self._records.popleft() for _ in range(count)]
            self._in_flight += count
            return taken

    def settle(self, *, sent: bool, count: int = 1) -> None:
        """Record the outcome of records taken earlier: sent, or failed in Kafka."""
        with self._lock:
            if self._closed:  # already counted as dropped_closed
                return
            self._in_flight -= count
            if sent:
                self._sent += count
            else:
                self._kafka_error += count

    def count_invalid(self) -> None:
        with self._lock:
            self._invalid += 1

    def count_connect_failure(self) -> None:
        with self._lock:
            self._connect_failures += 1

    def close(self) -> None:
        """Drop what is buffered or unconfirmed, and every later `put`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._closed_drops += len(self._records) + self._in_flight
            self._records.clear()
            self._in_flight = 0

    def counters(self) -> PulseCounters:
        with self._lock:
            return PulseCounters(
                emitted=self._emitted,
                sent=self._sent,
                dropped_buffer_full=self._full,
                dropped_kafka_error=self._kafka_error,
                dropped_closed=self._closed_drops,
                dropped_invalid=self._invalid,
                buffered=len(self._records),
                in_flight=self._in_flight,
                connect_failures=self._connect_failures,
            )
