"""Detection stage benchmark: µs per call and bytes per key with the default configuration.

    python -m tests.bench_detections [--calls 100000] [--repeat 3] [--out results.json]

Calls are `schemas.LLMCall` objects spread over 10 apps, 2 models each (4 models, 2
providers) and 2 prompts each: 20 + 20 + 4 = 44 keys in the three default key sets, all
in one partition. Half-Space Trees run on the first key set only (the default). Reports the
best of ``--repeat`` timed passes over a fresh stage, then pickled bytes and traced memory
(tracemalloc) per key after the pass, and the time to snapshot the partition.
"""

from __future__ import annotations

import argparse
import gc
import math
import pickle
import random
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from detectors import DetectorConfig, KeyDetectors, extract_features
from schemas import LLMCall
from streams.detections_stage import DetectionsStage

MODELS = (("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude"), ("x", "y"))


def make_calls(n: int, seed: int = 7) -> list[LLMCall]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    calls = []
    for i in range(n):
        app = rng.randrange(10)
        provider, model = MODELS[(app + rng.randrange(2)) % len(MODELS)]
        calls.append(
            LLMCall(
                event_id=f"evt-{i}",
                timestamp=start + timedelta(milliseconds=10 * i),
                app=f"app-{app}",
                provider=provider,
                model=model,
                prompt_id=f"prompt-{rng.randrange(2)}",
                prompt_version="v1",
                latency_ms=rng.lognormvariate(math.log(800), 0.4),
                ttft_ms=rng.lognormvariate(math.log(300), 0.4),
                input_tokens=rng.randint(20, 2000),
                output_tokens=int(rng.lognormvariate(math.log(200), 0.5)),
                cost_usd=rng.lognormvariate(math.log(0.002), 0.5),
                status="error" if rng.random() < 0.02 else "ok",
                finish_reason="stop",
                scores={"faithfulness": rng.betavariate(8, 2)},
            )
        )
    return calls


def feed(calls: list[LLMCall]) -> tuple[DetectionsStage, float]:
    stage = DetectionsStage(DetectorConfig())
    stage.assign(0, None)
    gc.collect()
    started = time.perf_counter()
    for offset, call in enumerate(calls):
        stage.add_call(call, 0, offset)
    return stage, time.perf_counter() - started


def key_bytes(stage: DetectionsStage) -> dict[str, float]:
    state = pickle.loads(stage.snapshot(0))
    with_hst = [
        len(pickle.dumps(d)) for d in state["detectors"].values() if d.detectors.get("anomaly")
    ]
    without = [
        len(pickle.dumps(d)) for d in state["detectors"].values() if "anomaly" not in d.detectors
    ]
    return {
        "pickled_bytes_per_key_with_hst": sum(with_hst) / len(with_hst),
        "pickled_bytes_per_key_without_hst": sum(without) / len(without),
    }


def traced_bytes(calls: list[LLMCall]) -> dict[str, float]:
    """Heap held by detectors (tracemalloc): the stage's per key, and 10 keys of each kind."""
    tracemalloc.start()
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    stage, _ = feed(calls)
    gc.collect()
    out = {
        "traced_bytes_per_key": (tracemalloc.get_traced_memory()[0] - base) / stage.health()["keys"]
    }
    del stage
    for label, config in (
        ("with_hst", DetectorConfig()),
        ("without_hst", DetectorConfig(anomaly_features=())),
    ):
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        keys = [KeyDetectors(config) for _ in range(10)]
        for call in calls[:5000]:
            for key in keys:
                key.update_call(call)
        gc.collect()
        out[f"traced_bytes_per_key_{label}"] = (tracemalloc.get_traced_memory()[0] - base) / 10
        del keys
    tracemalloc.stop()
    return out


def parts_us(calls: list[LLMCall]) -> dict[str, float]:
    """µs per call of the parts alone: feature extraction, one key with and without HST."""
    started = time.perf_counter()
    features = [extract_features(call) for call in calls]
    out = {"extract_features": time.perf_counter() - started}
    for label, config in (
        ("key_with_hst", DetectorConfig()),
        ("key_without_hst", DetectorConfig(anomaly_features=())),
    ):
        key = KeyDetectors(config)
        started = time.perf_counter()
        for numeric, categorical in features:
            key.update(numeric, categorical=categorical)
        out[label] = time.perf_counter() - started
    return {k: round(v / len(calls) * 1e6, 1) for k, v in out.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    calls = make_calls(args.calls)
    passes = [feed(calls) for _ in range(args.repeat)]
    stage, best = min(passes, key=lambda p: p[1])
    health = stage.health()
    started = time.perf_counter()
    snapshot = stage.snapshot(0)
    snapshot_s = time.perf_counter() - started
    started = time.perf_counter()
    DetectionsStage(DetectorConfig()).assign(0, snapshot)
    restore_s = time.perf_counter() - started
    results: dict[str, Any] = {
        "calls": args.calls,
        "keys": health["keys"],
        "keys_by_key_set": health["keys_by_key_set"],
        "us_per_call_best": round(best / args.calls * 1e6, 1),
        "us_per_call_all": [round(s / args.calls * 1e6, 1) for _, s in passes],
        "parts_us_per_call": parts_us(calls),
        "detections": health["detections"],
        "snapshot_bytes": len(snapshot),
        "snapshot_ms": round(snapshot_s * 1e3, 1),
        "restore_ms": round(restore_s * 1e3, 1),
        **{k: round(v) for k, v in key_bytes(stage).items()},
        **{k: round(v) for k, v in traced_bytes(calls[:20_000]).items()},
    }
    print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    if args.out is not None:
        args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return results


if __name__ == "__main__":
    main()
