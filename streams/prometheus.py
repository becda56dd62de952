"""The worker's Prometheus metrics: a collector that reads the counters the worker already keeps.

Nothing here runs on the ingest path. At scrape time `WorkerCollector` reads the ingestor's,
consumer's, sinks', stages' and receivers' plain counters and turns them into metric families
on a private registry (not prometheus_client's global one), served at ``/metrics``
(streams/web.py). The list of metrics is in docs/operations.md.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from alerting.state import AlertState
from streams.sink import BucketCounts, ClickHouseSink

if TYPE_CHECKING:
    from streams.alerts_stage import AlertsStage
    from streams.app import Runtime
    from streams.batch_consumer import BatchConsumer
    from streams.detections_runner import DetectionsRunner
    from streams.metrics_stage import MetricsStage

PREFIX = "llmpulse_"


def _counter(name: str, doc: str, values: Mapping[str, float] | float, label: str = "") -> Metric:
    """A counter family: one sample, or one per key of ``values`` under ``label``."""
    if isinstance(values, Mapping):
        return _labelled(CounterMetricFamily, name, doc, values, label)
    return CounterMetricFamily(PREFIX + name, doc, value=values)


def _labelled(
    kind: type[CounterMetricFamily | GaugeMetricFamily],
    name: str,
    doc: str,
    values: Mapping[str, float],
    label: str,
) -> Metric:
    family = kind(PREFIX + name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _gauge(name: str, doc: str, value: float) -> Metric:
    return GaugeMetricFamily(PREFIX + name, doc, value=value)


def _buckets(counts: BucketCounts) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs, as Prometheus histograms expose them."""
    out: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip((*counts.bounds, math.inf), counts.counts, strict=True):
        cumulative += count
        out.append(("+Inf" if math.isinf(bound) else repr(float(bound)), cumulative))
    return out


class WorkerCollector:
    """Reads a worker's `Runtime` at scrape time; see the module docstring.

    ``clock`` is the wall clock (seconds since the epoch) for the alert checkpoint's age.
    """

    def __init__(self, runtime: Runtime, clock: Callable[[], float] = time.time) -> None:
        self.runtime = runtime
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        runtime = self.runtime
        yield _gauge(
            "worker_ready",
            "1 once the worker consumes, 0 while it starts.",
            1.0 if runtime.ready.is_set() else 0.0,
        )
        counters = runtime.ingestor.counters
        yield _counter("events_in", "Records read, per source topic.", counters.events_in, "topic")
        yield _counter(
            "events_rejected",
            "Records dead-lettered, per reason code.",
            counters.rejected,
            "reason",
        )
        yield _counter(
            "dead_letter_failures",
            "Rejected records whose llm.calls.dlq send failed (left unacknowledged, replayed).",
            counters.dead_letter_failures,
        )
        yield from _consumer(runtime.consumer)
        yield from _sinks(runtime.sinks)
        yield from self._checkpoints()
        if runtime.metrics is not None:
            yield from _metrics_stage(runtime.metrics)
        if runtime.detections is not None:
            yield from _detections(runtime.detections)
        if runtime.alerts is not None:
            yield from _alerts(runtime.alerts)

    def _checkpoints(self) -> Iterator[Metric]:
        runtime = self.runtime
        ages: dict[str, float | None] = {}
        failures: dict[str, float] = {}
        if runtime.metrics is not None:
            ages["metrics"] = runtime.metrics.timer.age_s()
            failures["metrics"] = runtime.metrics.checkpoint_failures
        if runtime.detections is not None:
            ages["detections"] = runtime.detections.timer.age_s()
            failures["detections"] = runtime.detections.checkpoint_failures
        if runtime.alerts is not None:
            saved = runtime.alerts.last_checkpoint_wall
            ages["alerts"] = None if saved is None else max(0.0, self._clock() - saved)
            failures["alerts"] = runtime.alerts.checkpoint_failures
        age = GaugeMetricFamily(
            PREFIX + "checkpoint_age_seconds",
            "Seconds since the stage's state was last saved; absent until the first save.",
            labels=["stage"],
        )
        for stage, seconds in ages.items():
            if seconds is not None:
                age.add_metric([stage], seconds)
        yield age
        yield _counter("checkpoint_failures", "Failed state saves, per stage.", failures, "stage")
        stats = runtime.checkpoints.stats
        yield _counter("checkpoints_saved", "Snapshots written to the state topic.", stats.saved)
        yield _counter("checkpoint_written_bytes", "Snapshot bytes written.", stats.bytes_saved)
        yield _counter(
            "checkpoints_loaded", "Snapshots restored (signature verified).", stats.loaded
        )
        yield _counter(
            "checkpoints_rejected",
            "Snapshots discarded on restore, per reason (bad_signature, incomplete, "
            "bad_manifest, invalid_state).",
            stats.rejected,
            "reason",
        )


def _consumer(consumer: BatchConsumer) -> Iterator[Metric]:
    committed = GaugeMetricFamily(
        PREFIX + "consumer_lag_records",
        "Records between the committed offset and the log end, as of the last fetch.",
        labels=["topic", "partition"],
    )
    fetched = GaugeMetricFamily(
        PREFIX + "consumer_fetch_lag_records",
        "Records between the fetch position and the log end, as of the last fetch.",
        labels=["topic", "partition"],
    )
    for p in sorted(consumer.offsets(), key=lambda p: (p.topic, p.partition)):
        labels = [p.topic, str(p.partition)]
        if p.committed is not None:
            committed.add_metric(labels, max(0, p.highwater - p.committed))
        if p.fetched is not None:
            fetched.add_metric(labels, max(0, p.highwater - p.fetched))
    yield committed
    yield fetched
    stats = consumer.stats
    yield _counter("consumer_records", "Records fetched by the batch consumer.", stats.records)
    yield _counter("consumer_batches", "Batches handed to the agents.", stats.batches)
    yield _counter("consumer_commits", "Offset commits.", stats.commits)
    yield _counter(
        "consumer_commit_failures", "Offset commits that failed (retried).", stats.commit_failures
    )
    yield _counter("consumer_rebalances", "Rebalances that revoked partitions.", stats.rebalances)
    yield _gauge(
        "consumer_unacked_records",
        "Records fetched whose rows are not yet stored.",
        consumer.tracker.unacked(),
    )


def _sinks(sinks: Sequence[ClickHouseSink]) -> Iterator[Metric]:
    def per_table(read: Callable[[ClickHouseSink], float]) -> dict[str, float]:
        return {sink.table: read(sink) for sink in sinks}

    yield _counter(
        "sink_rows_written",
        "Rows written to ClickHouse, per table.",
        per_table(lambda s: s.stats.rows_written),
        "table",
    )
    yield _counter(
        "sink_retries",
        "Writes retried because the store was unavailable.",
        per_table(lambda s: s.stats.retries),
        "table",
    )
    yield _counter(
        "sink_rows_rejected",
        "Rows the store refused as data (dead-lettered).",
        per_table(lambda s: s.stats.rows_rejected),
        "table",
    )
    backpressure = GaugeMetricFamily(
        PREFIX + "sink_backpressure",
        "1 while the sink's queue is full or its store unavailable (consumption pauses).",
        labels=["table"],
    )
    buffered = GaugeMetricFamily(
        PREFIX + "sink_buffered_rows", "Rows waiting to be written.", labels=["table"]
    )
    rows = HistogramMetricFamily(
        PREFIX + "sink_batch_rows", "Rows per written batch.", labels=["table"]
    )
    seconds = HistogramMetricFamily(
        PREFIX + "sink_write_seconds",
        "Time to write one batch, retries included.",
        labels=["table"],
    )
    for sink in sorted(sinks, key=lambda s: s.table):
        stats = sink.stats
        backpressure.add_metric([sink.table], 1.0 if stats.backpressure else 0.0)
        buffered.add_metric([sink.table], sink.buffered_rows)
        rows.add_metric([sink.table], _buckets(stats.batch_rows), stats.batch_rows.total)
        seconds.add_metric([sink.table], _buckets(stats.write_seconds), stats.write_seconds.total)
    yield from (backpressure, buffered, rows, seconds)


def _metrics_stage(stage: MetricsStage) -> Iterator[Metric]:
    yield _counter(
        "metric_windows_published", "Closed metric windows published.", stage.outputs.published
    )
    yield _gauge(
        "metric_open_windows",
        "Metric windows (key x window) open in memory.",
        stage.metrics.open_window_count,
    )


def _detections(runner: DetectionsRunner) -> Iterator[Metric]:
    family = CounterMetricFamily(
        PREFIX + "detections",
        "Detections raised, per signal and detector.",
        labels=["signal", "detector"],
    )
    for key, count in sorted(runner.stage.detections.items()):
        signal, _, detector = key.rpartition("/")
        family.add_metric([signal, detector], count)
    yield family
    yield _counter(
        "detections_published", "Detections published to llm.detections.", runner.outputs.published
    )
    yield _counter(
        "detector_key_evictions",
        "Detector keys evicted at the per-partition cap.",
        runner.stage.evictions,
    )


def _alerts(alerts: AlertsStage) -> Iterator[Metric]:
    transitions = {state.value: alerts.transitions[state.value] for state in AlertState}
    yield _counter(
        "alert_transitions", "Alert state transitions, per new state.", transitions, "state"
    )
    instances = Counter(inst.state.value for inst in alerts.engine.instances())
    yield _labelled(
        GaugeMetricFamily,
        "alert_instances",
        "Alert instances, per state.",
        {state.value: instances[state.value] for state in AlertState},
        "state",
    )
    yield _counter(
        "alert_publish_failures",
        "Failed publishes of alert transitions to llm.alerts (retried).",
        alerts.publish_failures,
    )
    yield _counter(
        "alert_state_restore_failures",
        "Alert state that could not be restored.",
        len(alerts.restore_errors),
    )
    deliveries = CounterMetricFamily(
        PREFIX + "alert_deliveries",
        "Notification deliveries per receiver: ok, retried (retryable or rate limited) "
        "or failed (permanent).",
        labels=["receiver", "kind", "result"],
    )
    limited = CounterMetricFamily(
        PREFIX + "alert_deliveries_rate_limited",
        "Retried deliveries the receiver refused with Retry-After.",
        labels=["receiver", "kind"],
    )
    for name, receiver in sorted(alerts.receivers.items()):
        stats = receiver.stats
        deliveries.add_metric([name, stats.kind, "ok"], stats.sent)
        deliveries.add_metric([name, stats.kind, "retried"], stats.retryable + stats.rate_limited)
        deliveries.add_metric([name, stats.kind, "failed"], stats.permanent)
        limited.add_metric([name, stats.kind], stats.rate_limited)
    yield deliveries
    yield limited
    yield _gauge(
        "alert_notifications_queued", "Notifications waiting for delivery.", alerts.notifier.queued
    )
    yield _gauge(
        "alert_notification_dead_letters",
        "Notifications given up on (permanent errors), kept in state.",
        len(alerts.notifier.dead_letters),
    )


def metrics_registry(runtime: Runtime) -> CollectorRegistry:
    """A private registry holding only this worker's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(runtime))
    return registry
