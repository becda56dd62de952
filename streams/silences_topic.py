"""Silences kept in a compacted Kafka topic, so that every worker and the CLI see the same ones.

One record per silence, keyed by its id, holding the silence as JSON. Expiring a silence
writes it again with ``ends_at`` = now; a silence that never started is deleted with a
tombstone, and so are silences long expired (`KafkaSilenceStore.prune`). Compaction keeps the
newest record of each id. A worker reads the topic from the beginning at start, then follows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from alerting.engine import Clock, utc_now
from alerting.silences import Silence, expired
from streams.topics import STATE_TOPIC_CONFIG

log = logging.getLogger(__name__)

PRUNE_AFTER = timedelta(days=7)


class SilenceRecordError(ValueError):
    """A record of the silences topic is not a valid silence."""


def encode(silence: Silence) -> bytes:
    return orjson.dumps(silence.to_dict())


def decode(key: bytes | None, value: bytes | None) -> tuple[str, Silence | None]:
    """``(id, silence)`` of one record; a tombstone gives ``(id, None)``."""
    if not key:
        raise SilenceRecordError("record has no key")
    try:
        silence_id = key.decode()
        if value is None:
            return silence_id, None
        data = orjson.loads(value)
        silence = Silence.from_dict(data)
    except (UnicodeDecodeError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SilenceRecordError(f"invalid silence record {key!r}: {exc}") from exc
    if silence.id != silence_id:
        raise SilenceRecordError(f"record key {silence_id!r} is not the silence id {silence.id!r}")
    if silence.starts_at.tzinfo is None or silence.ends_at.tzinfo is None:
        raise SilenceRecordError(f"silence {silence_id!r} has times without a time zone")
    return silence_id, silence


@dataclass
class SilenceTopicStats:
    records_read: int = 0
    invalid_records: int = 0
    writes: int = 0
    write_failures: int = 0


class KafkaSilenceStore:
    """A :class:`alerting.silences.SilenceStore` backed by a compacted, one-partition topic.

    ``add`` and ``expire`` (the store protocol) apply at once and write in the background;
    the CLI uses `put` and `expire_now`, which return once the broker has the record.
    """

    def __init__(
        self,
        bootstrap: str,
        client_options: Mapping[str, Any],
        topic: str,
        *,
        replication: int = 1,
        clock: Clock = utc_now,
    ) -> None:
        self.topic = topic
        self.stats = SilenceTopicStats()
        self._bootstrap = bootstrap
        self._options = dict(client_options)
        self._replication = replication
        self._clock = clock
        self._silences: dict[str, Silence] = {}
        self._offsets: dict[str, int] = {}  # offset of the record each entry came from
        self._producer: Any = None
        self._consumer: Any = None
        self._follower: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()

    # -- the SilenceStore protocol -------------------------------------------------------------
    def silences(self) -> list[Silence]:
        return list(self._silences.values())

    def add(self, silence: Silence) -> None:
        self._silences[silence.id] = silence
        self._write_later(silence.id, silence)

    def expire(self, silence_id: str, now: datetime) -> None:
        ended = expired(self._silences[silence_id], now)
        if ended is None:
            del self._silences[silence_id]
        else:
            self._silences[silence_id] = ended
        self._write_later(silence_id, ended)

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self, follow: bool = True) -> None:
        """Create the topic if missing, read it to its end, then (``follow``) keep reading."""
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

        await self._ensure_topic()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", **self._options
        )
        await self._producer.start()
        tp = TopicPartition(self.topic, 0)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, group_id=None,
            **self._options,
        )  # fmt: skip
        await self._consumer.start()
        self._consumer.assign([tp])
        await self._consumer.seek_to_beginning(tp)
        end = (await self._consumer.end_offsets([tp]))[tp]
        while await self._consumer.position(tp) < end:
            await self._poll(1000)
        log.info("silences: %d read from %s", len(self._silences), self.topic)
        if follow:
            self._follower = asyncio.create_task(self._follow(), name="silences-follow")

    async def stop(self) -> None:
        await self.flush()
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()
        self._consumer = self._producer = None

    async def flush(self) -> None:
        """Wait for the writes `add` and `expire` started."""
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    # -- durable writes ------------------------------------------------------------------------
    def get(self, silence_id: str) -> Silence | None:
        return self._silences.get(silence_id)

    async def put(self, silence: Silence) -> None:
        """Write a silence (new or changed) and return once the broker has it."""
        offset = await self._send(silence.id, encode(silence))
        self._apply(silence.id, silence, offset)

    async def expire_now(self, silence_id: str, now: datetime | None = None) -> Silence | None:
        """End a silence now; returns it as ended, or None if it was deleted (never started).

        Raises ``KeyError`` for an unknown id.
        """
        ended = expired(self._silences[silence_id], now or self._clock())
        if ended is None:
            self._apply(silence_id, None, await self._send(silence_id, None))
        elif ended is not self._silences[silence_id]:
            self._apply(silence_id, ended, await self._send(silence_id, encode(ended)))
        return ended

    async def prune(self, older_than: timedelta = PRUNE_AFTER, now: datetime | None = None) -> int:
        """Delete (tombstone) silences that ended more than ``older_than`` ago."""
        cutoff = (now or self._clock()) - older_than
        old = [s.id for s in self._silences.values() if s.ends_at < cutoff]
        for silence_id in old:
            self._apply(silence_id, None, await self._send(silence_id, None))
        return len(old)

    # -- internals -----------------------------------------------------------------------------
    async def _ensure_topic(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, **self._options)
        await admin.start()
        try:
            if self.topic not in set(await admin.list_topics()):
                # As streams.topics creates it for the worker: one partition (every worker
                # reads all silences, in write order), compacted.
                new = NewTopic(self.topic, 1, self._replication, topic_configs=STATE_TOPIC_CONFIG)
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics([new])
        finally:
            await admin.close()

    async def _send(self, silence_id: str, value: bytes | None) -> int:
        if self._producer is None:
            raise RuntimeError("silence store not started")
        try:
            metadata = await self._producer.send_and_wait(
                self.topic, value, key=silence_id.encode(), partition=0
            )
        except Exception:
            self.stats.write_failures += 1
            raise
        self.stats.writes += 1
        return int(metadata.offset)

    def _write_later(self, silence_id: str, silence: Silence | None) -> None:
        value = None if silence is None else encode(silence)

        async def write() -> None:
            try:
                self._apply(silence_id, silence, await self._send(silence_id, value))
            except Exception:
                log.exception("silence %s not written to %s", silence_id, self.topic)

        task = asyncio.create_task(write(), name=f"silence-write-{silence_id}")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _apply(self, silence_id: str, silence: Silence | None, offset: int) -> None:
        # The follower may still deliver older records of this id; never go back to them.
        if offset < self._offsets.get(silence_id, -1):
            return
        self._offsets[silence_id] = offset
        if silence is None:
            self._silences.pop(silence_id, None)
        else:
            self._silences[silence_id] = silence

    async def _poll(self, timeout_ms: int) -> None:
        batch = await self._consumer.getmany(timeout_ms=timeout_ms)
        for messages in batch.values():
            for message in messages:
                self.stats.records_read += 1
                try:
                    silence_id, silence = decode(message.key, message.value)
                except SilenceRecordError as exc:
                    self.stats.invalid_records += 1
                    log.warning("%s at offset %s skipped: %s", self.topic, message.offset, exc)
                    continue
                self._apply(silence_id, silence, int(message.offset))

    async def _follow(self) -> None:
        while True:
            try:
                await self._poll(500)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading %s failed; retrying", self.topic)
                await asyncio.sleep(1.0)
