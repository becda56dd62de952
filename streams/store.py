"""ClickHouse access through clickhouse-connect: embedded chDB (``chdb://``) or a server (``http(s)://``).

chDB calls are synchronous and the embedded engine wants one user at a time, so every call runs on
one dedicated thread; the async methods hand work to it and never block the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.exceptions import DatabaseError, Error, OperationalError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Server error codes that mean "this data can never be written", as opposed to a store that is
# busy, full or away. See ClickHouse's src/Common/ErrorCodes.cpp.
DATA_ERROR_CODES = frozenset(
    {6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 131, 441}
)  # CANNOT_PARSE_*, TYPE_MISMATCH, ARGUMENT_OUT_OF_BOUND, INCORRECT_DATA, TOO_LARGE_STRING_SIZE...
READONLY_STATEMENT = re.compile(
    r"^\s*(\(\s*)*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.I
)


class StoreUnavailable(RuntimeError):
    """The store cannot take writes right now; retrying later is the right response."""


class StoreRejected(RuntimeError):
    """The store refused the data itself; retrying the same rows cannot succeed."""


class ReadOnlyViolation(ValueError):
    """A statement other than a read was sent to a read-only entry point."""


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def ensure_read_only(sql: str) -> None:
    """Reject anything that is not a single read statement before it reaches the engine."""
    statement = sql.strip().rstrip(";")
    if ";" in statement:
        raise ReadOnlyViolation("only one statement is allowed")
    if not READONLY_STATEMENT.match(statement):
        raise ReadOnlyViolation("only SELECT, WITH, SHOW, DESCRIBE, EXPLAIN and EXISTS are allowed")


class ClickHouseStore:
    """A connection to the llmpulse database, with its calls serialised on one worker thread."""

    def __init__(self, dsn: str, database: str = "llmpulse") -> None:
        self.dsn = dsn
        self.database = database
        self._client: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._lock = threading.Lock()
        self._failpoint_dir = os.environ.get("LLMPULSE_FAILPOINT_DIR")

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb:")

    def _connect(self) -> Any:
        if self._client is None:
            if self.embedded:
                Path(self.dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
            try:
                self._client = clickhouse_connect.get_client(
                    dsn=self.dsn, settings={"date_time_input_format": "best_effort"}
                )
            except OperationalError as exc:
                raise StoreUnavailable(f"cannot connect to ClickHouse: {exc}") from exc
        return self._client

    def _check_failpoint(self, name: str) -> None:
        # Fault injection for the integration tests: an operator-created file makes the store
        # refuse writes, the way a server that is down would.
        if self._failpoint_dir and Path(self._failpoint_dir, name).exists():
            raise StoreUnavailable(f"failpoint {name} is active")

    # Synchronous API: call only on the store thread (through ``run``) or before the loop starts.

    def command(self, sql: str) -> Any:
        return self._connect().command(sql)

    def query(self, sql: str, *, read_only: bool = False) -> QueryResult:
        settings = None
        if read_only:
            ensure_read_only(sql)
            settings = {"readonly": 2}
        result = self._connect().query(sql, settings=settings)
        return QueryResult(tuple(result.column_names), [tuple(r) for r in result.result_rows])

    def insert_json_rows(
        self, table: str, columns: Sequence[str], body: bytes, dedup_token: str | None = None
    ) -> None:
        """Insert JSONCompactEachRow lines (arrays in ``columns`` order); may raise
        StoreUnavailable or StoreRejected."""
        self._check_failpoint("store.insert")
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        try:
            self._connect().raw_insert(
                f"{self.database}.{table}", list(columns), insert_block=body,
                settings=settings, fmt="JSONCompactEachRow",
            )  # fmt: skip
        except DatabaseError as exc:
            if getattr(exc, "code", None) in DATA_ERROR_CODES:
                raise StoreRejected(str(exc)) from exc
            raise StoreUnavailable(str(exc)) from exc
        except (OperationalError, Error, OSError) as exc:
            if not self.embedded:  # reconnect to a server next time; chDB keeps its engine
                self._client = None
            raise StoreUnavailable(str(exc)) from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # Async API: safe to call from the event loop.

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def aclose(self) -> None:
        await self.run(self.close)
        self._executor.shutdown(wait=True)
