"""The built-in scenarios: one per incident type, a normal one for false alarms, and a demo.

Each suite scenario runs 20 minutes of traffic at 100 events/s per (app, model) key (four
keys, 400 events/s), with its incident at minute 10: enough normal history for every
detector's warm-up and for a static 5-minute-window baseline, and a recovery afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import yaml

from streams.simulation.scenario import (
    AppProfile,
    Effects,
    FeedbackProfile,
    Incident,
    LogNormal,
    ModelProfile,
    Scenario,
    ScoreProfile,
    Traffic,
)
from streams.simulation.scenario_file import ScenarioError, load_scenario, scenario_from_dict

__all__ = [
    "SCENARIOS",
    "SUITES",
    "default_traffic",
    "demo_traffic",
    "get_scenario",
    "get_suite",
    "with_seeds",
]

SUITE_DURATION_S = 1200.0
INCIDENT_AT_S = 600.0


def _models() -> dict[str, ModelProfile]:
    anthropic_errors = {"overloaded": 0.5, "rate_limit": 0.3, "timeout": 0.2}
    return {
        "gpt-4o-mini": ModelProfile(
            provider="openai",
            latency=LogNormal(900.0, 0.4),
            ttft=LogNormal(350.0, 0.35),
            input_usd_per_mtok=0.15,
            output_usd_per_mtok=0.60,
            error_rate=0.01,
        ),
        "gpt-4o": ModelProfile(
            provider="openai",
            latency=LogNormal(1600.0, 0.45),
            ttft=LogNormal(500.0, 0.35),
            input_usd_per_mtok=2.50,
            output_usd_per_mtok=10.0,
            error_rate=0.008,
        ),
        "claude-3-5-haiku": ModelProfile(
            provider="anthropic",
            latency=LogNormal(1100.0, 0.4),
            ttft=LogNormal(450.0, 0.35),
            input_usd_per_mtok=0.80,
            output_usd_per_mtok=4.0,
            error_rate=0.012,
            error_types=anthropic_errors,
        ),
    }


def default_traffic(rate_per_key: float = 100.0) -> Traffic:
    """Two apps x two models each, two prompt versions per app, scores and user feedback."""
    support = AppProfile(
        models={"gpt-4o-mini": rate_per_key, "claude-3-5-haiku": rate_per_key},
        prompt_id="answer",
        prompt_versions={"v1": 0.5, "v2": 0.5},
        input_tokens=LogNormal(1200.0, 0.5),
        output_tokens=LogNormal(220.0, 0.6),
        scores={
            "faithfulness": ScoreProfile(0.85, 0.08),
            "relevance": ScoreProfile(0.80, 0.10, probability=0.5),
        },
        feedback=FeedbackProfile(probability=0.05, from_score="faithfulness"),
    )
    summarizer = AppProfile(
        models={"gpt-4o": rate_per_key, "claude-3-5-haiku": rate_per_key},
        prompt_id="summarize",
        prompt_versions={"v3": 0.7, "v4": 0.3},
        input_tokens=LogNormal(3000.0, 0.6),
        output_tokens=LogNormal(400.0, 0.5),
        scores={"coherence": ScoreProfile(0.82, 0.09)},
        feedback=FeedbackProfile(probability=0.02, positive_rate=0.85),
        refusal_rate=0.001,
    )
    return Traffic(models=_models(), apps={"support-bot": support, "summarizer": summarizer})


def demo_traffic() -> Traffic:
    """One app on two models at 20 events/s each: light enough to watch live.

    The models are faster than the suite's, so that their p95 latency sits well below the
    default rules' ``HighLatencyP95`` threshold (2 s, recovering at 1.5 s) in normal traffic.
    """
    models = _models()
    models["gpt-4o-mini"] = dataclasses.replace(
        models["gpt-4o-mini"], latency=LogNormal(700.0, 0.3), ttft=LogNormal(250.0, 0.3)
    )
    models["claude-3-5-haiku"] = dataclasses.replace(
        models["claude-3-5-haiku"], latency=LogNormal(650.0, 0.3), ttft=LogNormal(300.0, 0.3)
    )
    app = AppProfile(
        models={"gpt-4o-mini": 20.0, "claude-3-5-haiku": 20.0},
        prompt_id="answer",
        prompt_versions={"v1": 0.5, "v2": 0.5},
        scores={"faithfulness": ScoreProfile(0.85, 0.08)},
        feedback=FeedbackProfile(probability=0.05, from_score="faithfulness"),
    )
    return Traffic(models=models, apps={"support-bot": app})


def _one(
    name: str,
    seed: int,
    kind: str,
    effects: Effects,
    target: dict[str, str],
    duration_s: float,
    description: str,
    *,
    share: float = 1.0,
    ramp: str = "step",
    ramp_s: float = 0.0,
) -> Scenario:
    incident = Incident(
        id=f"{name}-1",
        type=kind,
        start_s=INCIDENT_AT_S,
        duration_s=duration_s,
        effects=effects,
        target=target,
        share=share,
        ramp=ramp,
        ramp_s=ramp_s,
    )
    return Scenario(
        name=name,
        traffic=default_traffic(),
        duration_s=SUITE_DURATION_S,
        seed=seed,
        incidents=(incident,),
        description=description,
    )


BOT_MINI = {"app": "support-bot", "model": "gpt-4o-mini"}
BOT_HAIKU = {"app": "support-bot", "model": "claude-3-5-haiku"}
SUM_4O = {"app": "summarizer", "model": "gpt-4o"}
SUM_HAIKU = {"app": "summarizer", "model": "claude-3-5-haiku"}

SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "normal": lambda: Scenario(
        name="normal",
        traffic=default_traffic(),
        duration_s=SUITE_DURATION_S,
        seed=10,
        description="No incident: every detection is a false alarm.",
    ),
    "latency_x1_3": lambda: _one(
        "latency_x1_3",
        1,
        "latency_regression",
        Effects(latency_factor=1.3),
        BOT_MINI,
        300,
        "Latency and TTFT x1.3 on one app x model for 5 minutes.",
    ),
    "latency_x2": lambda: _one(
        "latency_x2",
        2,
        "latency_regression",
        Effects(latency_factor=2.0),
        SUM_4O,
        300,
        "Latency and TTFT x2 on one app x model for 5 minutes.",
    ),
    "error_burst": lambda: _one(
        "error_burst",
        3,
        "error_burst",
        Effects(error_rate=0.2),
        BOT_HAIKU,
        120,
        "Error rate 1.2% -> 20% for 2 minutes.",
    ),
    "error_creep": lambda: _one(
        "error_creep",
        4,
        "error_creep",
        Effects(error_rate=0.10),
        SUM_HAIKU,
        300,
        "Error rate rising linearly from 1.2% to 10% over 5 minutes.",
        ramp="linear",
        ramp_s=300.0,
    ),
    "token_cost_spike": lambda: _one(
        "token_cost_spike",
        5,
        "token_cost_spike",
        Effects(output_tokens_factor=2.5),
        BOT_MINI,
        180,
        "Output tokens (and so cost and some latency) x2.5 for 3 minutes.",
    ),
    "score_drift": lambda: _one(
        "score_drift",
        6,
        "score_drift",
        Effects(score_shift=-0.12, scores=("faithfulness",)),
        {"app": "support-bot"},
        300,
        "Mean faithfulness 0.85 -> 0.73 over 2 minutes, on both models of an app.",
        ramp="linear",
        ramp_s=120.0,
    ),
    "bad_prompt_version": lambda: _one(
        "bad_prompt_version",
        7,
        "bad_prompt_version",
        Effects(prompt_version="v5", score_shift=-0.15, output_tokens_factor=1.5),
        {"app": "summarizer"},
        300,
        "A new prompt version rolled out to half of an app's calls over 1 minute: "
        "coherence -0.15, output tokens x1.5.",
        share=0.5,
        ramp="linear",
        ramp_s=60.0,
    ),
    "new_error_type": lambda: _one(
        "new_error_type",
        8,
        "new_error_type",
        Effects(error_rate=0.03, error_type="context_length_exceeded"),
        BOT_MINI,
        300,
        "A never-seen error type on 2% of calls (error rate 1% -> 3%).",
    ),
    "provider_outage": lambda: _one(
        "provider_outage",
        9,
        "provider_outage",
        Effects(error_rate=0.95, error_type="service_unavailable"),
        {"provider": "openai"},
        120,
        "95% of every OpenAI call fails with a new error type for 2 minutes, across apps.",
    ),
    "demo": lambda: Scenario(
        name="demo",
        traffic=demo_traffic(),
        duration_s=240.0,
        seed=42,
        incidents=(
            Incident(
                id="demo-latency",
                type="latency_regression",
                start_s=90.0,
                duration_s=60.0,
                effects=Effects(latency_factor=2.0),
                target={"model": "gpt-4o-mini"},
            ),
        ),
        description="Normal for 90 s, latency x2 on gpt-4o-mini for 60 s, then recovery.",
    ),
}
"""Built-in scenarios by name; each call builds a fresh `Scenario`."""

SUITES: dict[str, tuple[str, ...]] = {
    "default": tuple(name for name in SCENARIOS if name != "demo"),
}


def get_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or one read from a YAML file."""
    if name_or_path in SCENARIOS:
        return SCENARIOS[name_or_path]()
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        return load_scenario(path)
    raise ValueError(
        f"no scenario {name_or_path!r}: use a file or one of {', '.join(sorted(SCENARIOS))}"
    )


def get_suite(name_or_path: str) -> list[Scenario]:
    """A built-in suite by name, or a YAML file holding ``scenarios:`` (names or mappings)."""
    if name_or_path in SUITES:
        return [SCENARIOS[name]() for name in SUITES[name_or_path]]
    path = Path(name_or_path)
    if not path.exists():
        raise ValueError(f"no suite {name_or_path!r}: use a file or one of {sorted(SUITES)}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
        raise ScenarioError(str(path), "a suite file holds `scenarios:`, a list")
    return [
        get_scenario(item) if isinstance(item, str) else scenario_from_dict(item)
        for item in data["scenarios"]
    ]


def with_seeds(scenarios: list[Scenario], repeats: int) -> list[Scenario]:
    """Each scenario ``repeats`` times with other seeds (names get ``#k``); 1 returns them as is."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if repeats == 1:
        return list(scenarios)
    return [
        dataclasses.replace(s, name=f"{s.name}#{k}", seed=s.seed + 1000 * k)
        for s in scenarios
        for k in range(repeats)
    ]
