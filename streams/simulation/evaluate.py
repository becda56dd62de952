"""Score alarms against ground truth: detection rate, delays, false alarms and NAB, per type.

An alarm is a *true positive* for an incident when it is on a key the incident affected,
on one of its relevant signals (`labels.relevant_signals`), inside its NAB window (which
begins at the incident's start). It is *related* when it is on an affected key between the
start and ``settle_s`` after the end (late detections, recoveries). Any other alarm is a
*false alarm*. Normal events are key-events outside those related periods.

Detection rate, delays and false alarms count every detection. NAB scores *alerts*, as a
person on call sees them: a detection on a (key, signal) that detected within the last
``hold_s`` seconds only keeps that alert firing, as the shipped drift rules do with
``keep_firing_for: 30m`` (alerting/default_rules.yaml). ``hold_s=0`` scores every detection.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from streams.simulation.labels import IncidentLabel, Key
from streams.simulation.nab import (
    STANDARD_PROFILE,
    CostProfile,
    NabResult,
    Window,
    normalised,
    score,
)
from streams.simulation.offline import Alarm, StreamRecord

__all__ = [
    "IncidentOutcome",
    "ScenarioScore",
    "ScoringRules",
    "TypeRow",
    "alerts",
    "quantile",
    "score_scenario",
    "summarise",
]


@dataclass(frozen=True, slots=True)
class ScoringRules:
    """How alarms are matched and scored (NAB's standard profile by default)."""

    settle_s: float = 120.0
    hold_s: float = 1800.0
    window_size: float = 0.10
    probation_percent: float = 0.15
    profile: CostProfile = STANDARD_PROFILE


@dataclass(frozen=True, slots=True)
class IncidentOutcome:
    """Whether and how fast one incident was detected.

    ``delay_events`` counts the detecting key's events from the incident start up to and
    including the detecting one; ``delay_s`` is event time since the start. A ``late``
    detection came after the window but during the incident (it does not count as found).
    """

    scenario: str
    incident_id: str
    type: str
    detected: bool
    delay_events: int | None = None
    delay_s: float | None = None
    signal: str | None = None
    key_set: str | None = None
    key: tuple[str, ...] | None = None
    late_delay_s: float | None = None


@dataclass(frozen=True, slots=True)
class ScenarioScore:
    """One method on one scenario."""

    scenario: str
    method: str
    types: tuple[str, ...]
    n_events: int
    outcomes: tuple[IncidentOutcome, ...]
    alarms: int
    alerts: int
    false_alarms: int
    normal_key_events: int
    nab: NabResult
    nab_every_detection: NabResult
    """NAB with every detection an alarm (no alert grouping), for comparison."""
    false: tuple[Alarm, ...] = ()
    """The false alarms themselves, for inspection."""


@dataclass(frozen=True, slots=True)
class TypeRow:
    """One line of the report: an incident type, ``normal``, or ``all``."""

    type: str
    scenarios: int
    incidents: int
    detected: int
    median_delay_events: float | None
    p90_delay_events: float | None
    median_delay_s: float | None
    p90_delay_s: float | None
    false_alarms: int
    normal_key_events: int
    nab: float
    nab_every_detection: float

    @property
    def detection_rate(self) -> float | None:
        return self.detected / self.incidents if self.incidents else None

    @property
    def false_per_100k(self) -> float:
        return 1e5 * self.false_alarms / self.normal_key_events if self.normal_key_events else 0.0


def quantile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolation quantile (numpy's default); None for no values.

    >>> quantile([1, 2, 3, 4], 0.5), quantile([1, 2, 3, 4], 0.9)
    (2.5, 3.7)
    """
    if not values:
        return None
    ordered = sorted(values)
    h = (len(ordered) - 1) * q
    low = math.floor(h)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


def alerts(alarms: Iterable[Alarm], hold_s: float) -> list[Alarm]:
    """The alarms that raise a new alert: none on the same (key, signal) in the last ``hold_s``."""
    last: dict[tuple[str, tuple[str, ...], str], float] = {}
    out = []
    for alarm in sorted(alarms, key=lambda a: a.index):
        slot = (alarm.key_set, alarm.key, alarm.signal)
        previous = last.get(slot)
        if previous is None or alarm.offset_s - previous > hold_s:
            out.append(alarm)
        last[slot] = alarm.offset_s
    return out


def _window(label: IncidentLabel, width: int, n_events: int) -> Window:
    return Window(
        label.start_index, max(label.start_index, min(label.start_index + width - 1, n_events - 1))
    )


def score_scenario(
    stream: StreamRecord, alarms: Iterable[Alarm], method: str, rules: ScoringRules = ScoringRules()
) -> ScenarioScore:
    """Match one method's alarms to the stream's labels and score them."""
    alarms = sorted(alarms, key=lambda a: a.index)
    labels = stream.labels
    width = max(1, int(rules.window_size * stream.n_events / len(labels))) if labels else 0
    windows = [_window(label, width, stream.n_events) for label in labels]
    affected = [{(a.key_set, a.key) for a in label.affected} for label in labels]

    outcomes: list[IncidentOutcome] = []
    hits: list[list[Alarm]] = []
    for label, window, keys in zip(labels, windows, affected, strict=True):
        relevant = [
            a
            for a in alarms
            if (a.key_set, a.key) in keys
            and a.signal in label.signals
            and a.index >= label.start_index
            and a.offset_s <= label.end_s + rules.settle_s
        ]
        found = [a for a in relevant if a.index <= window.right]
        hits.append(found)
        outcomes.append(_outcome(stream, label, found[0] if found else None, relevant))

    related = [
        (keys, label.start_s, label.end_s + rules.settle_s)
        for label, keys in zip(labels, affected, strict=True)
    ]
    false = tuple(
        a
        for a in alarms
        if not any((a.key_set, a.key) in keys and s <= a.offset_s <= e for keys, s, e in related)
    )
    raised = alerts(alarms, rules.hold_s)
    new = set(raised)
    nab = score(
        stream.n_events,
        windows,
        [[a.index for a in h if a in new] for h in hits],
        [a.index for a in raised],
        profile=rules.profile,
        probation_percent=rules.probation_percent,
    )
    every = score(
        stream.n_events,
        windows,
        [[a.index for a in h] for h in hits],
        [a.index for a in alarms],
        profile=rules.profile,
        probation_percent=rules.probation_percent,
    )
    return ScenarioScore(
        scenario=stream.scenario,
        method=method,
        types=tuple(dict.fromkeys(label.type for label in labels)) or ("normal",),
        n_events=stream.n_events,
        outcomes=tuple(outcomes),
        alarms=len(alarms),
        alerts=len(raised),
        false_alarms=len(false),
        normal_key_events=_normal_key_events(stream, related),
        nab=nab,
        nab_every_detection=every,
        false=false,
    )


def _outcome(
    stream: StreamRecord, label: IncidentLabel, hit: Alarm | None, relevant: list[Alarm]
) -> IncidentOutcome:
    if hit is None:
        return IncidentOutcome(
            label.scenario,
            label.incident_id,
            label.type,
            detected=False,
            late_delay_s=relevant[0].offset_s - label.start_s if relevant else None,
        )
    offsets = stream.key_offsets.get((hit.key_set, hit.key))
    before = bisect.bisect_left(offsets, label.start_s) if offsets is not None else 0
    return IncidentOutcome(
        label.scenario,
        label.incident_id,
        label.type,
        detected=True,
        delay_events=hit.key_index - before + 1,
        delay_s=hit.offset_s - label.start_s,
        signal=hit.signal,
        key_set=hit.key_set,
        key=hit.key,
    )


def _normal_key_events(stream: StreamRecord, related: list[tuple[set[Key], float, float]]) -> int:
    total = 0
    for slot, offsets in stream.key_offsets.items():
        periods = sorted((s, e) for keys, s, e in related if slot in keys)
        excluded = 0
        reach = -math.inf
        for start, end in periods:
            start = max(start, reach)
            if end > start:
                excluded += bisect.bisect_right(offsets, end) - bisect.bisect_left(offsets, start)
                reach = end
        total += len(offsets) - excluded
    return total


def _row(name: str, scores: list[ScenarioScore], outcomes: list[IncidentOutcome]) -> TypeRow:
    found = [o for o in outcomes if o.detected]
    events = [float(o.delay_events) for o in found if o.delay_events is not None]
    seconds = [o.delay_s for o in found if o.delay_s is not None]
    return TypeRow(
        type=name,
        scenarios=len(scores),
        incidents=len(outcomes),
        detected=len(found),
        median_delay_events=quantile(events, 0.5),
        p90_delay_events=quantile(events, 0.9),
        median_delay_s=quantile(seconds, 0.5),
        p90_delay_s=quantile(seconds, 0.9),
        false_alarms=sum(s.false_alarms for s in scores),
        normal_key_events=sum(s.normal_key_events for s in scores),
        nab=normalised(s.nab for s in scores),
        nab_every_detection=normalised(s.nab_every_detection for s in scores),
    )


def summarise(scores: Sequence[ScenarioScore]) -> list[TypeRow]:
    """One row per incident type (over the scenarios holding it), then ``normal`` and ``all``.

    False alarms and NAB of a row come from its scenarios; a scenario holding two types
    counts in both rows.
    """
    types = list(dict.fromkeys(t for s in scores for t in s.types if t != "normal"))
    rows = [
        _row(
            kind,
            [s for s in scores if kind in s.types],
            [o for s in scores for o in s.outcomes if o.type == kind],
        )
        for kind in types
    ]
    normal = [s for s in scores if s.types == ("normal",)]
    if normal:
        rows.append(_row("normal", normal, []))
    rows.append(_row("all", list(scores), [o for s in scores for o in s.outcomes]))
    return rows
