"""Merging quantile estimators and window accumulators, against numpy and a single instance."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.metrics.accumulator import CallSample, WindowAccumulator
from streams.metrics.quantiles import QuantileEstimator
from tests.unit.metrics_fakes import check_against_numpy, rank_error

DISTRIBUTIONS = ("uniform", "lognormal_latency", "few_distinct", "sorted", "bimodal")


def stream(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if name == "uniform":
        return rng.random(n)
    if name == "lognormal_latency":
        return rng.lognormal(6.0, 1.0, n)
    if name == "few_distinct":
        return rng.integers(0, 10, n).astype(float)
    if name == "sorted":
        return np.arange(n, dtype=float)
    return np.where(rng.random(n) < 0.9, rng.normal(100, 5, n), rng.normal(5000, 100, n))


def estimators(parts: list[np.ndarray], eps: float, capacity: int) -> list[QuantileEstimator]:
    out = []
    for i, part in enumerate(parts):
        est = QuantileEstimator(eps, capacity)
        if i % 2:
            est.extend(part.tolist())
        else:
            for x in part.tolist():
                est.add(x)
        out.append(est)
    return out


def merge_randomly(ests: list[QuantileEstimator], rng: random.Random) -> QuantileEstimator:
    """Merge in a random tree, as partitions and then workers might."""
    ests = list(ests)
    while len(ests) > 1:
        i, j = rng.sample(range(len(ests)), 2)
        ests[i].merge(ests[j])
        del ests[j]
    return ests[0]


@pytest.mark.parametrize("name", DISTRIBUTIONS)
@pytest.mark.parametrize("parts", [2, 3, 5, 8])
@pytest.mark.parametrize("total", [900, 6_000, 120_000])
def test_merged_estimator_is_within_the_bound_of_numpy(name: str, parts: int, total: int) -> None:
    rng = np.random.default_rng(parts * 1000 + total)
    data = stream(name, total, rng)
    if name != "sorted":
        rng.shuffle(data)
    cuts = np.sort(rng.choice(np.arange(1, total), parts - 1, replace=False))
    pieces = np.split(data, cuts)
    merged = merge_randomly(estimators(pieces, 0.005, 1024), random.Random(total))
    assert merged.is_exact == (total <= 1024)
    check_against_numpy(merged, data)
    # The merged summary satisfies the invariants that prove the bound.
    QuantileEstimator.from_state(orjson.loads(orjson.dumps(merged.to_state())))


part_lists = st.lists(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=400), min_size=2, max_size=8
)


@settings(max_examples=80, deadline=None)
@given(part_lists, st.sampled_from((0.01, 0.05, 0.2)), st.sampled_from((1, 4, 32)), st.randoms())
def test_any_merge_tree_keeps_the_bound(
    parts: list[list[float]], eps: float, capacity: int, rng: random.Random
) -> None:
    pieces = [np.array(p, dtype=float) for p in parts]
    merged = merge_randomly(estimators(pieces, eps, capacity), rng)
    data = np.concatenate(pieces)
    if len(data):
        check_against_numpy(merged, data)
        QuantileEstimator.from_state(merged.to_state())
    else:
        assert merged.quantile(0.5) is None


def test_merge_then_more_values_stays_within_bound_and_small() -> None:
    rng = np.random.default_rng(11)
    pieces = [rng.lognormal(6, 1, 50_000) for _ in range(8)]
    merged = merge_randomly(estimators(pieces, 0.005, 1024), random.Random(1))
    later = rng.lognormal(6.5, 0.5, 200_000)
    for x in later.tolist():
        merged.add(x)
    check_against_numpy(merged, np.concatenate([*pieces, later]))
    assert merged.summary_size < 1200


def test_merge_leaves_the_other_unchanged_and_checks_eps() -> None:
    a, b = QuantileEstimator(exact_capacity=16), QuantileEstimator(exact_capacity=16)
    a.extend(float(x) for x in range(100))
    b.extend(float(x) for x in range(50, 170))
    b.add(3.5)  # pending in b's buffer
    before = b.to_state()
    a.merge(b)
    assert b.to_state() == before and a.count == 221
    exact = QuantileEstimator()
    exact.extend([1.0, 2.0])
    exact.merge(b)  # an exact estimator takes the other's summary, keeping its own values
    assert exact.count == 123 and not exact.is_exact
    with pytest.raises(ValueError, match="eps"):
        a.merge(QuantileEstimator(eps=0.01))
    with pytest.raises(ValueError, match="itself"):
        a.merge(a)


def test_exact_merge_spills_into_the_summary_past_capacity() -> None:
    a, b = QuantileEstimator(exact_capacity=10), QuantileEstimator(exact_capacity=10)
    a.extend([float(x) for x in range(6)])
    b.extend([float(x) for x in range(6, 12)])
    a.merge(b)
    assert not a.is_exact and a.count == 12
    check_against_numpy(a, np.arange(12, dtype=float))


# WindowAccumulator.merge


def samples(n: int, seed: int) -> list[CallSample]:
    """Call samples whose sums are dyadic, so that any order of addition is exact."""
    rng = random.Random(seed)
    out: list[CallSample] = []
    for _ in range(n):
        out.append(
            (
                rng.lognormvariate(6, 1) if rng.random() < 0.95 else None,
                rng.lognormvariate(4, 0.5) if rng.random() < 0.6 else None,
                rng.randint(0, 4000) / 8 if rng.random() < 0.8 else None,
                rng.randint(0, 4000),
                rng.randint(0, 900),
                rng.choice([0, 64]),
                rng.randint(0, 4096) / 2**20 if rng.random() < 0.9 else None,
                rng.random() < 0.1,
                rng.choice([0, 0, 1, 2]),
                {"tox": rng.randint(0, 16) / 16} if rng.random() < 0.5 else None,
            )
        )
    return out


def fill(acc: WindowAccumulator, part: list[CallSample], wall: float) -> WindowAccumulator:
    for i, sample in enumerate(part):
        acc.add_call(sample, wall + i)
        if i % 7 == 0:
            acc.add_feedback("thumbs_up", float(i % 2), wall + i)
    acc.late_events += len(part) % 3
    return acc


def record(acc: WindowAccumulator) -> dict[str, Any]:
    return acc.to_record("app", {"app": "bot"}, 0.0, 60.0, "watermark").to_json_dict()


QUANTILE_FIELDS = (
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
)


@pytest.mark.parametrize(("capacity", "parts"), [(1024, 2), (1024, 5), (32, 2), (32, 6)])
def test_merged_accumulator_equals_one_that_saw_every_call(capacity: int, parts: int) -> None:
    data = samples(1500, seed=capacity + parts)
    rng = random.Random(parts)
    split: list[list[CallSample]] = [[] for _ in range(parts)]
    for sample in data:
        split[rng.randrange(parts)].append(sample)
    whole = WindowAccumulator(0.01, capacity, 0.0)
    for part in split:  # the same values per part, added part after part
        fill(whole, part, 100.0)
    accs = [fill(WindowAccumulator(0.01, capacity, 0.0), part, 100.0) for part in split]
    merged = accs[0]
    for acc in accs[1:]:
        merged.merge(acc)
    assert merged.last_wall == 100.0 + max(len(p) for p in split) - 1
    got, expected = record(merged), record(whole)
    assert {k: v for k, v in got.items() if k not in QUANTILE_FIELDS} == {
        k: v for k, v in expected.items() if k not in QUANTILE_FIELDS
    }
    latencies = np.array([s[0] for s in data if s[0] is not None])
    ttfts = np.array([s[1] for s in data if s[1] is not None])
    for values, fields, qs in (
        (latencies, QUANTILE_FIELDS[:4], (0.5, 0.9, 0.95, 0.99)),
        (ttfts, QUANTILE_FIELDS[4:], (0.5, 0.95)),
    ):
        for name, q in zip(fields, qs, strict=True):
            if len(values) <= capacity:
                assert got[name] == pytest.approx(np.quantile(values, q), rel=1e-12)
            else:
                assert rank_error(values, got[name], q) <= 0.01


def test_copy_is_independent_and_reports_the_same() -> None:
    acc = fill(WindowAccumulator(0.01, 16, 0.0), samples(100, seed=2), 5.0)
    state = acc.to_state()
    copy = acc.copy()
    assert copy.to_state() == state
    copy.add_call(samples(1, seed=3)[0], 999.0)
    assert record(copy)["requests"] == 101 and acc.to_state() == state
    assert record(acc) == record(acc.copy())
    with pytest.raises(ValueError, match="itself"):
        acc.merge(acc)
