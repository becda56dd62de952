"""The producer SDK against the real broker: delivery, keys, threads, exit, broker down."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from schemas import LLMCall, decode_call
from schemas.sdk import PulseClient, PulseCounters, SyncPulseClient
from tests.integration.conftest import REPO, consume_all, free_port, wait_until

pytestmark = pytest.mark.integration

CHAT = {
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"finish_reason": "stop"}],
    "usage": {"prompt_tokens": 30, "completion_tokens": 5},
}
APPS = ("support-bot", "search", "summariser", "triage")


def new_topic(bootstrap: str, partitions: int = 3) -> str:
    """A fresh topic (the broker does not auto-create topics)."""
    topic = f"llm.calls.sdk.{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, partitions, 1)])
        finally:
            await admin.close()

    asyncio.run(create())
    return topic


def accounted(counters: PulseCounters) -> int:
    """Every emitted event ends in exactly one counter."""
    return (
        counters.sent
        + counters.dropped_buffer_full
        + counters.dropped_kafka_error
        + counters.dropped_closed
        + counters.buffered
        + counters.in_flight
    )


def check_records(records: list[Any], expected: int) -> list[LLMCall]:
    """Each record is a valid event keyed by its app, all on one partition per app."""
    assert len(records) == expected
    calls = []
    partitions: dict[str, set[int]] = defaultdict(set)
    for record in records:
        call = decode_call(record.value)
        assert record.key == call.app.encode()
        partitions[call.app].add(record.partition)
        calls.append(call)
    assert all(len(seen) == 1 for seen in partitions.values())
    assert len({call.event_id for call in calls}) == expected
    return calls


def test_async_client_delivers_every_style_keyed_by_app(kafka: str) -> None:
    topic = new_topic(kafka)

    async def app() -> PulseCounters:
        async with PulseClient(bootstrap=kafka, topic=topic, linger_ms=5) as pulse:
            for i in range(200):
                assert pulse.emit(app=APPS[i % 4], provider="openai", model="gpt-4o", latency_ms=i)
            event = LLMCall.model_validate(
                {"event_id": "given-id", "timestamp": datetime.now(UTC), "app": "search",
                 "provider": "anthropic", "model": "claude-haiku-4-5", "latency_ms": 5}
            )  # fmt: skip
            pulse.emit(event)
            async with pulse.track(app="triage", provider="openai", model="gpt-4o") as call:
                await asyncio.sleep(0.02)
                call.record_response(CHAT)

            @pulse.track(app="support-bot", provider="openai", model="gpt-4o")
            async def failing() -> None:
                raise ConnectionResetError

            with pytest.raises(ConnectionResetError):
                await failing()
            for _ in range(600):  # up to 30 s for the acknowledgements
                if pulse.counters().sent == 203:
                    break
                await asyncio.sleep(0.05)
            assert pulse.connected
        return pulse.counters()

    counters = asyncio.run(app())
    assert counters == PulseCounters(emitted=203, sent=203)
    calls = check_records(consume_all(kafka, topic, expected=203), 203)
    by_id = {call.event_id: call for call in calls}
    assert by_id["given-id"].app == "search"
    timed = [call for call in calls if call.response_model == "gpt-4o-mini-2024-07-18"]
    assert len(timed) == 1 and timed[0].latency_ms >= 20 and timed[0].input_tokens == 30
    (failed,) = [call for call in calls if call.status == "error"]
    assert failed.error_type == "ConnectionResetError"
    assert Counter(call.app for call in calls)["triage"] == 51


def test_sync_client_from_plain_threads(kafka: str) -> None:
    topic = new_topic(kafka)
    pulse = SyncPulseClient(bootstrap=kafka, topic=topic, defaults={"provider": "openai"})

    @pulse.track(app="summariser", model="gpt-4o")
    def summarise(text: str) -> dict[str, Any]:
        return {**CHAT, "usage": {"prompt_tokens": len(text), "completion_tokens": 1}}

    def worker(index: int) -> None:
        for i in range(50):
            pulse.emit(app=APPS[index % 4], model="gpt-4o", latency_ms=1.5, user_id=f"u{i}")
            summarise("x" * (index * 50 + i))

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started = time.monotonic()
    pulse.close(timeout=10)
    assert time.monotonic() - started < 10
    assert pulse.counters() == PulseCounters(emitted=400, sent=400)
    calls = check_records(consume_all(kafka, topic, expected=400), 400)
    decorated = sorted(call.input_tokens for call in calls if call.input_tokens is not None)
    assert decorated == list(range(200))  # every decorated call, with its own usage


def test_unreachable_broker_never_blocks_and_counts_drops() -> None:
    closed = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    pulse = SyncPulseClient(
        bootstrap=closed, buffer_size=50, retry_initial_s=0.05, retry_max_s=0.2,
        defaults={"app": "support-bot", "provider": "openai", "model": "gpt-4o"},
    )  # fmt: skip
    assert time.monotonic() - started < 1.0
    durations = []
    for i in range(500):
        before = time.perf_counter()
        with pulse.track() as call:
            call.set(input_tokens=i)
        durations.append(time.perf_counter() - before)
    # Enqueueing costs microseconds; waiting for Kafka would cost a connection attempt.
    assert statistics.median(durations) < 0.002
    assert max(durations) < 0.25
    wait_until(
        lambda: pulse.counters().connect_failures >= 3 or pulse.counters(),
        timeout=10,
        message="connection attempts keep failing in the background",
    )
    assert not pulse.connected
    counters = pulse.counters()
    assert (counters.emitted, counters.buffered, counters.dropped_buffer_full) == (500, 50, 450)
    assert counters.sent == 0

    before = time.monotonic()
    pulse.close(timeout=1.0)
    assert time.monotonic() - before < 1.0
    counters = pulse.counters()
    assert (counters.dropped_closed, counters.buffered, counters.dropped) == (50, 0, 500)
    assert accounted(counters) == counters.emitted == 500


def test_async_client_start_and_close_return_while_the_broker_is_down() -> None:
    closed = f"127.0.0.1:{free_port()}"

    async def app() -> PulseCounters:
        pulse = PulseClient(bootstrap=closed, retry_initial_s=0.05, retry_max_s=0.1)
        before = time.monotonic()
        await pulse.start()
        assert time.monotonic() - before < 0.5
        for _ in range(10):
            pulse.emit(app="a", provider="p", model="m", latency_ms=1)
            await asyncio.sleep(0.05)  # the sender keeps retrying meanwhile
        before = time.monotonic()
        await pulse.close(timeout=0.5)
        assert time.monotonic() - before < 0.5
        return pulse.counters()

    counters = asyncio.run(app())
    assert counters.connect_failures >= 2
    assert (counters.emitted, counters.dropped_closed, counters.sent) == (10, 10, 0)


class LateProxy:
    """A plain TCP forwarder to the real broker that only starts listening when opened."""

    def __init__(self, target: str) -> None:
        self.port = free_port()
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def open(self) -> None:
        async def listen() -> None:
            self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

        asyncio.run_coroutine_threadsafe(listen(), self._loop).result(10)

    def close(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


def test_events_buffered_while_down_are_sent_once_the_broker_is_reachable(kafka: str) -> None:
    topic = new_topic(kafka)
    proxy = LateProxy(kafka)
    try:
        with SyncPulseClient(
            bootstrap=f"127.0.0.1:{proxy.port}", topic=topic, buffer_size=100,
            retry_initial_s=0.05, retry_max_s=0.2, defaults={"app": "search"},
        ) as pulse:  # fmt: skip
            for i in range(150):
                pulse.emit(provider="openai", model="gpt-4o", latency_ms=i)
            wait_until(
                lambda: pulse.counters().connect_failures >= 2 or pulse.counters(),
                timeout=10,
                message="the first connection attempts fail",
            )
            proxy.open()
            wait_until(
                lambda: pulse.counters().sent == 100 or pulse.counters(),
                timeout=30,
                message="the buffered events are sent after reconnecting",
            )
            assert pulse.connected
            pulse.emit(provider="openai", model="gpt-4o", latency_ms=1000)
        counters = pulse.counters()
    finally:
        proxy.close()
    assert (counters.sent, counters.dropped_buffer_full, counters.dropped) == (101, 50, 50)
    calls = check_records(consume_all(kafka, topic, expected=101), 101)
    assert sorted(call.latency_ms for call in calls) == [*map(float, range(100)), 1000.0]


def test_missing_topic_counts_kafka_errors(kafka: str) -> None:
    pulse = SyncPulseClient(
        bootstrap=kafka, topic=f"no.such.topic.{uuid.uuid4().hex[:8]}",
        client_options={"request_timeout_ms": 500}, defaults={"app": "a"},
    )  # fmt: skip
    with pulse:
        for _ in range(3):
            pulse.emit(provider="p", model="m", latency_ms=1)
        wait_until(
            lambda: pulse.counters().dropped_kafka_error == 3 or pulse.counters(),
            timeout=30,
            message="each event gives up after request_timeout_ms",
        )
    assert pulse.counters() == PulseCounters(emitted=3, dropped_kafka_error=3)


EXIT_SCRIPT = """
import sys
from schemas.sdk import SyncPulseClient

pulse = SyncPulseClient(bootstrap=sys.argv[1], topic=sys.argv[2], defaults={"app": "exit-app"})
for i in range(300):
    pulse.emit(provider="openai", model="gpt-4o", latency_ms=i)
# no close(): the atexit hook flushes
"""


def test_interpreter_exit_flushes_without_close(kafka: str) -> None:
    topic = new_topic(kafka)
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, kafka, topic], cwd=REPO, check=True, timeout=60
    )
    assert time.monotonic() - started < 30
    check_records(consume_all(kafka, topic, expected=300), 300)


def test_example_script(kafka: str) -> None:
    topic = new_topic(kafka)
    result = subprocess.run(
        [sys.executable, "docs/examples/emit_events.py", "--bootstrap", kafka, "--topic", topic,
         "--count", "10"],
        cwd=REPO, check=True, timeout=60, capture_output=True, text=True,
    )  # fmt: skip
    assert "emitted=30 sent=30 dropped=0" in result.stdout
    calls = check_records(consume_all(kafka, topic, expected=30), 30)
    assert Counter(call.tags["style"] for call in calls) == {
        "kwargs": 10,
        "with": 10,
        "decorator": 10,
    }
    errors = [call for call in calls if call.status == "error"]
    assert errors and all(call.error_type == "RateLimitError" for call in errors)
    ok = [call for call in calls if call.status == "ok"]
    assert all(call.input_tokens and call.finish_reason in ("stop", "length") for call in ok)
    assert f"rate_limited={len(errors)}" in result.stdout
    assert orjson.loads(orjson.dumps(calls[0].model_dump(mode="json")))["app"] == "example-app"


def test_example_script_with_no_broker() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "docs/examples/emit_events.py", "--bootstrap",
         f"127.0.0.1:{free_port()}", "--count", "10"],
        cwd=REPO, check=True, timeout=60, capture_output=True, text=True,
    )  # fmt: skip
    assert time.monotonic() - started < 15  # the same fake calls, plus a close() that gives up
    assert "emitted=30 sent=0 dropped=30" in result.stdout
