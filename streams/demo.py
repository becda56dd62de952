"""``llmpulse demo``: the main job on embedded defaults, end to end on this machine.

Starts the local Kafka broker (unless one already answers), runs a worker on the embedded
ClickHouse store, publishes sample LLM traffic (with a few malformed records), waits until every
event is stored, and prints analyst queries with their answers. Ctrl-C stops what it started.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from streams.config import Settings
from streams.local_kafka import LocalKafka
from streams.worker_client import query_worker, wait_healthy

MODELS = (
    ("openai", "gpt-4o-mini", 700.0),
    ("openai", "gpt-4o", 1400.0),
    ("anthropic", "claude-3-5-haiku-20241022", 900.0),
)
QUERIES = (
    (
        "Calls, errors and p95 latency per model",
        "SELECT provider, model, count() AS calls, countIf(status = 'error') AS errors, "
        "round(quantile(0.95)(latency_ms)) AS p95_ms FROM llmpulse.llm_calls FINAL "
        "GROUP BY provider, model ORDER BY calls DESC",
    ),
    (
        "Tokens per app and prompt version",
        "SELECT app, prompt_version, sum(input_tokens) AS tokens_in, "
        "sum(output_tokens) AS tokens_out "
        "FROM llmpulse.llm_calls FINAL GROUP BY app, prompt_version ORDER BY app, prompt_version",
    ),
    (
        "Rejected records by reason",
        "SELECT reason_code, count() AS records, any(reason) AS example "
        "FROM llmpulse.llm_dead_letters FINAL GROUP BY reason_code",
    ),
)


def sample_event(i: int, rng: random.Random, now: datetime) -> dict[str, Any]:
    provider, model, median_ms = MODELS[i % len(MODELS)]
    latency = rng.lognormvariate(0, 0.35) * median_ms
    return {
        "event_id": f"demo-{uuid.uuid4().hex}",
        "timestamp": (now - timedelta(milliseconds=latency)).isoformat(),
        "app": ("support-bot", "search", "summarizer")[i % 3],
        "provider": provider,
        "model": model,
        "latency_ms": round(latency, 1),
        "ttft_ms": round(latency * rng.uniform(0.15, 0.3), 1),
        "input_tokens": rng.randint(50, 3000),
        "output_tokens": rng.randint(10, 700),
        "prompt_id": "answer",
        "prompt_version": rng.choice(("v1", "v2")),
        "status": "error" if rng.random() < 0.02 else "ok",
        "finish_reason": "stop",
        "input_text": "Customer jane@example.com asks about order 1234",
    }


async def publish(
    settings: Settings, events: int, rate: float, console: Console
) -> tuple[int, int]:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, **settings.kafka_client_options()
    )
    await producer.start()
    rng = random.Random(42)
    bad = 0
    try:
        started = time.monotonic()
        for i in range(events):
            if i % 250 == 249:
                value = b'{"event_id": "broken", "latency_ms": -1'
                bad += 1
            else:
                value = orjson.dumps(sample_event(i, rng, datetime.now(UTC)))
            await producer.send(settings.topic_calls, value)
            ahead = (i + 1) / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
    console.print(f"published {events} events ({bad} malformed on purpose)")
    return events - bad, bad


def run_demo(settings: Settings, events: int, rate: float, console: Console) -> None:
    broker = LocalKafka.from_bootstrap(settings.data_dir, settings.kafka_bootstrap)
    started_broker = broker.pid() is None and not broker.port_open()
    if started_broker:
        console.print("starting the local Kafka broker (first run fetches its jars with mvn) ...")
    console.print(
        broker.start() if not broker.port_open() else f"using Kafka at {broker.bootstrap}"
    )
    log_path = settings.data_dir / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "info"],
        stdout=log_path.open("ab"), stderr=subprocess.STDOUT, env=dict(os.environ),
    )  # fmt: skip
    try:
        try:
            wait_healthy(settings.web_host, settings.web_port, worker, timeout=120)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}; see {log_path}") from exc
        console.print(f"worker up; health at http://{settings.web_host}:{settings.web_port}/health")
        before = _count(settings, CALLS_STORED), _count(settings, DEAD_LETTERS_STORED)
        valid, bad = asyncio.run(publish(settings, events, rate, console))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (
            _count(settings, CALLS_STORED) < before[0] + valid
            or _count(settings, DEAD_LETTERS_STORED) < before[1] + bad
        ):
            time.sleep(0.5)
        console.print(
            f"stored {_count(settings, CALLS_STORED) - before[0]} new calls and "
            f"{_count(settings, DEAD_LETTERS_STORED) - before[1]} dead letters in ClickHouse"
        )
        for title, sql in QUERIES:
            columns, rows = query_worker(settings.web_host, settings.web_port, sql)
            table = Table(*columns, title=title)
            for row in rows:
                table.add_row(*(str(v) for v in row))
            console.print(table)
            console.print(f'  [dim]llmpulse sql "{sql}"[/dim]')
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
        if started_broker:
            console.print(broker.stop())


CALLS_STORED = "SELECT uniqExact(event_id) FROM llmpulse.llm_calls"
DEAD_LETTERS_STORED = "SELECT count() FROM llmpulse.llm_dead_letters FINAL"


def _count(settings: Settings, sql: str) -> int:
    return int(query_worker(settings.web_host, settings.web_port, sql)[1][0][0])
