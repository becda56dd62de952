"""``llmpulse eval`` and ``simulate`` argument handling (no broker needed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import typer
from typer.testing import CliRunner

from streams.simulation.cli import register, with_duration, with_total_rate
from streams.simulation.labels import read_labels
from streams.simulation.scenario_file import save_scenario
from streams.simulation.suite import SCENARIOS


def app() -> typer.Typer:
    cli = typer.Typer()
    register(cli)
    return cli


def test_eval_one_scenario_file_writes_json_markdown_and_labels(tmp_path: Path) -> None:
    scenario = with_duration(SCENARIOS["demo"](), 120.0)
    path = tmp_path / "short.yaml"
    save_scenario(scenario, path)
    out, md, labels = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "l.jsonl"
    result = CliRunner().invoke(
        app(),
        ["eval", "--scenario", str(path), "--jobs", "1", "--output", str(out),
         "--markdown", str(md), "--labels", str(labels)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = orjson.loads(out.read_bytes())
    assert [m["method"] for m in report["methods"]] == ["llmpulse", "static"]
    ours = report["methods"][0]
    assert ours["rows"][0]["type"] == "latency_regression"
    assert ours["rows"][0]["detection_rate"] == 1.0
    assert ours["scenarios"][0]["outcomes"][0]["detected"] is True
    assert "| latency_regression | 1/1 |" in md.read_text()
    assert [label.incident_id for label in read_labels(labels)] == ["demo-latency"]


def test_bad_arguments_exit_2() -> None:
    runner = CliRunner()
    # Nothing listens on port 1: worker mode stops before generating anything.
    no_broker = runner.invoke(app(), ["eval", "--worker", "--bootstrap", "127.0.0.1:1"])
    assert no_broker.exit_code == 2
    assert "no Kafka broker answers at 127.0.0.1:1" in no_broker.output
    assert runner.invoke(app(), ["eval", "--scenario", "nope"]).exit_code == 2
    assert runner.invoke(app(), ["eval", "--suite", "nope"]).exit_code == 2
    assert runner.invoke(app(), ["simulate", "--scenario", "nope"]).exit_code == 2


def test_duration_and_rate_overrides() -> None:
    demo = SCENARIOS["demo"]()
    assert with_duration(demo, 60.0).incidents == ()  # the incident starts at 90 s
    assert with_duration(demo, 100.0).incidents == demo.incidents
    faster = with_total_rate(demo, 400.0)
    assert faster.traffic.total_rate == 400.0
    assert dataclasses.replace(faster, traffic=demo.traffic) == demo
