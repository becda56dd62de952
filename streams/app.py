"""The faust app: topics, agents, the ClickHouse runtime and the worker's web pages."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, cast

import faust
from mode import Service

from streams.checkpoints import CheckpointStore
from streams.config import Settings
from streams.faust_transport import StepFirstTransport
from streams.ingest import Ingestor
from streams.metrics import MetricsConfig, PartitionedMetrics, PricingTable
from streams.metrics_stage import MetricsStage
from streams.migrations import migrate
from streams.rows import CALL_COLUMNS, DEAD_LETTER_COLUMNS, FEEDBACK_COLUMNS, METRIC_COLUMNS
from streams.sink import ClickHouseSink, RetryPolicy
from streams.store import ClickHouseStore
from streams.web import register_pages

log = logging.getLogger(__name__)


def _credentials(settings: Settings) -> Any:
    options = settings.kafka_client_options()
    protocol = settings.kafka_security_protocol
    context: ssl.SSLContext | None = options.get("ssl_context")
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            mechanism=options["sasl_mechanism"],
            ssl_context=context,
        )
    return None


class Runtime(Service):
    """Owns the store and the sinks; starts before the agents consume and flushes on stop."""

    def __init__(self, app: faust.App, settings: Settings, **kwargs: Any) -> None:
        self.app = app
        self.settings = settings
        self.store = ClickHouseStore(settings.clickhouse_dsn, settings.clickhouse_database)
        retry = RetryPolicy(settings.sink_retry_initial_s, settings.sink_retry_max_s)
        sink_options: dict[str, Any] = {
            "batch_rows": settings.sink_batch_rows,
            "flush_interval_s": settings.sink_flush_interval_s,
            "max_pending_batches": settings.sink_max_pending_batches,
            "retry": retry,
        }
        self.dlq_topic = app.topic(
            settings.topic_dlq, partitions=settings.topic_partitions,
            replicas=settings.topic_replication, value_serializer="raw", key_serializer="raw",
        )  # fmt: skip
        calls = ClickHouseSink(self.store, "llm_calls", CALL_COLUMNS, **sink_options)
        feedback = ClickHouseSink(self.store, "llm_feedback", FEEDBACK_COLUMNS, **sink_options)
        dead = ClickHouseSink(self.store, "llm_dead_letters", DEAD_LETTER_COLUMNS, **sink_options)
        self.ingestor = Ingestor(settings, calls, feedback, dead, self.dlq_topic)
        calls.on_rejected = self.ingestor.store_rejected
        feedback.on_rejected = self.ingestor.store_rejected
        dead.on_rejected = _ack_only
        self.sinks: tuple[ClickHouseSink, ...] = (calls, feedback, dead)
        self.checkpoints = CheckpointStore(
            settings.kafka_bootstrap,
            settings.kafka_client_options(),
            settings.topic_state,
            settings.state_key_bytes(),
        )
        self.metrics: MetricsStage | None = None
        if settings.metrics_enabled:
            self.metrics = self._metrics_stage(sink_options)
            self.ingestor.on_call = self.metrics.add_call
            self.ingestor.on_feedback = self.metrics.add_feedback
            self.ingestor.hold = self.metrics.hold
            self.ingestor.gate = self.metrics.gate
            self.sinks = (*self.sinks, self.metrics.sink)
        self.ready = asyncio.Event()
        super().__init__(**kwargs)

    def _metrics_stage(self, sink_options: dict[str, Any]) -> MetricsStage:
        settings = self.settings
        config = MetricsConfig(
            window_seconds=settings.metrics_window_s,
            allowed_lateness_seconds=settings.metrics_lateness_s,
            idle_close_seconds=settings.metrics_idle_close_s,
        )
        pricing = PricingTable.load(overrides=settings.pricing_file)
        topic = self.app.topic(
            settings.topic_metrics, partitions=settings.topic_partitions,
            replicas=settings.topic_replication, value_serializer="raw", key_serializer="raw",
        )  # fmt: skip

        async def publish(key: bytes, value: bytes) -> None:
            delivery = await topic.send(key=key, value=value)
            await delivery

        sink = ClickHouseSink(self.store, "llm_metrics_1m", METRIC_COLUMNS, **sink_options)
        sink.on_rejected = _log_rejected_metric
        return MetricsStage(
            PartitionedMetrics(config, pricing),
            self.checkpoints,
            settings.topic_calls,
            publish,
            sink,
            settings.checkpoint_interval_s,
            pricing,
        )

    async def on_start(self) -> None:
        delay = 0.5
        while True:
            try:
                applied = await self.store.run(migrate, self.store, self.settings.calls_ttl_days)
                break
            except Exception as exc:  # the store may be starting up; keep trying
                log.warning("migrations failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if applied:
            log.info("applied migrations %s", applied)
        await self.dlq_topic.maybe_declare()
        await self.checkpoints.start()
        for sink in self.sinks:
            sink.start()
        if self.metrics is not None:
            self.add_future(self._tick_metrics(self.metrics))
        self.ready.set()

    async def _tick_metrics(self, stage: MetricsStage) -> None:
        while not self.should_stop:
            await asyncio.sleep(1.0)
            try:
                await stage.tick()
            except Exception:  # a failed tick is retried on the next one; state is intact
                log.exception("metrics tick failed")

    async def on_stop(self) -> None:
        for sink in self.sinks:
            await sink.stop(flush_timeout=10.0)
        if self.metrics is not None:
            await self.metrics.checkpoint()
        await self.checkpoints.stop()
        await self.store.aclose()

    async def partitions_assigned(self, partitions: list[int]) -> None:
        if self.metrics is not None:
            await self.metrics.assign(partitions)

    async def partitions_revoked(self, partitions: list[int]) -> None:
        # Rows of revoked partitions must be stored (and acked) before faust commits and
        # hands the partitions to another worker; metric state is checkpointed with them.
        await self.flush()
        if self.metrics is not None:
            await self.metrics.revoke(partitions)

    async def flush(self) -> None:
        for sink in self.sinks:
            await sink.flush()


async def _log_rejected_metric(row: bytes, reason: str, ack: Any) -> None:
    log.error("metric row refused by the store (%s): %s", reason[:300], row[:300])


async def _ack_only(row: bytes, reason: str, ack: Any) -> None:
    log.error("dead-letter row refused by the store (%s); the DLQ topic still has it", reason[:300])
    ack.ack()


class LLMPulseApp(faust.App):
    """faust's App with the step-first consumer (see streams/faust_transport.py)."""

    def _new_transport(self) -> Any:
        return StepFirstTransport(self.conf.broker_consumer, self)


def create_app(settings: Settings) -> faust.App:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = LLMPulseApp(
        settings.consumer_group,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_max_poll_records=2000,
        stream_buffer_maxsize=8192,
        # Unacknowledged events are unwritten rows: they must be replayed, not waited for.
        stream_wait_empty=False,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_host=settings.web_host,
        value_serializer="raw",
        key_serializer="raw",
        autodiscover=False,
    )
    runtime = Runtime(app, settings)
    app.service(cast(Any, runtime))
    app.llmpulse_runtime = runtime  # type: ignore[attr-defined]

    calls_topic = app.topic(
        settings.topic_calls, partitions=settings.topic_partitions,
        replicas=settings.topic_replication, value_serializer="raw", key_serializer="raw",
    )  # fmt: skip
    feedback_topic = app.topic(
        settings.topic_feedback, partitions=settings.topic_partitions,
        replicas=settings.topic_replication, value_serializer="raw", key_serializer="raw",
    )  # fmt: skip

    @app.agent(calls_topic, name="llmpulse.ingest_calls")
    async def ingest_calls(stream: Any) -> None:
        await runtime.ready.wait()
        await runtime.ingestor.consume_calls(stream.noack().events())

    @app.agent(feedback_topic, name="llmpulse.ingest_feedback")
    async def ingest_feedback(stream: Any) -> None:
        await runtime.ready.wait()
        await runtime.ingestor.consume_feedback(stream.noack().events())

    def calls_partitions(tps: Any) -> list[int]:
        return sorted(tp.partition for tp in tps if tp.topic == settings.topic_calls)

    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        if runtime.ready.is_set():
            await runtime.partitions_revoked(calls_partitions(revoked))

    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        await runtime.ready.wait()
        await runtime.partitions_assigned(calls_partitions(assigned))

    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    app.on_partitions_assigned.connect(cast(Any, on_assigned))
    register_pages(app, runtime)
    return app
