"""Signed snapshots of in-memory state in a compacted Kafka topic: the workers' changelog.

A snapshot is a named byte string (metric windows of one partition, detectors of one key
set, alert instances). It is written as chunks of at most ``chunk_bytes`` and then a
manifest, all keyed so compaction keeps only the newest of each. Chunks alternate between
two slots, so a crash while writing generation N+1 leaves generation N whole.

The manifest carries an HMAC-SHA256 over the snapshot's name, generation and bytes, keyed
by a secret from the environment. `CheckpointStore.load` returns only snapshots whose
HMAC verifies; anything else is discarded and counted in ``stats.rejected``, and its
bytes are never parsed, let alone unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

log = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 512 * 1024
_MANIFEST = b"m"
_CHUNK = b"c"


class CheckpointError(RuntimeError):
    """A snapshot could not be written."""


@dataclass
class CheckpointStats:
    saved: int = 0
    bytes_saved: int = 0
    loaded: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def reject(self, name: str, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        log.warning("checkpoint %r discarded: %s", name, reason)


def sign(key: bytes, name: str, generation: int, payload: bytes) -> str:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(name.encode())
    mac.update(b"\0")
    mac.update(str(generation).encode())
    mac.update(b"\0")
    mac.update(payload)
    return mac.hexdigest()


def _manifest_key(name: str) -> bytes:
    return _MANIFEST + b"/" + name.encode()


def _chunk_key(name: str, slot: int, index: int) -> bytes:
    return _CHUNK + b"/" + f"{slot}/{index}/".encode() + name.encode()


def assemble(
    key: bytes,
    records: dict[bytes, bytes | None],
    stats: CheckpointStats,
    wanted: set[str] | None = None,
) -> dict[str, tuple[int, bytes]]:
    """Verified ``name -> (generation, payload)`` from the newest record of each key."""
    out: dict[str, tuple[int, bytes]] = {}
    for record_key, value in records.items():
        if not record_key.startswith(_MANIFEST + b"/") or value is None:
            continue
        name = record_key[2:].decode("utf-8", errors="replace")
        if wanted is not None and name not in wanted:
            continue
        try:
            manifest = orjson.loads(value)
            generation, slot, chunks = (int(manifest[k]) for k in ("generation", "slot", "chunks"))
            digest = str(manifest["hmac"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            stats.reject(name, "bad_manifest")
            continue
        parts = [records.get(_chunk_key(name, slot, i)) for i in range(max(chunks, 0))]
        payload = b"".join(part[8:] for part in parts if part is not None)
        complete = all(
            part is not None and int.from_bytes(part[:8], "big") == generation for part in parts
        )
        if not complete:
            stats.reject(name, "incomplete")
            continue
        if not hmac.compare_digest(sign(key, name, generation, payload), digest):
            stats.reject(name, "bad_signature")
            continue
        out[name] = (generation, payload)
        stats.loaded += 1
    return out


class CheckpointStore:
    """Reads and writes signed snapshots in one compacted topic (one partition).

    Parameters
    ----------
    bootstrap, client_options
        Where the brokers are and how to reach them (see `Settings.kafka_client_options`).
    topic
        The compacted topic, e.g. ``llmpulse.state``; `streams.topics` creates it.
    key
        The HMAC key. It must be the same on every worker of a consumer group.
    """

    def __init__(
        self,
        bootstrap: str,
        client_options: dict[str, Any],
        topic: str,
        key: bytes,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        if len(key) < 16:
            raise ValueError("the checkpoint HMAC key must be at least 16 bytes")
        self.topic = topic
        self.stats = CheckpointStats()
        self._bootstrap = bootstrap
        self._options = client_options
        self._key = key
        self._chunk_bytes = chunk_bytes
        self._generations: dict[str, int] = {}
        self._producer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            # No compression: gzip in Python costs ~170 ms per 5 MB on the event loop.
            max_request_size=2 * self._chunk_bytes + 65536,
            **self._options,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def save(self, name: str, payload: bytes) -> None:
        """Write one snapshot; returns once the broker has every chunk and the manifest."""
        if self._producer is None:
            raise CheckpointError("checkpoint store not started")
        generation = self._generations.get(name, 0) + 1
        slot = generation % 2
        size = self._chunk_bytes
        chunks = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
        prefix = generation.to_bytes(8, "big")
        try:
            for index, chunk in enumerate(chunks):
                await self._producer.send(
                    self.topic, prefix + chunk, key=_chunk_key(name, slot, index), partition=0
                )
            manifest = {
                "generation": generation,
                "slot": slot,
                "chunks": len(chunks),
                "bytes": len(payload),
                "hmac": sign(self._key, name, generation, payload),
            }
            future = await self._producer.send(
                self.topic, orjson.dumps(manifest), key=_manifest_key(name), partition=0
            )
            await future
        except Exception as exc:
            raise CheckpointError(f"could not write checkpoint {name!r}: {exc}") from exc
        self._generations[name] = generation
        self.stats.saved += 1
        self.stats.bytes_saved += len(payload)

    async def save_many(self, snapshots: dict[str, bytes]) -> None:
        """`save` each snapshot in turn; raises `CheckpointError` at the first that fails."""
        for name, payload in snapshots.items():
            await self.save(name, payload)

    async def load(self, names: Iterable[str] | None = None) -> dict[str, bytes]:
        """Read the topic to its end; the verified payload of each wanted snapshot."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        wanted = None if names is None else set(names)
        tp = TopicPartition(self.topic, 0)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            group_id=None,
            max_partition_fetch_bytes=4 * self._chunk_bytes,
            fetch_max_bytes=16 * self._chunk_bytes,
            **self._options,
        )
        await consumer.start()
        records: dict[bytes, bytes | None] = {}
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for message in batch.get(tp, []):
                    if message.key is not None:
                        records[message.key] = message.value
        finally:
            await consumer.stop()
        out: dict[str, bytes] = {}
        for name, (generation, payload) in assemble(self._key, records, self.stats, wanted).items():
            # The next save goes to the other slot than the newest verified snapshot.
            self._generations[name] = max(self._generations.get(name, 0), generation)
            out[name] = payload
        return out
