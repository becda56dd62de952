"""QuantileEstimator: exact against numpy while small, within its rank error bound beyond."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.metrics.quantiles import QuantileEstimator, exact_quantiles
from tests.unit.metrics_fakes import QS, check_against_numpy, rank_error

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


def adversarial_streams(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    i = np.arange(n)
    return {
        "sorted": i.astype(float),
        "reversed": i[::-1].astype(float),
        "uniform": rng.random(n),
        "lognormal_latency": rng.lognormal(6.0, 1.0, n),
        "few_distinct": rng.integers(0, 10, n).astype(float),
        "zigzag": np.where(i % 2 == 0, n - i // 2, i // 2).astype(float),
        "sorted_runs": np.concatenate([np.sort(c) for c in np.array_split(rng.random(n), 97)]),
    }


@given(st.lists(finite, min_size=1, max_size=300), st.sampled_from(QS))
def test_exact_mode_equals_numpy_linear(values: list[float], q: float) -> None:
    est = QuantileEstimator()
    for x in values:
        est.add(x)
    assert est.is_exact
    assert est.quantile(q) == pytest.approx(np.quantile(values, q), rel=1e-9, abs=1e-6)
    assert exact_quantiles(values, (q,))[0] == est.quantile(q)


@pytest.mark.parametrize("name", sorted(adversarial_streams(8)))
def test_rank_error_within_bound_on_200k_values(name: str) -> None:
    data = adversarial_streams(200_000)[name]
    est = QuantileEstimator()  # eps = 0.005
    est.extend(data[:5000].tolist())
    for x in data[5000:].tolist():
        est.add(x)
    assert est.count == len(data) and not est.is_exact
    worst = max(rank_error(data, est.quantile(q), q) for q in QS)  # type: ignore[arg-type]
    assert worst <= est.eps
    # Memory stays small: three 8-byte arrays per tuple plus the batch buffer.
    assert est.summary_size < 1200


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=3000), st.sampled_from((0.01, 0.05, 0.2)))
def test_rank_error_bound_holds_for_any_stream(values: list[float], eps: float) -> None:
    est = QuantileEstimator(eps=eps, exact_capacity=8)
    for x in values:
        est.add(x)
    # The bound is max(eps * n, 1/2) ranks; 1/2 only matters for these tiny n.
    check_against_numpy(est, np.array(values), rel=1e-9, abs_=1e-6)
    # The restored summary satisfies the invariants that prove the bound.
    QuantileEstimator.from_state(orjson.loads(orjson.dumps(est.to_state())))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(finite, max_size=40), max_size=30), st.sampled_from((1, 4, 16)))
def test_extend_is_add_of_each_value(batches: list[list[float]], capacity: int) -> None:
    # WindowAccumulator relies on this to fold its calls in batches with the same result.
    one_by_one, batched = QuantileEstimator(0.05, capacity), QuantileEstimator(0.05, capacity)
    for batch in batches:
        for x in batch:
            one_by_one.add(x)
        batched.extend(batch)
    assert batched.to_state() == one_by_one.to_state()


def test_state_round_trip_continues_identically() -> None:
    data = np.random.default_rng(3).lognormal(5, 1, 20_000).tolist()
    whole, first = QuantileEstimator(), QuantileEstimator()
    for x in data:
        whole.add(x)
    for x in data[:7_777]:
        first.add(x)
    resumed = QuantileEstimator.from_state(orjson.loads(orjson.dumps(first.to_state())))
    for x in data[7_777:]:
        resumed.add(x)
    assert resumed.count == whole.count
    assert resumed.quantiles(QS) == whole.quantiles(QS)


def test_empty_and_invalid_queries() -> None:
    est = QuantileEstimator()
    assert est.quantiles((0.5, 0.9)) == [None, None]
    with pytest.raises(ValueError, match="quantile must be in"):
        est.quantile(1.5)
    with pytest.raises(ValueError, match="eps"):
        QuantileEstimator(eps=0.0)


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        ({"values": [2.0, 1.0], "g": [1, 1], "delta": [0, 0]}, "not sorted"),
        ({"values": [1.0, 2.0], "g": [1], "delta": [0, 0]}, "equally long"),
        ({"values": [1.0, 2.0, 3.0], "g": [1, 1, 1], "delta": [0, 50, 0]}, "invariant"),
        ({"values": [1.0, 2.0], "g": [1, 1], "delta": [1, 0]}, "minimum and maximum"),
        ({"values": [1.0, 2.0], "g": [0, 1], "delta": [0, 0]}, "g >= 1"),
    ],
)
def test_from_state_rejects_broken_summaries(summary: dict[str, list[float]], message: str) -> None:
    state = {"eps": 0.01, "exact_capacity": 4, "buffer": [], "summary": summary}
    with pytest.raises(ValueError, match=message):
        QuantileEstimator.from_state(state)
