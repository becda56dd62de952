"""Ground-truth labels: what the recorder notes, relevant signals, and the JSONL round trip."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streams.simulation.labels import (
    IncidentLabel,
    LabelRecorder,
    key_of,
    read_labels,
    relevant_signals,
    write_labels,
)
from streams.simulation.scenario import Effects, Incident, Scenario
from streams.simulation.suite import SCENARIOS, default_traffic, demo_traffic
from streams.simulation.traffic import generate

START = datetime(2025, 1, 6, tzinfo=UTC)


def recorded(
    scenario: Scenario,
) -> tuple[LabelRecorder, list[tuple[int, str, tuple[str, ...], int]]]:
    recorder = LabelRecorder(scenario, START)
    seen = []
    for event in generate(scenario, START):
        for name, key, position in recorder.observe(event):
            seen.append((event.index, name, key, position))
    return recorder, seen


def test_recorder_finds_first_affected_event_of_every_key(tmp_path: Path) -> None:
    scenario = dataclasses.replace(SCENARIOS["demo"](), duration_s=120.0)
    recorder, seen = recorded(scenario)
    (label,) = recorder.labels()
    assert label.incident_id == "demo-latency" and label.type == "latency_regression"
    assert label.start == START + timedelta(seconds=90) and label.end == START + timedelta(
        seconds=120
    )
    assert (label.start_s, label.end_s) == (90.0, 120.0)  # cut at the end of the stream
    assert label.signals == ("anomaly", "latency", "ttft")
    events = list(generate(scenario, START))
    assert label.start_index == next(e.index for e in events if e.offset_s >= 90)
    assert label.end_index == len(events) == recorder.n_events
    by_key = {(a.key_set, a.key): a for a in label.affected}
    assert set(by_key) == {
        ("app_environment_provider_model", ("support-bot", "production", "openai", "gpt-4o-mini")),
        ("app_prompt_id_prompt_version", ("support-bot", "answer", "v1")),
        ("app_prompt_id_prompt_version", ("support-bot", "answer", "v2")),
    }
    model_key = by_key[("app_environment_provider_model", label.affected[0].key)]
    first = events[model_key.first_index]
    assert first.incidents == ("demo-latency",) and first.offset_s >= 90
    assert not any(
        e.incidents for e in events[: model_key.first_index] if e.call["model"] == "gpt-4o-mini"
    )
    assert (
        model_key.first_index,
        "app_environment_provider_model",
        model_key.key,
        model_key.first_key_index,
    ) in seen
    assert model_key.events == sum(1 for e in events if e.incidents)
    assert sum(recorder.key_counts.values()) == 2 * len(events)

    path = tmp_path / "labels.jsonl"
    write_labels(path, [label, label])
    assert read_labels(path) == [label, label]
    assert IncidentLabel.from_json(label.to_json()) == label


def test_relevant_signals_follow_the_effects() -> None:
    traffic = default_traffic()

    def signals(effects: Effects, **target: str) -> tuple[str, ...]:
        return relevant_signals(Incident("i", "custom", 0.0, 1.0, effects, target=target), traffic)

    assert signals(Effects(error_rate=0.2)) == ("error",)
    assert signals(Effects(error_rate=0.2, error_type="x")) == ("error", "error_type")
    assert signals(Effects(output_tokens_factor=2.0)) == (
        "anomaly",
        "cost",
        "latency",
        "output_tokens",
    )
    assert signals(Effects(score_shift=-0.1), app="summarizer") == ("score.coherence",)
    assert signals(Effects(score_shift=-0.1, scores=("faithfulness",)), app="support-bot") == (
        "feedback.thumbs_up",
        "score.faithfulness",
    )
    assert signals(Effects(prompt_version="v9")) == ()
    no_coupling = dataclasses.replace(demo_traffic(), latency_token_elasticity=0.0)
    spike = Incident("i", "custom", 0.0, 1.0, Effects(output_tokens_factor=2.0))
    assert "latency" not in relevant_signals(spike, no_coupling)


def test_key_of_skips_calls_missing_a_dimension() -> None:
    call = {"app": "a", "prompt_id": "p", "prompt_version": None}
    assert key_of(call, ("app", "prompt_id")) == ("a", "p")
    assert key_of(call, ("app", "prompt_id", "prompt_version")) is None
