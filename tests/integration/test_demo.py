"""``llmpulse demo`` end to end on the real broker: traffic, an incident, detections, alerts.

The demo runs as a user runs it (a child process), on a shortened copy of the built-in demo
scenario, against the session's broker (so it must not start or stop one itself). What it
left behind is then checked in the embedded store through ``llmpulse sql``.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.simulation.scenario_file import save_scenario
from streams.simulation.suite import SCENARIOS
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration

INCIDENT_AT_S = 20.0
INCIDENT_S = 30.0


def sql(env: dict[str, str], query: str) -> list[list[Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "sql", "--format", "json", query],
        env=env, cwd=REPO, capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    return [list(row) for row in orjson.loads(done.stdout)["rows"]]


def test_demo_shows_an_incident_detected_alerted_and_resolved(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    demo = SCENARIOS["demo"]()
    incident = dataclasses.replace(demo.incidents[0], start_s=INCIDENT_AT_S, duration_s=INCIDENT_S)
    scenario = dataclasses.replace(demo, duration_s=75.0, incidents=(incident,))
    scenario_path = tmp_path / "scenario.yaml"
    save_scenario(scenario, scenario_path)
    suffix = worker_env["LLMPULSE_TOPIC_CALLS"].rsplit(".", 1)[1]
    env = {
        **worker_env,
        "LLMPULSE_TOPIC_DETECTIONS": f"llm.detections.{suffix}",
        "LLMPULSE_TOPIC_ALERTS": f"llm.alerts.{suffix}",
        "LLMPULSE_TOPIC_SILENCES": f"llm.silences.{suffix}",
        "COLUMNS": "120",
    }
    svg = tmp_path / "demo.svg"

    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo", "--scenario", str(scenario_path),
         "--svg", str(svg)],
        env=env, cwd=REPO, capture_output=True, timeout=480,
    )  # fmt: skip
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, out[-4000:] + done.stderr.decode(errors="replace")[-4000:]
    assert "using Kafka at" in out  # the session's broker: the demo must not start its own
    assert "summary" in out and "Try these analyst queries" in out
    assert svg.read_text(encoding="utf-8").lstrip().startswith("<svg")

    # Every call of the scenario was stored once, and the malformed records were rejected.
    (calls, first), *_ = sql(
        env, "SELECT uniqExact(event_id), toString(min(timestamp)) FROM llmpulse.llm_calls"
    )
    expected = sum(1 for _ in _generate(scenario))
    assert calls == expected
    assert sql(env, "SELECT count() FROM llmpulse.llm_dead_letters FINAL")[0][0] == 3

    # The latency regression was detected on its model, after it began and before it ended;
    # the other model had no latency detection.
    start = datetime.fromisoformat(first).timestamp()
    rows = sql(
        env,
        "SELECT model, toUnixTimestamp64Milli(event_time) / 1000 FROM llmpulse.llm_detections "
        "FINAL WHERE key_set = 'provider_model' AND signal = 'latency'",
    )
    assert rows, "no latency detection"
    assert {model for model, _ in rows} == {"gpt-4o-mini"}
    first_detection = min(t for _, t in rows) - start
    assert INCIDENT_AT_S - 1 <= first_detection <= INCIDENT_AT_S + INCIDENT_S

    # The p95 rule of the shipped default rules fired and resolved; the drift rule fired.
    states = sql(
        env,
        "SELECT rule, state FROM llmpulse.llm_alerts FINAL "
        "WHERE labels['model'] = 'gpt-4o-mini' ORDER BY at, sequence",
    )
    p95 = [state for rule, state in states if rule == "HighLatencyP95"]
    assert p95[:3] == ["pending", "firing", "resolved"]
    assert ["LatencyDrift", "firing"] in states
    assert not [
        s for s in states if s[1] == "firing" and s[0] not in ("HighLatencyP95", "LatencyDrift")
    ]


def _generate(scenario: Any) -> Any:
    from datetime import UTC

    from streams.simulation.traffic import generate

    return generate(scenario, datetime.now(UTC), run_id="count")
