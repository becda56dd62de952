"""Matching alarms to labels, the scores per scenario and type, and both methods end to end."""

from __future__ import annotations

import math
from array import array
from datetime import UTC, datetime

import pytest

from streams.simulation.baseline import StaticThresholdMethod, StaticThresholds
from streams.simulation.evaluate import ScoringRules, alerts, quantile, score_scenario, summarise
from streams.simulation.labels import AffectedKey, IncidentLabel
from streams.simulation.nab import scaled_sigmoid
from streams.simulation.offline import (
    Alarm,
    DetectorMethod,
    StreamRecord,
    evaluation_configs,
    run_scenario,
)
from streams.simulation.scenario import (
    AppProfile,
    Effects,
    Incident,
    LogNormal,
    ModelProfile,
    Scenario,
    ScoreProfile,
    Traffic,
)

START = datetime(2025, 1, 6, tzinfo=UTC)
KS = "app_environment_provider_model"
A: tuple[str, ...] = ("a",)
B: tuple[str, ...] = ("b",)
MAX_TP = scaled_sigmoid(-1.0)


def stream() -> StreamRecord:
    """1,000 events, one every 0.1 s, alternating keys a and b; an incident on a at 50-70 s."""
    label = IncidentLabel(
        scenario="s",
        incident_id="i",
        type="latency_regression",
        target={"app": "a"},
        start=START,
        end=START,
        start_s=50.0,
        end_s=70.0,
        start_index=500,
        end_index=700,
        signals=("latency",),
        affected=(AffectedKey(KS, A, 500, 250, 50.0, 100),),
    )
    offsets = {
        (KS, A): array("d", (i / 10 for i in range(0, 1000, 2))),
        (KS, B): array("d", (i / 10 for i in range(1, 1000, 2))),
    }
    return StreamRecord("s", 1000, 100.0, [label], offsets)


def alarm(index: int, key: tuple[str, ...], signal: str) -> Alarm:
    return Alarm(index, index / 10, KS, key, index // 2, signal, "adwin")


ALARMS = [
    alarm(300, B, "latency"),  # false: key b is not affected
    alarm(520, A, "error"),  # related: affected key, irrelevant signal
    alarm(540, A, "latency"),  # the true positive
    alarm(560, A, "latency"),  # the same alert, still firing
    alarm(800, A, "latency"),  # related: within settle_s after the end
    alarm(900, B, "cost"),  # false
]


def test_alarms_are_matched_and_scored_by_hand() -> None:
    result = score_scenario(stream(), ALARMS, "ours")
    (outcome,) = result.outcomes
    assert outcome.detected and outcome.signal == "latency" and outcome.key == A
    assert outcome.delay_events == 270 - 250 + 1  # key a's 21st event since the start
    assert outcome.delay_s == pytest.approx(4.0)
    assert result.false_alarms == 2
    assert result.normal_key_events == 250 + 500  # key a after 50 s is not normal
    assert (result.alarms, result.alerts) == (6, 4)
    # Window [500, 599]. TP at -(599 - 540 + 1) / 100; alerts at 300 (no window before) and
    # 900 (|599 - 900| / 99 > 3) cost the full 0.11; 520 is inside the window: ignored.
    expected = scaled_sigmoid(-0.6) / MAX_TP - 0.11 - 0.11
    assert result.nab.raw == pytest.approx(expected)
    assert result.nab.normalised == pytest.approx(100 * (expected + 1) / 2)


def test_without_alert_grouping_every_detection_counts_for_nab() -> None:
    result = score_scenario(stream(), ALARMS, "ours", ScoringRules(hold_s=0.0))
    expected = scaled_sigmoid(-0.6) / MAX_TP - 0.11 - 0.11 + 0.11 * scaled_sigmoid(201 / 99)
    assert result.nab.raw == pytest.approx(expected)
    assert result.alerts == 6
    grouped = score_scenario(stream(), ALARMS, "ours")
    assert grouped.nab_every_detection == result.nab


def test_missed_late_and_type_rows() -> None:
    late = score_scenario(stream(), [alarm(700, A, "latency")], "ours")  # after the window
    (outcome,) = late.outcomes
    assert not outcome.detected and outcome.late_delay_s == pytest.approx(20.0)
    assert late.false_alarms == 0
    ok = score_scenario(stream(), ALARMS, "ours")
    rows = summarise([ok, late])
    assert [r.type for r in rows] == ["latency_regression", "all"]
    row = rows[0]
    assert (row.incidents, row.detected, row.detection_rate) == (2, 1, 0.5)
    assert row.median_delay_events == 21 and row.median_delay_s == pytest.approx(4.0)
    assert row.false_per_100k == pytest.approx(1e5 * 2 / 1500)
    assert row.nab == pytest.approx((ok.nab + late.nab).normalised)
    every = (ok.nab_every_detection + late.nab_every_detection).normalised
    assert row.nab_every_detection == pytest.approx(every)


def test_alerts_and_quantiles() -> None:
    raised = alerts(ALARMS, hold_s=25.0)  # 800 is 24 s after 560: still the same alert
    assert [a.index for a in raised] == [300, 520, 540, 900]
    assert [a.index for a in alerts(ALARMS, hold_s=23.0)] == [300, 520, 540, 800, 900]
    assert quantile([], 0.5) is None and quantile([5.0], 0.9) == 5.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.9) == pytest.approx(3.7)


def tiny(incident: Incident, duration_s: float, rate: float = 50.0) -> Scenario:
    model = ModelProfile(
        provider="openai",
        latency=LogNormal(800.0, 0.4),
        ttft=LogNormal(300.0, 0.3),
        input_usd_per_mtok=1.0,
        output_usd_per_mtok=2.0,
        error_rate=0.02,
    )
    app = AppProfile(models={"m": rate}, scores={"quality": ScoreProfile(0.8, 0.1)})
    traffic = Traffic(models={"m": model}, apps={"bot": app})
    return Scenario("tiny", traffic, duration_s, seed=1, incidents=(incident,))


def test_our_detectors_on_a_tiny_scenario() -> None:
    slow = Incident("slow", "latency_regression", 60.0, 30.0, Effects(latency_factor=2.0))
    scenario = tiny(slow, 120.0)
    record, found = run_scenario(scenario, [DetectorMethod(evaluation_configs())], START)
    result = score_scenario(record, found["llmpulse"], "llmpulse")
    (outcome,) = result.outcomes
    assert outcome.detected and outcome.signal == "ttft"
    assert (outcome.delay_events, round(outcome.delay_s or 0, 2)) == (20, 0.3)
    assert result.false_alarms == 0
    assert result.nab.normalised == pytest.approx(99.88, abs=0.01)


def test_static_baseline_on_a_tiny_scenario() -> None:
    burst = Incident("burst", "error_burst", 600.0, 240.0, Effects(error_rate=0.2))
    scenario = tiny(burst, 1200.0, rate=20.0)
    method = StaticThresholdMethod(StaticThresholds())
    record, found = run_scenario(
        scenario, [method], START, key_sets=(("app", "environment", "provider", "model"),)
    )
    assert [(a.offset_s, a.signal) for a in found["static"]] == [(660.0, "error")]
    result = score_scenario(record, found["static"], "static")
    (outcome,) = result.outcomes
    assert outcome.detected and outcome.delay_s == 60.0
    assert outcome.delay_events == sum(
        1 for t in record.key_offsets[(KS, ("bot", "production", "openai", "m"))] if 600 <= t < 660
    )
    assert result.false_alarms == 0 and not math.isnan(result.nab.normalised)
