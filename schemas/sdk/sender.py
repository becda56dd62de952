"""The background task that drains an `EventBuffer` into Kafka: connect with backoff, send."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import time
from typing import Any

from schemas.sdk.buffer import EventBuffer
from schemas.sdk.config import PulseConfig

logger = logging.getLogger("schemas.sdk")

_BATCH = 500  # records handed to aiokafka before the sender yields to the application
_WARN_INTERVAL_S = 60.0  # one warning per kind per minute: a dead broker must not flood logs


class ThrottledWarnings:
    """Logs a warning of each kind at most once per ``interval_s``."""

    def __init__(self, interval_s: float = _WARN_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}

    def warn(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -math.inf) >= self.interval_s:
            self._last[kind] = now
            logger.warning(message, *args)


class KafkaSender:
    """Sends the records of ``buffer`` with an ``AIOKafkaProducer`` on the running event loop.

    Never raises into the application: connection failures are retried with
    backoff and counted, failed records are counted as ``dropped_kafka_error``.
    """

    def __init__(
        self, config: PulseConfig, buffer: EventBuffer, warnings: ThrottledWarnings
    ) -> None:
        self.config = config
        self._buffer = buffer
        self._warnings = warnings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake: asyncio.Event | None = None
        self._close_requested: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._producer: Any = None
        self._closing = False
        self.connected = False

    @property
    def started(self) -> bool:
        return self._runner is not None

    def start(self) -> None:
        """Start on the running loop; raises only for options the producer does not accept."""
        producer = self._new_producer()
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._close_requested = asyncio.Event()
        self._runner = self._loop.create_task(self._run(producer), name="llmpulse-sdk-sender")

    def notify(self) -> None:
        """Wake the sender for new records; callable from any thread."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return  # not started: the sender looks at the buffer when it starts
        if threading.get_ident() == self._loop_thread:
            wake.set()
            return
        # A closed loop raises RuntimeError; the client's close has counted what is left.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(wake.set)

    # A deadline argument, not asyncio.timeout(): stop must finish its own cleanup in time.
    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109
        """Send what is buffered and stop within ``timeout`` seconds."""
        self._closing = True
        if self._close_requested is not None:
            self._close_requested.set()
        self.notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        runner = self._runner
        if runner is not None and not runner.done():
            grace = min(0.05, timeout / 2)
            await asyncio.wait({runner}, timeout=max(0.0, timeout - grace))
            if not runner.done():
                runner.cancel()
                await asyncio.wait({runner}, timeout=grace)
        if self._stopping is not None and not self._stopping.done():
            await asyncio.wait({self._stopping}, timeout=max(0.0, deadline - loop.time()))

    def _new_producer(self) -> Any:
        from aiokafka import AIOKafkaProducer

        return AIOKafkaProducer(**self.config.producer_options())

    async def _run(self, producer: Any) -> None:
        self._producer = producer
        try:
            if await self._connect():
                await self._drain()
                await self._producer.flush()
        except Exception:
            logger.exception("llmpulse: the event sender stopped; later events will be dropped")
        finally:
            self.connected = False
            if self._producer is not None and self._loop is not None:
                # Not awaited here: stop() waits for it only as long as its deadline allows.
                self._stopping = self._loop.create_task(self._stop_quietly(self._producer))

    async def _connect(self) -> bool:
        delay = self.config.retry_initial_s
        while True:
            try:
                await self._producer.start()
            except Exception as exc:
                self._buffer.count_connect_failure()
                self._warnings.warn(
                    "connect",
                    "llmpulse: cannot reach Kafka at %s (%s); retrying in the background",
                    self.config.bootstrap,
                    type(exc).__name__,
                )
                await self._stop_quietly(self._producer)
                self._producer = None
            else:
                self.connected = True
                logger.info("llmpulse: connected to Kafka at %s", self.config.bootstrap)
                return True
            if not await self._sleep_unless_closing(delay * random.uniform(0.8, 1.2)):
                return False
            delay = min(delay * 2, self.config.retry_max_s)
            self._producer = self._new_producer()

    async def _sleep_unless_closing(self, seconds: float) -> bool:
        """Wait ``seconds``; False at once if the client is closing."""
        assert self._close_requested is not None
        if self._closing:
            return False
        try:
            await asyncio.wait_for(self._close_requested.wait(), seconds)
        except TimeoutError:
            return True
        return False

    async def _drain(self) -> None:
        assert self._wake is not None
        topic = self.config.topic
        while True:
            batch = self._buffer.take(_BATCH)
            if not batch:
                if self._closing:
                    return
                self._wake.clear()
                if not len(self._buffer):
                    await self._wake.wait()
                continue
            for key, value in batch:
                try:
                    delivery = await self._producer.send(topic, value, key=key)
                except Exception as exc:
                    self._buffer.settle(sent=False)
                    self._warnings.warn("send", "llmpulse: could not send an event: %r", exc)
                else:
                    delivery.add_done_callback(self._on_delivery)
            await asyncio.sleep(0)  # let the application's own tasks run between batches

    def _on_delivery(self, delivery: asyncio.Future[Any]) -> None:
        error = None if delivery.cancelled() else delivery.exception()
        if delivery.cancelled() or error is not None:
            self._buffer.settle(sent=False)
            self._warnings.warn("delivery", "llmpulse: Kafka did not take an event: %r", error)
        else:
            self._buffer.settle(sent=True)

    async def _stop_quietly(self, producer: Any) -> None:
        try:
            await producer.stop()
        except Exception as exc:
            logger.debug("llmpulse: error while stopping the producer: %r", exc)
