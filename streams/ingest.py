"""The ingestion path: validate each record, write good ones to ClickHouse, dead-letter the rest.

Nothing here acknowledges a Kafka record before its row is durably stored: the agents hand each
record (a `streams.batch_consumer.RecordAck`) to a sink, which acks it after the write. A rejected
record is acked only once both its dead-letter message is on ``llm.calls.dlq`` and its row is in
``llm_dead_letters``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas import (
    Feedback,
    InvalidEvent,
    LLMCall,
    TextPolicy,
    ValidationLimits,
    apply_text_policy,
    decode_call,
    decode_feedback,
)
from streams.config import Settings
from streams.rows import call_row, dead_letter_row, feedback_row
from streams.sink import ClickHouseSink

log = logging.getLogger(__name__)


@dataclass
class IngestCounters:
    events_in: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    dead_letter_failures: int = 0


class DeadLetterAck:
    """Acks the source event once the DLQ message is delivered and the row is stored."""

    __slots__ = ("_counters", "_event", "_future", "_row_written")

    def __init__(
        self, event: Any, delivery: asyncio.Future[Any], counters: IngestCounters | None = None
    ) -> None:
        self._event = event
        self._future = delivery
        self._counters = counters
        self._row_written = False
        delivery.add_done_callback(self._maybe_ack)

    def ack(self) -> None:
        self._row_written = True
        self._maybe_ack(self._future)

    def _maybe_ack(self, future: asyncio.Future[Any]) -> None:
        if not (self._row_written and future.done()):
            return
        if future.cancelled() or future.exception() is not None:
            # Left unacknowledged: the record is replayed after a restart and dead-lettered again.
            log.error("dead-letter delivery failed for offset %s", self._event.message.offset)
            if self._counters is not None:
                self._counters.dead_letter_failures += 1
            return
        self._event.ack()


class Ingestor:
    """Holds the sinks and counters the agents share; created once per worker."""

    def __init__(
        self,
        settings: Settings,
        calls: ClickHouseSink,
        feedback: ClickHouseSink,
        dead_letters: ClickHouseSink,
        dlq_topic: Any,
    ) -> None:
        self.settings = settings
        self.calls = calls
        self.feedback = feedback
        self.dead_letters = dead_letters
        self.dlq_topic = dlq_topic
        self.counters = IngestCounters()
        self.limits = ValidationLimits(
            max_event_bytes=settings.max_event_bytes,
            max_past=timedelta(days=settings.max_past_days),
            max_future=timedelta(minutes=settings.max_future_minutes),
        )
        self.text_policy = TextPolicy(
            store_text=settings.store_text, max_chars=settings.text_max_chars
        )
        # Stages that see each valid event (metrics, detectors) and may hold its ack.
        self.on_call: Callable[[LLMCall, int, int], None] | None = None
        self.on_feedback: Callable[[Feedback, int, int], None] | None = None
        self.hold: Callable[[Any], Any] | None = None

    async def consume_calls(self, events: AsyncIterator[Any]) -> None:
        limits, policy, observe = self.limits, self.text_policy, self.on_call

        def row(message: Any) -> bytes:
            call = apply_text_policy(decode_call(message.value, limits, datetime.now(UTC)), policy)
            partition, offset = message.partition, message.offset
            if observe is not None:
                observe(call, partition, offset)
            return call_row(call, partition, offset)

        await self._consume(events, row, self.calls)

    async def consume_feedback(self, events: AsyncIterator[Any]) -> None:
        limits, observe = self.limits, self.on_feedback

        def row(message: Any) -> bytes:
            feedback = decode_feedback(message.value, limits, datetime.now(UTC))
            partition, offset = message.partition, message.offset
            if observe is not None:
                observe(feedback, partition, offset)
            return feedback_row(feedback, partition, offset)

        await self._consume(events, row, self.feedback)

    async def _consume(
        self, events: AsyncIterator[Any], row: Callable[[Any], bytes], sink: ClickHouseSink
    ) -> None:
        """Validate each record into a row for ``sink``; dead-letter what fails validation."""
        counted = self.counters.events_in
        hold = self.hold
        async for event in events:
            message = event.message
            counted[message.topic] += 1
            try:
                line = row(message)
            except InvalidEvent as exc:
                await self.dead_letter(event, exc.code, exc.reason)
                continue
            await sink.add(line, event if hold is None else hold(event))

    async def dead_letter(self, event: Any, code: str, reason: str) -> None:
        """Send the original bytes with the reason to the DLQ topic and ``llm_dead_letters``."""
        message = event.message
        self.counters.rejected[code] += 1
        headers = {
            "llmpulse.reason_code": code.encode(),
            "llmpulse.reason": reason.encode("utf-8", errors="replace")[:4096],
            "llmpulse.source_topic": message.topic.encode(),
            "llmpulse.source_partition": str(message.partition).encode(),
            "llmpulse.source_offset": str(message.offset).encode(),
        }
        delivery = await self.dlq_topic.send(
            key=message.key, value=message.value or b"", headers=headers
        )
        row = dead_letter_row(
            message.topic, message.partition, message.offset, code, reason, message.value
        )
        await self.dead_letters.add(row, DeadLetterAck(event, delivery, self.counters))

    async def store_rejected(self, row: bytes, reason: str, event: Any) -> None:
        """A row the store refused: dead-letter its source record instead of losing it."""
        await self.dead_letter(event, "store_rejected", reason[:2000])
