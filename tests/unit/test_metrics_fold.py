"""Batched counting (`WindowAccumulator.flush`) and `CallReader` give the per-call results."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, cast

import pytest

from streams.metrics import PricingTable
from streams.metrics.accumulator import CallSample, WindowAccumulator
from streams.metrics.reader import CallReader
from tests.unit.metrics_fakes import Call, at


def samples(n: int, seed: int) -> list[CallSample]:
    """Samples with every optional value missing sometimes and awkward float sums."""
    rng = random.Random(seed)
    out: list[CallSample] = []
    names = [{"a"}, {"a", "b"}, {"b"}, set()]
    for _ in range(n):
        scores = {name: rng.random() for name in rng.choice(names)} if rng.random() < 0.7 else None
        out.append(
            (
                rng.lognormvariate(6, 1) if rng.random() < 0.9 else None,
                rng.lognormvariate(4, 0.5) if rng.random() < 0.6 else None,
                rng.random() * 300 if rng.random() < 0.8 else None,
                rng.randint(0, 4000),
                rng.randint(0, 900),
                rng.choice([0, 0, 7]),
                rng.random() / 1000 if rng.random() < 0.9 else None,
                rng.random() < 0.1,
                rng.choice([0, 0, 1, 2]),
                scores,
            )
        )
    return out


@pytest.mark.parametrize("capacity", [1, 3, 16, 1024])
@pytest.mark.parametrize("seed", [1, 2])
def test_state_does_not_depend_on_when_pending_calls_are_folded(capacity: int, seed: int) -> None:
    data = samples(700, seed)
    one_by_one = WindowAccumulator(0.01, capacity, 0.0)
    for i, sample in enumerate(data):
        one_by_one.add_call(sample, float(i))
        one_by_one.flush()  # each call counted as it comes
    rng = random.Random(seed)
    batched = WindowAccumulator(0.01, capacity, 0.0)
    for i, sample in enumerate(data):
        batched.add_call(sample, float(i))
        if rng.random() < 0.02:
            assert batched.to_state() == one_by_one_prefix(data[: i + 1], capacity)
    assert batched.to_state() == one_by_one.to_state()
    record = batched.to_record("app", {"app": "x"}, 0.0, 60.0, None)
    assert record == one_by_one.to_record("app", {"app": "x"}, 0.0, 60.0, None)


def one_by_one_prefix(data: list[CallSample], capacity: int) -> dict[str, Any]:
    acc = WindowAccumulator(0.01, capacity, 0.0)
    for i, sample in enumerate(data):
        acc.add_call(sample, float(i))
        acc.flush()
    return acc.to_state()


def test_fold_sums_floats_in_arrival_order() -> None:
    # Compensated or pairwise summation would give 1.0 here; one by one gives 0.0.
    acc = WindowAccumulator(0.01, 16, 0.0)
    for cost in (1e16, 1.0, -1e16):
        acc.add_call((1.0, None, None, 0, 0, 0, cost, False, 0, {"s": cost}), 0.0)
    state = acc.to_state()
    assert state["cost_sum"] == (1e16 + 1.0) - 1e16 == 0.0
    assert state["scores"] == {"s": {"sum": 0.0, "count": 3}}


class WithProperty:
    """Attributes partly behind a property that hides the instance __dict__ value."""

    def __init__(self, call: Call) -> None:
        self.__dict__.update(vars(call))
        self.__dict__["app"] = "shadowed"

    @property
    def app(self) -> str:
        return "from-property"


@dataclass(frozen=True, slots=True)
class Slotted:
    event_id: str
    timestamp: Any
    app: str
    environment: str | None
    provider: str
    model: str
    prompt_id: str | None
    prompt_version: str | None
    latency_ms: float
    ttft_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None
    cost_usd: float | None
    status: str
    finish_reason: str | None
    scores: dict[str, float]


def test_reader_reads_what_attribute_access_gives() -> None:
    names = ("app", "environment", "provider", "model", "prompt_id", "prompt_version")
    reader = CallReader(names, PricingTable.load())
    call = Call("e-1", at(0), ttft_ms=90.0, scores={"x": 0.5}, finish_reason="length")
    expected = (call.event_id, call.timestamp, *(getattr(call, n) for n in names))
    assert reader.fields(call)[:8] == expected
    slotted = Slotted(**vars(call))
    assert reader.fields(slotted) == reader.fields(call)
    assert reader.sample(reader.fields(call))[8] == 1  # finish "length"
    assert reader.fields(cast(Any, WithProperty(call)))[2] == "from-property"
