"""Integration fixtures: a real Kafka broker for the session, and worker processes on demand."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from streams.local_kafka import LocalKafka
from streams.worker_client import fetch_health, query_worker, wait_healthy

REPO = Path(__file__).resolve().parents[2]


def free_port(pair: bool = False) -> int:
    """A free TCP port on 127.0.0.1 (and the next one too, when ``pair``)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port >= 65000:
            continue
        if not pair:
            return port
        with socket.socket() as other:
            try:
                other.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real single-node KRaft broker on 127.0.0.1; stopped when the session ends."""
    broker = LocalKafka(home=tmp_path_factory.mktemp("kafka"), port=free_port(pair=True))
    broker.start(timeout=180)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


class WorkerProcess:
    """``llmpulse worker`` in a child process, as an operator would run it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.web_port = int(env["LLMPULSE_WEB_PORT"])

    def start(self, timeout: float = 90.0) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "info"],
            env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.wait_healthy(timeout)
        return self

    def health(self) -> dict[str, Any] | None:
        return fetch_health("127.0.0.1", self.web_port)

    def wait_healthy(self, timeout: float) -> None:
        assert self.proc is not None
        try:
            wait_healthy("127.0.0.1", self.web_port, self.proc, timeout)
        except (RuntimeError, TimeoutError) as exc:
            raise type(exc)(f"{exc}:\n{self.log_tail()}") from exc

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        return query_worker("127.0.0.1", self.web_port, query)[1]

    def scalar(self, query: str) -> Any:
        return self.sql(query)[0][0]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


@pytest.fixture
def worker_env(kafka: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a worker isolated from other tests: own topics, group and store."""
    suffix = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMPULSE_")}
    env.update(
        {
            "LLMPULSE_KAFKA_BOOTSTRAP": kafka,
            "LLMPULSE_DATA_DIR": str(tmp_path / "data"),
            "LLMPULSE_CONSUMER_GROUP": f"llmpulse-test-{suffix}",
            "LLMPULSE_TOPIC_CALLS": f"llm.calls.{suffix}",
            "LLMPULSE_TOPIC_FEEDBACK": f"llm.feedback.{suffix}",
            "LLMPULSE_TOPIC_DLQ": f"llm.calls.dlq.{suffix}",
            "LLMPULSE_TOPIC_METRICS": f"llm.metrics.{suffix}",
            "LLMPULSE_TOPIC_STATE": f"llmpulse.state.{suffix}",
            "LLMPULSE_TOPIC_PARTITIONS": "3",
            "LLMPULSE_WEB_PORT": str(free_port()),
            "LLMPULSE_SINK_FLUSH_INTERVAL_S": "0.5",
            "LLMPULSE_SINK_BATCH_ROWS": "2000",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def make_worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    workers: list[WorkerProcess] = []

    def factory(**extra_env: str) -> WorkerProcess:
        worker = WorkerProcess({**worker_env, **extra_env}, tmp_path / f"worker{len(workers)}.log")
        workers.append(worker)
        return worker

    yield factory
    for worker in workers:
        if worker.proc is not None and worker.proc.poll() is None:
            worker.stop()


def produce(bootstrap: str, topic: str, values: Sequence[bytes], partitions: int = 3) -> None:
    """Publish ``values`` with a real producer, creating the topic first if needed."""

    async def run() -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, partitions, 1)])
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, max_request_size=2 * 1024 * 1024
        )
        await producer.start()
        try:
            batch = []
            for i, value in enumerate(values):
                batch.append(await producer.send(topic, value, key=str(i).encode()))
            await asyncio.gather(*batch)
        finally:
            await producer.stop()

    asyncio.run(run())


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[Any]:
    """Read a topic from the beginning until ``expected`` records arrived or time ran out."""

    async def run() -> list[Any]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False, group_id=None,
        )  # fmt: skip
        await consumer.start()
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        try:
            while len(records) < expected and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    records.extend(messages)
            # Anything beyond ``expected`` would be a duplicate; give it a moment to show up.
            batch = await consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                records.extend(messages)
        finally:
            await consumer.stop()
        return records

    return asyncio.run(run())


def wait_until(predicate: Any, timeout: float, message: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last is True:
            return
        time.sleep(interval)
    raise AssertionError(f"{message} (last: {last!r})")
