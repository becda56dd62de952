"""The demo's pieces that need no broker: its rules, incident matching, delays and drawing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from rich.console import Console

from alerting.durations import parse_duration
from alerting.rules_file import check_rules_text
from streams import demo_rules
from streams.demo_view import DemoState, matches_incident
from streams.simulation.labels import AffectedKey, IncidentLabel

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def durations(data: object, found: dict[str, list[float]]) -> dict[str, list[float]]:
    if isinstance(data, dict):
        for key, value in data.items():
            if key in demo_rules.DURATION_FIELDS and isinstance(value, str):
                found.setdefault(key, []).append(parse_duration(value).total_seconds())
            else:
                durations(value, found)
    elif isinstance(data, list):
        for item in data:
            durations(item, found)
    return found


def test_demo_rules_are_the_default_rules_with_every_duration_shortened(tmp_path: Path) -> None:
    original = yaml.safe_load(demo_rules.default_rules_path().read_text(encoding="utf-8"))
    path = demo_rules.write(tmp_path / "rules.yaml")
    text = path.read_text(encoding="utf-8")
    assert check_rules_text(text, str(path)) == []
    shortened = yaml.safe_load(text)
    before, after = durations(original, {}), durations(shortened, {})
    assert set(before) >= {"interval", "for", "keep_firing_for", "repeat_interval"}
    assert {k: [v / demo_rules.SPEEDUP for v in vs] for k, vs in before.items()} == after
    assert _without_durations(original) == _without_durations(shortened)  # nothing else changed


def _without_durations(data: object) -> object:
    if isinstance(data, dict):
        return {
            k: _without_durations(v) for k, v in data.items() if k not in demo_rules.DURATION_FIELDS
        }
    if isinstance(data, list):
        return [_without_durations(item) for item in data]
    return data


def label(target: dict[str, str], affected: tuple[AffectedKey, ...] = ()) -> IncidentLabel:
    return IncidentLabel(
        scenario="demo",
        incident_id="demo-latency",
        type="latency_regression",
        target=target,
        start=T0 + timedelta(seconds=90),
        end=T0 + timedelta(seconds=150),
        start_s=90.0,
        end_s=150.0,
        start_index=0,
        end_index=0,
        signals=("latency",),
        affected=affected,
    )


def test_an_incident_matches_keys_that_carry_its_target_or_that_it_touched() -> None:
    prompt_key = AffectedKey("app_prompt_id_prompt_version", ("bot", "answer", "v1"), 0, 0, 0, 9)
    incident = label({"model": "mini"}, (prompt_key,))
    assert matches_incident({"provider": "openai", "model": "mini"}, incident)
    assert not matches_incident({"provider": "openai", "model": "4o"}, incident)
    assert matches_incident({"app": "bot", "prompt_id": "answer", "prompt_version": "v1"}, incident)
    assert not matches_incident(
        {"app": "bot", "prompt_id": "answer", "prompt_version": "v2"}, incident
    )
    assert not matches_incident({"app": "bot"}, incident)  # shares no dimension with the target


def detection(model: str, seconds: float) -> dict[str, object]:
    return {
        "detected_at": (T0 + timedelta(seconds=seconds)).isoformat(),
        "dimensions": {"provider": "openai", "model": model},
        "signal": "latency",
        "detector": "adwin",
        "before_mean": 700.0,
        "after_level": 1400.0,
    }


def alert(rule: str, state: str, seconds: float) -> dict[str, object]:
    return {
        "at": (T0 + timedelta(seconds=seconds)).isoformat(),
        "rule": rule,
        "state": state,
        "fingerprint": rule,
        "labels": {"alertname": rule, "model": "mini", "provider": "openai"},
        "annotations": {"summary": f"{rule} is {state}"},
    }


def test_the_summary_gives_each_incident_its_first_detection_and_alert_delays() -> None:
    state = DemoState("demo", "", 240.0, T0, incidents=(label({"model": "mini"}),))
    state.observe_detection(detection("mini", 30))  # before the incident: a false alarm
    state.observe_detection(detection("mini", 92.5))
    state.observe_detection(detection("mini", 95))
    state.observe_detection(detection("other", 100))  # another model: not this incident
    state.observe_alert(alert("HighLatencyP95", "pending", 106))
    state.observe_alert(alert("HighLatencyP95", "firing", 121.25))
    state.observe_alert(alert("HighLatencyP95", "resolved", 166))
    assert state.firing() == []
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(state.summary(stored_calls=9600))
    text = console.export_text()
    assert "+2.5 s latency/adwin (2 in all)" in text
    assert "+31.2 s HighLatencyP95" in text
    assert "+76.0 s HighLatencyP95" in text
    assert "4 detections, 2 outside any incident" in text
    assert "9,600 stored" in text


def test_the_live_view_draws_the_per_model_window_and_the_phase() -> None:
    state = DemoState("demo", "", 240.0, T0, incidents=(label({"model": "mini"}),))
    state.observe_health({"events_in": {"llm.calls": 100}, "rejected": {"schema": 3}}, 1.0)
    state.observe_health({"events_in": {"llm.calls": 140}, "rejected": {"schema": 3}}, 2.0)
    window = {
        "key_set": "provider_model",
        "dimensions": {"provider": "openai", "model": "mini"},
        "window_start": T0.isoformat(),
        "window_end": (T0 + timedelta(seconds=10)).isoformat(),
        "requests": 200,
        "latency_p95_ms": 2290.0,
        "error_rate": 0.015,
        "cost_usd_sum": 0.02,
    }
    state.observe_live(
        {
            "generated_at": (T0 + timedelta(seconds=10)).isoformat(),
            "watermark": (T0 + timedelta(seconds=10)).isoformat(),
            "records": [window],
        }
    )
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(state.render(now=T0 + timedelta(seconds=100)))
    text = console.export_text()
    assert "INCIDENT demo-latency" in text
    assert "40.0 events/s" in text and "3 rejected" in text
    # 200 requests in 10 s = 20/s; $0.02 per 200 requests at 20/s = $0.12 per minute.
    assert "20.0" in text and "2,290" in text and "1.5" in text and "0.120" in text
    assert state.phase(T0 + timedelta(seconds=10)) == "normal traffic"
    assert state.phase(T0 + timedelta(seconds=200)) == "recovery"
