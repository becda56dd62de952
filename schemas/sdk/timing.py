"""Time one LLM call as a context manager or decorator and emit it as an `LLMCall` event."""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from schemas.sdk.events import check_field_names, check_partial_call
from schemas.sdk.usage import Usage, read_usage

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

FieldSink = Callable[[dict[str, Any]], None]
"""Receives the finished call's fields; must not raise (clients count and drop bad events)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TrackedCall:
    """Times one call: on exit it fills in the timing and outcome and hands the event on.

    Fills ``timestamp`` (start, UTC), ``latency_ms``, ``status`` (``ok`` or
    ``error``) and, on an exception, ``error_type`` (the exception's class name)
    unless set explicitly. The exception is re-raised unchanged after the event
    is handed on. One instance times one ``with`` block; used as a decorator it
    times every call of the function, each with fresh fields.

    Parameters
    ----------
    fields
        Event fields known up front (``app``, ``provider``, ``model``, ...);
        checked now, so a bad value raises `InvalidEvent` (a ValueError) here.
    sink
        Receives the finished fields.
    read_response
        As a decorator, read usage from the function's return value (`read_usage`).
    clock, wall_clock
        Monotonic seconds and the current UTC time; injectable for tests.

    Examples
    --------
    >>> events = []
    >>> ticks = iter([10.0, 10.25])
    >>> with TrackedCall({"app": "a", "provider": "openai", "model": "gpt-4o"}, events.append,
    ...                  clock=lambda: next(ticks)) as call:
    ...     usage = call.record_response({"usage": {"prompt_tokens": 9, "completion_tokens": 3}})
    >>> events[0]["latency_ms"], events[0]["status"], events[0]["output_tokens"]
    (250.0, 'ok', 3)
    """

    def __init__(
        self,
        fields: Mapping[str, Any],
        sink: FieldSink,
        *,
        read_response: bool = True,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        check_partial_call(fields)
        self._initial = dict(fields)
        self._fields = dict(fields)
        self._sink = sink
        self._read_response = read_response
        self._clock = clock
        self._wall_clock = wall_clock
        self._started: float | None = None
        self._finished = False

    @property
    def fields(self) -> dict[str, Any]:
        """A copy of the fields set so far."""
        return dict(self._fields)

    def set(self, **fields: Any) -> None:
        """Set event fields (``user_id``, ``cost_usd``, ``tags``...); bad values raise here."""
        check_field_names(fields)
        merged = {**self._fields, **fields}
        check_partial_call(merged)
        self._fields = merged

    def record_response(self, response: object) -> Usage:
        """Copy tokens, finish reason and response model from a provider response; never raises."""
        usage = read_usage(response)
        self._fields.update(usage.fields())
        return usage

    def mark_first_token(self) -> None:
        """Record ``ttft_ms`` now, for a streamed response; later calls are ignored."""
        if self._started is not None and "ttft_ms" not in self._fields:
            self._fields["ttft_ms"] = (self._clock() - self._started) * 1000.0

    def __enter__(self) -> TrackedCall:
        if self._started is not None:
            raise RuntimeError("a TrackedCall times one call; call track() again for the next")
        self._fields.setdefault("timestamp", self._wall_clock())
        self._started = self._clock()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._finish(exc)

    async def __aenter__(self) -> TrackedCall:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._finish(exc)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Decorate a sync or async function: every call is timed and emitted."""
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                "track() cannot time a generator; use it as a context manager around the"
                " stream, with mark_first_token()"
            )
        if inspect.iscoroutinefunction(func):
            return cast(Callable[P, R], self._wrap_async(func))

        @functools.wraps(func)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            with self._fresh() as call:
                result = func(*args, **kwargs)
                if self._read_response:
                    call.record_response(result)
                return result

        return timed

    def _wrap_async(self, func: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[Any]]:
        @functools.wraps(func)
        async def timed(*args: P.args, **kwargs: P.kwargs) -> Any:
            async with self._fresh() as call:
                result = await func(*args, **kwargs)
                if self._read_response:
                    call.record_response(result)
                return result

        return timed

    def _fresh(self) -> TrackedCall:
        fresh = copy.copy(self)  # the initial fields were checked once, in __init__
        fresh._fields = dict(self._initial)
        fresh._started = None
        fresh._finished = False
        return fresh

    def _finish(self, exc: BaseException | None) -> None:
        if self._started is None or self._finished:
            return
        self._finished = True
        fields = self._fields
        fields.setdefault("latency_ms", max(0.0, (self._clock() - self._started) * 1000.0))
        if exc is not None:
            fields["status"] = "error"
            fields.setdefault("error_type", type(exc).__name__)
        else:
            fields.setdefault("status", "ok")
        try:
            self._sink(fields)
        except Exception:  # the application's call must never fail because of monitoring
            logger.exception("llmpulse: could not emit a timed call")
