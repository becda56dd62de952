"""``llmpulse sql``: ask a running worker's read-only endpoint, or open the store directly."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson

from streams.config import Settings
from streams.store import ClickHouseStore


class QueryError(RuntimeError):
    """The store or the worker refused the query."""


def query_worker(
    host: str, port: int, sql: str, timeout: float = 60.0
) -> tuple[list[str], list[Any]]:
    """POST the query to a worker; raise ConnectionError if no worker listens there."""
    request = urllib.request.Request(
        f"http://{host}:{port}/sql",
        data=orjson.dumps({"query": sql}),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()
        try:
            message = orjson.loads(detail).get("error", detail.decode())
        except orjson.JSONDecodeError:
            message = detail.decode(errors="replace")
        raise QueryError(message) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(str(exc)) from exc
    return list(body["columns"]), [tuple(row) for row in body["rows"]]


def run_query(settings: Settings, sql: str) -> tuple[list[str], list[Any], str]:
    """Return (columns, rows, how it was answered)."""
    if settings.is_embedded_store:
        try:
            columns, rows = query_worker(settings.web_host, settings.web_port, sql)
            return columns, rows, f"worker at {settings.web_host}:{settings.web_port}"
        except ConnectionError:
            pass
    store = ClickHouseStore(settings.clickhouse_dsn, settings.clickhouse_database)
    try:
        result = store.query(sql, read_only=True)
    finally:
        store.close()
    return list(result.columns), result.rows, "direct"
