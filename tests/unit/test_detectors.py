"""Generic checks over every detector, plus parameter validation and warm-up."""

from __future__ import annotations

import math
import pickle
import random
import re
from collections.abc import Callable
from typing import Any

import pytest

from detectors import (
    AdwinDetector,
    BinaryRateDetector,
    ChangeDetector,
    Detection,
    HalfSpaceTreesDetector,
    KswinDetector,
    NewValueDetector,
    StandardizedPageHinkley,
)
from detectors._river import drift


def latency_stream(seed: int, n_before: int = 3000, n_after: int = 2000) -> list[float]:
    rng = random.Random(seed)
    before = [rng.gauss(math.log(800), 0.4) for _ in range(n_before)]
    return before + [rng.gauss(math.log(1600), 0.4) for _ in range(n_after)]


def flag_stream(
    seed: int, n_before: int = 3000, n_after: int = 2000, rate_after: float = 0.2
) -> list[float]:
    rng = random.Random(seed)
    before = [float(rng.random() < 0.01) for _ in range(n_before)]
    return before + [float(rng.random() < rate_after) for _ in range(n_after)]


def short_latency_stream(seed: int, n_before: int = 1000, n_after: int = 300) -> list[float]:
    """For KSWIN, whose KS test costs up to 1 ms an update."""
    return latency_stream(seed, n_before, n_after)


def outage_stream(seed: int, n_before: int = 3000, n_after: int = 2000) -> list[float]:
    """A provider outage: most calls fail."""
    return flag_stream(seed, n_before, n_after, rate_after=0.7)


def call_stream(seed: int, n_before: int = 3000, n_after: int = 2000) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [
        {"latency": rng.gauss(6.7 + shift, 0.4), "output_tokens": rng.gauss(5.3 + shift, 0.5)}
        for shift in [0.0] * n_before + [1.0] * n_after
    ]


def model_stream(seed: int, n_before: int = 3000, n_after: int = 2000) -> list[str]:
    rng = random.Random(seed)
    before = [rng.choice(["gpt-4o", "gpt-4o-mini"]) for _ in range(n_before)]
    return before + [rng.choice(["gpt-4o", "gpt-4o-mini", "o3"]) for _ in range(n_after)]


# id, factory, stream(seed, n_before, n_after), exact index of the first detection (seed 42).
# EDDM's first detection is a false alarm before the change (it has the highest false-alarm
# rate measured); HDDM_W with river's defaults only sees rate jumps above ~0.4, hence the
# outage stream.
CASES: list[tuple[str, Callable[[], Any], Callable[..., list[Any]], int]] = [
    ("adwin", lambda: AdwinDetector(signal="latency"), latency_stream, 3040),
    ("page_hinkley", lambda: StandardizedPageHinkley(signal="latency"), latency_stream, 3012),
    ("kswin", lambda: KswinDetector(signal="latency", seed=3), short_latency_stream, 1034),
    ("adwin_flag", lambda: AdwinDetector(signal="error", direction="up"), flag_stream, 3040),
    ("ddm", lambda: BinaryRateDetector(method="ddm"), flag_stream, 3010),
    ("eddm", lambda: BinaryRateDetector(method="eddm"), flag_stream, 2749),
    ("hddm_a", lambda: BinaryRateDetector(method="hddm_a"), flag_stream, 3045),
    ("hddm_w", lambda: BinaryRateDetector(method="hddm_w"), outage_stream, 3017),
    (
        "half_space_trees",
        lambda: HalfSpaceTreesDetector(("latency", "output_tokens")),
        call_stream,
        3034,
    ),
    ("new_value", lambda: NewValueDetector(signal="model"), model_stream, 3003),
]
IDS = [case[0] for case in CASES]


def detections(detector: Any, stream: list[Any]) -> list[Detection]:
    return [d for x in stream if (d := detector.update(x)) is not None]


@pytest.mark.parametrize(("factory", "stream", "index"), [c[1:] for c in CASES], ids=IDS)
def test_exact_detection_index(factory: Any, stream: Any, index: int) -> None:
    found = detections(factory(), stream(42))
    assert found, "the change was not detected"
    assert found[0].index == index
    assert found[0].index == found[0].index  # the Detection is a plain value
    assert isinstance(found[0].to_dict()["params"], dict)


@pytest.mark.parametrize(("factory", "stream"), [c[1:3] for c in CASES], ids=IDS)
def test_pickling_round_trip_preserves_behaviour(factory: Any, stream: Any) -> None:
    values = stream(7)
    half = len(values) // 2
    original = factory()
    detections(original, values[:half])
    restored = pickle.loads(pickle.dumps(original))
    assert restored.n_seen == original.n_seen == half
    assert detections(restored, values[half:]) == detections(original, values[half:])


@pytest.mark.parametrize(("factory", "stream"), [c[1:3] for c in CASES], ids=IDS)
def test_bounded_memory(factory: Any, stream: Any) -> None:
    detector = factory()
    total = 3_000 if type(detector) is KswinDetector else 50_000
    values = stream(3, total, 0)
    detections(detector, values[: total // 5])
    early = len(pickle.dumps(detector))
    detections(detector, values[total // 5 :])
    late = len(pickle.dumps(detector))
    # ADWIN's buckets grow with the log of its window (bounded by max_window).
    assert late <= early + 1024, (early, late)


def test_adwin_sees_the_drifts_rivers_public_adwin_sees() -> None:
    # AdwinDetector calls river's Rust helper directly and restarts after each drift;
    # river's ADWIN.update resets on the update after a drift. Both must cut at the same
    # points (a river upgrade that changes this fails here).
    values = latency_stream(8, 3000, 3000) + latency_stream(9, 3000, 0)
    river_adwin = drift.ADWIN(delta=0.002, clock=32, min_window_length=5)
    expected = []
    for i, x in enumerate(values):
        river_adwin.update(x)
        if river_adwin.drift_detected:
            expected.append((i, river_adwin.width))
    ours = AdwinDetector(delta=0.002, clock=32, min_window_length=5)
    found = []
    for i, x in enumerate(values):
        if ours._learn(x):
            found.append((i, ours._adwin.width))
            ours._restart()
    assert found == expected and len(found) >= 2


def test_half_space_trees_count_calls_with_any_finite_value() -> None:
    detector = HalfSpaceTreesDetector(("latency", "output_tokens"))
    assert detector.update({"latency": math.nan, "output_tokens": math.inf}) is None
    assert detector.n_seen == 0
    detector.update({"latency": 6.0, "output_tokens": math.nan})
    detector.update({"latency": math.nan, "other": 1.0})  # no feature, but a finite value
    assert detector.n_seen == 2


def test_adwin_max_window_caps_its_state() -> None:
    detector = AdwinDetector(max_window=2_000)
    values = latency_stream(5, 30_000, 0)
    sizes = []
    for start in range(0, 30_000, 5_000):
        detections(detector, values[start : start + 5_000])
        sizes.append(len(pickle.dumps(detector)))
    assert max(sizes) - min(sizes) <= 256, sizes


@pytest.mark.parametrize(("factory", "stream"), [c[1:3] for c in CASES], ids=IDS)
def test_clone_and_repr(factory: Any, stream: Any) -> None:
    detector = factory()
    detections(detector, stream(1, 10, 0))
    clone = detector.clone()
    assert repr(clone) == repr(detector)
    assert clone.n_seen == 0
    assert type(detector).__name__ in repr(detector)


@pytest.mark.parametrize(
    "factory",
    [c[1] for c in CASES if c[0] not in ("half_space_trees", "new_value")],
    ids=[c[0] for c in CASES if c[0] not in ("half_space_trees", "new_value")],
)
def test_univariate_detectors_follow_the_protocol(factory: Any) -> None:
    detector = factory()
    assert isinstance(detector, ChangeDetector)
    namespace = {type(detector).__name__: type(detector)}
    assert repr(eval(repr(detector), namespace)) == repr(detector)


@pytest.mark.parametrize(("factory", "stream"), [c[1:3] for c in CASES], ids=IDS)
def test_warm_up_suppresses_detections(factory: Any, stream: Any) -> None:
    detector = factory()
    # The change happens right at the start, inside the warm-up: nothing may be reported
    # during the warm-up, whatever the data.
    values = stream(11, 10, detector.warm_up)
    assert detections(detector, values[: detector.warm_up]) == []


def test_detector_stays_quiet_during_warm_up_after_a_change() -> None:
    detector = AdwinDetector(warm_up=500)
    found = detections(detector, latency_stream(42, 3000, 2000) + latency_stream(43, 0, 300))
    assert [d.index for d in found] == [3040]


def test_direction_filters_reported_changes() -> None:
    rising = latency_stream(42)
    falling = rising[::-1]
    assert detections(AdwinDetector(direction="down"), rising) == []
    assert detections(AdwinDetector(direction="up"), falling) == []
    found = detections(AdwinDetector(direction="up"), rising)
    assert found[0].after_level > found[0].before_quantile > found[0].before_mean
    assert found[0].score > 0


def test_before_and_after_statistics_describe_the_regimes() -> None:
    (found, *_) = detections(StandardizedPageHinkley(direction="up"), latency_stream(42))
    assert math.exp(found.before_mean) == pytest.approx(800, rel=0.05)
    assert math.exp(found.after_level) == pytest.approx(1600, rel=0.15)
    assert math.exp(found.before_quantile) == pytest.approx(800 * math.exp(1.2816 * 0.4), rel=0.1)


def test_non_finite_values_are_ignored() -> None:
    detector = AdwinDetector()
    assert detector.update(math.nan) is None
    assert detector.update(math.inf) is None
    assert detector.n_seen == 0


def test_new_value_detector_memory_is_capped() -> None:
    detector = NewValueDetector(max_values=10, max_candidates=5, min_count=2, warm_up=0)
    for i in range(1000):
        detector.update(f"value-{i}")
    assert len(detector._known) <= 10
    assert len(detector._candidates) <= 5


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: AdwinDetector(delta=0), "delta must be in (0.0, 1.0)"),
        (lambda: AdwinDetector(clock=0), "clock must be an integer >= 1"),
        (lambda: AdwinDetector(max_window=10), "max_window must be an integer >= 20"),
        (lambda: AdwinDetector(warm_up=-1), "warm_up must be an integer >= 0"),
        (lambda: AdwinDetector(direction="sideways"), "direction must be one of"),
        (lambda: AdwinDetector(quantile=1.5), "quantile must be in (0.0, 1.0)"),
        (lambda: AdwinDetector(block_size=1), "block_size must be an integer >= 2"),
        (lambda: StandardizedPageHinkley(threshold=0), "threshold must be a finite number > 0"),
        (lambda: StandardizedPageHinkley(delta=-1), "delta must be a finite number >= 0"),
        (lambda: StandardizedPageHinkley(alpha=1.5), "alpha must be in (0, 1]"),
        (lambda: StandardizedPageHinkley(warm_up=1), "warm_up must be an integer >= 2"),
        (lambda: KswinDetector(alpha=2), "alpha must be in (0.0, 1.0)"),
        (lambda: KswinDetector(window_size=50), "window_size must be an integer >= 100"),
        (lambda: BinaryRateDetector(method="cusum"), "method must be one of"),
        (lambda: BinaryRateDetector(drift_threshold=0), "drift_threshold must be > 0"),
        (lambda: HalfSpaceTreesDetector(()), "features must be a non-empty list"),
        (lambda: HalfSpaceTreesDetector(("a",), n_trees=0), "n_trees must be an integer >= 1"),
        (lambda: HalfSpaceTreesDetector(("a",), q=1), "q must be in (0.0, 1.0)"),
        (lambda: HalfSpaceTreesDetector(("a",), warm_up=10), "warm_up must be an integer >= 500"),
        (lambda: NewValueDetector(min_count=0), "min_count must be an integer >= 1"),
        (lambda: NewValueDetector(min_count=5, window=3), "window must be an integer >= 5"),
    ],
)
def test_invalid_parameters_raise_clear_errors(factory: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        factory()
