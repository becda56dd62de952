"""Feedback join and attribution, checkpoint round trips, rejected checkpoints, doctests."""

from __future__ import annotations

import doctest
import importlib
from functools import partial
from typing import Any

import orjson
import pytest

from streams.metrics import MetricsAggregator, MetricsConfig, MetricsStateError, PricingTable
from tests.unit.metrics_fakes import Call as FakeCall
from tests.unit.metrics_fakes import Feedback, at

CONFIG = MetricsConfig(key_sets=(("app",), ("app", "prompt_id")), feedback_join_capacity=3)


# These tests use calls that carry a TTFT by default.
Call = partial(FakeCall, ttft_ms=80.0)


def aggregator(config: MetricsConfig = CONFIG) -> MetricsAggregator:
    return MetricsAggregator(config, PricingTable.load(), clock=lambda: 1_000.0)


def test_feedback_counts_in_the_window_of_its_own_timestamp() -> None:
    agg = aggregator()
    agg.add_call(Call("a", at(10)))
    agg.add_call(Call("b", at(20), prompt_id=None))
    assert agg.add_feedback(Feedback("a", at(75), "thumbs_up", 1.0))
    assert agg.add_feedback(Feedback("a", at(80), "thumbs_up", 0.0))
    assert agg.add_feedback(Feedback("b", at(15), "thumbs_up", 1.0))
    windows = {(r.key_set, r.window_start): r for r in agg.open_windows()}
    assert windows[("app", at(60))].feedback_means == {"thumbs_up": 0.5}
    assert windows[("app", at(60))].feedback_counts == {"thumbs_up": 2}
    assert windows[("app", at(60))].requests == 0
    assert windows[("app_prompt_id", at(60))].feedback_counts == {"thumbs_up": 2}
    # b has no prompt_id, so its feedback only counts for the app key set.
    assert windows[("app", at(0))].feedback_counts == {"thumbs_up": 1}
    assert windows[("app_prompt_id", at(0))].feedback_counts == {}


def test_unknown_and_evicted_event_ids_are_counted_unjoined() -> None:
    agg = aggregator()
    for i in range(4):  # capacity 3: "e0" is evicted
        agg.add_call(Call(f"e{i}", at(i)))
    assert not agg.add_feedback(Feedback("e0", at(5), "x", 1.0))
    assert not agg.add_feedback(Feedback("never-seen", at(5), "x", 1.0))
    assert agg.add_feedback(Feedback("e3", at(5), "x", 1.0))
    assert agg.feedback_unjoined == 2


def test_feedback_for_a_closed_window_is_late() -> None:
    agg = aggregator()
    agg.add_call(Call("a", at(10)))
    agg.add_call(Call("b", at(300)))  # watermark passes [0, 60) + 120 s
    assert not agg.add_feedback(Feedback("a", at(30), "x", 1.0))
    assert agg.feedback_late == {"app": 1, "app_prompt_id": 1}


def run_events(agg: MetricsAggregator, events: list[Any]) -> None:
    for event in events:
        if isinstance(event, FakeCall):
            agg.add_call(event)
        else:
            agg.add_feedback(event)


def mixed_events() -> list[Any]:
    events: list[Any] = []
    for i in range(3000):
        events.append(
            Call(
                f"e{i}",
                at((i * 37) % 170),
                app=("bot", "search")[i % 2],
                latency_ms=float(i % 997) + 0.5,
                ttft_ms=None if i % 3 else float(i % 101),
                scores={"tox": (i % 10) / 10},
            )
        )
        if i % 5 == 0:
            events.append(Feedback(f"e{i - 1}", at((i * 37) % 170 + 1), "thumbs_up", i % 2))
    return events


def test_state_round_trip_resumes_with_exact_counts() -> None:
    config = MetricsConfig(key_sets=(("app",), ("app", "prompt_id")), quantile_exact_capacity=64)
    events = mixed_events()
    whole = aggregator(config)
    run_events(whole, events)
    first = aggregator(config)
    run_events(first, events[:1700])
    closed_before = first.close_due()
    blob = orjson.dumps(first.to_state())  # as the worker checkpoints it
    resumed = MetricsAggregator.from_state(
        orjson.loads(blob), config, PricingTable.load(), clock=lambda: 1_000.0
    )
    run_events(resumed, events[1700:])
    final = {(r.key_set, r.window_start): r for r in closed_before + resumed.close_due(10**6)}
    expected = {(r.key_set, r.window_start): r for r in whole.close_due(10**6)}
    assert final.keys() == expected.keys()
    for key, record in expected.items():
        got = final[key]
        assert got.requests == record.requests and got.feedback_counts == record.feedback_counts
        assert got.latency_p99_ms == record.latency_p99_ms
        assert got.to_json_dict() | {"closed_by": None} == record.to_json_dict() | {
            "closed_by": None
        }
    assert resumed.late_events == whole.late_events
    assert resumed.feedback_unjoined == whole.feedback_unjoined


def valid_state() -> dict[str, Any]:
    agg = aggregator()
    agg.add_call(Call("a", at(10), scores={"tox": 0.5}))
    agg.add_feedback(Feedback("a", at(11), "thumbs_up", 1.0))
    state: dict[str, Any] = orjson.loads(orjson.dumps(agg.to_state()))
    return state


def broken(path: str, value: Any) -> dict[str, Any]:
    state = valid_state()
    target: Any = state
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return state


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (broken("version", 2), "version"),
        (broken("window_seconds", 10.0), "window_seconds=10.0"),
        (broken("key_sets", [["app"]]), "key sets"),
        (broken("windows.0.accumulator.requests", -1), "greater than or equal"),
        (broken("windows.0.accumulator.errors", 5), "exceeds requests"),
        (broken("windows.0.accumulator.requests", "1"), "valid integer"),
        (broken("windows.0.accumulator.cost_sum", float("nan")), "finite"),
        (broken("windows.0.key_set", "nope"), "unknown key set"),
        (broken("windows.0.dimensions", []), "needs 1 dimension"),
        (broken("windows.0.accumulator.latency.buffer", [1.0, 2.0]), "exceeds requests"),
        (broken("windows.0.accumulator.surprise", 1), "Extra inputs"),
        (broken("calls", [["a", "bot"]]), "event_id"),
        (broken("late_events", {}), "one count per key set"),
        ([1, 2], "JSON object"),
    ],
)
def test_malformed_state_is_rejected_with_a_clear_error(state: Any, message: str) -> None:
    with pytest.raises(MetricsStateError, match=message):
        MetricsAggregator.from_state(state, CONFIG, PricingTable.load())


def test_state_with_a_broken_quantile_summary_is_rejected() -> None:
    state = valid_state()
    state["windows"][0]["accumulator"]["latency"]["summary"] = {
        "values": [1.0, 0.5],
        "g": [1, 1],
        "delta": [0, 0],
    }
    state["windows"][0]["accumulator"]["latency"]["buffer"] = []
    with pytest.raises(MetricsStateError, match="not sorted"):
        MetricsAggregator.from_state(state, CONFIG, PricingTable.load())


@pytest.mark.parametrize(
    "module", ["quantiles", "pricing", "join", "windows", "accumulator", "state", "config"]
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"streams.metrics.{module}"))
    assert result.failed == 0
