"""Row batches over Kafka: with ``sink_target=kafka`` a worker's sinks publish each batch to
``llm.rows`` instead of inserting it, and the one ``llmpulse writer`` (streams/writer.py) stores it.

A batch is one record (several when it is larger than `MAX_RECORD_BYTES`): the value is the
batch's JSONCompactEachRow lines, the key is the table, so that a table's batches stay in order on
one partition, and headers carry the table, the columns and the batch's deduplication token.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson
from aiokafka.errors import KafkaError

from streams.config import Settings
from streams.store import StoreRejected, StoreUnavailable

T = TypeVar("T")

HEADER_TABLE = "llmpulse.table"
HEADER_COLUMNS = "llmpulse.columns"
HEADER_TOKEN = "llmpulse.dedup_token"
HEADER_PART = "llmpulse.part"

# Brokers take records up to about 1 MiB (message.max.bytes); headers need the rest.
MAX_RECORD_BYTES = 900 * 1024
MAX_REQUEST_BYTES = 1024 * 1024
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class BadRowsRecord(ValueError):
    """A record on the rows topic without valid framing: it cannot be stored as it is."""


def batch_token(body: bytes) -> str:
    """The insert deduplication token of a batch, as `streams.sink.ClickHouseSink` makes it."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()


@dataclass(frozen=True)
class RowsRecord:
    """One record of the rows topic: some rows of one table, inserted as one batch."""

    table: str
    columns: tuple[str, ...]
    token: str
    value: bytes
    part: tuple[int, int] = (1, 1)

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (HEADER_TABLE, self.table.encode()),
            (HEADER_COLUMNS, orjson.dumps(self.columns)),
            (HEADER_TOKEN, self.token.encode()),
            (HEADER_PART, f"{self.part[0]}/{self.part[1]}".encode()),
        ]

    def rows(self) -> list[bytes]:
        return self.value.split(b"\n") if self.value else []


def frame(
    table: str,
    columns: Sequence[str],
    body: bytes,
    token: str,
    max_bytes: int = MAX_RECORD_BYTES,
) -> list[RowsRecord]:
    """The records that carry one batch. A batch that fits keeps its token; the parts of one that
    does not are split between rows and each gets the token of its own bytes, so a retried batch
    is framed the same way and every part is deduplicated by the store."""
    columns = tuple(columns)
    if len(body) <= max_bytes:
        return [RowsRecord(table, columns, token, body)]
    parts = list(_split_lines(table, body, max_bytes))
    return [
        RowsRecord(table, columns, batch_token(part), part, (i, len(parts)))
        for i, part in enumerate(parts, start=1)
    ]


def _split_lines(table: str, body: bytes, max_bytes: int) -> Iterator[bytes]:
    lines: list[bytes] = []
    size = 0
    for line in body.split(b"\n"):
        if len(line) > max_bytes:
            # Data the topic can never carry: the sink isolates the row and dead-letters it.
            raise StoreRejected(
                f"a {table} row of {len(line)} bytes exceeds the {max_bytes} bytes of a rows record"
            )
        if lines and size + 1 + len(line) > max_bytes:
            yield b"\n".join(lines)
            lines, size = [], 0
        size += len(line) + (1 if lines else 0)
        lines.append(line)
    if lines:
        yield b"\n".join(lines)


def parse_record(headers: Sequence[tuple[str, bytes]] | None, value: bytes | None) -> RowsRecord:
    """Read a record's framing; raise BadRowsRecord when it is missing or malformed."""
    found = dict(headers or ())
    try:
        table = found[HEADER_TABLE].decode()
        columns = orjson.loads(found[HEADER_COLUMNS])
        token = found[HEADER_TOKEN].decode()
    except (KeyError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise BadRowsRecord(f"missing or unreadable header {exc}") from exc
    if not IDENTIFIER.fullmatch(table):
        raise BadRowsRecord(f"bad table name {table[:100]!r}")
    if not (
        isinstance(columns, list)
        and columns
        and all(isinstance(c, str) and IDENTIFIER.fullmatch(c) for c in columns)
    ):
        raise BadRowsRecord("the columns header is not a list of column names")
    if not token.isascii() or not token.isprintable() or len(token) > 200:
        raise BadRowsRecord("bad deduplication token")
    return RowsRecord(table, tuple(columns), token, value or b"")


class RecordProducer(Protocol):
    """The part of `aiokafka.AIOKafkaProducer` the rows topic uses."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> Awaitable[Any]: ...


def rows_producer(settings: Settings, client_options: dict[str, Any]) -> Any:
    """A producer whose sends complete only once every in-sync replica has the record."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        # The producer's own retries then never duplicate a record; the writer's tokens would
        # drop such duplicates anyway.
        enable_idempotence=True,
        max_request_size=MAX_REQUEST_BYTES,
        linger_ms=5,
        **client_options,
    )


class RowsTopicStore:
    """The store of a worker's sinks when ``sink_target=kafka``: a batch counts as stored once
    the broker has acknowledged all of its records, and only then does the sink ack its sources.

    A failed or unacknowledged publish raises StoreUnavailable, so the sink retries the whole
    batch with backoff and applies backpressure; parts already published are sent again with the
    same tokens and deduplicated by the store."""

    def __init__(
        self,
        topic: str,
        make_producer: Callable[[], RecordProducer],
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        self.topic = topic
        self.max_record_bytes = max_record_bytes
        self.records_sent = 0
        self._make_producer = make_producer
        self._producer: RecordProducer | None = None

    @classmethod
    def connect(cls, settings: Settings, client_options: dict[str, Any]) -> RowsTopicStore:
        return cls(settings.topic_rows, lambda: rows_producer(settings, client_options))

    async def start(self) -> None:
        """Create and start the producer: aiokafka clients belong to the running loop."""
        if self._producer is None:
            producer = self._make_producer()
            await producer.start()
            self._producer = producer

    async def aclose(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await fn(*args)

    async def insert_json_rows(
        self, table: str, columns: Sequence[str], body: bytes, dedup_token: str | None = None
    ) -> None:
        producer = self._producer
        if producer is None:
            raise StoreUnavailable(f"rows topic {self.topic}: the producer is not started")
        records = frame(
            table, columns, body, dedup_token or batch_token(body), self.max_record_bytes
        )
        deliveries: list[Awaitable[Any]] = []
        failure: BaseException | None = None
        try:
            for record in records:
                deliveries.append(
                    await producer.send(
                        self.topic, value=record.value, key=table.encode(), headers=record.headers()
                    )
                )
        except (KafkaError, OSError, TimeoutError) as exc:
            failure = exc
        # Wait for every record handed to the producer, even after a failure: none is left behind
        # unobserved, and a retry starts from a settled state.
        outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
        failure = failure or next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failure is not None:
            raise StoreUnavailable(f"rows topic {self.topic}: {failure!r}") from failure
        self.records_sent += len(records)
