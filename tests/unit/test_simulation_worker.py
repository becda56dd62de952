"""Worker mode without a broker: placing ``llm.detections`` records in the stream, the
worker's environment, and the worker's detection stage against the offline detectors."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors import DetectorConfig
from streams.config import Settings
from streams.detections_stage import DEFAULT_HST_KEY_SET, DetectionsStage
from streams.simulation.offline import Alarm, DetectorMethod, evaluation_configs, run_scenario
from streams.simulation.scenario import (
    AppProfile,
    Effects,
    Incident,
    LogNormal,
    ModelProfile,
    Scenario,
    ScoreProfile,
    Traffic,
)
from streams.simulation.traffic import generate
from streams.simulation.worker_alarms import alarm_of, alarms_from_detections, compare_alarms
from streams.simulation.worker_mode import FEEDBACK_MARGIN_S, worker_start
from streams.simulation.worker_process import eval_settings, worker_environment

START = datetime(2025, 1, 6, tzinfo=UTC)
RUN = "eval-test"
APP_MODEL = "app_environment_provider_model"
PROMPT = "app_prompt_id_prompt_version"


def two_apps() -> Scenario:
    """Two apps (two partitions when keyed by app), latency x2 on one from 60 s to 90 s."""
    model = ModelProfile(
        provider="openai",
        latency=LogNormal(800.0, 0.4),
        ttft=LogNormal(300.0, 0.3),
        input_usd_per_mtok=1.0,
        output_usd_per_mtok=2.0,
        error_rate=0.02,
    )
    bot = AppProfile(
        models={"m": 30.0},
        prompt_id="p",
        prompt_versions={"v1": 0.5, "v2": 0.5},
        scores={"quality": ScoreProfile(0.8, 0.1)},
    )
    other = dataclasses.replace(bot, prompt_id="q")
    traffic = Traffic(models={"m": model}, apps={"bot": bot, "other": other})
    slow = Incident(
        "slow", "latency_regression", 60.0, 30.0, Effects(latency_factor=2.0), {"app": "bot"}
    )
    return Scenario("two-apps", traffic, 120.0, seed=4, incidents=(slow,))


def worker_records(scenario: Scenario) -> list[dict[str, Any]]:
    """What a worker publishes for ``scenario``: its detection stage fed each validated call
    by partition (calls keyed by app), the records through JSON as on ``llm.detections``."""
    stage = DetectionsStage(DetectorConfig(), hst_key_set=DEFAULT_HST_KEY_SET)
    partitions = {app: number for number, app in enumerate(scenario.traffic.apps)}
    offsets = dict.fromkeys(partitions.values(), -1)
    for partition in offsets:
        stage.assign(partition, None)
    for event in generate(scenario, START, run_id=RUN):
        call, _ = event.to_models()
        partition = partitions[call.app]
        offsets[partition] += 1
        stage.add_call(call, partition, offsets[partition])
    return [orjson.loads(orjson.dumps(r.to_json_dict())) for r in stage.take_pending()]


def test_the_worker_stage_detects_exactly_what_the_offline_detectors_do() -> None:
    scenario = two_apps()
    stream, offline = run_scenario(scenario, [DetectorMethod(evaluation_configs())], START)
    records = worker_records(scenario)
    alarms, placement = alarms_from_detections(records, stream, RUN)
    assert placement.unplaced == 0
    assert placement.scored == len(alarms) and placement.records == len(records)
    assert set(placement.other_key_sets) <= {"provider_model"}
    assert alarms == sorted(offline["llmpulse"], key=lambda a: a.index)
    assert any(a.key == ("bot", "production", "openai", "m") for a in alarms)
    agreement = compare_alarms(alarms, offline["llmpulse"])
    assert agreement.identical and agreement.both == len(alarms)


def test_a_record_is_placed_by_its_event_id_and_key() -> None:
    scenario = two_apps()
    stream, _ = run_scenario(scenario, [], START)
    key = ("bot", "production", "openai", "m")
    index = stream.key_indices[(APP_MODEL, key)][40]
    record = {
        "key_set": APP_MODEL,
        "dimensions": dict(zip(("app", "environment", "provider", "model"), key, strict=True)),
        "signal": "latency",
        "detector": "adwin",
        "event_id": f"{RUN}-{index}",
    }
    alarm = alarm_of(record, stream, RUN)
    offset = stream.key_offsets[(APP_MODEL, key)][40]
    assert alarm == Alarm(index, offset, APP_MODEL, key, 40, "latency", "adwin")

    other_app = stream.key_indices[(APP_MODEL, ("other", "production", "openai", "m"))][0]
    unplaced = [
        {**record, "event_id": f"{RUN}-{other_app}"},  # an event not on this key
        {**record, "event_id": f"another-run-{index}"},  # not this run's
        {**record, "event_id": f"{RUN}-x{index}"},
        {**record, "dimensions": {**record["dimensions"], "app": "ghost"}},  # no such key
    ]
    elsewhere = {**record, "key_set": "provider_model", "dimensions": {}}
    alarms, placement = alarms_from_detections([record, *unplaced, elsewhere], stream, RUN)
    assert alarms == [alarm]
    assert (placement.records, placement.scored, placement.unplaced) == (6, 1, 4)
    assert placement.other_key_sets == {"provider_model": 1}


def test_agreement_counts_by_signal() -> None:
    def at(index: int, signal: str) -> Alarm:
        return Alarm(index, index / 10, PROMPT, ("bot", "p", "v1"), index, signal, "adwin")

    worker = [at(5, "latency"), at(9, "ttft")]
    offline = [at(5, "latency"), at(7, "feedback.thumbs_up"), at(9, "ttft"), at(9, "latency")]
    agreement = compare_alarms(worker, offline)
    assert (agreement.both, agreement.worker_only, agreement.offline_only) == (2, 0, 2)
    assert agreement.offline_only_signals == {"feedback.thumbs_up": 1, "latency": 1}
    assert not agreement.identical


def test_eval_settings_isolate_a_run(tmp_path: Path) -> None:
    base = Settings(
        kafka_bootstrap="broker:9093",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="me",
        kafka_sasl_password="s3cret",  # type: ignore[arg-type]
        topic_partitions=3,
        clickhouse_url="http://u:p@ch:8123/db",  # type: ignore[arg-type]
    )
    run = eval_settings(base, "abc", tmp_path / "data", max_past_days=9.0)
    topics = [run.topic_calls, run.topic_feedback, run.topic_detections, run.topic_state]
    assert all(t.endswith(".eval-abc") for t in topics)
    assert run.topic_calls == "llm.calls.eval-abc" and run.consumer_group.endswith("-abc")
    assert run.clickhouse_url is None and run.is_embedded_store

    env = worker_environment(
        run, base={"PATH": "/bin", "LLMPULSE_CLICKHOUSE_URL": "http://ch", "LLMPULSE_X": "1"}
    )
    assert env["PATH"] == "/bin"
    assert "LLMPULSE_CLICKHOUSE_URL" not in env and "LLMPULSE_X" not in env
    assert env["LLMPULSE_KAFKA_BOOTSTRAP"] == "broker:9093"
    assert env["LLMPULSE_KAFKA_SASL_PASSWORD"] == "s3cret"
    assert env["LLMPULSE_TOPIC_CALLS"] == "llm.calls.eval-abc"
    assert env["LLMPULSE_TOPIC_PARTITIONS"] == "3"
    assert env["LLMPULSE_DATA_DIR"] == str(tmp_path / "data")
    assert env["LLMPULSE_MAX_PAST_DAYS"] == "9.0"
    assert env["LLMPULSE_DETECTORS_HST_KEY_SET"] == "app,environment,provider,model"
    assert (env["LLMPULSE_METRICS_ENABLED"], env["LLMPULSE_ALERTS_ENABLED"]) == ("false", "false")
    # The child reads back the same settings.
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            if name.startswith("LLMPULSE_"):
                patch.setenv(name, value)
        read = Settings()
    assert read.topic_detections == run.topic_detections and read.web_port == run.web_port
    assert not read.metrics_enabled and not read.alerts_enabled and read.detectors_enabled


def test_worker_start_puts_the_stream_and_its_feedback_in_the_past() -> None:
    scenario = two_apps()
    now = datetime(2025, 3, 1, 12, 0, 0, 500_000, tzinfo=UTC)
    start = worker_start(scenario, now)
    assert start.microsecond == 0
    end = start + timedelta(seconds=scenario.duration_s)
    assert now - end >= timedelta(seconds=FEEDBACK_MARGIN_S)
