"""The client for code without an event loop: a `PulseClient` on its own background thread."""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from schemas.llm_call import LLMCall
from schemas.sdk.buffer import PulseCounters
from schemas.sdk.client import PulseClient
from schemas.sdk.config import DEFAULT_TOPIC, PulseConfig
from schemas.sdk.timing import TrackedCall

_START_TIMEOUT_S = 30.0  # starting only schedules the sender; this is a safety net, not a wait


class SyncPulseClient:
    """Publishes `LLMCall` events from threaded or plain synchronous code.

    A daemon thread runs an event loop with a `PulseClient`; `emit` and `track`
    only validate and enqueue, from any thread, and never wait for Kafka. Call
    `close` (or use ``with``) to flush before the process ends; otherwise an
    ``atexit`` hook closes the client with ``close_at_exit_s`` as its timeout.
    Parameters are those of `PulseConfig`.
    """

    def __init__(
        self,
        *,
        bootstrap: str | None = None,
        topic: str = DEFAULT_TOPIC,
        buffer_size: int = 10_000,
        linger_ms: int = 50,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        client_options: Mapping[str, Any] | None = None,
        defaults: Mapping[str, Any] | None = None,
        close_at_exit_s: float = 2.0,
    ) -> None:
        self._client = PulseClient(
            bootstrap=bootstrap,
            topic=topic,
            buffer_size=buffer_size,
            linger_ms=linger_ms,
            retry_initial_s=retry_initial_s,
            retry_max_s=retry_max_s,
            client_options=client_options,
            defaults=defaults,
        )
        self._close_at_exit_s = close_at_exit_s
        self._close_timeout = close_at_exit_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._started = threading.Event()
        self._close_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="llmpulse-sdk", daemon=True)
        self._thread.start()
        if not self._started.wait(_START_TIMEOUT_S):
            raise RuntimeError("the llmpulse sender thread did not start")
        if self._start_error is not None:
            raise self._start_error
        # The thread is a daemon, so it never holds the process open; this hook flushes first.
        atexit.register(self._close_at_exit)

    def __repr__(self) -> str:
        return f"SyncPulseClient({self.config!r}, connected={self.connected})"

    @property
    def config(self) -> PulseConfig:
        return self._client.config

    @property
    def connected(self) -> bool:
        """Whether the producer has reached the broker."""
        return self._client.connected

    def counters(self) -> PulseCounters:
        """What happened to the events so far; see `PulseCounters`."""
        return self._client.counters()

    def emit(self, call: LLMCall | None = None, /, **fields: Any) -> bool:
        """Queue one event; see `PulseClient.emit`. Thread-safe; never waits."""
        return self._client.emit(call, **fields)

    def track(self, *, read_response: bool = True, **fields: Any) -> TrackedCall:
        """Time one call as a context manager or decorator; see `PulseClient.track`."""
        return self._client.track(read_response=read_response, **fields)

    def close(self, timeout: float = 5.0) -> None:
        """Flush for at most ``timeout`` seconds and stop the thread; later calls do nothing."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self._close_at_exit)
        self._close_timeout = timeout
        if self._loop is not None and self._stop is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop has already ended
                return
        self._thread.join(timeout)

    def __enter__(self) -> SyncPulseClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _close_at_exit(self) -> None:
        self.close(self._close_at_exit_s)

    def _serve(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self._client.start()
        except BaseException as exc:  # handed to the constructor, which raises it
            self._start_error = exc
            return
        finally:
            self._started.set()
        await self._stop.wait()
        await self._client.close(self._close_timeout)
