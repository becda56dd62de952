"""Create the worker's topics when they are missing, before any consumer subscribes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from streams.config import Settings

log = logging.getLogger(__name__)


STATE_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "max.message.bytes": str(4 * 1024 * 1024),
    "segment.ms": str(60 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.1",
}


def worker_topics(settings: Settings) -> tuple[str, ...]:
    topics: tuple[str, ...] = (
        settings.topic_calls,
        settings.topic_feedback,
        settings.topic_dlq,
        settings.topic_metrics,
        settings.topic_detections,
        settings.topic_alerts,
        settings.topic_silences,
        settings.topic_state,
    )
    if settings.sink_target == "kafka":
        topics += (settings.topic_rows,)
    return topics


def rows_dlq_topic(settings: Settings) -> str:
    """Where the writer sends rows the store refuses: ``<topic_rows>.dlq``, framed like
    ``topic_rows`` so that they can be replayed into it once the cause is fixed."""
    return f"{settings.topic_rows}.dlq"


def writer_topics(settings: Settings) -> tuple[str, ...]:
    return (settings.topic_rows, rows_dlq_topic(settings))


def _new_topic(settings: Settings, name: str) -> Any:
    from aiokafka.admin import NewTopic

    if name in (settings.topic_state, settings.topic_silences):
        # One partition: every worker reads the whole changelog on (re)assignment.
        return NewTopic(name, 1, settings.topic_replication, topic_configs=STATE_TOPIC_CONFIG)
    return NewTopic(name, settings.topic_partitions, settings.topic_replication)


async def ensure_topics_async(settings: Settings, names: tuple[str, ...]) -> list[str]:
    """Create each missing topic with the configured partitions; return the ones created."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, **settings.kafka_client_options()
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        if missing:
            new = [_new_topic(settings, name) for name in missing]
            # another worker may win the race to create them
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
            log.info("created topics %s", missing)
        return missing
    finally:
        await admin.close()


def ensure_topics(settings: Settings, names: tuple[str, ...] | None = None) -> list[str]:
    return asyncio.run(ensure_topics_async(settings, names or worker_topics(settings)))
