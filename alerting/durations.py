"""Parse and format the short durations used in rules files (``30s``, ``5m``, ``1h30m``)."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """Parse a Prometheus-style duration.

    Examples
    --------
    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    >>> parse_duration("0s")
    datetime.timedelta(0)
    >>> parse_duration("5 minutes")
    Traceback (most recent call last):
    ...
    ValueError: invalid duration '5 minutes': use a number and a unit, like 30s, 5m, 1h30m
    """
    cleaned = text.strip()
    if not _WHOLE.match(cleaned):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit, like 30s, 5m, 1h30m")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(cleaned))
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Format a duration for humans, to the second.

    Examples
    --------
    >>> format_duration(timedelta(seconds=3725))
    '1h 2m 5s'
    >>> format_duration(timedelta(0))
    '0s'
    """
    total = max(int(delta.total_seconds()), 0)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return " ".join(parts) or "0s"
