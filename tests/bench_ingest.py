"""Ingestion benchmark: llmpulse worker vs a raw aiokafka consumer on the same events, same run.

    python -m tests.bench_ingest --events 100000 [--bootstrap HOST:PORT] [--out results.json]

Without ``--bootstrap`` a temporary local broker is started (and stopped). Throughput is measured
from the worker's first consumed event to the last row stored in ``llm_calls``; the ceiling is a
raw aiokafka consumer that only parses the same records with orjson. The worker runs three times:
ingestion only, with rolling metrics, and with metrics, detectors and alert rules; then the metrics
state's memory per active key is measured in process at 10,000 active keys.
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


def metrics_memory_per_key(keys: int = 10_000, calls_per_key: int = 20) -> dict[str, Any]:
    """Bytes of `PartitionedMetrics` state per active key (tracemalloc), all 3 key sets on.

    Each call has a distinct (app, environment, provider, model) and prompt version, so the
    run holds ``keys`` keys in each of the two app key sets; (provider, model) stays small.
    """
    import tracemalloc
    from datetime import UTC, datetime

    from schemas import LLMCall
    from streams.metrics import MetricsConfig, PartitionedMetrics, PricingTable

    rng = random.Random(2)
    now = datetime.now(UTC)
    calls = []
    for i in range(keys * calls_per_key):
        key = i % keys
        event = valid_call(i, rng, now, app=f"app-{key}", environment="prod")
        event["prompt_version"] = f"v{key}"
        calls.append(LLMCall.model_validate(event))
    # A join LRU sized to the window's calls, as a worker at this traffic would need.
    config = MetricsConfig(feedback_join_capacity=len(calls))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    metrics = PartitionedMetrics(config, PricingTable.load())
    for partition in range(4):
        metrics.assign(partition, None)
    for offset, call in enumerate(calls):
        metrics.add_call(offset % 4, offset, call)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    open_windows = metrics.open_window_count
    return {
        "active_keys": keys,
        "calls_per_key": calls_per_key,
        "open_windows": open_windows,
        "bytes_total": used,
        "bytes_per_active_key": round(used / keys),
        "bytes_per_open_window": round(used / open_windows),
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
        runs = {}
        stages = {
            "metrics_off": {"METRICS": "false", "DETECTORS": "false", "ALERTS": "false"},
            "metrics_on": {"METRICS": "true", "DETECTORS": "false", "ALERTS": "false"},
            "everything_on": {"METRICS": "true", "DETECTORS": "true", "ALERTS": "true"},
        }
        for label, switches in stages.items():
            run_env = {
                **env,
                "LLMPULSE_DATA_DIR": str(workdir / label),
                "LLMPULSE_CONSUMER_GROUP": f"bench-{label}-{uuid.uuid4().hex[:6]}",
                "LLMPULSE_TOPIC_METRICS": f"{topic}.metrics",
                "LLMPULSE_TOPIC_DETECTIONS": f"{topic}.detections",
                "LLMPULSE_TOPIC_ALERTS": f"{topic}.alerts",
                "LLMPULSE_TOPIC_STATE": f"{topic}.state.{label}",
                **{f"LLMPULSE_{name}_ENABLED": on for name, on in switches.items()},
            }
            runs[label] = worker_run(run_env, workdir, args.events, label)
            rate = runs[label]["events_per_s"]
            print(f"llmpulse worker ({label}): {rate:,} events/s", flush=True)
        off, on = runs["metrics_off"]["events_per_s"], runs["metrics_on"]["events_per_s"]
        memory = metrics_memory_per_key()
        print(f"metrics state: {memory['bytes_per_active_key']:,} bytes per active key", flush=True)
        results = {
            "events": args.events,
            "raw_consumer_events_per_s": round(ceiling),
            "worker": runs,
            "ratio_worker_to_raw": round(off / ceiling, 3),
            "ratio_metrics_on_to_raw": round(on / ceiling, 3),
            "ratio_everything_on_to_raw": round(runs["everything_on"]["events_per_s"] / ceiling, 3),
            "metrics_cost_fraction": round(1 - on / off, 3),
            "metrics_memory": memory,
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
