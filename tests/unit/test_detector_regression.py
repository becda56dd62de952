"""Exact detections of long seeded multi-key streams, recorded before the detection path was
made faster (issue 4): any change of behaviour, however small, fails here.

The fixture `detector_regression.json` holds every detection (key, signal, detector, where,
and its numbers to 9 significant digits) of the worker's `DetectionsStage` on 16,000 calls
of four apps over two partitions (schema objects and plain objects, with regime changes,
odd values and missing fields) with every key's counters at the end, and of two
`KeyDetectors` (default configuration and one with every other detector) fed plain dicts. It
also holds a key pickled by the code before, which must restore and continue as that code
did. Regenerate it (the old pickle is kept) only for an intended, reviewed change of
behaviour::

    PYTHONPATH=. python tests/unit/test_detector_regression.py
"""

from __future__ import annotations

import base64
import hashlib
import math
import pickle
import random
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from detectors import Detection, DetectorConfig, KeyDetectors, SignalConfig, default_signals
from schemas import LLMCall
from streams.detections_stage import DetectionRecord, DetectionsStage

FIXTURE = Path(__file__).with_name("detector_regression.json")
NOW = datetime(2025, 3, 2, tzinfo=UTC)
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PER_APP = 4000
# app -> (partition, (provider, model) choices); bot and mail send schema objects (LLMCall).
APPS: dict[str, tuple[int, tuple[tuple[str, str], ...]]] = {
    "bot": (0, (("openai", "gpt-4o"), ("openai", "gpt-4o-mini"))),
    "search": (1, (("anthropic", "claude"),)),
    "mail": (0, (("openai", "gpt-4o"),)),
    "code": (1, (("anthropic", "claude"), ("openai", "gpt-4o"))),
}
# Every detector kind, for the KeyDetectors fed with dicts.
OTHERS = DetectorConfig(
    signals={
        **default_signals(),
        "latency": SignalConfig("page_hinkley", {"direction": "up"}, transform="log1p"),
        "ttft": SignalConfig("kswin", {"direction": "up", "seed": 3}, transform="log1p"),
        "error": SignalConfig("binary_rate", {"method": "ddm"}),
        "refusal": SignalConfig("binary_rate", {"method": "eddm"}),
    },
    score=SignalConfig("binary_rate", {"method": "hddm_a"}),
    feedback=SignalConfig("binary_rate", {"method": "hddm_w"}),
    max_score_names=3,
    anomaly_features=("latency", "output_tokens"),
    anomaly_params={"q": 0.95, "seed": 4},
)


@dataclass(slots=True)
class Call:
    """A call as any object with the right attributes (not validated: odd values get in)."""

    event_id: str
    timestamp: datetime
    app: str
    environment: str
    provider: str
    model: str
    prompt_id: str | None
    prompt_version: str | None
    latency_ms: Any
    ttft_ms: Any
    output_tokens: Any
    cost_usd: Any
    status: Any
    error_type: str | None
    finish_reason: str | None
    scores: dict[str, Any]
    feedback: dict[str, Any] | None


def _fields(rng: random.Random, app: str, i: int) -> dict[str, Any]:
    """One call's measurements, with each app's scripted changes."""
    latency, ttft, tokens, cost = 800.0, 300.0, 200.0, 0.002
    error_rate, refusal_rate, faithfulness, thumbs = 0.02, 0.005, 0.8, 0.7
    error_types = ["timeout", "rate_limit"]
    if app == "bot":
        latency *= 2.0 if 1500 <= i < 2500 else 1.0
        error_rate = 0.15  # enough error types to warm up their new-value detector
        if 3000 <= i < 3400:
            error_rate, error_types = 0.5, ["context_length"]
    elif app == "search":
        faithfulness = 0.6 if i >= 2000 else 0.8
        thumbs = 0.4 if i >= 2500 else 0.7
        tokens *= 0.5 if i >= 3000 else 1.0
        cost *= 3.0 if i >= 1500 else 1.0
        refusal_rate = 0.2 if 1200 <= i < 1600 else 0.005
    elif app == "mail":
        if i >= 3000 and rng.random() < 0.3:  # joint outliers (for Half-Space Trees)
            latency, ttft, tokens, cost = latency * 5, ttft * 5, tokens * 5, cost * 5
    elif app == "code":
        ttft *= 2.0 if i >= 2000 else 1.0
    elif app == "dict":  # every other detector kind, on one key
        latency *= 2.0 if i >= 1200 else 1.0
        ttft *= 3.0 if i >= 2000 else 1.0
        error_rate = 0.3 if 1800 <= i < 2200 else 0.1
        error_types = ["context_length"] if 1800 <= i < 2200 else error_types
        refusal_rate = 0.2 if i >= 2500 else 0.01
        faithfulness, thumbs = (0.3, 0.2) if i < 1500 else (0.7, 0.8)
        if i >= 2400 and rng.random() < 0.3:
            latency, tokens = latency * 5, tokens * 5
    failed = rng.random() < error_rate
    return {
        "latency_ms": rng.lognormvariate(math.log(latency), 0.4),
        "ttft_ms": rng.lognormvariate(math.log(ttft), 0.4),
        "output_tokens": int(rng.lognormvariate(math.log(tokens), 0.5)),
        "cost_usd": rng.lognormvariate(math.log(cost), 0.5),
        "status": "error" if failed else "ok",
        "error_type": rng.choice(error_types) if failed else None,
        "finish_reason": "content_filter" if rng.random() < refusal_rate else "stop",
        "scores": {"faithfulness": rng.betavariate(10 * faithfulness, 10 - 10 * faithfulness)},
        "feedback": {"thumbs": float(rng.random() < thumbs)} if rng.random() < 0.5 else None,
    }


def _oddities(fields: dict[str, Any], i: int) -> None:
    """Values a plain object may carry: strings, bools, NaN, inf, negatives, many names."""
    odd = [
        (97, "latency_ms", None),
        (89, "ttft_ms", "350"),
        (101, "output_tokens", True),
        (103, "cost_usd", -5e-6),
        (107, "latency_ms", math.inf),
        (109, "scores", {"faithfulness": math.nan}),
        (113, "status", None),
        (127, "finish_reason", None),
        (131, "status", "SUCCESS"),
    ]
    for every, name, value in odd:
        if i % every == 0:
            fields[name] = value
    fields["scores"] = {**fields["scores"], f"s{i % 12}": (i % 7) / 7}


def events() -> list[tuple[int, int, Any]]:
    """(partition, offset, call): the apps' calls interleaved."""
    rng = random.Random(20260523)
    offsets = {0: 0, 1: 0}
    out: list[tuple[int, int, Any]] = []
    for i in range(PER_APP):
        for app, (partition, models) in APPS.items():
            provider, model = rng.choice(models)
            if app == "bot" and i >= 3500 and rng.random() < 0.1:
                model = "gpt-5"  # a new model (a new value on the prompt key set)
            fields = _fields(rng, app, i)
            dims: dict[str, Any] = {
                "event_id": f"{app}-{i}",
                "timestamp": T0 + timedelta(milliseconds=10 * i),
                "app": app,
                "environment": "" if app == "code" and i % 50 == 0 else "production",
                "provider": provider,
                "model": model,
                "prompt_id": None if app == "search" and i % 40 == 0 else f"p{i % 2}",
                "prompt_version": "v1",
            }
            if app in ("bot", "mail"):
                del fields["feedback"]
                call: Any = LLMCall(**dims, **fields)
            else:
                if app == "code":
                    _oddities(fields, i)
                call = Call(**dims, **fields)
            out.append((partition, offsets[partition], call))
            offsets[partition] += 1
    return out


def _g(x: float) -> str:
    return f"{x:.9g}"


def _digest(params: Any) -> str:
    return hashlib.sha1(orjson.dumps(dict(params), option=orjson.OPT_SORT_KEYS)).hexdigest()[:10]


def _record_row(r: DetectionRecord) -> list[Any]:
    numbers = (r.score, r.before_mean, r.before_quantile, r.after_level)
    dims = "|".join(f"{k}={v}" for k, v in r.dimensions.items())
    where = [r.source_partition, r.source_offset, r.event_id]
    return [r.key_set, dims, r.signal, r.detector, *where, *map(_g, numbers), _digest(r.params)]


def _detection_row(label: str, d: Detection) -> list[Any]:
    numbers = (d.score, d.before_mean, d.before_quantile, d.after_level)
    return [label, d.signal, d.detector, d.index, *map(_g, numbers), _digest(d.params)]


def _stage_state(stage: DetectionsStage) -> dict[str, Any]:
    keys = []
    for partition in stage.partitions:
        for (key_set, key), detectors in pickle.loads(stage.snapshot(partition))[
            "detectors"
        ].items():
            seen = {name: getattr(d, "n_seen", 0) for name, d in detectors.detectors.items()}
            keys.append([partition, key_set, "|".join(key), detectors.n_seen, detectors.n_ignored])
            keys[-1].append(sorted(seen.items()))
    health = stage.health()
    counters = ("calls_counted", "evictions", "detections", "keys_by_key_set")
    return {"keys": keys, **{name: health[name] for name in counters}}


def stage_run(*, restore_at: int | None = None) -> dict[str, Any]:
    """Every record of the stage on `events()`, optionally checkpointed and restored midway."""
    stage = DetectionsStage(DetectorConfig(), clock=lambda: NOW)
    stage.assign(0, None)
    stage.assign(1, None)
    records: list[DetectionRecord] = []
    for n, (partition, offset, call) in enumerate(events()):
        if n == restore_at:
            pending, snapshots = stage.take_checkpoint()
            records += pending
            restored = DetectionsStage(DetectorConfig(), clock=lambda: NOW)
            for p in (0, 1):
                restored.assign(p, snapshots[restored.checkpoint_name(p)])
            restored.calls_counted = stage.calls_counted
            restored.detections = stage.detections
            stage = restored
        stage.add_call(call, partition, offset)
    records += stage.take_pending()
    return {"records": [_record_row(r) for r in records], "state": _stage_state(stage)}


def dict_calls() -> list[dict[str, Any]]:
    """One key's calls as plain dicts."""
    rng = random.Random(99)
    out = []
    for i in range(3000):
        fields = _fields(rng, "dict", i)
        fields["model"] = "gpt-4o" if i < 2600 or i % 3 else "o3"
        if i % 61 == 0:
            fields["scores"] = {**fields["scores"], f"n{i % 5}": 0.5}
        out.append(fields)
    return out


def keys_run() -> list[list[Any]]:
    """Detections of a default and an every-other-detector `KeyDetectors` on `dict_calls()`."""
    rows = []
    for label, config in (("default", DetectorConfig()), ("others", OTHERS)):
        key = KeyDetectors(config)
        for call in dict_calls():
            rows += [_detection_row(label, d) for d in key.update_call(call)]
        rows.append([label, "n_seen", key.n_seen, key.n_ignored, sorted(key.detectors)])
    return rows


def observed() -> dict[str, Any]:
    return {"stage": stage_run(), "keys": keys_run()}


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from the fixture (tuples become lists)."""
    return orjson.loads(orjson.dumps(value))


def test_stage_detections_match_the_recording() -> None:
    expected = orjson.loads(FIXTURE.read_bytes())["stage"]
    actual = _as_json(stage_run())
    assert actual["records"] == expected["records"]
    assert actual["state"] == expected["state"]


def test_a_stage_restored_midway_detects_the_same() -> None:
    expected = orjson.loads(FIXTURE.read_bytes())["stage"]
    actual = _as_json(stage_run(restore_at=7001))
    assert actual["records"] == expected["records"]
    assert actual["state"] == expected["state"]


def test_key_detectors_on_dicts_match_the_recording() -> None:
    assert _as_json(keys_run()) == orjson.loads(FIXTURE.read_bytes())["keys"]


def test_a_key_pickled_before_issue_4_restores_and_continues_the_same() -> None:
    # Pickled by the code before the detection path was made faster: a key without
    # Half-Space Trees after dict_calls()[:1500]; "continued" is what that code then found.
    old = orjson.loads(FIXTURE.read_bytes())["old_pickle"]
    key = pickle.loads(zlib.decompress(base64.b64decode(old["zlib_base64"])))
    assert isinstance(key, KeyDetectors) and key.n_seen == 1500
    continued = [
        _detection_row("restored", d) for c in dict_calls()[1500:] for d in key.update_call(c)
    ]
    assert _as_json(continued) == old["continued"]


if __name__ == "__main__":
    # The old pickle cannot be made again: it is kept as recorded.
    kept = {"old_pickle": orjson.loads(FIXTURE.read_bytes())["old_pickle"]}
    FIXTURE.write_bytes(orjson.dumps({**observed(), **kept}, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"wrote {FIXTURE}")
