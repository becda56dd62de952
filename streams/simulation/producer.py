"""Publish a simulated stream to Kafka: calls keyed by app, feedback when it is due.

In real time the stream is paced by its event offsets; otherwise it is sent as fast as the
producer takes it. Feedback is held until the simulated clock reaches its timestamp, so
``llm.feedback`` trails ``llm.calls`` as it does in production.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from streams.config import Settings
from streams.simulation.labels import IncidentLabel, LabelRecorder
from streams.simulation.scenario import Scenario
from streams.simulation.traffic import generate

__all__ = ["PublishResult", "publish_scenario"]

_IN_FLIGHT = 2000  # sends awaited together; bounds memory at high rates


@dataclass(frozen=True, slots=True)
class PublishResult:
    calls: int
    feedback: int
    seconds: float
    labels: list[IncidentLabel]


async def publish_scenario(
    scenario: Scenario,
    settings: Settings,
    *,
    start: datetime,
    realtime: bool,
    calls_topic: str | None = None,
    feedback_topic: str | None = None,
    run_id: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> PublishResult:
    """Send every call (and its feedback) of ``scenario``; return counts and the labels."""
    from aiokafka import AIOKafkaProducer

    calls_topic = calls_topic or settings.topic_calls
    feedback_topic = feedback_topic or settings.topic_feedback
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, **settings.kafka_client_options()
    )
    await producer.start()
    recorder = LabelRecorder(scenario, start)
    # (epoch due, tie-break, feedback, key): feedback is keyed like its call, by app, so that
    # both land on the same partition number (co-partitioned for any join by partition).
    pending: list[tuple[float, int, dict[str, Any], bytes]] = []
    in_flight: list[asyncio.Future[Any]] = []
    calls = feedback = 0
    started = time.monotonic()

    async def send(topic: str, value: dict[str, Any], key: bytes) -> None:
        in_flight.append(await producer.send(topic, orjson.dumps(value), key=key))
        if len(in_flight) >= _IN_FLIGHT:
            await asyncio.gather(*in_flight)
            in_flight.clear()

    async def release(until: float) -> int:
        sent = 0
        while pending and pending[0][0] <= until:
            _, _, item, key = heapq.heappop(pending)
            await send(feedback_topic, item, key)
            sent += 1
        return sent

    async def pace(offset_s: float) -> None:
        ahead = offset_s - (time.monotonic() - started)
        if realtime and ahead > 0:
            await asyncio.sleep(ahead)

    try:
        epoch = start.timestamp()
        for event in generate(scenario, start, run_id=run_id):
            await pace(event.offset_s)
            recorder.observe(event)
            feedback += await release(epoch + event.offset_s)
            key = event.call["app"].encode()
            await send(calls_topic, event.call, key)
            calls += 1
            for item in event.feedback:
                due = datetime.fromisoformat(item["timestamp"]).timestamp()
                heapq.heappush(pending, (due, calls, item, key))
            if progress is not None and calls % 10_000 == 0:
                progress(calls)
        while pending:
            await pace(pending[0][0] - epoch)
            feedback += await release(pending[0][0])
        await asyncio.gather(*in_flight)
        await producer.flush()
    finally:
        await producer.stop()
    return PublishResult(calls, feedback, time.monotonic() - started, recorder.labels())
