"""The NAB score (Numenta Anomaly Benchmark, standard profile), for yes/no detections.

Follows numenta/NAB ``nab/sweeper.py``: each window counts its earliest detection, scored
by the scaled sigmoid of its position and divided by ``scaledSigmoid(-1)`` so that a
detection at the very start of a window is worth exactly ``A_TP``; a window with no
detection costs ``A_FN``; each detection outside every window costs ``A_FP`` times the
sigmoid of its distance past the preceding window (the full ``A_FP`` when no window
precedes it); detections in the probationary period are ignored. Windows are
``window_size`` (10 %) of the stream divided by the number of windows.

One difference, deliberate: NAB centres each window on a hand-placed label, because
labellers are imprecise. Our labels are exact incident starts and nothing can be found
before an incident starts, so a window *begins* at the start.

Examples
--------
A stream of 1,000 events with one incident at 500 (window 100 events long), found 10
events in (``scaled_sigmoid(-0.9) / scaled_sigmoid(-1) = 0.9913``), plus one false alarm
with no window before it (``-0.11``):

>>> windows = windows_at([500], length=1000)
>>> windows
[Window(left=500, right=599)]
>>> result = score(1000, windows, [[510]], false_alarms=[300])
>>> round(result.raw, 4), result.null, result.perfect
(0.8813, -1.0, 1.0)
>>> round(result.normalised, 2)
94.06
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "STANDARD_PROFILE",
    "CostProfile",
    "NabResult",
    "Window",
    "normalised",
    "probation_length",
    "scaled_sigmoid",
    "score",
    "windows_at",
]


@dataclass(frozen=True, slots=True)
class CostProfile:
    """NAB's application profile: weights of true positives, false positives, misses."""

    tp: float = 1.0
    fp: float = 0.11
    fn: float = 1.0


STANDARD_PROFILE = CostProfile()


@dataclass(frozen=True, slots=True)
class Window:
    """An anomaly window over stream indices, both ends included."""

    left: int
    right: int

    @property
    def width(self) -> int:
        return self.right - self.left + 1


@dataclass(frozen=True, slots=True)
class NabResult:
    """Raw score and what the null (never detects) and perfect detectors get on the same data."""

    raw: float
    null: float
    perfect: float
    tp: int
    fp: int
    fn: int

    def __add__(self, other: NabResult) -> NabResult:
        return NabResult(
            self.raw + other.raw,
            self.null + other.null,
            self.perfect + other.perfect,
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
        )

    @property
    def normalised(self) -> float:
        """``100 * (raw - null) / (perfect - null)``; NaN when there is no window."""
        if self.perfect == self.null:
            return math.nan
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


def normalised(results: Iterable[NabResult]) -> float:
    """The normalised score of several streams taken together, as NAB does for a corpus."""
    total = NabResult(0.0, 0.0, 0.0, 0, 0, 0)
    for result in results:
        total = total + result
    return total.normalised


def scaled_sigmoid(position: float) -> float:
    """NAB's ``scaledSigmoid``: 0.98661 at -1 (window start), 0 at 0, -1 from 3 on.

    >>> [round(scaled_sigmoid(x), 5) for x in (-1.0, -0.5, 0.0, 1.0, 3.0)]
    [0.98661, 0.84828, 0.0, -0.98661, -1.0]
    """
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_length(length: int, probation_percent: float = 0.15) -> int:
    """NAB's probationary period: ``min(floor(p * length), p * 5000)`` rows."""
    return int(min(math.floor(probation_percent * length), probation_percent * 5000))


def windows_at(starts: Sequence[int], length: int, window_size: float = 0.10) -> list[Window]:
    """One window per start, each ``int(window_size * length / len(starts))`` events long."""
    if not starts:
        return []
    width = max(1, int(window_size * length / len(starts)))
    return [Window(s, min(s + width - 1, length - 1)) for s in sorted(starts)]


def score(
    length: int,
    windows: Sequence[Window],
    hits: Sequence[Iterable[int]],
    false_alarms: Iterable[int],
    *,
    profile: CostProfile = STANDARD_PROFILE,
    probation_percent: float = 0.15,
) -> NabResult:
    """Score one stream of ``length`` events.

    ``hits[i]`` are the indices of detections that count for ``windows[i]`` (those outside
    it are ignored); the earliest scores. ``false_alarms`` are indices of detections that
    belong to no incident: inside a window they are ignored (as NAB ignores every detection
    after the first in a window), outside they cost. For plain NAB, pass every detection
    in a window as its hits and every detection as a false alarm.
    """
    if len(hits) != len(windows):
        raise ValueError("hits must have one entry per window")
    false_alarms = sorted(set(false_alarms))
    if false_alarms and not 0 <= false_alarms[0] <= false_alarms[-1] < length:
        raise ValueError(f"false alarm indices outside the stream [0, {length})")
    max_tp = scaled_sigmoid(-1.0)
    probation = probation_length(length, probation_percent)
    raw = 0.0
    tp = fn = 0
    for window, window_hits in zip(windows, hits, strict=True):
        inside = [i for i in window_hits if window.left <= i <= window.right and i >= probation]
        if inside:
            position = -(window.right - min(inside) + 1) / window.width
            raw += scaled_sigmoid(position) * profile.tp / max_tp
            tp += 1
        else:
            raw -= profile.fn
            fn += 1
    ordered = sorted(windows, key=lambda w: w.right)
    fp = 0
    for i in false_alarms:
        if i < probation or any(w.left <= i <= w.right for w in windows):
            continue
        before = [w for w in ordered if w.right < i]
        if before:
            previous = before[-1]
            past = abs(previous.right - i) / max(1, previous.width - 1)
        else:
            past = 3.0
        raw += scaled_sigmoid(past) * profile.fp
        fp += 1
    n = len(windows)
    return NabResult(raw, -profile.fn * n, profile.tp * n, tp, fp, fn)
