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
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

from streams.checkpoints import CheckpointStore
from streams.detections_stage import DetectionRecord, DetectionsStage, DetectorStateError
from streams.rows import detection_row
from streams.sink import ClickHouseSink

log = logging.getLogger(__name__)

Publish = Callable[[bytes, bytes], Awaitable[None]]
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
        self.publish = publish
        self.sink = sink
        self.checkpoint_interval_s = checkpoint_interval_s
        self.listeners: list[Listener] = []
        self.published = 0
        self.checkpoint_failures = 0
        self.last_checkpoint = time.monotonic()
        self.last_checkpoint_wall: float | None = None
        self._lock = asyncio.Lock()

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
            await self._emit(self.stage.take_pending())
            snapshots = {self.stage.checkpoint_name(p): self.stage.snapshot(p) for p in revoked}
            await self._save(snapshots)
            for partition in revoked:
                self.stage.revoke(partition)

    async def tick(self) -> None:
        """Publish pending detections; checkpoint when the interval has passed."""
        async with self._lock:
            if time.monotonic() - self.last_checkpoint < self.checkpoint_interval_s:
                await self._emit(self.stage.take_pending())
                return
            records, snapshots = self.stage.take_checkpoint()
            await self._emit(records)
            await self._save(snapshots)

    async def _emit(self, records: list[DetectionRecord]) -> None:
        if not records:
            return
        for record in records:
            await self.sink.add(detection_row(record))
            for listener in self.listeners:
                try:
                    listener(record)
                except Exception:  # an alerting bug must not stop detections being stored
                    log.exception("detection listener failed")
        await asyncio.gather(
            *(self.publish(r.record_key(), orjson.dumps(r.to_json_dict())) for r in records)
        )
        self.published += len(records)

    async def _save(self, snapshots: dict[str, bytes]) -> None:
        try:
            for name, payload in snapshots.items():
                await self.checkpoints.save(name, payload)
        except Exception:
            self.checkpoint_failures += 1
            log.exception("detector checkpoint failed; retrying at the next interval")
            return
        self.last_checkpoint = time.monotonic()
        self.last_checkpoint_wall = time.time()

    def health(self) -> dict[str, Any]:
        age = self.last_checkpoint_wall
        return {
            **self.stage.health(),
            "published": self.published,
            "checkpoint_failures": self.checkpoint_failures,
            "checkpoint_age_s": None if age is None else round(time.time() - age, 3),
        }
