"""Detection stage benchmark: µs per call and bytes per key with the default configuration.

    python -m tests.bench_detections [--calls 100000] [--repeat 3] [--out results.json]

Calls are `schemas.LLMCall` objects spread over 10 apps, 2 models each (4 models, 2
providers) and 2 prompts each: 20 + 20 + 4 = 44 keys in the three default key sets, all
in one partition. Half-Space Trees run on the first key set only (the default). Reports the
best of ``--repeat`` timed passes over a fresh stage (wall clock and CPU time; a whole pass is
rarely undisturbed on a shared machine, so also the fastest steady 250-call batch), the parts
alone, then pickled bytes and traced memory (tracemalloc) per key after the pass, and the time
to snapshot the partition.
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
from typing import Any, NamedTuple

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


class Pass(NamedTuple):
    stage: DetectionsStage
    seconds: float  # wall clock
    cpu_seconds: float
    best_batch_us: float  # µs per call of the fastest 250-call batch of the second half


def feed(calls: list[LLMCall], batch: int = 250) -> Pass:
    """A fresh stage fed ``calls``: its wall-clock and CPU time, and its fastest batch.

    The fastest batch of the second half (keys made, Half-Space Trees past their first
    window) is the steady cost per call least disturbed by other jobs on a shared machine.
    """
    stage = DetectionsStage(DetectorConfig())
    stage.assign(0, None)
    gc.collect()
    batches = []
    started, cpu_started = time.perf_counter(), time.process_time()
    for start in range(0, len(calls) - batch + 1, batch):
        batch_started = time.perf_counter()
        for offset in range(start, start + batch):
            stage.add_call(calls[offset], 0, offset)
        batches.append(time.perf_counter() - batch_started)
    best_batch = min(batches[len(batches) // 2 :], default=math.nan) / batch * 1e6
    return Pass(stage, time.perf_counter() - started, time.process_time() - cpu_started, best_batch)


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
    stage = feed(calls).stage
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
    """µs per call of the parts alone, as the stage runs them.

    Feature extraction (from the call's fields, as `DetectionsStage` reads an `LLMCall`),
    the transform (once per call, shared by the keys), and one key with and without HST
    (`KeyDetectors.update_transformed`).
    """
    started = time.perf_counter()
    features = [extract_features(call.__dict__) for call in calls]
    out = {"extract_features": time.perf_counter() - started}
    config = DetectorConfig()
    started = time.perf_counter()
    transformed = [(config.transform(numeric), categorical) for numeric, categorical in features]
    out["transform"] = time.perf_counter() - started
    for label, key_config in (
        ("key_with_hst", config),
        ("key_without_hst", DetectorConfig(anomaly_features=())),
    ):
        key = KeyDetectors(key_config)
        started = time.perf_counter()
        for values, categorical in transformed:
            key.update_transformed(values, categorical=categorical)
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
    stage, best = min(passes, key=lambda p: p.seconds)[:2]
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
        "us_per_call_all": [round(p.seconds / args.calls * 1e6, 1) for p in passes],
        "cpu_us_per_call_best": round(min(p.cpu_seconds for p in passes) / args.calls * 1e6, 1),
        "us_per_call_best_batch": round(min(p.best_batch_us for p in passes), 1),
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
