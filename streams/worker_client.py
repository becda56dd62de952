"""Talking to a running worker over its web port: health, and the read-only SQL endpoint.

``llmpulse sql`` asks a running worker, or opens the store directly when none runs.
"""

from __future__ import annotations

import subprocess
import time
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


def fetch_health(host: str, port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    """The worker's ``/health`` body, or None while it is starting or not listening."""
    try:
        url = f"http://{host}:{port}/health"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return dict(orjson.loads(response.read()))
    except OSError:
        return None


def wait_healthy(host: str, port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until the worker ``process`` reports ``ok``; raise if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}")
        health = fetch_health(host, port)
        if health and health.get("status") == "ok":
            return
        time.sleep(0.3)
    raise TimeoutError(f"worker not healthy after {timeout:.0f}s")


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
