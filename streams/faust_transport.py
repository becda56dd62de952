"""A faust aiokafka transport whose consumer hands messages to agents without a task per message.

faust's fetch loop delivers each message with
``await self.wait_first(callback(message), self.suspend_flow.wait())``: four tasks and an
``asyncio.wait`` per message, so that a delivery blocked on a full stream buffer can be abandoned
when a rebalance suspends the flow. Almost every delivery completes without suspending, so this
consumer first steps the delivery coroutine by hand; only a delivery that actually has to wait goes
through the general ``wait_first``, which still abandons it when the flow is suspended. Measured
on the ingestion benchmark, this roughly halves faust's per-message overhead (docs/performance.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

from faust.transport.drivers import aiokafka as aiokafka_driver
from mode.services import WaitResults


async def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """Drive a coroutine that already yielded ``yielded``, the way an asyncio Task would."""
    try:
        while True:
            if yielded is None:
                await asyncio.sleep(0)
            else:
                yielded._asyncio_future_blocking = False
                await asyncio.wait([yielded])
            try:
                yielded = coro.send(None)
            except StopIteration as stop:
                return stop.value
    except asyncio.CancelledError:
        if yielded is not None and not yielded.done():
            yielded.cancel()
        coro.close()
        raise


def _close(awaitable: Any) -> None:
    if isinstance(awaitable, Coroutine | Generator):
        awaitable.close()


class StepFirstConsumer(aiokafka_driver.Consumer):
    # Same signature as mode.Service.wait_first, which this overrides.
    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:  # noqa: ASYNC109
        if timeout is not None or len(coros) != 2 or not asyncio.iscoroutine(coros[0]):
            return await super().wait_first(*coros, timeout=timeout)
        delivery, suspended = coros
        if self.should_stop:
            delivery.close()
            _close(suspended)
            return WaitResults([], [], True)
        try:
            yielded = delivery.send(None)
        except StopIteration as stop:
            _close(suspended)
            return WaitResults([delivery], [stop.value], False)
        return await super().wait_first(_resume(delivery, yielded), suspended)


class StepFirstTransport(aiokafka_driver.Transport):
    Consumer = StepFirstConsumer
