"""A real worker's /metrics page and its log file: counts match, lag drains, nothing leaks."""

from __future__ import annotations

import random
import urllib.request
import uuid
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.events import invalid_payloads, valid_call
from tests.integration.conftest import produce, wait_until

pytestmark = pytest.mark.integration

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    for found, number in samples.get(name, []):
        if found == labels:
            return number
    return None


def test_metrics_page_and_json_logs(
    kafka: str, worker_env: dict[str, str], make_worker: Any
) -> None:
    rng = random.Random(3)
    calls = worker_env["LLMPULSE_TOPIC_CALLS"]
    valid = [orjson.dumps(valid_call(i, rng)) for i in range(600)]
    invalid = [payload for _, payload in invalid_payloads(40, rng)]
    produce(kafka, calls, valid + invalid)
    state_key = f"it-{uuid.uuid4().hex}"  # must never appear in the log
    worker = make_worker(LLMPULSE_STATE_KEY=state_key).start()

    def drained() -> Any:
        samples = scrape(worker.web_port)
        lag = samples.get("llmpulse_consumer_lag_records", [])
        done = (
            value(samples, "llmpulse_events_in_total", topic=calls) == 640
            and len(lag) == 3
            and all(number == 0 for _, number in lag)
            and value(samples, "llmpulse_checkpoint_age_seconds", stage="metrics") is not None
        )
        return done or {
            name: samples.get(name)
            for name in ("llmpulse_events_in_total", "llmpulse_consumer_lag_records")
        }

    wait_until(drained, timeout=180, message="all events counted and the lag drained")
    samples = scrape(worker.web_port)
    assert sum(number for _, number in samples["llmpulse_events_rejected_total"]) == 40
    assert {labels["reason"] for labels, _ in samples["llmpulse_events_rejected_total"]} >= {
        "bad_json", "empty", "not_utf8", "too_large", "schema",
    }  # fmt: skip
    assert value(samples, "llmpulse_sink_rows_written_total", table="llm_calls") == 600
    assert value(samples, "llmpulse_sink_rows_written_total", table="llm_dead_letters") == 40
    assert value(samples, "llmpulse_sink_backpressure", table="llm_calls") == 0
    assert value(samples, "llmpulse_sink_write_seconds_count", table="llm_calls") >= 1  # type: ignore[operator]
    assert value(samples, "llmpulse_checkpoint_failures_total", stage="metrics") == 0
    assert value(samples, "llmpulse_worker_ready") == 1
    assert worker.stop() == 0

    # stdout is a file, not a terminal: every line is a JSON object.
    text = worker.log_path.read_text()
    entries = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    assert entries
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    assert any(entry["logger"].startswith("faust") for entry in entries)
    assert state_key not in text
    prompt = orjson.loads(valid[0])["input_text"]
    assert prompt not in text and "jane.doe" not in text
