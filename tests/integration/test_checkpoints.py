"""Signed checkpoints in a real compacted topic: round trip, chunking, torn writes, forgery."""

from __future__ import annotations

import asyncio
import os
import uuid

import orjson
import pytest

from streams.checkpoints import CheckpointStore, sign
from streams.config import Settings
from streams.topics import ensure_topics_async

pytestmark = pytest.mark.integration

KEY = os.urandom(32)


def _store(kafka: str, topic: str, key: bytes = KEY, chunk_bytes: int = 1000) -> CheckpointStore:
    return CheckpointStore(kafka, {}, topic, key, chunk_bytes=chunk_bytes)


async def _topic(kafka: str) -> str:
    topic = f"llmpulse.state.{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka_bootstrap=kafka, topic_state=topic)
    await ensure_topics_async(settings, (topic,))
    return topic


async def _raw_send(kafka: str, topic: str, key: bytes, value: bytes) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, partition=0)
    finally:
        await producer.stop()


def test_round_trip_chunks_and_generations(kafka: str) -> None:
    async def run() -> None:
        topic = await _topic(kafka)
        writer = _store(kafka, topic)
        await writer.start()
        big = os.urandom(4500)  # five chunks of 1000 bytes
        await writer.save("metrics/p0", big)
        await writer.save("metrics/p1", b"small")
        await writer.save("metrics/p1", b"newer")  # generation 2, the other slot
        await writer.save("empty", b"")
        await writer.stop()

        reader = _store(kafka, topic)
        loaded = await reader.load()
        assert loaded == {"metrics/p0": big, "metrics/p1": b"newer", "empty": b""}
        assert await reader.load(["metrics/p1"]) == {"metrics/p1": b"newer"}
        assert reader.stats.rejected == {}

    asyncio.run(run())


def test_torn_write_keeps_previous_generation(kafka: str) -> None:
    async def run() -> None:
        topic = await _topic(kafka)
        store = _store(kafka, topic)
        await store.start()
        await store.save("state", b"A" * 2500)  # generation 1, slot 1
        await store.save("state", b"B" * 2500)  # generation 2, slot 0
        await store.stop()
        # A crash after the first chunk of generation 3 (slot 1) and before its manifest.
        await _raw_send(kafka, topic, b"c/1/0/state", (3).to_bytes(8, "big") + b"C" * 1000)
        assert await _store(kafka, topic).load() == {"state": b"B" * 2500}

    asyncio.run(run())


def test_forged_or_foreign_state_is_discarded_and_counted(kafka: str) -> None:
    async def run() -> None:
        topic = await _topic(kafka)
        store = _store(kafka, topic)
        await store.start()
        await store.save("genuine", b"payload")
        await store.stop()
        # A forged snapshot: chunk and manifest written by someone without the key.
        evil = b"\x80\x04crafted-pickle"
        await _raw_send(kafka, topic, b"c/1/0/forged", (1).to_bytes(8, "big") + evil)
        manifest = {
            "generation": 1,
            "slot": 1,
            "chunks": 1,
            "hmac": sign(b"x" * 32, "forged", 1, evil),
        }
        await _raw_send(kafka, topic, b"m/forged", orjson.dumps(manifest))
        await _raw_send(kafka, topic, b"m/garbage", b"not json")
        # Genuine bytes replaced under a valid manifest: the signature no longer matches.
        await _raw_send(kafka, topic, b"c/1/0/genuine", (1).to_bytes(8, "big") + b"tampered")

        reader = _store(kafka, topic)
        assert await reader.load() == {}
        assert reader.stats.rejected == {"bad_signature": 2, "bad_manifest": 1}
        # A worker with another key trusts nothing either.
        other = _store(kafka, topic, key=os.urandom(32))
        assert await other.load() == {}

    asyncio.run(run())
