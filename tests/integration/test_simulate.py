"""``llmpulse simulate`` against the real broker: what it sends is what the schemas accept."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from schemas import decode_call, decode_feedback
from streams.simulation.cli import register
from streams.simulation.labels import read_labels
from tests.integration.conftest import consume_all

pytestmark = pytest.mark.integration


def test_simulate_publishes_valid_calls_feedback_and_labels(
    kafka: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMPULSE_TOPIC_PARTITIONS", "3")
    suffix = uuid.uuid4().hex[:8]
    calls_topic, feedback_topic = f"sim.calls.{suffix}", f"sim.feedback.{suffix}"
    labels = tmp_path / "labels.jsonl"
    app = typer.Typer()
    register(app)
    # The demo scenario slowed to 4 events/s: about 400 calls over 100 s of event time,
    # with its latency incident from 90 s, sent as fast as possible.
    result = CliRunner().invoke(
        app,
        [
            "simulate", "--scenario", "demo", "--rate", "4", "--duration", "100", "--fast",
            "--bootstrap", kafka, "--topic", calls_topic, "--feedback-topic", feedback_topic,
            "--labels", str(labels), "--run-id", f"it-{suffix}",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sent = int(result.output.split("sent ")[1].split(" calls")[0].replace(",", ""))
    assert 300 < sent < 500

    records = consume_all(kafka, calls_topic, sent)
    assert len(records) == sent
    calls = [decode_call(r.value) for r in records]
    assert len({c.event_id for c in calls}) == sent
    assert all(c.event_id.startswith(f"it-{suffix}-") for c in calls)
    assert {r.key for r in records} == {b"support-bot"}
    assert Counter(c.model for c in calls).keys() == {"gpt-4o-mini", "claude-3-5-haiku"}
    per_partition = {r.partition for r in records}
    assert len(per_partition) == 1  # keyed by app: one app, one partition

    (label,) = read_labels(labels)
    assert label.incident_id == "demo-latency" and label.start_s == 90.0
    slowed = {a.first_index for a in label.affected}
    assert slowed and min(slowed) >= label.start_index

    feedback_count = int(result.output.split("calls and ")[1].split(" feedback")[0])
    if feedback_count:
        fb_records = consume_all(kafka, feedback_topic, feedback_count)
        feedback = [decode_feedback(r.value) for r in fb_records]
        assert len(feedback) == feedback_count
        ids = {c.event_id for c in calls}
        assert all(f.event_id in ids for f in feedback)
        assert {r.partition for r in fb_records} == per_partition  # co-partitioned with calls
