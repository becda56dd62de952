"""The traffic generator: deterministic, in event-time order, valid, and true to its parameters."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import Counter
from datetime import UTC, datetime
from itertools import islice

import pytest

from streams.simulation.scenario import (
    AppProfile,
    DailyCycle,
    Effects,
    FeedbackProfile,
    Incident,
    LogNormal,
    ModelProfile,
    Scenario,
    ScoreProfile,
    Traffic,
)
from streams.simulation.traffic import SimulatedEvent, generate, scale_rates

START = datetime(2025, 1, 6, tzinfo=UTC)


def traffic(rate: float = 50.0, **app_changes: object) -> Traffic:
    model = ModelProfile(
        provider="openai",
        latency=LogNormal(800.0, 0.4),
        ttft=LogNormal(300.0, 0.3),
        input_usd_per_mtok=1.0,
        output_usd_per_mtok=2.0,
        error_rate=0.02,
    )
    app = AppProfile(
        models={"m1": rate, "m2": rate},
        prompt_versions={"v1": 0.75, "v2": 0.25},
        scores={"quality": ScoreProfile(0.8, 0.1)},
        feedback=FeedbackProfile(probability=0.1, from_score="quality", delay_s=10.0),
    )
    app = dataclasses.replace(app, **app_changes)  # type: ignore[arg-type]
    return Traffic(
        models={"m1": model, "m2": dataclasses.replace(model, provider="other")}, apps={"bot": app}
    )


def events(scenario: Scenario) -> list[SimulatedEvent]:
    return list(generate(scenario, START))


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    scenario = Scenario("s", traffic(), duration_s=60.0, seed=1)
    first, again = events(scenario), events(scenario)
    assert first == again
    other = events(dataclasses.replace(scenario, seed=2))
    assert [e.call for e in other[:50]] != [e.call for e in first[:50]]


def test_event_time_order_ids_and_schema_validity() -> None:
    stream = events(Scenario("s", traffic(), duration_s=60.0, seed=1))
    offsets = [e.offset_s for e in stream]
    assert offsets == sorted(offsets) and offsets[0] > 0 and offsets[-1] < 60
    assert [e.index for e in stream] == list(range(len(stream)))
    assert len({e.call["event_id"] for e in stream}) == len(stream)
    for event in stream[:300]:
        call, feedback = event.to_models()
        assert call.timestamp.timestamp() == pytest.approx(
            START.timestamp() + event.offset_s, abs=1e-3
        )
        for item in feedback:
            assert item.event_id == call.event_id and item.timestamp > call.timestamp


def test_distributions_match_their_parameters() -> None:
    stream = events(Scenario("s", traffic(), duration_s=400.0, seed=5))
    per_model = Counter(e.call["model"] for e in stream)
    for model in ("m1", "m2"):  # Poisson, 50/s for 400 s: 20,000 +- 141
        assert per_model[model] == pytest.approx(20_000, abs=600)
    ok = [e.call for e in stream if e.call["status"] == "ok"]
    errors = [e.call for e in stream if e.call["status"] == "error"]
    assert len(errors) / len(stream) == pytest.approx(0.02, abs=0.003)
    assert set(Counter(c["error_type"] for c in errors)) == {
        "rate_limit",
        "timeout",
        "server_error",
    }
    logs = [math.log(c["latency_ms"]) for c in ok]
    assert math.exp(statistics.median(logs)) == pytest.approx(800, rel=0.02)
    assert statistics.stdev(logs) == pytest.approx(0.4, abs=0.01)  # elasticity keeps sigma
    tokens = [math.log(c["output_tokens"]) for c in ok]
    assert math.exp(statistics.median(tokens)) == pytest.approx(250, rel=0.03)
    assert all(c["ttft_ms"] <= c["latency_ms"] for c in ok)
    quality = [c["scores"]["quality"] for c in ok]
    assert statistics.mean(quality) == pytest.approx(0.8, abs=0.005)
    assert statistics.stdev(quality) == pytest.approx(0.1, abs=0.005)
    versions = Counter(c["prompt_version"] for c in ok)
    assert versions["v1"] / len(ok) == pytest.approx(0.75, abs=0.01)
    with_feedback = [e for e in stream if e.feedback]
    assert len(with_feedback) / len(ok) == pytest.approx(0.1, abs=0.01)
    positive = statistics.mean(e.feedback[0]["value"] for e in with_feedback)
    assert positive == pytest.approx(0.8, abs=0.02)  # P(thumbs up) = the quality score
    cost = ok[0]["input_tokens"] * 1e-6 + ok[0]["output_tokens"] * 2e-6
    assert ok[0]["cost_usd"] == pytest.approx(cost, abs=1e-8)


def test_incident_effects_apply_to_their_target_and_period_only() -> None:
    effects = Effects(latency_factor=2.0, error_rate=0.3, error_type="boom", score_shift=-0.3)
    incident = Incident("i", "custom", 100.0, 100.0, effects, target={"model": "m1"})
    base = Scenario("s", traffic(), duration_s=300.0, seed=7)
    stream = events(dataclasses.replace(base, incidents=(incident,)))
    hit = [e for e in stream if e.incidents]
    assert {e.call["model"] for e in hit} == {"m1"}
    assert all(100 <= e.offset_s < 200 for e in hit)
    assert len(hit) == sum(1 for e in stream if e.call["model"] == "m1" and 100 <= e.offset_s < 200)
    errors = [e.call for e in hit if e.call["status"] == "error"]
    assert len(errors) / len(hit) == pytest.approx(0.3, abs=0.02)
    assert Counter(c["error_type"] for c in errors)["boom"] / len(errors) == pytest.approx(
        0.28 / 0.3, abs=0.03
    )
    ok = [e.call for e in hit if e.call["status"] == "ok"]
    assert math.exp(statistics.median(math.log(c["latency_ms"]) for c in ok)) == pytest.approx(
        1600, rel=0.05
    )
    assert statistics.mean(c["scores"]["quality"] for c in ok) == pytest.approx(0.5, abs=0.01)
    # m2 is untouched: its calls are exactly those of the run without the incident.
    normal = [e.call for e in events(base) if e.call["model"] == "m2"]
    assert [e.call for e in stream if e.call["model"] == "m2"] == normal


def test_prompt_version_rollout_grows_linearly() -> None:
    rollout = Incident(
        "r",
        "bad_prompt_version",
        0.0,
        100.0,
        Effects(prompt_version="v9"),
        share=0.5,
        ramp="linear",
        ramp_s=100.0,
    )
    stream = events(Scenario("s", traffic(), 100.0, seed=3, incidents=(rollout,)))
    for low, expected in ((0, 0.125), (50, 0.375)):  # mean share over each half
        part = [e for e in stream if low <= e.offset_s < low + 50]
        moved = sum(e.call["prompt_version"] == "v9" for e in part) / len(part)
        assert moved == pytest.approx(expected, abs=0.02)
    assert all(bool(e.incidents) == (e.call["prompt_version"] == "v9") for e in stream)


def test_daily_cycle_and_rate_scaling() -> None:
    cycle = DailyCycle(amplitude=0.5, peak_hour_utc=0.0, period_s=200.0)
    flat = traffic(rate=40.0)
    cyclic = dataclasses.replace(flat, daily_cycle=cycle)
    stream = events(Scenario("s", cyclic, 200.0, seed=2))
    peak = sum(1 for e in stream if e.offset_s < 20 or e.offset_s >= 180)
    trough = sum(1 for e in stream if 80 <= e.offset_s < 120)
    assert peak / trough == pytest.approx(1.47 / 0.53, rel=0.15)
    doubled = scale_rates(flat, 2.0)
    assert doubled.total_rate == 160.0
    n = sum(1 for _ in generate(Scenario("s", doubled, 50.0, seed=2), START))
    assert n == pytest.approx(8000, abs=300)


def test_errors_carry_no_usage_and_start_must_be_aware() -> None:
    stream = islice(generate(Scenario("s", traffic(), 60.0, seed=1), START), 2000)
    failed = [e for e in stream if e.call["status"] == "error"]
    assert failed and all("output_tokens" not in e.call and not e.feedback for e in failed)
    with pytest.raises(ValueError, match="timezone"):
        next(generate(Scenario("s", traffic(), 60.0), datetime(2025, 1, 1)))
