"""Ingestion benchmark: llmpulse worker vs a raw aiokafka consumer on the same events, same run.

    python -m tests.bench_ingest --events 100000 [--bootstrap HOST:PORT] [--out results.json]

Without ``--bootstrap`` a temporary local broker is started (and stopped). Throughput is measured
from the worker's first consumed event to the last row stored in ``llm_calls``; the ceiling is a
raw aiokafka consumer that only parses the same records with orjson.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from streams.local_kafka import LocalKafka
from tests.events import valid_call
from tests.integration.conftest import WorkerProcess, free_port, produce


async def raw_consumer(bootstrap: str, topic: str, expected: int) -> float:
    """Events/s of a plain aiokafka consumer that parses every value with orjson."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=2000,
    )  # fmt: skip
    await consumer.start()
    seen = 0
    started: float | None = None
    try:
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for messages in batch.values():
                if started is None:
                    started = time.perf_counter()
                for message in messages:
                    orjson.loads(message.value)
                seen += len(messages)
    finally:
        await consumer.stop()
    assert started is not None
    return expected / (time.perf_counter() - started)


def worker_run(env: dict[str, str], workdir: Path, expected: int, label: str) -> dict[str, Any]:
    worker = WorkerProcess(env, workdir / f"{label}.log").start(timeout=120)
    first: float | None = None
    try:
        while True:
            health = worker.health() or {}
            now = time.perf_counter()
            consumed = sum(health.get("events_in", {}).values())
            if first is None and consumed > 0:
                first = now
            written = health.get("sinks", {}).get("llm_calls", {}).get("rows_written", 0)
            if written >= expected and first is not None:
                elapsed = now - first
                break
            time.sleep(0.05)
    finally:
        worker.stop()
    return {
        "events": expected,
        "seconds": round(elapsed, 3),
        "events_per_s": round(expected / elapsed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--out", type=Path, default=Path("bench-results/ingest.json"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="llmpulse-bench-"))
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = LocalKafka(home=workdir / "kafka", port=free_port(pair=True))
        broker.start(timeout=180)
        bootstrap = broker.bootstrap
    try:
        topic = f"bench.calls.{uuid.uuid4().hex[:6]}"
        rng = random.Random(1)
        values = [orjson.dumps(valid_call(i, rng)) for i in range(args.events)]
        print(f"producing {args.events} events to {topic} ...", flush=True)
        produce(bootstrap, topic, values, partitions=4)
        ceiling = asyncio.run(raw_consumer(bootstrap, topic, args.events))
        print(f"raw aiokafka + orjson: {ceiling:,.0f} events/s", flush=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMPULSE_")}
        env.update(
            {
                "LLMPULSE_KAFKA_BOOTSTRAP": bootstrap,
                "LLMPULSE_DATA_DIR": str(workdir / "data"),
                "LLMPULSE_CONSUMER_GROUP": f"bench-{uuid.uuid4().hex[:6]}",
                "LLMPULSE_TOPIC_CALLS": topic,
                "LLMPULSE_TOPIC_FEEDBACK": f"{topic}.feedback",
                "LLMPULSE_TOPIC_DLQ": f"{topic}.dlq",
                "LLMPULSE_WEB_PORT": str(free_port()),
            }
        )
        ingest = worker_run(env, workdir, args.events, "ingest")
        print(f"llmpulse worker (ingestion): {ingest['events_per_s']:,} events/s", flush=True)
        results = {
            "events": args.events,
            "raw_consumer_events_per_s": round(ceiling),
            "worker_ingest": ingest,
            "ratio_worker_to_raw": round(ingest["events_per_s"] / ceiling, 3),
            "cpu_count": os.cpu_count(),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
