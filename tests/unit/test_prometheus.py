"""/metrics reads the worker's own counters at scrape time and exposes exactly those values."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from alerting.notification import PermanentDeliveryError, RetryableDeliveryError
from alerting.state import AlertState
from streams.alert_delivery import CountingReceiver
from streams.batch_consumer import BatchConsumer, ConsumerStats
from streams.checkpoints import CheckpointStats
from streams.ingest import DeadLetterAck, IngestCounters
from streams.prometheus import WorkerCollector, metrics_registry
from streams.sink import BucketCounts, ClickHouseSink, RetryPolicy

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class TP(NamedTuple):
    topic: str
    partition: int


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int


def scrape(runtime: Any, clock: Any = None) -> Samples:
    registry = metrics_registry(runtime)
    if clock is not None:  # the same collector with a fixed wall clock
        registry = type(registry)()
        registry.register(WorkerCollector(runtime, clock=clock))
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def only(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


def labels(**kv: str) -> frozenset[tuple[str, str]]:
    return frozenset(kv.items())


# -- fakes -----------------------------------------------------------------------------------
class MemoryStore:
    async def run(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    def insert_json_rows(self, table: str, columns: Any, body: bytes, token: Any = None) -> None:
        pass


class FakeKafka:
    """What `BatchConsumer` asks of an aiokafka consumer: one fetch, then the loop is stopped."""

    def __init__(self, batch: dict[TP, list[Record]], highwater: dict[TP, int]) -> None:
        self.batch = batch
        self.highwater_by_tp = highwater
        self.fetches = 0
        self.committed: list[dict[TP, int]] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TP, list[Record]]:
        self.fetches += 1
        if self.fetches > 1:
            raise asyncio.CancelledError
        return self.batch

    def assignment(self) -> set[TP]:
        return set(self.highwater_by_tp)

    def highwater(self, tp: TP) -> int | None:
        return self.highwater_by_tp.get(tp)

    async def commit(self, offsets: dict[TP, int]) -> None:
        self.committed.append(offsets)


class ScriptedReceiver:
    """Answers each send with the next outcome: None (accepted) or an exception."""

    name = "oncall"
    send_resolved = True
    min_interval = 0.0

    def __init__(self, outcomes: list[Exception | None]) -> None:
        self.outcomes = outcomes

    def pace_key(self, notification: Any) -> str:
        return "slack:#oncall"

    async def send(self, notification: Any, ref: Any) -> Any:
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return None


def consumer_after_one_fetch() -> BatchConsumer:
    async def hook(topic: str, partitions: list[int]) -> None:
        pass

    async def run() -> BatchConsumer:
        channel: asyncio.Queue[Any] = asyncio.Queue()
        consumer = BatchConsumer({"llm.calls": channel}, "g", {}, hook, hook)
        p0, p1, p2 = TP("llm.calls", 0), TP("llm.calls", 1), TP("llm.calls", 2)
        records = [Record("llm.calls", 0, o) for o in range(100, 110)]
        kafka = FakeKafka({p0: records, p1: [Record("llm.calls", 1, 40)]}, {p0: 120, p1: 41, p2: 5})
        consumer.consumer = kafka
        consumer._restored.set()
        with pytest.raises(asyncio.CancelledError):
            await consumer._fetch_loop()
        batch = channel.get_nowait()
        for ack in batch.records[:4]:  # rows 100..103 of partition 0 are stored
            ack.ack()
        await consumer._commit()
        assert kafka.committed == [{p0: 104}]
        return consumer

    return asyncio.run(run())


def sink(table: str) -> ClickHouseSink:
    return ClickHouseSink(
        MemoryStore(),
        table,
        ["x"],
        batch_rows=3,
        retry=RetryPolicy(0.01, 0.02),  # type: ignore[arg-type]
    )


def fake_runtime(**overrides: Any) -> SimpleNamespace:
    ready = asyncio.Event()
    ready.set()
    counters = IngestCounters()
    counters.events_in.update({"llm.calls": 12, "llm.feedback": 3})
    counters.rejected.update({"bad_json": 2, "schema": 1})
    checkpoints = SimpleNamespace(
        stats=CheckpointStats(saved=4, bytes_saved=2048, loaded=2, rejected={"bad_signature": 1})
    )
    idle_consumer = BatchConsumer({}, "g", {}, None, None)  # type: ignore[arg-type]
    runtime = SimpleNamespace(
        ready=ready,
        ingestor=SimpleNamespace(counters=counters),
        consumer=idle_consumer,
        sinks=(),
        checkpoints=checkpoints,
        metrics=None,
        detections=None,
        alerts=None,
    )
    for key, value in overrides.items():
        setattr(runtime, key, value)
    return runtime


# -- tests -----------------------------------------------------------------------------------
def test_ingest_counters_and_readiness() -> None:
    runtime = fake_runtime()
    samples = scrape(runtime)
    assert only(samples, "llmpulse_events_in_total") == {
        labels(topic="llm.calls"): 12,
        labels(topic="llm.feedback"): 3,
    }
    assert only(samples, "llmpulse_events_rejected_total") == {
        labels(reason="bad_json"): 2,
        labels(reason="schema"): 1,
    }
    assert samples["llmpulse_worker_ready", labels()] == 1
    runtime.ingestor.counters.events_in["llm.calls"] += 5
    runtime.ready.clear()
    again = scrape(runtime)  # read at scrape time: no copies of the counters are kept
    assert again["llmpulse_events_in_total", labels(topic="llm.calls")] == 17
    assert again["llmpulse_worker_ready", labels()] == 0


def test_a_failed_dead_letter_send_is_counted_and_not_acknowledged() -> None:
    acked: list[int] = []

    async def run(counters: IngestCounters) -> None:
        event = SimpleNamespace(message=SimpleNamespace(offset=7), ack=lambda: acked.append(7))
        delivery = asyncio.get_running_loop().create_future()
        DeadLetterAck(event, delivery, counters).ack()  # its llm_dead_letters row is stored
        delivery.set_exception(RuntimeError("broker down"))
        await asyncio.sleep(0)  # done callbacks run

    runtime = fake_runtime()
    asyncio.run(run(runtime.ingestor.counters))
    assert acked == []
    assert scrape(runtime)["llmpulse_dead_letter_failures_total", labels()] == 1


def test_nothing_is_registered_globally() -> None:
    before = set(REGISTRY._collector_to_names)
    metrics_registry(fake_runtime())
    assert set(REGISTRY._collector_to_names) == before


def test_lag_per_partition_from_committed_and_fetched_offsets() -> None:
    consumer = consumer_after_one_fetch()
    samples = scrape(fake_runtime(consumer=consumer))
    # p0: log end 120, committed 104 (4 of 10 fetched rows stored), fetched up to 110.
    # p1: nothing committed yet, so the resume point (40) counts; p2: nothing fetched at all.
    assert only(samples, "llmpulse_consumer_lag_records") == {
        labels(topic="llm.calls", partition="0"): 16,
        labels(topic="llm.calls", partition="1"): 1,
    }
    assert only(samples, "llmpulse_consumer_fetch_lag_records") == {
        labels(topic="llm.calls", partition="0"): 10,
        labels(topic="llm.calls", partition="1"): 0,
    }
    assert consumer.lag() == {"llm.calls:0": 10, "llm.calls:1": 0}
    assert samples["llmpulse_consumer_records_total", labels()] == 11
    assert samples["llmpulse_consumer_batches_total", labels()] == 2
    assert samples["llmpulse_consumer_commits_total", labels()] == 1
    assert samples["llmpulse_consumer_unacked_records", labels()] == 7
    assert consumer.stats == ConsumerStats(batches=2, records=11, commits=1)


def test_sink_counters_histograms_and_backpressure() -> None:
    calls, alerts = sink("llm_calls"), sink("llm_alerts")

    async def write() -> None:
        calls.start()
        for i in range(7):  # batches of 3, 3 and (flushed) 1
            await calls.add(b"[%d]" % i)
        await calls.flush()
        await calls.stop()

    asyncio.run(write())
    calls.stats.retries = 5
    alerts.stats.backpressure = True
    samples = scrape(fake_runtime(sinks=(calls, alerts)))
    assert only(samples, "llmpulse_sink_rows_written_total") == {
        labels(table="llm_calls"): 7,
        labels(table="llm_alerts"): 0,
    }
    assert samples["llmpulse_sink_retries_total", labels(table="llm_calls")] == 5
    assert only(samples, "llmpulse_sink_backpressure") == {
        labels(table="llm_calls"): 0,
        labels(table="llm_alerts"): 1,
    }
    rows = {
        dict(k)["le"]: v
        for k, v in only(samples, "llmpulse_sink_batch_rows_bucket").items()
        if dict(k)["table"] == "llm_calls"
    }
    assert (rows["1.0"], rows["10.0"], rows["+Inf"]) == (1, 3, 3)
    assert samples["llmpulse_sink_batch_rows_sum", labels(table="llm_calls")] == 7
    assert samples["llmpulse_sink_batch_rows_count", labels(table="llm_calls")] == 3
    assert samples["llmpulse_sink_write_seconds_count", labels(table="llm_calls")] == 3
    assert samples["llmpulse_sink_write_seconds_bucket", labels(table="llm_calls", le="+Inf")] == 3


def test_bucket_counts_put_a_value_on_its_bound_into_that_bucket() -> None:
    counts = BucketCounts((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        counts.observe(value)
    assert counts.counts == [2, 2, 1]
    assert counts.total == pytest.approx(8.65)


def test_stage_checkpoints_detections_and_alerts() -> None:
    metrics = SimpleNamespace(
        timer=SimpleNamespace(age_s=lambda: 2.5),
        checkpoint_failures=1,
        outputs=SimpleNamespace(published=40),
        metrics=SimpleNamespace(open_window_count=6),
    )
    detections = SimpleNamespace(
        timer=SimpleNamespace(age_s=lambda: None),  # not saved yet: no age sample
        checkpoint_failures=0,
        outputs=SimpleNamespace(published=3),
        stage=SimpleNamespace(
            detections=Counter({"latency_ms/page_hinkley": 2, "cost_usd/adwin": 1}), evictions=4
        ),
    )
    alerts = SimpleNamespace(
        last_checkpoint_wall=1_000.0,
        checkpoint_failures=2,
        transitions=Counter({"pending": 2, "firing": 2, "resolved": 1}),
        engine=SimpleNamespace(
            instances=lambda: [SimpleNamespace(state=s) for s in (AlertState.FIRING,) * 2]
        ),
        publish_failures=0,
        restore_errors=["alerts/engine: ValueError: version 7 is not 1"],
        receivers={},
        notifier=SimpleNamespace(queued=1, dead_letters=[{"error": "channel_not_found"}]),
    )
    runtime = fake_runtime(metrics=metrics, detections=detections, alerts=alerts)
    samples = scrape(runtime, clock=lambda: 1_012.0)
    assert only(samples, "llmpulse_checkpoint_age_seconds") == {
        labels(stage="metrics"): 2.5,
        labels(stage="alerts"): 12.0,
    }
    assert only(samples, "llmpulse_checkpoint_failures_total") == {
        labels(stage="metrics"): 1,
        labels(stage="detections"): 0,
        labels(stage="alerts"): 2,
    }
    assert samples["llmpulse_checkpoints_saved_total", labels()] == 4
    assert samples["llmpulse_checkpoint_written_bytes_total", labels()] == 2048
    assert samples["llmpulse_checkpoints_loaded_total", labels()] == 2
    assert only(samples, "llmpulse_checkpoints_rejected_total") == {
        labels(reason="bad_signature"): 1
    }
    assert samples["llmpulse_metric_windows_published_total", labels()] == 40
    assert samples["llmpulse_metric_open_windows", labels()] == 6
    assert only(samples, "llmpulse_detections_total") == {
        labels(signal="latency_ms", detector="page_hinkley"): 2,
        labels(signal="cost_usd", detector="adwin"): 1,
    }
    assert samples["llmpulse_detections_published_total", labels()] == 3
    assert samples["llmpulse_detector_key_evictions_total", labels()] == 4
    assert only(samples, "llmpulse_alert_transitions_total") == {
        labels(state="inactive"): 0,
        labels(state="pending"): 2,
        labels(state="firing"): 2,
        labels(state="resolved"): 1,
    }
    assert only(samples, "llmpulse_alert_instances") == {
        labels(state="inactive"): 0,
        labels(state="pending"): 0,
        labels(state="firing"): 2,
        labels(state="resolved"): 0,
    }
    assert samples["llmpulse_alert_state_restore_failures_total", labels()] == 1
    assert samples["llmpulse_alert_notifications_queued", labels()] == 1
    assert samples["llmpulse_alert_notification_dead_letters", labels()] == 1


def test_delivery_results_per_receiver() -> None:
    outcomes: list[Exception | None] = [
        None,
        RetryableDeliveryError("ratelimited", retry_after=30.0),
        RetryableDeliveryError("HTTP 503"),
        None,
        PermanentDeliveryError("channel_not_found"),
    ]
    receiver = CountingReceiver(ScriptedReceiver(outcomes))  # type: ignore[arg-type]

    async def deliver() -> None:
        for _ in range(5):
            with contextlib.suppress(RetryableDeliveryError, PermanentDeliveryError):
                await receiver.send(None, None)  # type: ignore[arg-type]

    asyncio.run(deliver())
    alerts = SimpleNamespace(
        last_checkpoint_wall=None,
        checkpoint_failures=0,
        transitions=Counter(),
        engine=SimpleNamespace(instances=list),
        publish_failures=0,
        restore_errors=[],
        receivers={"oncall": receiver},
        notifier=SimpleNamespace(queued=0, dead_letters=[]),
    )
    samples = scrape(fake_runtime(alerts=alerts))
    assert only(samples, "llmpulse_alert_deliveries_total") == {
        labels(receiver="oncall", kind="scripted", result="ok"): 2,
        labels(receiver="oncall", kind="scripted", result="retried"): 2,
        labels(receiver="oncall", kind="scripted", result="failed"): 1,
    }
    assert only(samples, "llmpulse_alert_deliveries_rate_limited_total") == {
        labels(receiver="oncall", kind="scripted"): 1
    }
    assert only(samples, "llmpulse_checkpoint_age_seconds") == {}


def test_disabled_stages_expose_no_stage_metrics() -> None:
    names = {name for name, _ in scrape(fake_runtime())}
    assert not any(
        n.startswith(("llmpulse_alert", "llmpulse_detection", "llmpulse_metric_")) for n in names
    )
    assert all(n.startswith("llmpulse_") for n in names)
