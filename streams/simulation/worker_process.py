"""A throwaway ``llmpulse worker`` for one evaluation run: own topics, group, store and port.

`eval_settings` gives a run its fresh, suffixed topics and consumer group; `EvalWorker` runs
the worker in a child process with exactly those settings (detectors on, metrics and alerts
off), waits until it has processed a given number of calls and published every detection,
and stops it. `read_detections` then reads ``llm.detections`` back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr

from streams.config import Settings
from streams.detections_stage import DEFAULT_HST_KEY_SET
from streams.topics import worker_topics
from streams.worker_client import fetch_health, wait_healthy

__all__ = [
    "EvalWorker",
    "WorkerFailed",
    "broker_reachable",
    "delete_topics",
    "eval_settings",
    "read_detections",
    "worker_environment",
]

_TOPIC_FIELDS = tuple(
    name
    for name, info in Settings.model_fields.items()
    if name.startswith("topic_") and info.annotation is str
)
"""Every topic name setting (calls, feedback, dlq, metrics, detections, alerts, ...)."""


class WorkerFailed(RuntimeError):
    """The evaluation worker exited, stalled, or lost detections."""


def eval_settings(settings: Settings, suffix: str, data_dir: Path, **updates: Any) -> Settings:
    """``settings`` with every topic and the consumer group suffixed, its own data dir and port.

    The Kafka connection (bootstrap, security) and the partition count are kept.
    """
    renamed = {name: f"{getattr(settings, name)}.eval-{suffix}" for name in _TOPIC_FIELDS}
    return settings.model_copy(
        update={
            **renamed,
            "consumer_group": f"llmpulse-eval-{suffix}",
            "data_dir": data_dir,
            "clickhouse_url": None,  # an embedded store in data_dir: never the user's tables
            "web_host": "127.0.0.1",
            "web_port": _free_port(),
            **updates,
        }
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def worker_environment(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The child worker's environment: ``base`` without any ``LLMPULSE_*``, then ``settings``.

    Only what the run needs is set: the Kafka connection, topics, group, data dir, web port
    and validation window come from ``settings``; the detectors run as in a default worker
    (`evaluation_configs`), and the metrics and alert stages are off (they do not feed the
    detectors, and alert rules would notify real receivers of simulated incidents).
    """
    env = {k: v for k, v in (os.environ if base is None else base).items()}
    env = {k: v for k, v in env.items() if not k.startswith("LLMPULSE_")}
    passed = [n for n in type(settings).model_fields if n.startswith("kafka_")]
    passed += [*_TOPIC_FIELDS, "topic_partitions", "topic_replication", "consumer_group"]
    passed += ["data_dir", "web_host", "web_port", "max_past_days", "max_future_minutes"]
    for name in passed:
        value = getattr(settings, name)
        if value is not None:
            env[f"LLMPULSE_{name.upper()}"] = _env_value(value)
    env.update(
        {
            "LLMPULSE_DETECTORS_ENABLED": "true",
            "LLMPULSE_DETECTORS_HST_KEY_SET": ",".join(DEFAULT_HST_KEY_SET),
            "LLMPULSE_METRICS_ENABLED": "false",
            "LLMPULSE_ALERTS_ENABLED": "false",
            "LLMPULSE_LOG_FORMAT": "text",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


class EvalWorker:
    """``llmpulse worker`` in a child process, logging to ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "warn"],
                env=worker_environment(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_healthy("127.0.0.1", self.settings.web_port, self.proc, timeout)
        except (RuntimeError, TimeoutError) as exc:
            raise WorkerFailed(f"{exc}\n{self.log_tail()}") from exc

    def health(self) -> dict[str, Any] | None:
        return fetch_health("127.0.0.1", self.settings.web_port, timeout=10.0)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise WorkerFailed(f"the worker exited with {self.proc.returncode}:\n{self.log_tail()}")

    def wait_processed(
        self,
        calls: int,
        stall_s: float = 120.0,
        progress: Callable[[int, int], None] | None = None,
        every_s: float = 15.0,
    ) -> dict[str, Any]:
        """Wait until the worker has read ``calls`` calls and published every detection.

        A call goes through the detectors as it is read (the count in ``/health`` is taken
        just before), so then only the detections still queued or in flight remain: done
        when every detection made is published. Returns the last ``/health`` body.
        """
        seen, moved, told = -1, time.monotonic(), time.monotonic()
        while True:
            self._alive()
            health = self.health()  # None while the worker is too busy to answer in time
            now = time.monotonic()
            if health is not None:
                read, done = _read_and_done(health, self.settings.topic_calls, calls)
                if done:
                    return health
                if read != seen:
                    seen, moved = read, now
            if now - moved > stall_s:
                raise WorkerFailed(
                    f"the worker read no call for {stall_s:.0f} s ({max(seen, 0):,}/{calls:,}):"
                    f"\n{self.log_tail()}"
                )
            if progress is not None and now - told >= every_s and seen >= 0:
                progress(seen, calls)
                told = now
            time.sleep(0.25)

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def _read_and_done(health: dict[str, Any], topic: str, calls: int) -> tuple[int, bool]:
    """Calls read so far; done when all are read and every detection made is published."""
    read = int(health.get("events_in", {}).get(topic, 0))
    detections = health.get("detections", {})
    made = sum(detections.get("detections", {}).values())
    return read, read >= calls and detections.get("published") == made


async def _read(settings: Settings, expected: int, timeout_s: float) -> list[dict[str, Any]]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        settings.topic_detections,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        **settings.kafka_client_options(),
    )
    await consumer.start()
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(orjson.loads(m.value) for m in messages)
    finally:
        await consumer.stop()
    return records


def read_detections(settings: Settings, expected: int, timeout_s: float = 60.0) -> list[Any]:
    """The ``expected`` detection records of the run's detections topic, as JSON objects."""
    if expected == 0:
        return []
    records = asyncio.run(_read(settings, expected, timeout_s))
    if len(records) < expected:
        raise WorkerFailed(
            f"read {len(records)} of the {expected} detections the worker published to "
            f"{settings.topic_detections} in {timeout_s:.0f} s"
        )
    return records


async def _probe(settings: Settings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=5000,
        **settings.kafka_client_options(),
    )
    try:
        await asyncio.wait_for(admin.start(), 15)
        await asyncio.wait_for(admin.list_topics(), 15)
    finally:
        await admin.close()


def broker_reachable(settings: Settings) -> str | None:
    """None when the broker answers a metadata request, else why not."""
    try:
        asyncio.run(_probe(settings))
    except Exception as exc:  # any failure to connect means the same to the caller
        return str(exc) or type(exc).__name__
    return None


def delete_topics(settings: Settings) -> None:
    """Delete a run's topics (best effort: the caller logs a failure)."""

    async def run() -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap, **settings.kafka_client_options()
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            names = [t for t in worker_topics(settings) if t in existing]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()

    asyncio.run(run())
