"""Rolling metrics in the worker: count each call, publish closed windows, checkpoint state.

Exactly-once counting on top of at-least-once delivery (docs/metrics.md, "Restarts"):

- State is kept per input partition of ``llm.calls`` (`PartitionedMetrics`), so it moves
  with its partition on a rebalance, and is checkpointed per partition to the compacted
  state topic with the highest offset it has counted.
- A record's Kafka offset is committed only once its row is stored *and* a checkpoint
  that counts it is written: the sink's acknowledgement is held (`HeldAck`) until the
  next checkpoint. After a crash, replayed records at or below the checkpointed offset
  are skipped by the metrics (their rows are rewritten and deduplicated by the store).
- Closed windows are published to ``llm.metrics`` and written to ``llm_metrics_1m``
  before the checkpoint that forgets them, so a crash in between re-publishes the same
  record (same key, same values) rather than losing it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.checkpoints import CheckpointStore
from streams.metrics import MetricRecord, MetricsStateError, PartitionedMetrics, PricingTable
from streams.outputs import CheckpointTimer, RecordOutputs
from streams.rows import metric_row
from streams.sink import ClickHouseSink

log = logging.getLogger(__name__)


def _parse_snapshot(payload: bytes | None) -> tuple[dict[str, Any] | None, dict[int, int]]:
    """(metrics state, feedback offsets) from a verified snapshot; raises `MetricsStateError`."""
    if payload is None:
        return None, {}
    try:
        data = orjson.loads(payload)
        state = data["metrics"]
        offsets = {int(p): int(o) for p, o in data.get("feedback_offsets", {}).items()}
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MetricsStateError(f"malformed metrics snapshot: {exc}") from None
    if not isinstance(state, dict):
        raise MetricsStateError("malformed metrics snapshot: state is not an object")
    return state, offsets


class HeldAck:
    """Stands in for a faust event in a sink; its ack waits for the next checkpoint."""

    __slots__ = ("_event", "_stage")

    def __init__(self, stage: MetricsStage, event: Any) -> None:
        self._stage = stage
        self._event = event

    def ack(self) -> None:
        self._stage.held.append(self._event)


def _record_json(record: MetricRecord) -> bytes:
    return orjson.dumps(record.to_json_dict())


def record_key(record: MetricRecord) -> bytes:
    dims = "|".join(f"{k}={v}" for k, v in sorted(record.dimensions.items()))
    return f"{record.key_set}|{dims}|{record.window_start.isoformat()}".encode()


class MetricsStage:
    """Owns the worker's `PartitionedMetrics` and everything around it.

    Parameters
    ----------
    metrics
        The in-memory windows.
    checkpoints
        Where partition state is saved and restored from.
    source_topic
        The calls topic; checkpoint names are ``metrics/<source_topic>/<partition>``.
    publish
        Coroutine that sends one record (key, JSON bytes) to ``llm.metrics`` and waits
        for the broker to have it.
    sink
        The ``llm_metrics_1m`` sink.
    checkpoint_interval_s
        How often state is saved; also the longest an offset commit waits.
    pricing
        The price table, for its list of unpriced models.
    """

    def __init__(
        self,
        metrics: PartitionedMetrics,
        checkpoints: CheckpointStore,
        source_topic: str,
        publish: Any,
        sink: ClickHouseSink,
        checkpoint_interval_s: float,
        pricing: PricingTable,
    ) -> None:
        self.metrics = metrics
        self.checkpoints = checkpoints
        self.source_topic = source_topic
        # Listeners get every closed window's record (the alert rules).
        self.outputs: RecordOutputs[MetricRecord] = RecordOutputs(
            publish, sink, metric_row, record_key, _record_json
        )
        self.timer = CheckpointTimer(checkpoint_interval_s)
        self.pricing = pricing
        self.held: list[Any] = []
        self.checkpoint_failures = 0
        self.calls_seen = 0
        # Feedback offsets counted so far (saved with every partition's checkpoint), and the
        # offsets below which replayed feedback is already counted in restored state.
        self.feedback_offsets: dict[int, int] = {}
        self.feedback_skip: dict[int, int] = {}
        self.feedback_replayed_skipped = 0
        self.unassigned_skipped = 0
        self._rate: deque[tuple[float, int]] = deque(maxlen=16)
        self._lock = asyncio.Lock()

    @property
    def sink(self) -> ClickHouseSink:
        return self.outputs.sink

    @property
    def listeners(self) -> list[Callable[[MetricRecord], None]]:
        return self.outputs.listeners

    def hold(self, event: Any) -> HeldAck:
        return HeldAck(self, event)

    def add_call(self, call: Any, partition: int, offset: int) -> None:
        self.calls_seen += 1
        if partition in self.metrics.partitions:
            self.metrics.add_call(partition, offset, call)
        else:  # in flight while its partition was revoked: the new owner counts it
            self.unassigned_skipped += 1

    def add_feedback(self, feedback: Any, partition: int, offset: int) -> None:
        if offset <= self.feedback_skip.get(partition, -1):
            self.feedback_replayed_skipped += 1
            return
        self.feedback_offsets[partition] = offset
        self.metrics.add_feedback(feedback)

    def checkpoint_name(self, partition: int) -> str:
        return f"metrics/{self.source_topic}/{partition}"

    async def assign(self, partitions: Iterable[int]) -> None:
        """Restore newly assigned partitions from their checkpoints (validated), or start empty."""
        await self._restore([p for p in partitions if p not in self.metrics.partitions])

    async def _restore(self, new: list[int]) -> None:
        if not new:
            return
        names = {self.checkpoint_name(p): p for p in new}
        saved = await self.checkpoints.load(names)
        for name, partition in names.items():
            try:
                state, feedback_offsets = _parse_snapshot(saved.get(name))
                self.metrics.assign(partition, state)
            except MetricsStateError as exc:
                # Signed by us but unusable (e.g. written for other key sets): start empty.
                self.checkpoints.stats.reject(name, "invalid_state")
                log.warning("metrics checkpoint %s unusable: %s", name, str(exc)[:300])
                self.metrics.assign(partition, None)
                state = None
            if state is None:
                log.info("metrics partition %s: fresh", partition)
                continue
            log.info("metrics partition %s: restored", partition)
            for fp, offset in feedback_offsets.items():
                # The lowest counted offset over restored partitions: all partitions are
                # saved in one round, so they agree unless a crash split that round.
                known = self.feedback_skip.get(fp)
                self.feedback_skip[fp] = offset if known is None else min(known, offset)
                self.feedback_offsets[fp] = max(self.feedback_offsets.get(fp, -1), offset)

    async def revoke(self, partitions: Iterable[int]) -> None:
        """Checkpoint everything held (rows flushed first by the caller), then drop these."""
        await self.checkpoint()
        for partition in partitions:
            if partition in self.metrics.partitions:
                self.metrics.revoke(partition)

    async def tick(self, now: float | None = None) -> None:
        """Close due windows, publish them, and checkpoint when due or after a close."""
        wall = time.time() if now is None else now
        self._rate.append((time.monotonic(), self.calls_seen))
        records = self.metrics.close_due(wall)
        if records:
            await self._emit(records)
        if records or self.timer.due():
            await self.checkpoint()

    async def _emit(self, records: list[MetricRecord]) -> None:
        await self.outputs.emit(records)
        # Both outputs are durable before the checkpoint that forgets these windows.
        await self.sink.flush()

    async def checkpoint(self) -> None:
        """Snapshot every partition, save, then release the acknowledgements held so far."""
        async with self._lock:
            held, self.held = self.held, []
            feedback = {str(p): o for p, o in self.feedback_offsets.items()}
            snapshots = {
                self.checkpoint_name(p): orjson.dumps(
                    {"metrics": self.metrics.partition_state(p), "feedback_offsets": feedback}
                )
                for p in self.metrics.partitions
            }
            try:
                await self.checkpoints.save_many(snapshots)
            except Exception:
                # Keep them held: nothing is committed that the saved state does not count.
                self.held = held + self.held
                self.checkpoint_failures += 1
                log.exception("metrics checkpoint failed; offsets stay uncommitted")
                return
            for event in held:
                event.ack()
            self.timer.saved()

    def events_per_second(self) -> float:
        if len(self._rate) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._rate[0], self._rate[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def live(self) -> dict[str, Any]:
        """The ``/live`` page: the current partial window of every key."""
        watermark = self.metrics.watermark
        return {
            "generated_at": datetime.now(UTC).isoformat(),
            "watermark": (
                None if watermark is None else datetime.fromtimestamp(watermark, UTC).isoformat()
            ),
            "events_per_second": self.events_per_second(),
            "window_seconds": self.metrics.config.window_seconds,
            "records": [r.to_json_dict() for r in self.metrics.open_windows()],
        }

    def health(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "partitions": sorted(m.partitions),
            "open_windows": m.open_window_count,
            "records_published": self.outputs.published,
            "late_events": m.late_events,
            "replayed_skipped": m.replayed_skipped,
            "duplicate_calls": m.duplicate_calls,
            "feedback_unjoined": m.feedback_unjoined,
            "held_acks": len(self.held),
            "unassigned_skipped": self.unassigned_skipped,
            "checkpoint_failures": self.checkpoint_failures,
            "checkpoint_age_s": self.timer.age_s(),
            "checkpoints": {
                "saved": self.checkpoints.stats.saved,
                "loaded": self.checkpoints.stats.loaded,
                "rejected": dict(self.checkpoints.stats.rejected),
            },
            "feedback_replayed_skipped": self.feedback_replayed_skipped,
            "pricing_misses": dict(self.pricing.misses.most_common(50)),
        }
