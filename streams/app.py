"""The faust app: topics, agents, the ClickHouse runtime and the worker's web pages."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, cast

import faust
from mode import Service

from detectors import DetectorConfig
from streams.alerts_stage import AlertsStage
from streams.batch_consumer import BatchConsumer, batch_events
from streams.checkpoints import CheckpointStore
from streams.config import Settings
from streams.detections_runner import DetectionsRunner
from streams.detections_stage import DetectionsStage
from streams.ingest import Ingestor
from streams.metrics import MetricsConfig, PartitionedMetrics, PricingTable
from streams.metrics_stage import MetricsStage
from streams.migrations import migrate
from streams.rows import (
    ALERT_COLUMNS,
    CALL_COLUMNS,
    DEAD_LETTER_COLUMNS,
    DETECTION_COLUMNS,
    FEEDBACK_COLUMNS,
    METRIC_COLUMNS,
)
from streams.rows_topic import RowsTopicStore
from streams.silences_topic import KafkaSilenceStore
from streams.sink import ClickHouseSink, RetryPolicy
from streams.store import ClickHouseStore
from streams.web import register_pages

log = logging.getLogger(__name__)


def raw_topic(app: faust.App, settings: Settings, name: str) -> Any:
    """A topic of raw bytes with the configured partitions and replication."""
    return app.topic(
        name, partitions=settings.topic_partitions, replicas=settings.topic_replication,
        value_serializer="raw", key_serializer="raw",
    )  # fmt: skip


def _credentials(settings: Settings, options: dict[str, Any]) -> Any:
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
    """Owns the store and the sinks; starts before the agents consume and flushes on stop.

    With ``sink_target=kafka`` the store is the rows topic: every sink publishes its batches there
    for `llmpulse writer`, and this worker never opens ClickHouse.
    """

    def __init__(
        self, app: faust.App, settings: Settings, client_options: dict[str, Any], **kwargs: Any
    ) -> None:
        self.app = app
        self.settings = settings
        self.store: ClickHouseStore | RowsTopicStore
        if settings.sink_target == "kafka":
            self.store = RowsTopicStore.connect(settings, client_options)
        else:
            self.store = ClickHouseStore(settings.clickhouse_dsn, settings.clickhouse_database)
        retry = RetryPolicy(settings.sink_retry_initial_s, settings.sink_retry_max_s)
        sink_options: dict[str, Any] = {
            "batch_rows": settings.sink_batch_rows,
            "flush_interval_s": settings.sink_flush_interval_s,
            "max_pending_batches": settings.sink_max_pending_batches,
            "retry": retry,
        }
        self.dlq_topic = raw_topic(app, settings, settings.topic_dlq)
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
            client_options,
            settings.topic_state,
            settings.state_key_bytes(),
        )
        self.metrics: MetricsStage | None = None
        self.detections: DetectionsRunner | None = None
        observers: list[Callable[[Any, int, int], None]] = []
        if settings.metrics_enabled:
            self.metrics = self._metrics_stage(sink_options)
            observers.append(self.metrics.add_call)
            self.ingestor.on_feedback = self.metrics.add_feedback
            self.ingestor.hold = self.metrics.hold
            self.sinks = (*self.sinks, self.metrics.sink)
        if settings.detectors_enabled:
            self.detections = self._detections_runner(sink_options)
            observers.append(self.detections.add_call)
            self.sinks = (*self.sinks, self.detections.sink)
        self.ingestor.on_call = _fan_out(observers)
        self.silences: KafkaSilenceStore | None = None
        self.alerts: AlertsStage | None = None
        if settings.alerts_enabled:
            self.silences = KafkaSilenceStore(
                settings.kafka_bootstrap,
                client_options,
                settings.topic_silences,
                replication=settings.topic_replication,
            )
            alerts_sink = ClickHouseSink(self.store, "llm_alerts", ALERT_COLUMNS, **sink_options)
            alerts_sink.on_rejected = _log_rejected_row
            self.alerts = AlertsStage.from_rules_file(
                settings.alerts_rules_file,
                self.silences,
                self.checkpoints,
                self._publisher(settings.topic_alerts),
                alerts_sink,
                slack_base_url=settings.alerts_slack_base_url,
                checkpoint_interval_s=settings.checkpoint_interval_s,
            )
            self.sinks = (*self.sinks, alerts_sink)
            if self.metrics is not None:
                self.metrics.listeners.append(self.alerts.observe_metric)
            if self.detections is not None:
                self.detections.listeners.append(self.alerts.observe_detection)
        self.ready = asyncio.Event()
        self.consumer = BatchConsumer(
            {settings.topic_calls: app.channel(maxsize=4)},
            settings.consumer_group,
            {"bootstrap_servers": settings.kafka_bootstrap, **client_options},
            on_assigned=self.partitions_assigned,
            on_revoked=self.partitions_revoked,
        )
        super().__init__(**kwargs)

    def _detections_runner(self, sink_options: dict[str, Any]) -> DetectionsRunner:
        settings = self.settings
        hst = tuple(n.strip() for n in settings.detectors_hst_key_set.split(",") if n.strip())
        stage = DetectionsStage(
            DetectorConfig(),
            hst_key_set=hst or None,
            max_keys_per_partition=settings.detectors_max_keys_per_partition,
            source_topic=settings.topic_calls,
        )
        sink = ClickHouseSink(self.store, "llm_detections", DETECTION_COLUMNS, **sink_options)
        sink.on_rejected = _log_rejected_row
        return DetectionsRunner(
            stage,
            self.checkpoints,
            self._publisher(settings.topic_detections),
            sink,
            settings.detectors_checkpoint_interval_s,
        )

    def _publisher(self, name: str) -> Callable[[bytes, bytes], Awaitable[None]]:
        topic = raw_topic(self.app, self.settings, name)

        async def publish(key: bytes, value: bytes) -> None:
            delivery = await topic.send(key=key, value=value)
            await delivery

        return publish

    def _metrics_stage(self, sink_options: dict[str, Any]) -> MetricsStage:
        settings = self.settings
        config = MetricsConfig(
            window_seconds=settings.metrics_window_s,
            allowed_lateness_seconds=settings.metrics_lateness_s,
            idle_close_seconds=settings.metrics_idle_close_s,
        )
        pricing = PricingTable.load(overrides=settings.pricing_file)
        publish = self._publisher(settings.topic_metrics)
        sink = ClickHouseSink(self.store, "llm_metrics_1m", METRIC_COLUMNS, **sink_options)
        sink.on_rejected = _log_rejected_row
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
        if isinstance(self.store, RowsTopicStore):
            await self.store.start()  # no migrations: the writer owns the store
        else:
            await self._migrate(self.store)
        await self.dlq_topic.maybe_declare()
        await self.checkpoints.start()
        for sink in self.sinks:
            sink.start()
        if self.silences is not None and self.alerts is not None:
            await self.silences.start()
            await self.alerts.start()
        if self.metrics is not None:
            self.add_future(self._ticker(self.metrics.tick, 1.0))
        if self.detections is not None:
            self.add_future(self._ticker(self.detections.tick, 0.25))
        self.ready.set()

    async def _migrate(self, store: ClickHouseStore) -> None:
        delay = 0.5
        while True:
            try:
                applied = await store.run(migrate, store, self.settings.calls_ttl_days)
                break
            except Exception as exc:  # the store may be starting up; keep trying
                log.warning("migrations failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if applied:
            log.info("applied migrations %s", applied)

    async def _ticker(self, tick: Callable[[], Awaitable[None]], period: float) -> None:
        while not self.should_stop:
            await asyncio.sleep(period)
            try:
                await tick()
            except Exception:  # a failed tick is retried on the next one; state is intact
                log.exception("tick failed")

    async def on_stop(self) -> None:
        if self.alerts is not None:
            await self.alerts.stop()
        for sink in self.sinks:
            await sink.stop(flush_timeout=10.0)
        if self.metrics is not None:
            await self.metrics.checkpoint()
        if self.detections is not None:
            await self.detections.revoke(self.detections.stage.partitions)
        if self.silences is not None:
            await self.silences.stop()
        await self.checkpoints.stop()
        await self.store.aclose()

    async def partitions_assigned(self, topic: str, partitions: list[int]) -> None:
        """Restore state of newly assigned partitions before any of their records is fetched."""
        await self.ready.wait()
        if topic != self.settings.topic_calls:
            return
        if self.metrics is not None:
            await self.metrics.assign(partitions)
        if self.detections is not None:
            await self.detections.assign(partitions)

    async def partitions_revoked(self, topic: str, partitions: list[int]) -> None:
        """Store the rows of released partitions and checkpoint the state that counts them,
        so their acknowledgements are released before the consumer commits and lets go."""
        if not self.ready.is_set():
            return
        if topic == self.settings.topic_calls and self.detections is not None:
            await self.detections.revoke(partitions)
        await self.flush()
        if self.metrics is None:
            return
        if topic == self.settings.topic_calls:
            await self.metrics.revoke(partitions)
        else:
            await self.metrics.checkpoint()

    async def flush(self) -> None:
        for sink in self.sinks:
            await sink.flush()


def _fan_out(
    observers: list[Callable[[Any, int, int], None]],
) -> Callable[[Any, int, int], None] | None:
    """One callable for the ingest loop: the observer itself when there is only one."""
    if len(observers) < 2:
        return observers[0] if observers else None
    each = tuple(observers)

    def all_of(call: Any, partition: int, offset: int) -> None:
        for observe in each:
            observe(call, partition, offset)

    return all_of


async def _log_rejected_row(row: bytes, reason: str, ack: Any) -> None:
    """For derived rows (metrics, detections, alerts): their source is on a Kafka topic."""
    log.error("row refused by the store (%s): %s", reason[:300], row[:300])


async def _ack_only(row: bytes, reason: str, ack: Any) -> None:
    log.error("dead-letter row refused by the store (%s); the DLQ topic still has it", reason[:300])
    ack.ack()


def create_app(settings: Settings) -> faust.App:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Built once for every client of this worker: with TLS it holds an SSL context.
    client_options = settings.kafka_client_options()
    app = faust.App(
        # faust's own consumer reads the low-volume topics; llm.calls is read in batches by
        # streams/batch_consumer.py in group LLMPULSE_CONSUMER_GROUP, apart from this one.
        f"{settings.consumer_group}.app",
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=_credentials(settings, client_options),
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # Unacknowledged events are unwritten rows: they must be replayed, not waited for.
        stream_wait_empty=False,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_host=settings.web_host,
        value_serializer="raw",
        key_serializer="raw",
        autodiscover=False,
    )
    runtime = Runtime(app, settings, client_options)
    app.service(cast(Any, runtime))
    app.llmpulse_runtime = runtime  # type: ignore[attr-defined]

    (calls,) = runtime.consumer.channels.values()
    feedback_topic = raw_topic(app, settings, settings.topic_feedback)

    @app.agent(calls, name="llmpulse.ingest_calls")
    async def ingest_calls(stream: Any) -> None:
        await runtime.ready.wait()
        await runtime.ingestor.consume_calls(batch_events(stream))

    # Feedback is low-volume: faust's own consumer reads it, record by record.
    @app.agent(feedback_topic, name="llmpulse.ingest_feedback")
    async def ingest_feedback(stream: Any) -> None:
        await runtime.ready.wait()
        await runtime.ingestor.consume_feedback(stream.noack().events())

    def feedback_partitions(tps: Any) -> list[int]:
        return sorted(tp.partition for tp in tps if tp.topic == settings.topic_feedback)

    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        await runtime.partitions_revoked(settings.topic_feedback, feedback_partitions(revoked))

    app.on_partitions_revoked.connect(cast(Any, on_revoked))

    app.service(cast(Any, runtime.consumer))
    register_pages(app, runtime)
    return app
