"""Detections in the worker: publish each detection within a tick, checkpoint detector state.

`DetectionsStage` (streams/detections_stage.py) runs the detectors per key and partition. This
runner drains its detections every ``flush_interval_s`` (default 0.25 s) to ``llm.detections``
and ``llm_detections``, hands them to listeners (the alert rules), and saves the detectors'
snapshots to the signed checkpoint topic every ``checkpoint_interval_s``.

Detector checkpoints do not hold back offset commits (metric checkpoints do): a snapshot of
a thousand keys takes about a second to pickle, so it runs less often. After a crash, calls
past the last detector snapshot but already committed are not seen again by the detectors;
they lose a few seconds of learning, never count anything twice, and do not re-warm.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from streams.checkpoints import CheckpointStore
from streams.detections_stage import DetectionRecord, DetectionsStage, DetectorStateError
from streams.outputs import CheckpointTimer, Publish, RecordOutputs
from streams.rows import detection_row
from streams.sink import ClickHouseSink

log = logging.getLogger(__name__)

Listener = Callable[[DetectionRecord], None]


class DetectionsRunner:
    """Owns a `DetectionsStage` and its outputs; see the module docstring."""

    def __init__(
        self,
        stage: DetectionsStage,
        checkpoints: CheckpointStore,
        publish: Publish,
        sink: ClickHouseSink,
        checkpoint_interval_s: float,
    ) -> None:
        self.stage = stage
        self.checkpoints = checkpoints
        # Listeners get every detection (the alert rules).
        self.outputs: RecordOutputs[DetectionRecord] = RecordOutputs(
            publish, sink, detection_row, DetectionRecord.record_key, _record_json
        )
        self.timer = CheckpointTimer(checkpoint_interval_s)
        self.checkpoint_failures = 0
        self._lock = asyncio.Lock()

    @property
    def sink(self) -> ClickHouseSink:
        return self.outputs.sink

    @property
    def listeners(self) -> list[Listener]:
        return self.outputs.listeners

    @property
    def add_call(self) -> Callable[[Any, int, int], None]:
        return self.stage.add_call

    async def assign(self, partitions: Iterable[int]) -> None:
        """Restore newly assigned partitions from verified snapshots, or start them fresh."""
        new = [p for p in partitions if p not in self.stage.partitions]
        if not new:
            return
        names = {self.stage.checkpoint_name(p): p for p in new}
        saved = await self.checkpoints.load(names)
        for name, partition in names.items():
            try:
                # Only bytes whose HMAC verified reach the unpickler (CheckpointStore.load).
                self.stage.assign(partition, saved.get(name))
            except DetectorStateError as exc:
                self.checkpoints.stats.reject(name, "invalid_state")
                log.warning("detector checkpoint %s unusable: %s", name, str(exc)[:300])
                self.stage.assign(partition, None)

    async def revoke(self, partitions: Iterable[int]) -> None:
        """Publish what is pending and save the released partitions' snapshots."""
        async with self._lock:
            revoked = [p for p in partitions if p in self.stage.partitions]
            await self.outputs.emit(self.stage.take_pending())
            snapshots = {self.stage.checkpoint_name(p): self.stage.snapshot(p) for p in revoked}
            await self._save(snapshots)
            for partition in revoked:
                self.stage.revoke(partition)

    async def tick(self) -> None:
        """Publish pending detections; checkpoint when the interval has passed."""
        async with self._lock:
            if not self.timer.due():
                await self.outputs.emit(self.stage.take_pending())
                return
            records, snapshots = self.stage.take_checkpoint()
            await self.outputs.emit(records)
            await self._save(snapshots)

    async def _save(self, snapshots: dict[str, bytes]) -> None:
        try:
            await self.checkpoints.save_many(snapshots)
        except Exception:
            self.checkpoint_failures += 1
            log.exception("detector checkpoint failed; retrying at the next interval")
            return
        self.timer.saved()

    def health(self) -> dict[str, Any]:
        return {
            **self.stage.health(),
            "published": self.outputs.published,
            "checkpoint_failures": self.checkpoint_failures,
            "checkpoint_age_s": self.timer.age_s(),
        }


def _record_json(record: DetectionRecord) -> bytes:
    return orjson.dumps(record.to_json_dict())
