"""Ingestion against the real broker and the embedded ClickHouse engine, through the real worker."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.events import invalid_payloads, valid_call
from tests.integration.conftest import consume_all, produce, wait_until

pytestmark = pytest.mark.integration

CALLS = "llmpulse.llm_calls"


def _valid(n: int, start: int = 0, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    return [orjson.dumps(valid_call(start + i, rng)) for i in range(n)]


def _distinct(worker: Any) -> Any:
    return worker.scalar(f"SELECT uniqExact(event_id) FROM {CALLS}")


def test_valid_and_invalid_events(kafka: str, worker_env: dict[str, str], make_worker: Any) -> None:
    rng = random.Random(11)
    valid = _valid(10_000)
    invalid = invalid_payloads(500, rng)
    mixed = valid + [payload for _, payload in invalid]
    rng.shuffle(mixed)
    produce(kafka, worker_env["LLMPULSE_TOPIC_CALLS"], mixed)

    worker = make_worker().start()
    wait_until(
        lambda: (
            (
                _distinct(worker) == 10_000
                and worker.scalar("SELECT count() FROM llmpulse.llm_dead_letters FINAL") == 500
            )
            or (_distinct(worker), worker.health())
        ),
        timeout=240,
        message="all events stored",
    )
    assert worker.scalar(f"SELECT count() FROM {CALLS} FINAL") == 10_000
    # Text is dropped by default, lengths are kept.
    assert worker.sql(f"SELECT countIf(input_text IS NOT NULL), min(input_chars) FROM {CALLS}") == [
        (0, 63)
    ]

    dlq = consume_all(kafka, worker_env["LLMPULSE_TOPIC_DLQ"], expected=500)
    assert len(dlq) == 500
    originals = Counter(payload for _, payload in invalid)
    assert Counter(record.value or b"" for record in dlq) == originals
    headers = dict(dlq[0].headers)
    assert headers["llmpulse.source_topic"].decode() == worker_env["LLMPULSE_TOPIC_CALLS"]
    assert int(headers["llmpulse.source_offset"]) >= 0
    assert headers["llmpulse.reason"]

    codes = dict(
        worker.sql("SELECT reason_code, count() FROM llmpulse.llm_dead_letters FINAL GROUP BY 1")
    )
    assert sum(codes.values()) == 500
    assert {"bad_json", "empty", "not_utf8", "too_large", "schema", "timestamp_too_old"} <= set(
        codes
    )
    assert worker.health()["rejected"] == codes  # type: ignore[index]
    # The card number in the rejected payloads never reaches the store in clear.
    leaked = worker.scalar(
        "SELECT count() FROM llmpulse.llm_dead_letters WHERE payload_excerpt LIKE '%4111 1111%'"
    )
    assert leaked == 0
    assert worker.stop() == 0


def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    kafka: str, worker_env: dict[str, str], make_worker: Any
) -> None:
    topic = worker_env["LLMPULSE_TOPIC_CALLS"]
    produce(kafka, topic, _valid(4_000))
    worker = make_worker().start()
    wait_until(lambda: _distinct(worker) >= 1_000 or _distinct(worker), 120, "first rows stored")
    produce(kafka, topic, _valid(6_000, start=4_000))
    worker.kill()

    restarted = make_worker().start()
    wait_until(lambda: _distinct(restarted) == 10_000 or _distinct(restarted), 240, "all stored")
    assert restarted.scalar(f"SELECT count() FROM {CALLS} FINAL") == 10_000
    dupes = restarted.scalar(
        f"SELECT count() FROM (SELECT event_id FROM {CALLS} FINAL "
        "GROUP BY event_id HAVING count() > 1)"
    )
    assert dupes == 0
    assert restarted.stop() == 0


def test_store_outage_pauses_then_recovers_without_loss(
    kafka: str, worker_env: dict[str, str], make_worker: Any, tmp_path: Path
) -> None:
    failpoints = tmp_path / "failpoints"
    failpoints.mkdir()
    topic = worker_env["LLMPULSE_TOPIC_CALLS"]
    env = {"LLMPULSE_FAILPOINT_DIR": str(failpoints), "LLMPULSE_SINK_RETRY_MAX_S": "1"}
    produce(kafka, topic, _valid(2_000))
    worker = make_worker(**env).start()
    wait_until(lambda: _distinct(worker) == 2_000 or _distinct(worker), 120, "first batch stored")

    (failpoints / "store.insert").touch()
    produce(kafka, topic, _valid(3_000, start=2_000))

    def retrying() -> Any:
        sink = worker.health()["sinks"]["llm_calls"]  # type: ignore[index]
        return (sink["retries"] >= 3 and sink["backpressure"]) or sink

    wait_until(retrying, 60, "sink retries while the store is down")
    assert _distinct(worker) == 2_000  # nothing written, nothing acknowledged

    # A graceful stop while the store is still down must not acknowledge the unwritten events.
    worker.stop()
    restarted = make_worker(**env).start()
    wait_until(retrying, 60, "restarted sink retries too")
    (failpoints / "store.insert").unlink()
    wait_until(lambda: _distinct(restarted) == 5_000 or _distinct(restarted), 120, "recovered")
    assert restarted.scalar(f"SELECT count() FROM {CALLS} FINAL") == 5_000
    assert restarted.stop() == 0


def test_sql_endpoint_is_read_only(worker_env: dict[str, str], make_worker: Any) -> None:
    from streams.worker_client import QueryError, query_worker

    worker = make_worker().start()
    for statement in (
        "DROP TABLE llmpulse.llm_calls",
        "INSERT INTO llmpulse.llm_feedback (event_id) VALUES ('x')",
        "SELECT 1; DROP TABLE llmpulse.llm_calls",
        "CREATE TABLE t (x UInt8) ENGINE = Memory",
    ):
        with pytest.raises(QueryError, match="read-only"):
            query_worker("127.0.0.1", worker.web_port, statement)
    # The engine's own readonly guard holds even when the text check passes.
    with pytest.raises(QueryError, match=r"(?i)readonly"):
        query_worker(
            "127.0.0.1", worker.web_port,
            "SELECT * FROM url('http://127.0.0.1:1/', CSV, 'x String') SETTINGS readonly = 0",
        )  # fmt: skip
    assert worker.sql("SELECT count() FROM llmpulse.llm_calls") == [(0,)]
