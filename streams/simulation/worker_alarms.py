"""Place the worker's detections in the generated stream, as `Alarm` records for the scorer.

The worker publishes a `streams.detections_stage.DetectionRecord` per detection to
``llm.detections``. Its ``event_id`` is the triggering call's, ``{run_id}-{index}``
(`streams.simulation.traffic.generate`), so the index in the stream is exact; the key's
own position and the event time come from the `StreamRecord` of the same stream, so an
alarm from the worker and one from the offline detectors on the same call are equal.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.metrics.config import key_set_name
from streams.simulation.labels import KEY_SETS
from streams.simulation.offline import Alarm, StreamRecord

__all__ = ["Agreement", "Placement", "alarm_of", "alarms_from_detections", "compare_alarms"]

_DIMENSIONS: dict[str, tuple[str, ...]] = {key_set_name(ks): ks for ks in KEY_SETS}


@dataclass(slots=True)
class Placement:
    """What became of the worker's detection records of one run."""

    records: int = 0
    scored: int = 0
    other_key_sets: Counter[str] = field(default_factory=Counter)
    """Detections on key sets the evaluation does not score (the worker's provider x model)."""
    unplaced: int = 0
    """Records whose event is not in this stream or not on their key: none in a clean run."""


def _stream_index(event_id: Any, run_id: str) -> int | None:
    prefix = f"{run_id}-"
    if not isinstance(event_id, str) or not event_id.startswith(prefix):
        return None
    suffix = event_id[len(prefix) :]
    return int(suffix) if suffix.isdigit() else None


def alarm_of(record: Mapping[str, Any], stream: StreamRecord, run_id: str) -> Alarm | None:
    """The alarm of one detection record (``DetectionRecord.to_json_dict``), or None.

    None when the key set is not one the evaluation scores, or the event is not this run's
    or not on the record's key.
    """
    key_set = str(record.get("key_set"))
    dimensions = _DIMENSIONS.get(key_set)
    index = _stream_index(record.get("event_id"), run_id)
    values = record.get("dimensions")
    if dimensions is None or index is None or not isinstance(values, Mapping):
        return None
    key = tuple(str(values.get(d, "")) for d in dimensions)
    indices = stream.key_indices.get((key_set, key))
    if indices is None:
        return None
    position = bisect.bisect_left(indices, index)
    if position == len(indices) or indices[position] != index:
        return None
    return Alarm(
        index=index,
        offset_s=stream.key_offsets[(key_set, key)][position],
        key_set=key_set,
        key=key,
        key_index=position,
        signal=str(record["signal"]),
        detector=str(record["detector"]),
    )


def alarms_from_detections(
    records: Iterable[Mapping[str, Any]], stream: StreamRecord, run_id: str
) -> tuple[list[Alarm], Placement]:
    """Every record placed in ``stream`` (in stream order), and what could not be placed."""
    placement = Placement()
    alarms = []
    for record in records:
        placement.records += 1
        key_set = record.get("key_set")
        if key_set not in _DIMENSIONS:
            placement.other_key_sets[str(key_set)] += 1
            continue
        alarm = alarm_of(record, stream, run_id)
        if alarm is None:
            placement.unplaced += 1
            continue
        placement.scored += 1
        alarms.append(alarm)
    alarms.sort(key=lambda a: a.index)
    return alarms, placement


@dataclass(frozen=True, slots=True)
class Agreement:
    """Detections of the worker against the offline detectors' on the same stream.

    Two detections agree when they have the same key, signal, detector and triggering event.
    The signals of the ones that differ say why (``feedback.*``: the worker's detectors do
    not see feedback, see docs/simulation.md).
    """

    both: int
    worker_only: int
    offline_only: int
    worker_only_signals: dict[str, int]
    offline_only_signals: dict[str, int]

    @property
    def identical(self) -> bool:
        return self.worker_only == 0 and self.offline_only == 0


def compare_alarms(worker: Iterable[Alarm], offline: Iterable[Alarm]) -> Agreement:
    """Count the detections both made and those only one of them made."""
    ours = Counter(worker)
    theirs = Counter(offline)
    only_worker = ours - theirs
    only_offline = theirs - ours
    by_signal: tuple[Counter[str], Counter[str]] = (Counter(), Counter())
    for counts, only in zip(by_signal, (only_worker, only_offline), strict=True):
        for alarm, n in only.items():
            counts[alarm.signal] += n
    return Agreement(
        both=sum((ours & theirs).values()),
        worker_only=sum(only_worker.values()),
        offline_only=sum(only_offline.values()),
        worker_only_signals=dict(sorted(by_signal[0].items())),
        offline_only_signals=dict(sorted(by_signal[1].items())),
    )
