"""Detector state through a real signed checkpoint topic: round trip, and a forged pickle."""

from __future__ import annotations

import asyncio
import os
import pickle
import uuid
from pathlib import Path

import pytest

from detectors import DetectorConfig
from streams.checkpoints import CheckpointStore
from streams.config import Settings
from streams.detections_stage import DetectionRecord, DetectionsStage
from streams.topics import ensure_topics_async
from tests.unit.detection_fakes import NOW, run, stream

pytestmark = pytest.mark.integration

KEY = os.urandom(32)


async def _store(kafka: str, key: bytes = KEY, topic: str | None = None) -> CheckpointStore:
    if topic is None:
        topic = f"llmpulse.state.{uuid.uuid4().hex[:8]}"
        await ensure_topics_async(Settings(kafka_bootstrap=kafka, topic_state=topic), (topic,))
    store = CheckpointStore(kafka, {}, topic, key, chunk_bytes=64 * 1024)
    await store.start()
    return store


def _stage() -> DetectionsStage:
    return DetectionsStage(DetectorConfig(), source_topic="llm.calls.test", clock=lambda: NOW)


def test_detector_state_round_trips_through_kafka(kafka: str) -> None:
    events = stream(3, 2500, slow={"bot": 1000, "search": 1800})
    expected = _stage()
    for partition in (0, 1):
        expected.assign(partition, None)
    uninterrupted = run(expected, events)

    async def checkpoint_and_restore() -> tuple[list[DetectionRecord], DetectionsStage]:
        writer = await _store(kafka)
        first = _stage()
        for partition in (0, 1):
            first.assign(partition, None)
        published = run(first, events[:3000])
        assert published == uninterrupted[: len(published)]
        _, snapshots = first.take_checkpoint()
        assert max(len(s) for s in snapshots.values()) > 64 * 1024  # several chunks
        for name, payload in snapshots.items():
            await writer.save(name, payload)
        await writer.stop()

        reader = await _store(kafka, topic=writer.topic)
        restored = _stage()
        loaded = await reader.load([restored.checkpoint_name(p) for p in (0, 1)])
        await reader.stop()
        assert loaded == snapshots and reader.stats.rejected == {}
        for partition in (0, 1):
            restored.assign(partition, loaded[restored.checkpoint_name(partition)])
        return published, restored

    published, restored = asyncio.run(checkpoint_and_restore())
    assert published + run(restored, events) == uninterrupted
    assert restored.replayed_skipped == 3000


class _CreatesMarker:
    """Unpickling this calls ``Path.touch(marker)``: a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (self.marker,)


def test_a_forged_malicious_snapshot_is_discarded_and_never_unpickled(
    kafka: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"version": 1, "payload": _CreatesMarker(marker)})
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_CreatesMarker(probe)))
    assert probe.exists()  # the payload would run if it were ever unpickled

    async def forge_then_load() -> tuple[dict[str, bytes], dict[str, int]]:
        stage = _stage()
        name = stage.checkpoint_name(0)
        forger = await _store(kafka, key=os.urandom(32))  # the wrong key
        await forger.save(name, evil)
        await forger.stop()
        reader = await _store(kafka, topic=forger.topic)
        loaded = await reader.load([name])
        await reader.stop()
        stage.assign(0, loaded.get(name))  # what the worker does: fresh when nothing verifies
        assert stage.partitions == (0,) and stage.restored == 0
        return loaded, reader.stats.rejected

    loaded, rejected = asyncio.run(forge_then_load())
    assert loaded == {}
    assert rejected == {"bad_signature": 1}
    assert not marker.exists()
