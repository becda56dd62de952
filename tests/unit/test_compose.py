"""docker-compose.yml stays valid, scalable and in step with the settings the code reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from streams.config import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
PLUGIN = "grafana-clickhouse-datasource"
# Compose's required-variable syntax: the stack refuses to start without the value.
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")
# Grafana expands $NAME or ${NAME} from its environment in provisioning files.
GRAFANA_ENV = re.compile(r"^\$\{?(\w+)\}?$")


def _environment(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service].get("environment", {}).items()}


def _bind_mounts(service: str) -> dict[str, tuple[str, str]]:
    """Container path -> (host path, mode) of the service's bind mounts."""
    mounts = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target, *mode = str(volume).split(":")
        if source.startswith((".", "/")):
            mounts[target] = (source, mode[0] if mode else "rw")
    return mounts


def _clickhouse_url() -> str:
    return _environment("worker")["LLMPULSE_CLICKHOUSE_URL"]


def test_compose_services_and_settings_are_in_step() -> None:
    assert {"kafka", "clickhouse", "worker", "grafana"} <= set(SERVICES)
    worker = SERVICES["worker"]
    assert worker["build"] == "."
    assert (REPO / "Dockerfile").exists()
    for service in SERVICES.values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{port} must bind to loopback only"
    bootstrap = worker["environment"]["LLMPULSE_KAFKA_BOOTSTRAP"]
    listeners = SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert bootstrap in listeners


def test_every_llmpulse_variable_is_a_setting() -> None:
    prefix = Settings.model_config.get("env_prefix")
    assert prefix == "LLMPULSE_"
    fields = set(Settings.model_fields)
    variables = [name for s in SERVICES for name in _environment(s) if name.startswith(prefix)]
    assert variables
    unknown = [v for v in variables if v.removeprefix(prefix).lower() not in fields]
    assert unknown == []


def test_the_worker_can_run_as_several_replicas() -> None:
    worker = SERVICES["worker"]
    env = _environment("worker")
    # Replicas would collide on a container name or a fixed host port.
    assert "container_name" not in worker
    for port in worker.get("ports", []):
        parts = str(port).split(":")  # [ip:][host port:]container port
        host_port = parts[-2] if len(parts) > 1 else ""
        assert not host_port.isdigit(), f"{port}: a fixed host port allows one replica only"
    # Each replica keeps its own /data (embedded chDB allows one process per data directory),
    # and the store is the ClickHouse server, not chDB.
    assert not [v for v in worker.get("volumes", []) if "/data" in str(v)]
    assert env["LLMPULSE_CLICKHOUSE_URL"].startswith("http://")
    assert env["LLMPULSE_CLICKHOUSE_URL"].endswith("@clickhouse:8123")
    # One consumer group for all replicas, and one checkpoint key they all verify.
    assert "LLMPULSE_CONSUMER_GROUP" not in env or "$" not in env["LLMPULSE_CONSUMER_GROUP"]
    assert REQUIRED.fullmatch(env["LLMPULSE_STATE_KEY"])
    # Reachable by its healthcheck and the compose network, not from the host.
    assert env["LLMPULSE_WEB_HOST"] == "0.0.0.0"
    assert env["LLMPULSE_WEB_PORT"] in [str(p) for p in worker.get("expose", [])]
    assert env["LLMPULSE_WEB_PORT"] in " ".join(worker["healthcheck"]["test"])


def test_secrets_come_from_required_variables() -> None:
    secret = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$")
    for name in SERVICES:
        for key, value in _environment(name).items():
            if secret.search(key):
                assert REQUIRED.fullmatch(value), f"{name}.{key} must be ${{VAR:?...}}"
    password = _environment("clickhouse")["CLICKHOUSE_PASSWORD"]
    url = _clickhouse_url()
    assert f":{password}@" in url
    assert REQUIRED.fullmatch(_environment("grafana")["GF_SECURITY_ADMIN_PASSWORD"])


def test_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        if "image" in service:
            image, _, tag = service["image"].rpartition(":")
            assert image and tag and tag != "latest", f"{name}: pin {service['image']}"


def test_grafana_has_the_plugin_and_the_provisioning_in_the_repo() -> None:
    grafana = SERVICES["grafana"]
    env = _environment("grafana")
    assert grafana["image"].startswith("grafana/grafana:")
    plugins = env.get("GF_PLUGINS_PREINSTALL_SYNC") or env["GF_INSTALL_PLUGINS"]
    assert re.search(rf"\b{PLUGIN}(@| )\d+\.\d+\.\d+", plugins), "pin the plugin version"
    assert grafana["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    mounts = _bind_mounts("grafana")
    for target, (source, mode) in mounts.items():
        assert (REPO / source).is_dir(), f"{source} is not in the repo"
        assert mode == "ro", f"{target} must be read-only"
    provisioning = "/etc/grafana/provisioning"
    datasources = REPO / mounts[f"{provisioning}/datasources"][0]
    providers = REPO / mounts[f"{provisioning}/dashboards"][0]
    assert [p.name for p in datasources.glob("*.yaml")] == ["clickhouse.yaml"]
    [provider] = yaml.safe_load((providers / "llmpulse.yaml").read_text())["providers"]
    dashboards = REPO / mounts[provider["options"]["path"]][0]
    assert [p.name for p in dashboards.glob("*.json")] == ["llmpulse.json"]
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/llmpulse.json"


def test_the_data_source_reads_its_credentials_from_the_environment() -> None:
    env = _environment("grafana")
    path = REPO / _bind_mounts("grafana")["/etc/grafana/provisioning/datasources"][0]
    [source] = yaml.safe_load((path / "clickhouse.yaml").read_text())["datasources"]
    assert source["type"] == PLUGIN and source["uid"]
    data = source["jsonData"]
    assert (data["host"], data["protocol"], data["defaultDatabase"]) == (
        "clickhouse", "http", "llmpulse"
    )  # fmt: skip
    assert f"@clickhouse:{data['port']}" in _clickhouse_url()  # where the workers write
    clickhouse = _environment("clickhouse")
    for value, variable in (
        (data["username"], "CLICKHOUSE_USER"),
        (source["secureJsonData"]["password"], "CLICKHOUSE_PASSWORD"),
    ):
        reference = GRAFANA_ENV.fullmatch(str(value))
        assert reference, f"{value!r} must be an environment reference, not a literal"
        assert reference.group(1) == variable
        assert env[variable] == clickhouse[variable]  # the same user and required variable
