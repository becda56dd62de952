"""``llmpulse writer``: the one process that owns the store when workers run with
``sink_target=kafka``. It consumes the row batches they publish to ``llm.rows`` and stores them.

Each record is inserted as one batch through a `ClickHouseSink` of its table, so the batch's
deduplication token is the record's and a record replayed after a crash is dropped by the store.
Offsets are committed per partition only up to the first record not yet stored (`OffsetTracker`,
inside `BatchConsumer`). Rows the store refuses as data are isolated by the sink and sent to
``llm.rows.dlq`` with the reason; they are counted and logged without their contents.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError

from streams.batch_consumer import Batch, BatchConsumer, RecordAck
from streams.config import Settings, mask_url
from streams.migrations import migrate
from streams.rows_topic import (
    MAX_RECORD_BYTES,
    BadRowsRecord,
    RecordProducer,
    RowsRecord,
    batch_token,
    parse_record,
    rows_producer,
)
from streams.sink import ClickHouseSink, RetryPolicy
from streams.store import ClickHouseStore
from streams.topics import rows_dlq_topic
from streams.web import answer_sql

log = logging.getLogger(__name__)

WRITABLE_TABLES = frozenset(
    {
        "llm_calls",
        "llm_feedback",
        "llm_dead_letters",
        "llm_metrics_1m",
        "llm_detections",
        "llm_alerts",
    }
)
# A sink batch is exactly one record: sealed by the flush after the record, never by size or age.
RECORD_BATCH_ROWS = 1 << 24
RECORD_FLUSH_INTERVAL_S = 3600.0


@dataclass
class WriterStats:
    records: int = 0
    bad_records: int = 0
    rows_dead_lettered: int = 0
    dead_letter_retries: int = 0
    token_mismatches: int = 0


class RecordRowsAck:
    """Shared by the rows of one record: the record is acknowledged once each row is stored or
    dead-lettered."""

    __slots__ = ("left", "record")

    def __init__(self, record: RecordAck, rows: int) -> None:
        self.record = record
        self.left = rows

    def ack(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.record.ack()


class RowsWriter:
    """Consumes the rows topic in group ``<consumer_group>.writer`` into the store."""

    def __init__(
        self,
        settings: Settings,
        client_options: dict[str, Any],
        store: ClickHouseStore | None = None,
        producer: RecordProducer | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or ClickHouseStore(settings.clickhouse_dsn, settings.clickhouse_database)
        self.dlq_topic = rows_dlq_topic(settings)
        self.producer: RecordProducer = producer or rows_producer(settings, client_options)
        self.retry = RetryPolicy(settings.sink_retry_initial_s, settings.sink_retry_max_s)
        self.sinks: dict[tuple[str, tuple[str, ...]], ClickHouseSink] = {}
        self.stats = WriterStats()
        self.ready = asyncio.Event()
        self.failure: BaseException | None = None
        self._batches: asyncio.Queue[Batch] = asyncio.Queue(maxsize=2)
        self.consumer = BatchConsumer(
            {settings.topic_rows: self._batches},
            f"{settings.consumer_group}.writer",
            {"bootstrap_servers": settings.kafka_bootstrap, **client_options},
            on_assigned=_nothing_to_do,
            # Every record is stored before its batch is done, and the consumer waits for that.
            on_revoked=_nothing_to_do,
            max_records=100,
        )
        self._storing = asyncio.Lock()
        self._stopping = False
        self._started: list[str] = []
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._migrate()
        await self.producer.start()
        self._started.append("producer")
        await self.consumer.start()
        self._started.append("consumer")
        self._loop_task = asyncio.create_task(self._store_loop(), name="rows-writer")
        self.ready.set()

    async def stop(self, grace_s: float = 10.0) -> None:
        """Finish the record being stored, commit what is stored, close. A record the store
        cannot take in ``grace_s`` stays uncommitted and is stored again after a restart."""
        self._stopping = True
        if self._loop_task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._storing.acquire(), grace_s)
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for sink in self.sinks.values():
            await sink.stop(flush_timeout=1.0)
        if "consumer" in self._started:
            await self.consumer.stop()  # commits the stored prefix and leaves the group
        if "producer" in self._started:
            await self.producer.stop()
        await self.store.aclose()

    async def _migrate(self) -> None:
        delays = self.retry.delays()
        while True:
            try:
                applied = await self.store.run(migrate, self.store, self.settings.calls_ttl_days)
                break
            except Exception as exc:  # the store may be starting up; keep trying
                delay = next(delays)
                log.warning("migrations failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
        if applied:
            log.info("applied migrations %s", applied)

    async def _store_loop(self) -> None:
        try:
            while not self._stopping:
                batch = await self._batches.get()
                try:
                    for record in batch.records:
                        async with self._storing:
                            if self._stopping:
                                break
                            await self.store_record(record)
                finally:
                    batch.done.set()
        except Exception as exc:  # a bug, not a data or store problem: stop rather than skip
            log.exception("the rows writer failed; stopping")
            self.failure = exc

    async def store_record(self, ack: RecordAck) -> None:
        """Store one record's rows as one batch; ack it once each row is stored or dead-lettered."""
        message = ack.message
        self.stats.records += 1
        try:
            record = parse_record(message.headers, message.value)
            if record.table not in WRITABLE_TABLES:
                raise BadRowsRecord(f"not a table the writer stores: {record.table!r}")
        except BadRowsRecord as exc:
            await self._dead_letter_record(message, str(exc))
            ack.ack()
            return
        rows = record.rows()
        if not rows:
            ack.ack()
            return
        if record.token != batch_token(record.value):
            # Not framed by RowsTopicStore: the store deduplicates on the sink's own hash instead.
            self.stats.token_mismatches += 1
        sink = self._sink(record.table, record.columns)
        rows_ack = RecordRowsAck(ack, len(rows))
        for row in rows:
            await sink.add(row, rows_ack)
        await sink.flush()

    def _sink(self, table: str, columns: tuple[str, ...]) -> ClickHouseSink:
        sink = self.sinks.get((table, columns))
        if sink is None:
            sink = ClickHouseSink(
                self.store, table, columns, batch_rows=RECORD_BATCH_ROWS,
                flush_interval_s=RECORD_FLUSH_INTERVAL_S, max_pending_batches=1, retry=self.retry,
            )  # fmt: skip
            sink.on_rejected = self._reject_handler(table, columns)
            sink.start()
            self.sinks[(table, columns)] = sink
        return sink

    def _reject_handler(self, table: str, columns: tuple[str, ...]) -> Any:
        async def rejected(row: bytes, reason: str, ack: RecordRowsAck) -> None:
            message = ack.record.message
            # The reason quotes the row, and rows may hold (redacted) prompt text: neither is
            # logged; both go to the dead-letter topic.
            log.error(
                "%s: a row of %s[%s]@%s refused by the store; sent to %s",
                table, message.topic, message.partition, message.offset, self.dlq_topic,
            )  # fmt: skip
            framing = RowsRecord(table, columns, batch_token(row), row).headers()
            await self._publish_dead_letter(
                row, table.encode(), framing + _reason_headers("store_rejected", reason, message)
            )
            self.stats.rows_dead_lettered += 1
            ack.ack()

        return rejected

    async def _dead_letter_record(self, message: Any, reason: str) -> None:
        self.stats.bad_records += 1
        log.error(
            "record %s[%s]@%s is not a rows batch (%s); sent to %s",
            message.topic, message.partition, message.offset, reason, self.dlq_topic,
        )  # fmt: skip
        value = message.value or b""
        headers = [*(message.headers or ()), *_reason_headers("bad_record", reason, message)]
        if len(value) > MAX_RECORD_BYTES:  # a foreign record; keep what the topic can carry
            headers.append(("llmpulse.truncated_from", str(len(value)).encode()))
            value = value[:MAX_RECORD_BYTES]
        await self._publish_dead_letter(value, message.key or b"", headers)

    async def _publish_dead_letter(
        self, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        """Publish until the broker acknowledges: a dead letter is never dropped."""
        delays = self.retry.delays()
        while True:
            try:
                delivery = await self.producer.send(
                    self.dlq_topic, value=value, key=key, headers=headers
                )
                await delivery
                return
            except (KafkaError, OSError, TimeoutError) as exc:
                delay = next(delays)
                self.stats.dead_letter_retries += 1
                log.warning(
                    "publishing to %s failed (%s); retry in %.1fs", self.dlq_topic, exc, delay
                )
                await asyncio.sleep(delay)

    def health(self) -> dict[str, Any]:
        tables: dict[str, Counter[str]] = {}
        backpressure: set[str] = set()
        for (table, _), sink in self.sinks.items():
            counts = tables.setdefault(table, Counter())
            counts["rows_written"] += sink.stats.rows_written
            counts["batches_written"] += sink.stats.batches_written
            counts["retries"] += sink.stats.retries
            counts["rows_rejected"] += sink.stats.rows_rejected
            if sink.stats.backpressure:
                backpressure.add(table)
        consumer = self.consumer
        status = "ok" if self.ready.is_set() else "starting"
        return {
            "status": "failed" if self.failure is not None else status,
            "role": "writer",
            "writer": vars(self.stats),
            "tables": {
                table: {**counts, "backpressure": table in backpressure}
                for table, counts in tables.items()
            },
            "consumer": {
                **vars(consumer.stats),
                "unacked": consumer.tracker.unacked(),
                "lag": consumer.lag(),
            },
        }


async def _nothing_to_do(topic: str, partitions: list[int]) -> None:
    return None


def _reason_headers(code: str, reason: str, message: Any) -> list[tuple[str, bytes]]:
    return [
        ("llmpulse.reason_code", code.encode()),
        ("llmpulse.reason", reason.encode("utf-8", errors="replace")[:4096]),
        ("llmpulse.source_topic", str(message.topic).encode()),
        ("llmpulse.source_partition", str(message.partition).encode()),
        ("llmpulse.source_offset", str(message.offset).encode()),
    ]


def web_app(writer: RowsWriter) -> web.Application:
    """``GET /health`` and the read-only ``POST /sql`` (`streams.web.answer_sql`)."""

    async def health(request: web.Request) -> web.Response:
        body = writer.health()
        status = 200 if body["status"] == "ok" else 503
        return web.json_response(body, status=status)

    async def sql(request: web.Request) -> web.Response:
        body, status = await answer_sql(writer.store, await request.read())
        return web.Response(body=body, status=status, content_type="application/json")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/sql", sql)
    return app


async def run_writer(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT; return the exit status."""
    writer = RowsWriter(settings, settings.kafka_client_options())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(web_app(writer), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.web_host, settings.web_port).start()
    starting = asyncio.create_task(writer.start())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            log.info("writing %s into %s", settings.topic_rows, mask_url(settings.clickhouse_dsn))
            while not stop.is_set() and writer.failure is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
    finally:
        stopping.cancel()
        await writer.stop()
        await runner.cleanup()
    return 1 if writer.failure is not None else 0
