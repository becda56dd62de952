"""The asyncio client: `emit` only validates and enqueues; a background task batches into Kafka."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from schemas.llm_call import LLMCall
from schemas.sdk.buffer import EventBuffer, PulseCounters
from schemas.sdk.config import DEFAULT_TOPIC, PulseConfig
from schemas.sdk.events import build_call, encode_call
from schemas.sdk.sender import KafkaSender, ThrottledWarnings
from schemas.sdk.timing import TrackedCall
from schemas.validation import InvalidEvent


class PulseClient:
    """Publishes `LLMCall` events to Kafka from an asyncio application.

    `emit` and `track` never wait for Kafka: events go into a bounded buffer
    that a background task started by `start` drains with an ``AIOKafkaProducer``
    (batched by ``linger_ms``, keyed by ``app``). If the broker is unreachable the
    task keeps retrying with backoff; when the buffer is full, events are dropped
    and counted (`counters`). Only programmer errors raise: an invalid event
    raises `InvalidEvent` (a ValueError) where it is emitted.

    Call `start` and `close` on the event loop the application runs; `emit` may be
    called from any thread. Parameters are those of `PulseConfig`.
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
    ) -> None:
        self.config = PulseConfig(
            bootstrap=bootstrap,
            topic=topic,
            buffer_size=buffer_size,
            linger_ms=linger_ms,
            retry_initial_s=retry_initial_s,
            retry_max_s=retry_max_s,
            client_options=client_options or {},
            defaults=defaults or {},
        )
        self._buffer = EventBuffer(self.config.buffer_size)
        self._warnings = ThrottledWarnings()
        self._sender = KafkaSender(self.config, self._buffer, self._warnings)
        self._closing = False

    def __repr__(self) -> str:
        return f"PulseClient({self.config!r}, connected={self.connected})"

    @property
    def connected(self) -> bool:
        """Whether the producer has reached the broker."""
        return self._sender.connected

    def counters(self) -> PulseCounters:
        """What happened to the events so far; see `PulseCounters`."""
        return self._buffer.counters()

    def emit(self, call: LLMCall | None = None, /, **fields: Any) -> bool:
        """Queue one event, given as an `LLMCall` or as keyword arguments.

        Keyword events get the client's ``defaults``, a random ``event_id`` and the
        current UTC ``timestamp`` unless given. Returns False when the event was
        dropped (buffer full, client closed); never waits.

        Raises
        ------
        InvalidEvent
            The keyword arguments do not make a valid event (a ValueError).
        """
        if call is None:
            call = build_call({**self.config.defaults, **fields})
        elif fields:
            raise TypeError("emit() takes an LLMCall or keyword arguments, not both")
        elif not isinstance(call, LLMCall):
            raise TypeError(f"emit() takes an LLMCall, got {type(call).__name__}")
        return self._enqueue(call)

    def track(self, *, read_response: bool = True, **fields: Any) -> TrackedCall:
        """Time one call: ``with client.track(app=..., provider=..., model=...) as call:``.

        Also a decorator for sync and async functions. See `TrackedCall`.
        """
        return TrackedCall(
            {**self.config.defaults, **fields}, self._emit_tracked, read_response=read_response
        )

    async def start(self) -> None:
        """Start the background sender; returns at once, even if Kafka is down.

        Raises only for client options ``AIOKafkaProducer`` does not accept.
        """
        if self._closing:
            raise RuntimeError("this client is closed")
        if not self._sender.started:
            self._sender.start()

    # A deadline argument, not asyncio.timeout(): close must finish its own cleanup in time.
    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Send what can be sent within ``timeout`` seconds, then stop; later calls do nothing.

        Events still buffered or unconfirmed at the deadline count as ``dropped_closed``.
        """
        if self._closing:
            return
        self._closing = True
        if self._sender.started:
            await self._sender.stop(timeout)
        self._buffer.close()

    async def __aenter__(self) -> PulseClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _enqueue(self, call: LLMCall) -> bool:
        key, value = encode_call(call)
        queued = self._buffer.put(key, value)
        if queued == 1:  # the sender may be asleep on an empty buffer
            self._sender.notify()
        return queued > 0

    def _emit_tracked(self, fields: dict[str, Any]) -> None:
        try:
            call = build_call(fields)
        except InvalidEvent as exc:
            self._buffer.count_invalid()
            self._warnings.warn(
                "invalid", "llmpulse: dropped a timed call, not a valid event: %s", exc
            )
            return
        self._enqueue(call)
