"""Calibration of the detector defaults: false alarms and detection delays on seeded streams.

The test runs a small version (well under 200k events) and checks the issue's targets.
``python tests/unit/test_detector_calibration.py`` runs the full version and prints the
table in docs/detectors.md.
"""

from __future__ import annotations

import math
import pickle
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors import (
    AdwinDetector,
    BinaryRateDetector,
    DetectorConfig,
    HalfSpaceTreesDetector,
    KeyDetectors,
    KswinDetector,
    StandardizedPageHinkley,
)

Factory = Callable[[], Any]
Sampler = Callable[[np.random.Generator, int, float], list[Any]]

CHANGE_AT = 2000  # events of baseline before a change (after each detector's warm-up)
HORIZON = 6000  # 60 s at 100 events/s: later than this counts as missed
LOG_MEDIAN, LOG_SIGMA = math.log(800.0), 0.4


def latency(rng: np.random.Generator, n: int, factor: float) -> list[Any]:
    """log1p of lognormal latencies (median 800 ms, sigma 0.4), multiplied by ``factor``."""
    values = rng.lognormal(LOG_MEDIAN, LOG_SIGMA, n) * factor
    return np.log1p(values).tolist()  # type: ignore[no-any-return]


def flag(rng: np.random.Generator, n: int, p: float) -> list[Any]:
    return (rng.random(n) < p).astype(float).tolist()  # type: ignore[no-any-return]


def score(rng: np.random.Generator, n: int, mean: float) -> list[Any]:
    """Beta scores with concentration 10 (sd ~0.12 around 0.8)."""
    return rng.beta(10 * mean, 10 * (1 - mean), n).tolist()  # type: ignore[no-any-return]


def call_features(rng: np.random.Generator, n: int, factor: float) -> list[Any]:
    """Log-scale features of whole calls for Half-Space Trees; latency and TTFT x factor."""
    lat = np.log1p(rng.lognormal(LOG_MEDIAN, LOG_SIGMA, n) * factor)
    ttft = np.log1p(rng.lognormal(math.log(300.0), 0.4, n) * factor)
    tokens = np.log1p(rng.lognormal(math.log(200.0), 0.5, n))
    cost = tokens + rng.normal(0.0, 0.1, n)
    return [
        {"latency": a, "ttft": b, "output_tokens": c, "cost": d}
        for a, b, c, d in zip(
            lat.tolist(), ttft.tolist(), tokens.tolist(), cost.tolist(), strict=True
        )
    ]


@dataclass(frozen=True)
class Row:
    signal: str
    detector: str
    false_per_100k: float
    normal_events: int
    delays: dict[str, tuple[float, float]]  # scenario -> (median delay, detection rate)
    us_per_update: float
    pickled_bytes: int


def _feed(detector: Any, values: list[Any]) -> Iterator[int]:
    for value in values:
        if detector.update(value) is not None:
            yield detector.n_seen


def false_alarms(factory: Factory, sampler: Sampler, level: float, n: int, seed: int) -> int:
    detector = factory()
    return sum(1 for _ in _feed(detector, sampler(np.random.default_rng(seed), n, level)))


def delays(
    factory: Factory, sampler: Sampler, before: float, after: float, trials: int, seed: int
) -> tuple[float, float]:
    """Median delay (events after the change) over detected trials, and detection rate."""
    found = []
    for trial in range(trials):
        rng = np.random.default_rng(seed + trial)
        detector = factory()
        start = detector.warm_up + CHANGE_AT
        stream = sampler(rng, start, before) + sampler(rng, HORIZON, after)
        late = [i - start for i in _feed(detector, stream) if i > start]
        if late:
            found.append(late[0])
    if not found:
        return math.inf, 0.0
    return float(statistics.median(found)), len(found) / trials


def cost(factory: Factory, sampler: Sampler, level: float) -> tuple[float, int]:
    detector = factory()
    values = sampler(np.random.default_rng(0), 10_000, level)
    begin = time.perf_counter()
    for value in values:
        detector.update(value)
    elapsed = time.perf_counter() - begin
    return elapsed / len(values) * 1e6, len(pickle.dumps(detector))


# What a signal's cases share: sampler, baseline level, {scenario: changed level}.
Signal = tuple[Sampler, float, dict[str, float]]
LATENCY: Signal = (latency, 1.0, {"x1.3": 1.3, "x2": 2.0})
ERROR: Signal = (flag, 0.01, {"0.01->0.2": 0.2, "0.01->0.03": 0.03})
SCORE: Signal = (score, 0.8, {"0.8->0.7": 0.7, "0.8->0.75": 0.75})
CALL: Signal = (call_features, 1.0, {"x2": 2.0})

# signal, detector label, factory, sampler, baseline level, {scenario: changed level}
CASES: list[tuple[str, str, Factory, Sampler, float, dict[str, float]]] = [
    ("latency", "adwin (default)", lambda: AdwinDetector(direction="up"), *LATENCY),
    ("latency", "page_hinkley", lambda: StandardizedPageHinkley(direction="up"), *LATENCY),
    ("latency", "kswin", lambda: KswinDetector(direction="up"), *LATENCY),
    ("error", "adwin up (default)", lambda: AdwinDetector(direction="up"), *ERROR),
    ("error", "binary_rate ddm", lambda: BinaryRateDetector(method="ddm"), *ERROR),
    ("error", "binary_rate eddm", lambda: BinaryRateDetector(method="eddm"), *ERROR),
    ("error", "binary_rate hddm_a", lambda: BinaryRateDetector(method="hddm_a"), *ERROR),
    ("error", "binary_rate hddm_w", lambda: BinaryRateDetector(method="hddm_w"), *ERROR),
    ("score", "adwin (default)", lambda: AdwinDetector(), *SCORE),
    ("score", "page_hinkley", lambda: StandardizedPageHinkley(), *SCORE),
    (
        "call",
        "half_space_trees",
        lambda: HalfSpaceTreesDetector(("latency", "ttft", "output_tokens", "cost")),
        *CALL,
    ),
]


def calibrate(normal_events: int, trials: int, slow_factor: int = 20) -> list[Row]:
    """Measure every case; KSWIN and Half-Space Trees get ``slow_factor`` times less data."""
    rows = []
    for signal, label, factory, sampler, level, scenarios in CASES:
        slow = label.startswith(("kswin", "half_space_trees"))
        n = normal_events // slow_factor if slow else normal_events
        n_trials = max(3, trials // 4) if slow else trials
        alarms = false_alarms(factory, sampler, level, n, seed=1)
        found = {
            name: delays(factory, sampler, level, changed, n_trials, seed=1000)
            for name, changed in scenarios.items()
        }
        us, size = cost(factory, sampler, level)
        rows.append(Row(signal, label, alarms / n * 100_000, n, found, us, size))
    return rows


def key_bundle_cost(events: int = 5_000, config: DetectorConfig | None = None) -> tuple[float, int]:
    """µs per call and pickled bytes of a default KeyDetectors with two evaluator scores."""
    rng = np.random.default_rng(0)
    calls = [
        (
            {
                "latency": float(rng.lognormal(LOG_MEDIAN, LOG_SIGMA)),
                "ttft": float(rng.lognormal(5.7, 0.4)),
                "output_tokens": float(int(rng.lognormal(5.3, 0.5))),
                "cost": float(rng.lognormal(-7.0, 0.5)),
                "error": float(rng.random() < 0.02),
                "refusal": float(rng.random() < 0.005),
                "score.faithfulness": float(rng.beta(8, 2)),
                "score.relevance": float(rng.beta(8, 2)),
            },
            {"model": "gpt-4o-mini"},
        )
        for _ in range(events)
    ]
    key = KeyDetectors(config)
    begin = time.perf_counter()
    for features, categorical in calls:
        key.update(features, categorical=categorical)
    elapsed = time.perf_counter() - begin
    return elapsed / events * 1e6, len(pickle.dumps(key))


def table(rows: list[Row]) -> str:
    lines = [
        "| signal | detector | false / 100k | normal events | scenario: median delay (rate) "
        "| µs/update | bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        found = "; ".join(
            f"{name}: {median:.0f} ({rate:.0%})" for name, (median, rate) in r.delays.items()
        )
        lines.append(
            f"| {r.signal} | {r.detector} | {r.false_per_100k:.2f} | {r.normal_events:,} "
            f"| {found} | {r.us_per_update:.1f} | {r.pickled_bytes:,} |"
        )
    return "\n".join(lines)


def test_defaults_meet_the_targets() -> None:
    """A quick run of the default choices against the issue's targets."""
    defaults = [case for case in CASES if "default" in case[1]]
    for signal, label, factory, sampler, level, scenarios in defaults:
        assert false_alarms(factory, sampler, level, 100_000, seed=7) <= 1, (signal, label)
        for name, changed in scenarios.items():
            if name in ("0.01->0.03", "0.8->0.75"):
                continue  # small shifts: measured and documented, not a target
            median, rate = delays(factory, sampler, level, changed, trials=5, seed=99)
            assert rate == 1.0 and median < 1000, (signal, label, name, median, rate)


if __name__ == "__main__":
    normal = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    n_trials = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    print(table(calibrate(normal, n_trials)))
    us, size = key_bundle_cost()
    print(f"\nKeyDetectors (8 signals, Half-Space Trees, new values): {us:.1f} µs/call, {size:,} B")
    us, size = key_bundle_cost(config=DetectorConfig(anomaly_features=()))
    print(f"KeyDetectors without Half-Space Trees: {us:.1f} µs/call, {size:,} B")
