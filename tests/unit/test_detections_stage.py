"""DetectionsStage on seeded call streams: detections, replay after restore, eviction, bad state."""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections import OrderedDict
from pathlib import Path

import orjson
import pytest

from detectors import DetectorConfig, extract_features
from schemas import LLMCall
from streams.detections_stage import DetectionsStage, DetectorStateError
from streams.migrations import migrate
from streams.rows import DETECTION_COLUMNS, detection_row
from streams.store import ClickHouseStore
from tests.unit.detection_fakes import NOW, run, stream
from tests.unit.metrics_fakes import Call, at

CONFIG = DetectorConfig()
BOT = {"app": "bot", "environment": "production", "provider": "openai", "model": "gpt-4o"}


def new_stage() -> DetectionsStage:
    stage = DetectionsStage(CONFIG, clock=lambda: NOW)
    stage.assign(0, None)
    stage.assign(1, None)
    return stage


def test_a_latency_step_on_one_key_is_reported_for_that_key() -> None:
    records = run(new_stage(), stream(1, 4000, slow={"bot": 3000}))
    assert records
    assert all(r.dimensions.get("app") != "search" for r in records), records
    first = next(r for r in records if r.key_set == "app_environment_provider_model")
    assert (first.dimensions, first.signal, first.detector) == (BOT, "latency", "adwin")
    assert 3000 < first.source_offset < 3200
    assert first.source_partition == 0
    assert first.event_id == f"bot-{first.source_offset}"
    assert first.event_time == at(first.source_offset * 0.01)
    assert first.before_mean == pytest.approx(800, rel=0.1)
    assert first.after_level == pytest.approx(1600, rel=0.25)
    assert first.before_quantile > first.before_mean
    assert first.detected_at == NOW
    prompt = [r for r in records if r.key_set == "app_prompt_id_prompt_version"]
    assert prompt[0].dimensions == {"app": "bot", "prompt_id": "answer", "prompt_version": "v1"}
    assert prompt[0].signal == "latency"
    health = new_stage().health()
    assert health["keys"] == 0 and health["partitions"] == [0, 1]


def test_no_detection_on_20k_stationary_calls() -> None:
    stage = new_stage()
    assert run(stage, stream(2, 10_000)) == []
    health = stage.health()
    assert health["calls_counted"] == 20_000
    assert health["detections"] == {}
    # The shared provider x model key has detectors in each partition, on its share of calls.
    assert health["keys_by_key_set"] == {
        "app_environment_provider_model": 2,
        "app_prompt_id_prompt_version": 2,
        "provider_model": 2,
    }
    assert health["us_per_call"] > 0


def test_replay_after_restore_reproduces_an_uninterrupted_run() -> None:
    events = stream(3, 2500, slow={"bot": 1000, "search": 1800})
    expected = run(new_stage(), events)
    assert {r.dimensions.get("app") for r in expected} >= {"bot", "search"}

    first = new_stage()
    for partition, offset, call in events[:3000]:
        first.add_call(call, partition, offset)
    published, snapshots = first.take_checkpoint()
    assert published == expected[: len(published)] and published
    # Counted after the checkpoint, then lost in a crash (never published, never saved).
    lost = run(first, events[3000:4500])
    assert {r.dimensions.get("app") for r in lost} == {"search", None}

    second = DetectionsStage(CONFIG, clock=lambda: NOW)
    for partition in (0, 1):
        second.assign(partition, snapshots[second.checkpoint_name(partition)])
    # Kafka re-delivers from the last committed offset, here the very beginning.
    replayed = run(second, events)
    assert published + replayed == expected
    assert second.replayed_skipped == 3000
    assert second.health()["restored_partitions"] == 2


def test_keys_are_bounded_per_partition_least_recently_updated_first() -> None:
    stage = DetectionsStage(
        CONFIG, key_sets=(("app",),), hst_key_set=None, max_keys_per_partition=5
    )
    stage.assign(0, None)
    offset = 0
    for app in [f"app{i}" for i in range(20)] + ["app15"]:
        for _ in range(3):
            offset += 1
            stage.add_call(Call(f"e{offset}", at(offset), app=app), 0, offset)
    stage.add_call(Call("e-last", at(99), app="new"), 0, offset + 1)  # evicts app16, not app15
    health = stage.health()
    assert (health["keys"], health["evictions"]) == (5, 16)
    kept = pickle.loads(stage.snapshot(0))["detectors"]
    assert [key for _, (key,) in kept] == ["app17", "app18", "app19", "app15", "new"]

    smaller = DetectionsStage(
        CONFIG, key_sets=(("app",),), hst_key_set=None, max_keys_per_partition=2
    )
    smaller.assign(0, stage.snapshot(0))
    assert (smaller.health()["keys"], smaller.evictions) == (2, 3)


def test_unassigned_partitions_are_skipped_and_counted() -> None:
    stage = new_stage()
    stage.revoke(1)
    stage.revoke(7)  # unknown: ignored
    for partition, offset, call in stream(4, 10):
        stage.add_call(call, partition, offset)
    assert stage.unassigned_skipped == 10 and stage.calls_counted == 10
    assert stage.partitions == (0,)
    with pytest.raises(ValueError, match="already assigned"):
        stage.assign(0, None)


def _snapshot(**changes: object) -> bytes:
    stage = new_stage()
    run(stage, stream(5, 50))
    state = pickle.loads(stage.snapshot(0))
    state.update(changes)
    return pickle.dumps(state)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not a pickle", "does not unpickle"),
        (pickle.dumps([1, 2, 3]), "version 'list'"),
        (_snapshot(version=2), "version 2"),
        (_snapshot(partition=1), "partition 1"),
        (_snapshot(config="other"), "another configuration"),
        (_snapshot(offset="12"), "not an offset"),
        (_snapshot(detectors={}), "no ordered table"),
        (_snapshot(detectors=OrderedDict({("provider_model", ("x",)): None})), "malformed"),
        (_snapshot(detectors=OrderedDict({("nope", ("a", "b")): None})), "malformed"),
    ],
)
def test_a_snapshot_of_the_wrong_structure_is_refused(payload: bytes, message: str) -> None:
    stage = DetectionsStage(CONFIG)
    with pytest.raises(DetectorStateError, match=message):
        stage.assign(0, payload)
    assert stage.partitions == ()
    stage.assign(0, None)  # the caller starts fresh


def test_snapshots_are_refused_by_a_stage_configured_otherwise() -> None:
    payload = _snapshot()
    DetectionsStage(CONFIG).assign(0, payload)
    for other in (
        DetectionsStage(CONFIG, hst_key_set=None),
        DetectionsStage(CONFIG, key_sets=(("app",),), hst_key_set=None),
        DetectionsStage(dataclasses.replace(CONFIG, max_score_names=2)),
    ):
        with pytest.raises(DetectorStateError, match="another configuration"):
            other.assign(0, payload)


def test_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match="hst_key_set"):
        DetectionsStage(CONFIG, key_sets=(("app",),))
    with pytest.raises(ValueError, match="max_keys_per_partition"):
        DetectionsStage(CONFIG, max_keys_per_partition=0)
    with pytest.raises(ValueError, match="unknown dimensions"):
        DetectionsStage(CONFIG, key_sets=(("team",),), hst_key_set=None)


def test_records_serialise_and_fit_the_table(tmp_path: Path) -> None:
    records = run(new_stage(), stream(1, 4000, slow={"bot": 3000}))
    odd = dataclasses.replace(records[0], event_id="odd", score=math.inf, before_mean=math.nan)
    data = orjson.loads(orjson.dumps(odd.to_json_dict()))
    assert data["dimensions"] == BOT and data["signal"] == "latency"
    assert (data["score"], data["before_mean"]) == (None, None)
    assert data["event_time"] == odd.event_time.isoformat()
    assert odd.record_key() == (
        b"app_environment_provider_model|app=bot|environment=production|model=gpt-4o"
        b"|provider=openai|latency|adwin"
    )
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}")
    migrate(store, ttl_days=3650)  # the fake calls are from 2025: keep them from the TTL
    rows = [detection_row(r) for r in [*records, odd]]
    assert len(orjson.loads(rows[0])) == len(DETECTION_COLUMNS)
    store.insert_json_rows("llm_detections", DETECTION_COLUMNS, b"\n".join(rows), "a")
    # A replay writes the same detections again (another batch): FINAL keeps one of each.
    store.insert_json_rows("llm_detections", DETECTION_COLUMNS, b"\n".join(rows[:-1]), "b")
    result = store.query(
        "SELECT count(), countIf(app = ''), countIf(score IS NULL), "
        "max(JSONExtractString(params, 'transform')) FROM llmpulse.llm_detections FINAL"
    )
    expected_shared = sum(r.key_set == "provider_model" for r in records)
    assert result.rows == [(len(records) + 1, expected_shared, 1, "log1p")]
    store.close()


def test_an_llm_calls_fields_give_the_same_features_as_its_attributes() -> None:
    # The stage reads an LLMCall's __dict__ (no AttributeError for `feedback`).
    base = {"event_id": "e", "timestamp": NOW, "app": "a", "provider": "p", "model": "m"}
    for extra in (
        {"latency_ms": 812.0},
        {"latency_ms": 5, "ttft_ms": 2.5, "output_tokens": 3, "cost_usd": 0.0, "status": "error"},
        {"latency_ms": 1.0, "error_type": "timeout", "finish_reason": "content_filter"},
        {"latency_ms": 1.0, "scores": {"faithfulness": 0.9, "toxicity": 0}, "model": "x"},
    ):
        call = LLMCall.model_validate({**base, **extra})
        assert extract_features(call.__dict__) == extract_features(call)
