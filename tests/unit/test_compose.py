"""docker-compose.yml stays valid and in step with the settings the code reads."""

from __future__ import annotations

from pathlib import Path

import yaml

from streams.config import Settings

REPO = Path(__file__).resolve().parents[2]


def test_compose_services_and_settings_are_in_step() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert {"kafka", "clickhouse", "worker"} <= set(compose["services"])
    worker = compose["services"]["worker"]
    assert worker["build"] == "."
    assert (REPO / "Dockerfile").exists()
    fields = set(Settings.model_fields)
    variables = [name for name in worker["environment"] if name.startswith("LLMPULSE_")]
    assert variables
    unknown = [v for v in variables if v.removeprefix("LLMPULSE_").lower() not in fields]
    assert unknown == []
    for service in compose["services"].values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{port} must bind to loopback only"
    bootstrap = worker["environment"]["LLMPULSE_KAFKA_BOOTSTRAP"]
    listeners = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert bootstrap in listeners
