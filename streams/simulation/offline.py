"""Run a scenario's stream through detection methods offline, as fast as the CPU allows.

The stream is generated once; every method (our detectors, the static baseline) sees the
same events and returns `Alarm` records, which `streams.simulation.evaluate` scores against
the labels.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from detectors import DetectorConfig, KeyDetectors, extract_features
from streams.detections_stage import DEFAULT_HST_KEY_SET
from streams.metrics.config import key_set_name
from streams.simulation.labels import KEY_SETS, IncidentLabel, Key, KeyHit, LabelRecorder
from streams.simulation.scenario import Scenario
from streams.simulation.traffic import SimulatedEvent, generate

__all__ = [
    "Alarm",
    "DetectorMethod",
    "Method",
    "StreamRecord",
    "evaluation_configs",
    "run_scenario",
]


@dataclass(frozen=True, slots=True)
class Alarm:
    """One detection, located in the stream: by event index, event time and key."""

    index: int
    offset_s: float
    key_set: str
    key: tuple[str, ...]
    key_index: int
    signal: str
    detector: str


@dataclass(slots=True)
class StreamRecord:
    """What scoring needs to know about a generated stream besides the alarms."""

    scenario: str
    n_events: int
    duration_s: float
    labels: list[IncidentLabel]
    key_offsets: dict[Key, array[float]] = field(default_factory=dict)
    """Event time of every event of every key, in order."""
    key_indices: dict[Key, array[int]] = field(default_factory=dict)
    """Stream index of every event of every key, in order (to place a worker's detections)."""


class Method(Protocol):
    """A detection method under evaluation."""

    name: str

    def observe(
        self,
        event: SimulatedEvent,
        features: Mapping[str, float],
        categorical: Mapping[str, str],
        keys: Sequence[KeyHit],
    ) -> None: ...

    def alarms(self, stream: StreamRecord) -> list[Alarm]: ...


def evaluation_configs() -> dict[str, DetectorConfig]:
    """The detector configuration the evaluation runs, per key set (see docs/simulation.md).

    The worker's: defaults, with Half-Space Trees on the app x model keys only (it is the
    costliest detector, docs/detectors.md; `LLMPULSE_DETECTORS_HST_KEY_SET`).
    """
    config = DetectorConfig()
    univariate = dataclasses.replace(config, anomaly_features=())
    return {
        key_set_name(ks): config if ks == DEFAULT_HST_KEY_SET else univariate for ks in KEY_SETS
    }


class DetectorMethod:
    """Our online detectors: one `KeyDetectors` per key of every key set."""

    def __init__(self, configs: Mapping[str, DetectorConfig], name: str = "llmpulse") -> None:
        self.name = name
        self.configs = dict(configs)
        self._keys: dict[Key, KeyDetectors] = {}
        self._alarms: list[Alarm] = []

    def observe(
        self,
        event: SimulatedEvent,
        features: Mapping[str, float],
        categorical: Mapping[str, str],
        keys: Sequence[KeyHit],
    ) -> None:
        for key_set, key, position in keys:
            detectors = self._keys.get((key_set, key))
            if detectors is None:
                config = self.configs.get(key_set)
                if config is None:
                    continue
                detectors = self._keys[(key_set, key)] = KeyDetectors(config)
            for detection in detectors.update(features, categorical=categorical):
                self._alarms.append(
                    Alarm(
                        event.index,
                        event.offset_s,
                        key_set,
                        key,
                        position,
                        detection.signal,
                        detection.detector,
                    )
                )

    def alarms(self, stream: StreamRecord) -> list[Alarm]:
        return list(self._alarms)


def features_of(event: SimulatedEvent) -> tuple[dict[str, float], dict[str, str]]:
    """Detector inputs of one call, with its feedback joined to it (as the worker would)."""
    if not event.feedback:
        return extract_features(event.call)
    feedback = {item["name"]: item["value"] for item in event.feedback}
    return extract_features({**event.call, "feedback": feedback})


def run_scenario(
    scenario: Scenario,
    methods: Sequence[Method],
    start: datetime,
    key_sets: Sequence[tuple[str, ...]] = KEY_SETS,
) -> tuple[StreamRecord, dict[str, list[Alarm]]]:
    """Generate the stream once, feed it to every method, return the record and the alarms."""
    recorder = LabelRecorder(scenario, start, key_sets)
    offsets: dict[Key, array[float]] = {}
    indices: dict[Key, array[int]] = {}
    for event in generate(scenario, start):
        keys = recorder.observe(event)
        for key_set, key, _ in keys:
            slot = offsets.get((key_set, key))
            if slot is None:
                slot = offsets[(key_set, key)] = array("d")
                indices[(key_set, key)] = array("q")
            slot.append(event.offset_s)
            indices[(key_set, key)].append(event.index)
        features, categorical = features_of(event)
        for method in methods:
            method.observe(event, features, categorical, keys)
    stream = StreamRecord(
        scenario=scenario.name,
        n_events=recorder.n_events,
        duration_s=scenario.duration_s,
        labels=recorder.labels(),
        key_offsets=offsets,
        key_indices=indices,
    )
    return stream, {method.name: method.alarms(stream) for method in methods}
