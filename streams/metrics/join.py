"""`CallIndex`: a bounded LRU of recent calls' dimension values, for joining feedback."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

Dimensions = tuple[str | None, ...]
"""A call's values of every configured dimension, in `MetricsAggregator`'s order."""


class CallIndex:
    """event_id -> the call's dimension values, keeping the ``capacity`` most recently used.

    A lookup refreshes an entry, so a call that keeps receiving feedback stays joinable.

    >>> index = CallIndex(capacity=2)
    >>> index.put("a", ("app-1",)); index.put("b", ("app-2",)); index.put("c", ("app-3",))
    >>> index.get("a") is None, index.get("c"), len(index)
    (True, ('app-3',), 2)
    """

    __slots__ = ("_capacity", "_entries")

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity!r}")
        self._capacity = capacity
        self._entries: OrderedDict[str, Dimensions] = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[str, Dimensions]]:
        """Entries from least to most recently used."""
        return iter(self._entries.items())

    def put(self, event_id: str, dimensions: Dimensions) -> None:
        """Remember a call, evicting the least recently used one when full."""
        entries = self._entries
        entries[event_id] = dimensions
        if len(entries) > self._capacity:
            entries.popitem(last=False)

    def get(self, event_id: str) -> Dimensions | None:
        """The call's dimension values, refreshing it; None if unknown or evicted."""
        dimensions = self._entries.get(event_id)
        if dimensions is not None:
            self._entries.move_to_end(event_id)
        return dimensions
