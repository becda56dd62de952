"""The worker's web pages on 127.0.0.1: ``/health``, ``/live``, Prometheus ``/metrics`` and a
read-only ``/sql`` endpoint.

In embedded mode only the worker may open the chDB directory, so ``llmpulse sql`` sends its query
here while a worker runs. The endpoint accepts one read statement and runs it with
``readonly=2``: the engine itself refuses writes and DDL even if the text check were fooled.
A worker with ``sink_target=kafka`` has no store: its ``/sql`` answers 409 and names the writer,
which serves the same endpoint (`streams.writer`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import uuid
from functools import partial
from typing import Any

import orjson
from faust.web import View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.prometheus import metrics_registry
from streams.store import ClickHouseStore, ReadOnlyViolation

MAX_SQL_ROWS = 10_000


def _default(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(
        value, decimal.Decimal | uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address
    ):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def encode_result(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> bytes:
    return orjson.dumps(
        {
            "columns": list(columns),
            "rows": rows[:MAX_SQL_ROWS],
            "truncated": len(rows) > MAX_SQL_ROWS,
        },
        default=_default,
        option=orjson.OPT_NON_STR_KEYS,
    )


def _error(message: str) -> bytes:
    return orjson.dumps({"error": message})


async def answer_sql(store: ClickHouseStore, request_body: bytes) -> tuple[bytes, int]:
    """Run ``{"query": "SELECT ..."}`` read-only; return the JSON answer and its HTTP status."""
    try:
        payload = orjson.loads(request_body)
    except orjson.JSONDecodeError:
        payload = None
    query = payload.get("query") if isinstance(payload, dict) else None
    if not isinstance(query, str):
        return b'{"error": "POST {\\"query\\": \\"SELECT ...\\"}"}', 400
    try:
        result = await store.run(partial(store.query, query, read_only=True))
    except ReadOnlyViolation as exc:
        return _error(f"read-only endpoint: {exc}"), 403
    except Exception as exc:
        return _error(str(exc)[:4000]), 400
    return encode_result(result.columns, result.rows), 200


def no_store_answer(topic_rows: str) -> tuple[bytes, int]:
    """The ``/sql`` answer of a worker that hands its rows to the writer."""
    message = (
        f"this worker has no store: it publishes its rows to {topic_rows} and `llmpulse writer` "
        "stores them; query the writer (its LLMPULSE_WEB_PORT) instead"
    )
    return _error(message), 409


def register_pages(app: Any, runtime: Any) -> None:
    async def health(web: Any, request: Any) -> Any:
        ingestor = runtime.ingestor
        body = {
            "status": "ok" if runtime.ready.is_set() else "starting",
            "events_in": dict(ingestor.counters.events_in),
            "rejected": dict(ingestor.counters.rejected),
            "sinks": {
                sink.table: {
                    "rows_written": sink.stats.rows_written,
                    "retries": sink.stats.retries,
                    "rows_rejected": sink.stats.rows_rejected,
                    "backpressure": sink.stats.backpressure,
                    "buffered_rows": sink.buffered_rows,
                }
                for sink in runtime.sinks
            },
        }
        consumer = runtime.consumer
        body["consumer"] = {
            **vars(consumer.stats),
            "unacked": consumer.tracker.unacked(),
            "lag": consumer.lag(),
        }
        if runtime.metrics is not None:
            body["metrics"] = runtime.metrics.health()
        if runtime.detections is not None:
            body["detections"] = runtime.detections.health()
        if runtime.alerts is not None:
            body["alerts"] = runtime.alerts.health()
        status = 200 if runtime.ready.is_set() else 503
        return web.bytes(orjson.dumps(body), content_type="application/json", status=status)

    app.page("/health")(health)

    async def live(web: Any, request: Any) -> Any:
        if runtime.metrics is None:
            body, status = b'{"error": "metrics are disabled (LLMPULSE_METRICS_ENABLED)"}', 404
        else:
            body, status = orjson.dumps(runtime.metrics.live()), 200
        return web.bytes(body, content_type="application/json", status=status)

    app.page("/live")(live)

    registry = metrics_registry(runtime)

    async def metrics(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset in ``content_type``: the full type goes in the header.
        headers = {"Content-Type": CONTENT_TYPE_LATEST}
        return web.bytes(generate_latest(registry), headers=headers)

    app.page("/metrics")(metrics)

    class SqlView(View):
        async def post(self, request: Any) -> Any:
            settings = runtime.settings
            if settings.sink_target == "kafka":
                body, status = no_store_answer(settings.topic_rows)
            else:
                body, status = await answer_sql(runtime.store, await request.read())
            return self.bytes(body, content_type="application/json", status=status)

    app.page("/sql")(SqlView)
