"""Scenarios: validation with clear messages, YAML round trip, and the built-in suite."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streams.simulation.scenario import INCIDENT_TYPES, Effects, Incident, LogNormal
from streams.simulation.scenario_file import (
    ScenarioError,
    load_scenario,
    save_scenario,
    scenario_from_dict,
    to_plain,
)
from streams.simulation.suite import SCENARIOS, SUITES, get_scenario, get_suite

EXAMPLE = """
name: tiny
seed: 3
duration_s: 600
traffic:
  models:
    m1:
      provider: openai
      latency: {median: 800, sigma: 0.4}
      ttft: {median: 300, sigma: 0.3}
      input_usd_per_mtok: 1.0
      output_usd_per_mtok: 2.0
  apps:
    bot:
      models: {m1: 50}
      scores: {quality: {mean: 0.8, sd: 0.1}}
incidents:
  - id: slow
    type: latency_regression
    start_s: 300
    duration_s: 120
    target: {app: bot}
    effects: {latency_factor: 1.5}
"""


def test_yaml_example_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(EXAMPLE)
    scenario = load_scenario(path)
    assert scenario.name == "tiny" and scenario.seed == 3
    app = scenario.traffic.apps["bot"]
    assert app.models == {"m1": 50.0}
    assert app.prompt_versions == {"v1": 1.0}
    assert scenario.traffic.models["m1"].error_types["rate_limit"] == 0.5
    assert scenario.incidents[0].effects == Effects(latency_factor=1.5)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_builtin_scenarios_round_trip_through_yaml(name: str, tmp_path: Path) -> None:
    scenario = get_scenario(name)
    path = tmp_path / f"{name}.yaml"
    save_scenario(scenario, path)
    assert load_scenario(path) == scenario
    assert get_scenario(str(path)) == scenario


def test_default_suite_covers_every_incident_type() -> None:
    scenarios = get_suite("default")
    kinds = {i.type for s in scenarios for i in s.incidents}
    assert kinds == set(INCIDENT_TYPES) - {"custom"}
    assert [s.name for s in scenarios if not s.incidents] == ["normal"]
    assert len({s.seed for s in scenarios}) == len(scenarios) == len(SUITES["default"])
    for s in scenarios:  # 100 events/s per app x model key, as in the targets
        assert all(rate == 100.0 for app in s.traffic.apps.values() for rate in app.models.values())


def _with(path: str, value: object) -> dict[str, object]:
    data = yaml.safe_load(EXAMPLE)
    node = data
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    return data  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("traffic.models.m1.latency.sigma", -1, "traffic.models.m1.latency: sigma must be in"),
        (
            "traffic.models.m1.latency.sigma",
            "big",
            "traffic.models.m1.latency.sigma: expected float",
        ),
        ("traffic.apps.bot.modles", {}, "traffic.apps.bot: unknown keys ['modles']"),
        ("traffic.apps.bot.models", {"m2": 5}, "unknown model 'm2'"),
        ("incidents.0.target", {"app": "nope"}, "incidents.slow.target.app: 'nope' matches no"),
        ("incidents.0.target", {"colour": "x"}, "incidents.0: target: unknown dimensions"),
        ("incidents.0.effects", {}, "incidents.0.effects: effects change nothing"),
        ("incidents.0.start_s", 900, "start_s 900.0 is not before duration_s"),
        ("incidents.0.type", "meteor", "incidents.0: type must be one of"),
        ("seed", 1.5, "seed: expected int"),
    ],
)
def test_validation_errors_name_the_field(path: str, value: object, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(_with(path, value))
    assert message in str(info.value)


def test_missing_required_field_and_bad_yaml(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE)
    del data["traffic"]["models"]["m1"]["provider"]
    with pytest.raises(ScenarioError, match=r"traffic\.models\.m1\.provider: required"):
        scenario_from_dict(data)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)
    with pytest.raises(ValueError, match="no scenario 'nope'"):
        get_scenario("nope")


def test_incident_intensity_follows_its_ramp() -> None:
    step = Incident("a", "custom", 10.0, 20.0, Effects(latency_factor=2.0))
    ramp = Incident(
        "b", "custom", 10.0, 20.0, Effects(latency_factor=2.0), ramp="linear", ramp_s=10
    )
    assert [step.intensity(t) for t in (9.9, 10.0, 29.9, 30.0)] == [0.0, 1.0, 1.0, 0.0]
    assert [ramp.intensity(t) for t in (10.0, 15.0, 20.0, 25.0)] == [0.0, 0.5, 1.0, 1.0]


def test_to_plain_is_yaml_ready() -> None:
    plain = to_plain(LogNormal(800.0, 0.4))
    assert plain == {"median": 800.0, "sigma": 0.4}
