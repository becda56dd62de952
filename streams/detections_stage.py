"""Drift and anomaly detection in the worker: a `KeyDetectors` per key, per input partition.

Like the rolling metrics (`streams.metrics.partitioned`), detector state is kept per input
partition of ``llm.calls``, so it moves with its partition on a rebalance, and is
checkpointed per partition with the highest offset it has counted; after a restart, calls
at or below that offset are replays and are skipped, so a restored partition neither
re-learns nor re-reports them.

Unpickling happens only after HMAC verification. A snapshot is a pickle, and unpickling
runs code: `DetectionsStage.assign` must only ever be given bytes returned by
`streams.checkpoints.CheckpointStore.load`, which returns a snapshot only when its
HMAC-SHA256 (keyed by the workers' shared secret) verifies, and never parses anything
else. The structural checks after unpickling (version, partition, configuration, types)
are for our own state written by another version or configuration; they raise
`DetectorStateError`, and the caller then starts the partition fresh.

Order of a checkpoint (`take_checkpoint` does the first step atomically): take the
pending records and the snapshots together; publish and store the records; then save the
snapshots; only then commit offsets. A crash in between re-reads calls past the last saved
snapshot and reproduces the same records (same key, event and offset).
"""

from __future__ import annotations

import dataclasses
import math
import operator
import pickle
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from detectors import Detection, DetectorConfig, KeyDetectors, ParamValue, extract_features
from schemas import LLMCall
from streams.metrics import DEFAULT_KEY_SETS, DIMENSIONS, key_set_name

__all__ = [
    "DEFAULT_HST_KEY_SET",
    "SNAPSHOT_VERSION",
    "DetectionRecord",
    "DetectionsStage",
    "DetectorStateError",
]

SNAPSHOT_VERSION = 1
"""Bump when the snapshot or the pickled detector classes change shape."""
DEFAULT_HST_KEY_SET: tuple[str, ...] = ("app", "environment", "provider", "model")
_NO_OFFSET = -1
"""The counted offset of a partition that has counted nothing (Kafka offsets are >= 0)."""

KeyId = tuple[str, tuple[str, ...]]
"""A detector key: (key set name, dimension values in the key set's order)."""


class DetectorStateError(ValueError):
    """A verified snapshot cannot be restored (other version, partition or configuration)."""


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class DetectionRecord:
    """One detection of one key, located in the input stream; published to ``llm.detections``.

    ``event_time``, ``event_id``, ``source_partition`` and ``source_offset`` are those of
    the call that made the detector fire; ``detected_at`` is the wall clock (UTC).
    ``before_mean``, ``before_quantile`` and ``after_level`` are in raw units (ms, tokens,
    USD, rate), see `detectors.Detection`.
    """

    key_set: str
    dimensions: dict[str, str]
    signal: str
    detector: str
    params: dict[str, ParamValue]
    score: float
    before_mean: float
    before_quantile: float
    after_level: float
    event_time: datetime
    event_id: str
    source_partition: int
    source_offset: int
    detected_at: datetime

    def to_json_dict(self) -> dict[str, Any]:
        """A dict that orjson serialises: ISO 8601 UTC times, ``None`` for non-finite numbers."""
        return {
            "key_set": self.key_set,
            "dimensions": dict(self.dimensions),
            "signal": self.signal,
            "detector": self.detector,
            "params": dict(self.params),
            "score": _finite(self.score),
            "before_mean": _finite(self.before_mean),
            "before_quantile": _finite(self.before_quantile),
            "after_level": _finite(self.after_level),
            "event_time": self.event_time.isoformat(),
            "event_id": self.event_id,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "detected_at": self.detected_at.isoformat(),
        }

    def record_key(self) -> bytes:
        """Kafka key: one detector of one key, so its detections stay in order in one partition."""
        dims = "|".join(f"{k}={v}" for k, v in sorted(self.dimensions.items()))
        return f"{self.key_set}|{dims}|{self.signal}|{self.detector}".encode()


@dataclass(frozen=True, slots=True)
class _KeySet:
    name: str
    dimensions: tuple[str, ...]
    key_of: Callable[[list[Any]], tuple[Any, ...]]  # the key from the union's values
    config: DetectorConfig


def _key_of(positions: tuple[int, ...]) -> Callable[[list[Any]], tuple[Any, ...]]:
    """The values at ``positions`` as a tuple (itemgetter of one position gives the value)."""
    getter = operator.itemgetter(*positions)
    return getter if len(positions) > 1 else lambda values: (getter(values),)


class _Partition:
    __slots__ = ("detectors", "offset")

    def __init__(self, detectors: OrderedDict[KeyId, KeyDetectors], offset: int) -> None:
        self.detectors = detectors  # least recently updated first
        self.offset = offset


class DetectionsStage:
    """Every key's detectors, per input partition, with bounded memory and replay skipping.

    Parameters
    ----------
    config
        The detectors of a key on ``hst_key_set``; other key sets run the same config
        without Half-Space Trees (``anomaly_features=()``), which is ~60 % of a key's cost.
    key_sets
        Group-by dimension sets (names from `streams.metrics.DIMENSIONS`). A call is
        watched in every key set whose dimensions it has (non-empty).
    hst_key_set
        The key set on which Half-Space Trees run; ``None`` runs them nowhere.
    max_keys_per_partition
        At most this many keys (over all key sets) per partition: the least recently
        updated key is evicted (and counted) to make room for a new one.
    source_topic
        The calls topic; checkpoint names are ``detectors/<source_topic>/<partition>``.
    clock
        The wall clock for ``detected_at``.

    Examples
    --------
    >>> stage = DetectionsStage(DetectorConfig(), source_topic="llm.calls")
    >>> stage.assign(0, None)
    >>> stage.partitions, stage.checkpoint_name(0)
    ((0,), 'detectors/llm.calls/0')
    """

    def __init__(
        self,
        config: DetectorConfig,
        key_sets: tuple[tuple[str, ...], ...] = DEFAULT_KEY_SETS,
        hst_key_set: tuple[str, ...] | None = DEFAULT_HST_KEY_SET,
        max_keys_per_partition: int = 1000,
        source_topic: str = "llm.calls",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        _check_key_sets(key_sets)
        if hst_key_set is not None and hst_key_set not in key_sets:
            raise ValueError(f"hst_key_set {hst_key_set} is not one of the key sets {key_sets}")
        if isinstance(max_keys_per_partition, bool) or max_keys_per_partition < 1:
            raise ValueError(f"max_keys_per_partition must be >= 1, got {max_keys_per_partition}")
        self.config = config
        self.max_keys_per_partition = max_keys_per_partition
        self.source_topic = source_topic
        self._clock = clock
        self._dimension_names = tuple(d for d in DIMENSIONS if any(d in k for k in key_sets))
        univariate = dataclasses.replace(config, anomaly_features=())
        self._key_sets = tuple(
            _KeySet(
                key_set_name(key_set),
                key_set,
                _key_of(tuple(self._dimension_names.index(d) for d in key_set)),
                config if key_set == hst_key_set else univariate,
            )
            for key_set in key_sets
        )
        self._by_name = {ks.name: ks for ks in self._key_sets}
        # A restored snapshot must have been written with this exact configuration.
        self._fingerprint = repr((key_sets, hst_key_set, config))
        self._partitions: dict[int, _Partition] = {}
        self._order: tuple[int, ...] = ()
        self._pending: list[DetectionRecord] = []
        self.calls_counted = 0
        self.replayed_skipped = 0
        self.unassigned_skipped = 0
        self.evictions = 0
        self.restored = 0
        self.detections: Counter[str] = Counter()
        self._cost_s = 0.0  # moving average of the time add_call takes on a counted call

    @property
    def partitions(self) -> tuple[int, ...]:
        """The assigned partitions, in ascending order."""
        return self._order

    def checkpoint_name(self, partition: int) -> str:
        return f"detectors/{self.source_topic}/{partition}"

    def add_call(self, call: Any, partition: int, offset: int) -> None:
        """Update the detectors of every key of ``call``; queue what they detect.

        Skipped (and counted) when ``partition`` is not assigned (in flight during a
        rebalance: the new owner counts it) or ``offset`` is already counted (a replay).
        """
        part = self._partitions.get(partition)
        if part is None:
            self.unassigned_skipped += 1
            return
        if offset <= part.offset:
            self.replayed_skipped += 1
            return
        started = time.perf_counter()
        part.offset = offset
        self.calls_counted += 1
        # An LLMCall's fields are its __dict__: no costly AttributeError for `feedback` (7 µs).
        features, categorical = extract_features(call.__dict__ if type(call) is LLMCall else call)
        # Every key set's config has the same signals (only anomaly_features differ).
        transformed = self.config.transform(features)
        # An empty value counts as missing, as in the metrics.
        values = [getattr(call, d, None) or None for d in self._dimension_names]
        for ks in self._key_sets:
            key: tuple[str, ...] = ks.key_of(values)
            if None in key:
                continue
            detectors = self._detectors(part, (ks.name, key), ks.config)
            for detection in detectors.update_transformed(transformed, categorical=categorical):
                self._pending.append(self._record(ks, key, detection, call, partition, offset))
        self._cost_s += 0.01 * (time.perf_counter() - started - self._cost_s)

    def take_pending(self) -> list[DetectionRecord]:
        """The records detected since the last call, oldest first; the queue is emptied."""
        pending, self._pending = self._pending, []
        return pending

    def take_checkpoint(self) -> tuple[list[DetectionRecord], dict[str, bytes]]:
        """Pending records and every partition's snapshot (by checkpoint name), taken together.

        Publish the records before saving the snapshots, which count the calls they came from.
        """
        snapshots = {self.checkpoint_name(p): self.snapshot(p) for p in self._order}
        return self.take_pending(), snapshots

    def snapshot(self, partition: int) -> bytes:
        """The partition's state, for `assign`: a pickle, to be saved signed (`CheckpointStore`)."""
        part = self._partitions[partition]
        state = {
            "version": SNAPSHOT_VERSION,
            "partition": partition,
            "config": self._fingerprint,
            "offset": part.offset,
            "detectors": part.detectors,
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def assign(self, partition: int, payload: bytes | None) -> None:
        """Take on a partition, fresh (``None``) or from a `snapshot` verified by its HMAC.

        Raises `DetectorStateError` if the snapshot is not one of this configuration
        (nothing is assigned then), and ValueError if the partition is already assigned.
        """
        if partition in self._partitions:
            raise ValueError(f"partition {partition} is already assigned")
        if payload is None:
            part = _Partition(OrderedDict(), _NO_OFFSET)
        else:
            part = self._restore(partition, payload)
            self.restored += 1
            while len(part.detectors) > self.max_keys_per_partition:
                part.detectors.popitem(last=False)
                self.evictions += 1
        self._partitions[partition] = part
        self._order = tuple(sorted(self._partitions))

    def revoke(self, partition: int) -> None:
        """Drop a partition's detectors (checkpoint it first); unknown partitions are ignored."""
        if self._partitions.pop(partition, None) is not None:
            self._order = tuple(sorted(self._partitions))

    def health(self) -> dict[str, Any]:
        """Counters for ``/health``; ``us_per_call`` is a moving average over counted calls."""
        keys: Counter[str] = Counter()
        for part in self._partitions.values():
            keys.update(name for name, _ in part.detectors)
        return {
            "partitions": list(self._order),
            "keys": sum(keys.values()),
            "keys_by_key_set": {ks.name: keys[ks.name] for ks in self._key_sets},
            "max_keys_per_partition": self.max_keys_per_partition,
            "evictions": self.evictions,
            "calls_counted": self.calls_counted,
            "replayed_skipped": self.replayed_skipped,
            "unassigned_skipped": self.unassigned_skipped,
            "restored_partitions": self.restored,
            "pending": len(self._pending),
            "detections": dict(self.detections),
            "us_per_call": round(self._cost_s * 1e6, 1),
        }

    def _detectors(self, part: _Partition, key_id: KeyId, config: DetectorConfig) -> KeyDetectors:
        table = part.detectors
        detectors = table.get(key_id)
        if detectors is not None:
            table.move_to_end(key_id)
            return detectors
        if len(table) >= self.max_keys_per_partition:
            table.popitem(last=False)
            self.evictions += 1
        detectors = table[key_id] = KeyDetectors(config)
        return detectors

    def _record(
        self,
        ks: _KeySet,
        key: tuple[str, ...],
        detection: Detection,
        call: Any,
        partition: int,
        offset: int,
    ) -> DetectionRecord:
        self.detections[f"{detection.signal}/{detection.detector}"] += 1
        return DetectionRecord(
            key_set=ks.name,
            dimensions=dict(zip(ks.dimensions, key, strict=True)),
            signal=detection.signal,
            detector=detection.detector,
            params=dict(detection.params),
            score=detection.score,
            before_mean=detection.before_mean,
            before_quantile=detection.before_quantile,
            after_level=detection.after_level,
            event_time=call.timestamp,
            event_id=str(call.event_id),
            source_partition=partition,
            source_offset=offset,
            detected_at=self._clock(),
        )

    def _restore(self, partition: int, payload: bytes) -> _Partition:
        # Safe only because the payload's HMAC was verified (see the module docstring).
        try:
            state = pickle.loads(payload)
        except Exception as exc:  # any unpickling failure means the same: unusable
            raise DetectorStateError(f"detector snapshot does not unpickle: {exc!r}") from None
        if not isinstance(state, dict) or state.get("version") != SNAPSHOT_VERSION:
            version = state.get("version") if isinstance(state, dict) else type(state).__name__
            raise DetectorStateError(f"detector snapshot version {version!r} is not supported")
        if state.get("partition") != partition:
            raise DetectorStateError(
                f"detector snapshot was written for partition {state.get('partition')!r}, "
                f"not {partition}"
            )
        if state.get("config") != self._fingerprint:
            raise DetectorStateError("detector snapshot was written with another configuration")
        offset, detectors = state.get("offset"), state.get("detectors")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < _NO_OFFSET:
            raise DetectorStateError(f"detector snapshot offset {offset!r} is not an offset")
        if not isinstance(detectors, OrderedDict):
            raise DetectorStateError("detector snapshot holds no ordered table of detectors")
        for key_id, value in detectors.items():
            self._check_entry(key_id, value)
        return _Partition(detectors, offset)

    def _check_entry(self, key_id: Any, value: Any) -> None:
        ok = isinstance(key_id, tuple) and len(key_id) == 2 and isinstance(value, KeyDetectors)
        ks = self._by_name.get(key_id[0]) if ok else None
        key = key_id[1] if ok else None
        if (
            ks is None
            or not isinstance(key, tuple)
            or len(key) != len(ks.dimensions)
            or not all(isinstance(v, str) for v in key)
            or getattr(value, "config", None) != ks.config
        ):
            raise DetectorStateError(f"detector snapshot has a malformed entry for {key_id!r}")


def _check_key_sets(key_sets: tuple[tuple[str, ...], ...]) -> None:
    if not key_sets:
        raise ValueError("key_sets must name at least one set of dimensions")
    for key_set in key_sets:
        if not isinstance(key_set, tuple) or not key_set or len(set(key_set)) != len(key_set):
            raise ValueError(f"each key set must be a non-empty tuple of distinct names: {key_set}")
        unknown = [d for d in key_set if d not in DIMENSIONS]
        if unknown:
            raise ValueError(f"unknown dimensions {unknown} in {key_set}; use {DIMENSIONS}")
    if len({key_set_name(k) for k in key_sets}) != len(key_sets):
        raise ValueError(f"key sets must be distinct, got {key_sets}")
