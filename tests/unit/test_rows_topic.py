"""Row batches over Kafka: record framing, acks after the broker's, retries, splitting; and the
writer's side on the real embedded engine (dedup by the record's token, dead-lettered rows)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from streams.batch_consumer import RecordAck
from streams.config import Settings
from streams.rows import FEEDBACK_COLUMNS
from streams.rows_topic import (
    HEADER_COLUMNS,
    HEADER_PART,
    HEADER_TABLE,
    HEADER_TOKEN,
    BadRowsRecord,
    RowsTopicStore,
    batch_token,
    frame,
    parse_record,
)
from streams.sink import ClickHouseSink, RetryPolicy
from streams.store import ClickHouseStore, StoreRejected, StoreUnavailable
from streams.writer import RowsWriter


class Sent(NamedTuple):
    topic: str
    key: bytes
    value: bytes
    headers: dict[str, bytes]


class FakeProducer:
    """Stands in for AIOKafkaProducer: ``send`` enqueues; its future is the broker's ack."""

    def __init__(self) -> None:
        self.delivered: list[Sent] = []
        self.failing_sends = 0
        self.failing_deliveries = 0
        self.hold = False
        self.held: list[tuple[asyncio.Future[Any], Sent]] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(
        self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]:
        if self.failing_sends:
            self.failing_sends -= 1
            raise KafkaConnectionError("broker away")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        sent = Sent(topic, key, value, dict(headers))
        if self.failing_deliveries:
            self.failing_deliveries -= 1
            future.set_exception(KafkaTimeoutError())
        elif self.hold:
            self.held.append((future, sent))
        else:
            self.deliver(future, sent)
        return future

    def deliver(self, future: asyncio.Future[Any], sent: Sent) -> None:
        self.delivered.append(sent)
        future.set_result(len(self.delivered))

    def release(self) -> None:
        for future, sent in self.held:
            self.deliver(future, sent)
        self.held = []


class Ack:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def ack(self) -> None:
        self.log.append(self.name)


async def _no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


async def _started(producer: FakeProducer, max_record_bytes: int = 900 * 1024) -> RowsTopicStore:
    store = RowsTopicStore("llm.rows", lambda: producer, max_record_bytes)
    await store.start()
    return store


def _sink(store: RowsTopicStore, **kwargs: Any) -> ClickHouseSink:
    options: dict[str, Any] = {
        "batch_rows": 100, "flush_interval_s": 60.0, "max_pending_batches": 1,
        "retry": RetryPolicy(0.01, 0.02), "sleep": _no_sleep,
    }  # fmt: skip
    options.update(kwargs)
    return ClickHouseSink(store, "llm_feedback", ("a", "b"), **options)


def _rows(n: int, width: int = 10) -> list[bytes]:
    return [orjson.dumps([i, "x" * width]) for i in range(n)]


async def test_a_batch_is_one_record_keyed_by_table_with_columns_and_token() -> None:
    producer = FakeProducer()
    sink = _sink(await _started(producer))
    sink.start()
    rows = _rows(3)
    for row in rows:
        await sink.add(row)
    await sink.flush()
    await sink.stop()

    (record,) = producer.delivered
    body = b"\n".join(rows)
    assert (record.topic, record.key, record.value) == ("llm.rows", b"llm_feedback", body)
    assert record.headers == {
        HEADER_TABLE: b"llm_feedback",
        HEADER_COLUMNS: b'["a","b"]',
        HEADER_TOKEN: batch_token(body).encode(),  # the token the sink gave the store
        HEADER_PART: b"1/1",
    }
    parsed = parse_record(list(record.headers.items()), record.value)
    assert (parsed.table, parsed.columns, parsed.rows()) == ("llm_feedback", ("a", "b"), rows)


async def test_sources_are_acked_only_after_the_broker_acknowledges() -> None:
    producer = FakeProducer()
    producer.hold = True
    sink = _sink(await _started(producer))
    sink.start()
    acked: list[str] = []
    for i, row in enumerate(_rows(2)):
        await sink.add(row, Ack(f"r{i}", acked))
    flushing = asyncio.create_task(sink.flush())
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(producer.held) == 1 and acked == []
    producer.release()
    await flushing
    assert acked == ["r0", "r1"]
    await sink.stop()


async def test_publish_failures_are_retried_and_nothing_is_dropped() -> None:
    producer = FakeProducer()
    producer.failing_sends = 2
    producer.failing_deliveries = 1
    store = RowsTopicStore("llm.rows", lambda: producer)
    with pytest.raises(StoreUnavailable, match="not started"):
        await store.insert_json_rows("llm_feedback", ("a",), b"[1]", "tok")
    await store.start()
    with pytest.raises(StoreUnavailable, match="broker away"):
        await store.insert_json_rows("llm_feedback", ("a",), b"[1]", "tok")

    sink = _sink(store)
    sink.start()
    acked: list[str] = []
    await sink.add(b"[1]", Ack("r", acked))
    await sink.flush()
    await sink.stop()
    assert sink.stats.retries == 2  # one failed send left, then one failed delivery
    assert [r.value for r in producer.delivered] == [b"[1]"]
    assert acked == ["r"]


async def test_a_large_batch_is_split_between_rows_the_same_way_every_time() -> None:
    rows = _rows(20, width=20)  # 28-29 bytes each
    body = b"\n".join(rows)
    producer = FakeProducer()
    store = await _started(producer, max_record_bytes=100)
    await store.insert_json_rows("llm_feedback", ("a", "b"), body, batch_token(body))

    records = producer.delivered
    assert len(records) == 7
    assert all(len(r.value) <= 100 and r.key == b"llm_feedback" for r in records)
    assert b"\n".join(r.value for r in records) == body
    assert [r.headers[HEADER_PART] for r in records] == [f"{i}/7".encode() for i in range(1, 8)]
    assert [r.headers[HEADER_TOKEN] for r in records] == [
        batch_token(r.value).encode() for r in records
    ]
    again = frame("llm_feedback", ("a", "b"), body, batch_token(body), max_bytes=100)
    assert [(p.value, p.token) for p in again] == [
        (r.value, r.headers[HEADER_TOKEN].decode()) for r in records
    ]


async def test_a_row_larger_than_a_record_is_dead_lettered_alone() -> None:
    producer = FakeProducer()
    rejected: list[bytes] = []

    async def on_rejected(row: bytes, reason: str, ack: Any) -> None:
        rejected.append(row)
        ack.ack()

    sink = _sink(await _started(producer, max_record_bytes=100))
    sink.on_rejected = on_rejected
    sink.start()
    huge = orjson.dumps([9, "y" * 200])
    acked: list[str] = []
    for i, row in enumerate([*_rows(2), huge, *_rows(2)]):
        await sink.add(row, Ack(f"r{i}", acked))
    await sink.flush()
    await sink.stop()
    assert rejected == [huge]
    assert sorted(acked) == [f"r{i}" for i in range(5)]
    assert b"".join(r.value for r in producer.delivered).count(b'"x') == 4
    with pytest.raises(StoreRejected, match="exceeds"):
        frame("t", ("a",), b"[1]\n" + huge, "tok", max_bytes=100)


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(HEADER_TABLE, b"llm_calls"), (HEADER_COLUMNS, b'["a"]')],
        [(HEADER_TABLE, b"x; DROP TABLE y"), (HEADER_COLUMNS, b'["a"]'), (HEADER_TOKEN, b"t")],
        [(HEADER_TABLE, b"llm_calls"), (HEADER_COLUMNS, b'"a"'), (HEADER_TOKEN, b"t")],
        [(HEADER_TABLE, b"llm_calls"), (HEADER_COLUMNS, b'["a b"]'), (HEADER_TOKEN, b"t")],
        [(HEADER_TABLE, b"llm_calls"), (HEADER_COLUMNS, b"[not json"), (HEADER_TOKEN, b"t")],
        [(HEADER_TABLE, b"\xff"), (HEADER_COLUMNS, b'["a"]'), (HEADER_TOKEN, b"t")],
    ],
)
def test_records_without_valid_framing_are_refused(headers: list[tuple[str, bytes]]) -> None:
    with pytest.raises(BadRowsRecord):
        parse_record(headers, b"[1]")


class Message(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def _feedback_row(event_id: str, value: Any, comment: str = "") -> bytes:
    return orjson.dumps([event_id, "2026-01-01 00:00:00", "thumbs", value, "user", comment, 0, 0])


async def test_the_writer_stores_each_record_once_and_dead_letters_refused_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path, sink_retry_initial_s=0.01, sink_retry_max_s=0.02)
    producer = FakeProducer()
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}")
    writer = RowsWriter(settings, {}, store=store, producer=producer)
    await writer._migrate()

    # Without merges, a replay that were inserted again would show as extra rows.
    await store.run(store.command, "SYSTEM STOP MERGES llmpulse.llm_feedback")

    def record(offset: int, rows: list[bytes]) -> RecordAck:
        body = b"\n".join(rows)
        (framed,) = frame("llm_feedback", FEEDBACK_COLUMNS, body, batch_token(body))
        return RecordAck(
            Message("llm.rows", 2, offset, b"llm_feedback", framed.value, framed.headers())
        )

    good = [_feedback_row(f"e{i}", 0.5) for i in range(4)]
    bad = _feedback_row("e-bad", "abc", comment="SECRET-PROMPT-TEXT")
    first = record(10, [*good[:2], bad, *good[2:]])
    replayed = record(11, [*good[:2], bad, *good[2:]])  # the same batch published twice
    foreign = RecordAck(Message("llm.rows", 2, 12, b"k", b"[1]", [("other", b"x")]))
    with caplog.at_level(logging.INFO):
        for ack in (first, replayed, foreign):
            await writer.store_record(ack)
            assert ack.acked

    count = await store.run(store.query, "SELECT count() FROM llmpulse.llm_feedback")
    assert count.rows == [(4,)]  # the replay was dropped by the store: same batches, same tokens
    assert "SECRET-PROMPT-TEXT" not in caplog.text

    letters = [r for r in producer.delivered if r.topic == "llm.rows.dlq"]
    assert [r.headers["llmpulse.reason_code"] for r in letters] == [
        b"store_rejected", b"store_rejected", b"bad_record"
    ]  # fmt: skip
    refused = letters[0]
    assert refused.value == bad and refused.key == b"llm_feedback"
    assert parse_record(list(refused.headers.items()), refused.value).rows() == [bad]
    assert refused.headers["llmpulse.source_offset"] == b"10"
    assert b"Code: 72" in refused.headers["llmpulse.reason"]
    assert letters[2].value == b"[1]" and letters[2].headers["other"] == b"x"
    health = writer.health()
    assert health["tables"]["llm_feedback"]["rows_rejected"] == 2
    assert health["writer"]["rows_dead_lettered"] == 2
    assert health["writer"]["bad_records"] == 1
    assert health["writer"]["token_mismatches"] == 0
    for sink in writer.sinks.values():
        await sink.stop()
    await store.aclose()
