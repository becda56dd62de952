"""The alert state machine: for, keep_firing_for, hysteresis, min_requests, no_data, absence."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from alerting.engine import AlertEngine
from alerting.inputs import Detection, MetricWindow
from alerting.rules_file import load_rules_text
from alerting.state import AlertState, AlertTransition
from tests.unit.alert_fakes import T0, FakeClock


def rules(rule: str) -> str:
    return (
        "groups:\n  - name: g\n    interval: 1m\n    rules:\n"
        + "\n".join("      " + line for line in rule.strip().splitlines())
        + "\nroute: {receiver: c}\nreceivers: [{name: c, type: console}]\n"
    )


LATENCY = """
- alert: Slow
  metric: latency_p95_ms
  by: [model]
  op: ">"
  threshold: 2000
  {extra}
  labels: {{severity: warning}}
  annotations: {{summary: "{{{{ $labels.model }}}} p95 {{{{ $value }}}}"}}
"""


def engine(extra: str = "", clock: FakeClock | None = None) -> tuple[AlertEngine, FakeClock]:
    clock = clock or FakeClock()
    text = rules(LATENCY.format(extra=extra.replace("\n", "\n  ")))
    return AlertEngine(load_rules_text(text), clock=clock), clock


def window(value: float | None, requests: int = 100, model: str = "gpt-4o") -> MetricWindow:
    metrics = {} if value is None else {"latency_p95_ms": value}
    return MetricWindow("model", {"model": model}, T0, T0, requests, metrics)


def feed(
    eng: AlertEngine, clock: FakeClock, values: list[float], step: float = 60
) -> list[AlertTransition]:
    out = []
    for value in values:
        out += eng.observe_metrics(window(value))
        out += eng.tick()
        clock.advance(seconds=step)
    return out


def states(transitions: list[AlertTransition]) -> list[str]:
    return [t.state.value for t in transitions]


def test_for_makes_pending_then_firing_then_resolved() -> None:
    eng, clock = engine("for: 2m")
    out = feed(eng, clock, [2500, 2600, 2700, 1000])
    assert states(out) == ["pending", "firing", "resolved"]
    firing = out[1]
    assert firing.active_since == T0 and firing.fired_at == T0 + timedelta(minutes=2)
    assert firing.annotations["summary"] == "gpt-4o p95 2700"
    assert firing.labels == {"model": "gpt-4o", "severity": "warning", "alertname": "Slow"}
    assert firing.value == 2700 and firing.threshold == 2000
    assert out[2].resolved_at == T0 + timedelta(minutes=3)
    assert len({t.fingerprint for t in out}) == 1


def test_pending_is_cancelled_when_the_condition_stops_early() -> None:
    eng, clock = engine("for: 5m")
    assert states(feed(eng, clock, [2500, 2500, 100])) == ["pending", "inactive"]


def test_tick_promotes_pending_without_new_data() -> None:
    eng, clock = engine("for: 30s")
    assert states(eng.observe_metrics(window(2500))) == ["pending"]
    clock.advance(seconds=29)
    assert eng.tick() == []
    clock.advance(seconds=1)
    assert states(eng.tick()) == ["firing"]


def test_keep_firing_for_holds_then_resolves_on_tick() -> None:
    eng, clock = engine("keep_firing_for: 3m")
    assert states(feed(eng, clock, [2500, 100, 100])) == ["firing"]
    assert states(feed(eng, clock, [2500, 100])) == []  # back above: the countdown restarts
    clock.advance(minutes=2)
    assert states(eng.tick()) == ["resolved"]


NOISY = [2100, 1900, 2200, 1800, 2300, 1950, 2050, 1700, 2400, 1600, 1400, 1300]


def test_without_hysteresis_a_noisy_series_flaps() -> None:
    eng, clock = engine()
    assert states(feed(eng, clock, NOISY)).count("firing") == 5


def test_hysteresis_prevents_flapping_on_a_noisy_series() -> None:
    eng, clock = engine("recovery_threshold: 1500")
    assert states(feed(eng, clock, NOISY)) == ["firing", "resolved"]


def test_min_requests_windows_decide_nothing() -> None:
    eng, _ = engine("min_requests: 50")
    assert eng.observe_metrics(window(9999, requests=10)) == []
    assert states(eng.observe_metrics(window(9999, requests=50))) == ["firing"]
    assert eng.observe_metrics(window(1, requests=3)) == []
    assert states(eng.observe_metrics(window(1, requests=80))) == ["resolved"]


def test_other_key_sets_and_missing_metrics_are_ignored() -> None:
    eng, _ = engine()
    other = MetricWindow(
        "app_model", {"app": "a", "model": "m"}, T0, T0, 100, {"latency_p95_ms": 9e9}
    )
    assert eng.observe_metrics(other) == []
    assert eng.observe_metrics(window(None)) == []


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("ok", ["firing", "resolved"]), ("keep", ["firing"]), ("alerting", ["firing"])],
)
def test_no_data_modes_for_a_firing_alert(mode: str, expected: list[str]) -> None:
    eng, clock = engine(f"no_data: {mode}\nno_data_after: 3m")
    out = eng.observe_metrics(window(2500))
    for _ in range(10):
        clock.advance(minutes=1)
        out += eng.tick()
    assert states(out) == expected


def test_no_data_alerting_raises_an_alert_for_a_silent_key() -> None:
    eng, clock = engine("no_data: alerting\nno_data_after: 3m")
    assert eng.observe_metrics(window(100)) == []
    clock.advance(minutes=3)
    out = eng.tick()
    assert states(out) == ["firing"] and out[0].reason == "no_data" and out[0].value is None
    assert states(eng.observe_metrics(window(100))) == ["resolved"]


def test_absence_fires_after_absent_for_and_resolves_when_data_returns() -> None:
    clock = FakeClock()
    text = rules("- alert: Quiet\n  absent_for: 10\n  by: [app]\n  labels: {severity: info}")
    eng = AlertEngine(load_rules_text(text), clock=clock)
    record = MetricWindow("app", {"app": "chat"}, T0, T0, 5, {})
    assert eng.observe_metrics(record) == []
    clock.advance(minutes=9)
    assert eng.tick() == []
    clock.advance(minutes=1)
    out = eng.tick()
    assert (
        states(out) == ["firing"] and out[0].labels["app"] == "chat" and out[0].reason == "absent"
    )
    assert states(eng.observe_metrics(record)) == ["resolved"]


def test_detection_fires_and_resolves_after_keep_firing_for() -> None:
    clock = FakeClock()
    text = rules(
        "- alert: Drift\n"
        "  detection: {signal: 'score.*', detector: adwin, matchers: ['app=\"chat\"']}\n"
        "  keep_firing_for: 10m\n  labels: {severity: info}"
    )
    eng = AlertEngine(load_rules_text(text), clock=clock)

    def detection(signal: str, app: str = "chat", detector: str = "adwin") -> Detection:
        return Detection({"app": app, "model": "m"}, signal, detector, 3.2, 0.9, 0.95, 0.6, T0)

    assert eng.observe_detection(detection("latency")) == []
    assert eng.observe_detection(detection("score.hallucination", app="search")) == []
    assert eng.observe_detection(detection("score.hallucination", detector="kswin")) == []
    out = eng.observe_detection(detection("score.hallucination"))
    assert states(out) == ["firing"]
    assert out[0].detection is not None and out[0].detection.before_mean == 0.9
    assert out[0].labels["signal"] == "score.hallucination"
    clock.advance(minutes=9)
    assert eng.tick() == []
    clock.advance(minutes=1)
    assert states(eng.tick()) == ["resolved"]


def roundtrip(data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(data))
    return result


def test_state_survives_a_restart_without_reannouncing() -> None:
    eng, clock = engine("for: 1m")
    assert states(feed(eng, clock, [2500, 2500])) == ["pending", "firing"]
    saved = roundtrip(eng.snapshot())
    restarted, _ = engine("for: 1m", clock)
    assert restarted.restore(saved) == []
    assert restarted.observe_metrics(window(2600)) == []  # still firing, not new
    out = restarted.observe_metrics(window(100))  # recovered while the worker was down
    assert states(out) == ["resolved"] and out[0].fired_at == T0 + timedelta(minutes=1)
    assert out[0].sequence == 3


def test_restore_validates_and_resolves_alerts_of_removed_rules() -> None:
    eng, clock = engine()
    eng.observe_metrics(window(2500))
    saved = roundtrip(eng.snapshot())
    other = AlertEngine(
        load_rules_text(
            rules("- alert: Quiet\n  absent_for: 10m\n  by: [app]\n  labels: {severity: info}")
        ),
        clock=clock,
    )
    out = other.restore(saved)
    assert states(out) == ["resolved"] and out[0].reason == "rule removed" and out[0].rule == "Slow"
    broken = roundtrip(saved)
    broken["instances"][0]["state"] = "exploded"
    with pytest.raises(ValueError, match="state"):
        engine()[0].restore(broken)
    with pytest.raises(ValueError, match="version"):
        engine()[0].restore({"version": 99, "instances": []})


def test_transition_round_trips_through_json() -> None:
    eng, _ = engine()
    transition = eng.observe_metrics(window(2500))[0]
    again = AlertTransition.from_dict(roundtrip(transition.to_dict()))
    assert again == transition and again.state == AlertState.FIRING
