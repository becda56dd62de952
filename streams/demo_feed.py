"""Feed `streams.demo_view.DemoState` while the demo runs.

Two loops: one polls the worker's ``/health`` and ``/live`` pages once a second (off the event
loop: they are plain blocking HTTP calls), the other follows ``llm.detections`` and
``llm.alerts`` from their end, so detections and alert transitions show as they happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from streams.config import Settings
from streams.demo_view import DemoState
from streams.top import LiveFetchError, fetch_live
from streams.top_view import LivePayloadError
from streams.worker_client import fetch_health

__all__ = ["TopicFollower", "poll_worker"]

log = logging.getLogger(__name__)


async def poll_worker(
    state: DemoState, host: str, port: int, stop: asyncio.Event, interval_s: float = 1.0
) -> None:
    """Refresh the state from ``/health`` and ``/live`` every ``interval_s`` until ``stop``."""
    base = f"http://{host}:{port}"
    while not stop.is_set():
        health = await asyncio.to_thread(fetch_health, host, port)
        if health is None:
            state.worker_problem = "not answering"
        else:
            state.observe_health(health, time.monotonic())
            try:
                state.observe_live(await asyncio.to_thread(fetch_live, f"{base}/live"))
            except (LiveFetchError, LivePayloadError) as exc:
                state.worker_problem = str(exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


class TopicFollower:
    """An aiokafka consumer (no group) positioned at the end of the detection and alert topics.

    `start` returns once the end offsets are fixed, so nothing published afterwards is missed.
    """

    def __init__(self, settings: Settings, on_record: Callable[[str, Any], None]) -> None:
        self.settings = settings
        self.on_record = on_record
        self.topics = (settings.topic_detections, settings.topic_alerts)
        self.undecodable = 0
        self._consumer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from streams.topics import ensure_topics_async

        await ensure_topics_async(self.settings, self.topics)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_auto_commit=False,
            **self.settings.kafka_client_options(),
        )
        await consumer.start()
        try:
            partitions = [
                TopicPartition(topic, p)
                for topic, p in await _partitions(self.settings, self.topics)
            ]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:  # resolve the end offsets now, before traffic starts
                await consumer.position(tp)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self._consumer
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=250)
            for records in batches.values():
                for record in records:
                    try:
                        value = orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        self.undecodable += 1
                        continue
                    self.on_record(record.topic, value)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


async def _partitions(settings: Settings, topics: tuple[str, ...]) -> list[tuple[str, int]]:
    """Every (topic, partition) of ``topics``, from the brokers' metadata."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, **settings.kafka_client_options()
    )
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    found = [(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    if {topic for topic, _ in found} != set(topics):
        raise RuntimeError(
            f"topics missing on the brokers: {sorted(set(topics) - dict(found).keys())}"
        )
    return sorted(found)
