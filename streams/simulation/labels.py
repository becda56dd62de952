"""Ground truth of a simulated stream: which incident touched which keys, from which event.

`LabelRecorder` watches the generated events; `write_labels` / `read_labels` keep the
labels as JSON Lines, one incident per line, so a run to Kafka can be scored later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from streams.metrics.config import DEFAULT_KEY_SETS, key_set_name
from streams.simulation.scenario import Incident, Scenario, Traffic
from streams.simulation.traffic import SimulatedEvent

__all__ = [
    "KEY_SETS",
    "AffectedKey",
    "IncidentLabel",
    "Key",
    "KeyHit",
    "LabelRecorder",
    "key_of",
    "read_labels",
    "relevant_signals",
    "write_labels",
]

KEY_SETS: tuple[tuple[str, ...], ...] = DEFAULT_KEY_SETS[:2]
"""The keys the evaluation runs detectors on: the worker's per app x model and per prompt
version (its provider x model set is left out)."""

Key = tuple[str, tuple[str, ...]]
"""(key set name, key values)."""
KeyHit = tuple[str, tuple[str, ...], int]
"""(key set name, key values, index of the event among that key's events)."""


def key_of(call: Mapping[str, Any], key_set: Sequence[str]) -> tuple[str, ...] | None:
    """The call's key in ``key_set``, or None when it lacks one of the dimensions."""
    values = tuple(call.get(dimension) for dimension in key_set)
    if any(not value for value in values):
        return None
    return values  # type: ignore[return-value]


def relevant_signals(incident: Incident, traffic: Traffic) -> tuple[str, ...]:
    """The detector signals an incident moves: a detection on one of them is a true positive.

    ``anomaly`` (Half-Space Trees over latency, TTFT, tokens and cost) counts for incidents
    that move those; ``error_type`` is the new-value detector of error types.
    """
    effects = incident.effects
    signals: set[str] = set()
    if effects.latency_factor != 1:
        signals |= {"latency", "ttft", "anomaly"}
    if effects.ttft_factor not in (None, 1):
        signals |= {"ttft", "anomaly"}
    if effects.error_rate is not None:
        signals.add("error")
        if effects.error_type is not None:
            signals.add("error_type")
    if effects.output_tokens_factor != 1:
        signals |= {"output_tokens", "cost", "anomaly"}
        if traffic.latency_token_elasticity > 0:
            signals.add("latency")
    if effects.score_shift:
        apps = [
            app for name, app in traffic.apps.items() if incident.target.get("app", name) == name
        ]
        names = set(effects.scores) or {name for app in apps for name in app.scores}
        signals |= {f"score.{name}" for name in names}
        for app in apps:
            if app.feedback is not None and app.feedback.from_score in names:
                signals.add(f"feedback.{app.feedback.name}")
    return tuple(sorted(signals))


@dataclass(frozen=True, slots=True)
class AffectedKey:
    """A key an incident changed: where its first changed event is, and how many there were.

    ``first_index`` is the event's position in the whole stream; ``first_key_index`` its
    position among that key's events (both 0-based).
    """

    key_set: str
    key: tuple[str, ...]
    first_index: int
    first_key_index: int
    first_offset_s: float
    events: int


@dataclass(frozen=True, slots=True)
class IncidentLabel:
    """One injected incident of one scenario run, with the keys it affected.

    ``start_index`` is the first event of the stream at or after ``start_s``;
    ``end_index`` the first at or after ``end_s`` (the stream length if none).
    """

    scenario: str
    incident_id: str
    type: str
    target: Mapping[str, str]
    start: datetime
    end: datetime
    start_s: float
    end_s: float
    start_index: int
    end_index: int
    signals: tuple[str, ...]
    affected: tuple[AffectedKey, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "incident_id": self.incident_id,
            "type": self.type,
            "target": dict(self.target),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "start_s": self.start_s,
            "end_s": self.end_s,
            "start_index": self.start_index,
            "end_index": self.end_index,
            "signals": list(self.signals),
            "affected": [
                {
                    "key_set": a.key_set,
                    "key": list(a.key),
                    "first_index": a.first_index,
                    "first_key_index": a.first_key_index,
                    "first_offset_s": a.first_offset_s,
                    "events": a.events,
                }
                for a in self.affected
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IncidentLabel:
        return cls(
            scenario=data["scenario"],
            incident_id=data["incident_id"],
            type=data["type"],
            target=dict(data["target"]),
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
            start_s=float(data["start_s"]),
            end_s=float(data["end_s"]),
            start_index=int(data["start_index"]),
            end_index=int(data["end_index"]),
            signals=tuple(data["signals"]),
            affected=tuple(
                AffectedKey(
                    key_set=a["key_set"],
                    key=tuple(a["key"]),
                    first_index=int(a["first_index"]),
                    first_key_index=int(a["first_key_index"]),
                    first_offset_s=float(a["first_offset_s"]),
                    events=int(a["events"]),
                )
                for a in data["affected"]
            ),
        )


def write_labels(path: Path, labels: Iterable[IncidentLabel]) -> None:
    """Write one JSON object per line."""
    with path.open("wb") as out:
        for label in labels:
            out.write(orjson.dumps(label.to_json()) + b"\n")


def read_labels(path: Path) -> list[IncidentLabel]:
    """Read what `write_labels` wrote (blank lines are skipped)."""
    with path.open("rb") as source:
        return [IncidentLabel.from_json(orjson.loads(line)) for line in source if line.strip()]


class LabelRecorder:
    """Counts events per key and notes where each incident first touched each key.

    Call :meth:`observe` on every event, in stream order; :meth:`labels` at the end.
    ``key_counts`` (events seen per ``(key set name, key)``) is public for evaluators.
    """

    def __init__(
        self,
        scenario: Scenario,
        start: datetime,
        key_sets: Sequence[tuple[str, ...]] = KEY_SETS,
    ) -> None:
        self.scenario = scenario
        self.start = start
        self.key_sets = [(key_set_name(ks), ks) for ks in key_sets]
        self.key_counts: dict[Key, int] = {}
        self.n_events = 0
        self._first: dict[tuple[str, str, tuple[str, ...]], tuple[int, int, float]] = {}
        self._affected: dict[tuple[str, str, tuple[str, ...]], int] = {}
        self._boundaries: dict[float, int] = {}
        for incident in scenario.incidents:
            self._boundaries.setdefault(incident.start_s, -1)
            self._boundaries.setdefault(min(incident.end_s, scenario.duration_s), -1)
        self._pending = sorted(self._boundaries)

    def observe(self, event: SimulatedEvent) -> list[KeyHit]:
        """Record one event; return its ``(key set name, key, index among the key's events)``."""
        while self._pending and event.offset_s >= self._pending[0]:
            self._boundaries[self._pending.pop(0)] = event.index
        self.n_events += 1
        keys: list[KeyHit] = []
        for name, key_set in self.key_sets:
            key = key_of(event.call, key_set)
            if key is None:
                continue
            position = self.key_counts.get((name, key), 0)
            self.key_counts[(name, key)] = position + 1
            keys.append((name, key, position))
            for incident_id in event.incidents:
                slot = (incident_id, name, key)
                if slot not in self._first:
                    self._first[slot] = (event.index, position, event.offset_s)
                self._affected[slot] = self._affected.get(slot, 0) + 1
        return keys

    def labels(self) -> list[IncidentLabel]:
        """One label per incident that started before the stream ended."""
        out = []
        for incident in self.scenario.incidents:
            end_s = min(incident.end_s, self.scenario.duration_s)
            start_index = self._boundaries[incident.start_s]
            end_index = self._boundaries[end_s]
            affected = tuple(
                AffectedKey(name, key, *self._first[(iid, name, key)], events=count)
                for (iid, name, key), count in self._affected.items()
                if iid == incident.id
            )
            out.append(
                IncidentLabel(
                    scenario=self.scenario.name,
                    incident_id=incident.id,
                    type=incident.type,
                    target=dict(incident.target),
                    start=self.start + timedelta(seconds=incident.start_s),
                    end=self.start + timedelta(seconds=end_s),
                    start_s=incident.start_s,
                    end_s=end_s,
                    start_index=self.n_events if start_index < 0 else start_index,
                    end_index=self.n_events if end_index < 0 else end_index,
                    signals=relevant_signals(incident, self.scenario.traffic),
                    affected=affected,
                )
            )
        return out
