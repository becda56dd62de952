"""Settings masking, the read-only SQL guard, migrations on the real embedded engine, and rows."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from schemas import TextPolicy, apply_text_policy, decode_call
from streams.config import Settings, mask_url
from streams.migrations import MIGRATIONS, current_version, migrate
from streams.rows import (
    CALL_COLUMNS,
    DEAD_LETTER_COLUMNS,
    call_row,
    dead_letter_row,
    payload_excerpt,
)
from streams.store import ClickHouseStore, ReadOnlyViolation, ensure_read_only
from tests.events import valid_call


def test_secrets_are_masked_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMPULSE_CLICKHOUSE_URL", "https://ana:hunter2@ch.example:8443/llmpulse")
    monkeypatch.setenv("LLMPULSE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("LLMPULSE_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("LLMPULSE_KAFKA_SASL_PASSWORD", "s3cret-pw")
    settings = Settings()
    printed = repr(settings) + str(settings) + str(settings.masked())
    assert "hunter2" not in printed and "s3cret-pw" not in printed
    assert settings.masked()["clickhouse_url"] == "https://ana:***@ch.example:8443/llmpulse"
    options = settings.kafka_client_options()
    assert options["sasl_plain_password"] == "s3cret-pw"
    assert options["security_protocol"] == "SASL_PLAINTEXT"


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMPULSE_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.clickhouse_dsn == f"chdb://{tmp_path.resolve()}/chdb"
    assert settings.is_embedded_store
    assert mask_url("chdb:///x/y") == "chdb:///x/y"


@pytest.mark.parametrize(
    "sql",
    ["SELECT 1", "  with x as (select 1) select * from x", "SHOW TABLES", "EXPLAIN SELECT 1",
     "DESCRIBE TABLE llmpulse.llm_calls", "(SELECT 1)"],
)  # fmt: skip
def test_reads_pass_the_guard(sql: str) -> None:
    ensure_read_only(sql)


@pytest.mark.parametrize(
    "sql",
    ["DROP TABLE x", "INSERT INTO x VALUES (1)", "SELECT 1; DROP TABLE x",
     "ALTER TABLE x DELETE WHERE 1",
     "OPTIMIZE TABLE x", "SYSTEM SHUTDOWN", "TRUNCATE x", "KILL QUERY WHERE 1"],
)  # fmt: skip
def test_writes_fail_the_guard(sql: str) -> None:
    with pytest.raises(ReadOnlyViolation):
        ensure_read_only(sql)


def test_migrations_are_idempotent_and_rows_fit_the_table(tmp_path: Path) -> None:
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}")
    assert migrate(store, ttl_days=30) == [m.version for m in MIGRATIONS]
    assert migrate(store, ttl_days=30) == []
    assert current_version(store) == MIGRATIONS[-1].version
    rng = random.Random(3)
    calls = [
        apply_text_policy(decode_call(orjson.dumps(valid_call(i, rng))), TextPolicy())
        for i in range(50)
    ]
    body = b"\n".join(call_row(c, 0, i) for i, c in enumerate(calls))
    store.insert_json_rows("llm_calls", CALL_COLUMNS, body, "tok")
    store.insert_json_rows("llm_calls", CALL_COLUMNS, body, "tok")  # same token: deduplicated
    rows = store.query(
        "SELECT count(), uniqExact(event_id), countIf(input_text IS NULL) FROM llmpulse.llm_calls"
    )
    assert rows.rows == [(50, 50, 50)]
    store.close()


def test_dead_letter_rows_never_keep_prompt_text() -> None:
    payload = orjson.dumps({"event_id": "x", "input_text": "my secret prompt", "latency_ms": -1})
    excerpt = payload_excerpt(payload)
    assert "secret prompt" not in excerpt and "[DROPPED]" in excerpt
    broken = b'{"input_text": "my secret prompt", "latency_ms": '
    assert "secret" not in payload_excerpt(broken)
    assert "[EMAIL]" in payload_excerpt(b"mail me at bob@example.org")
    row = dict(
        zip(
            DEAD_LETTER_COLUMNS,
            orjson.loads(dead_letter_row("llm.calls", 1, 42, "bad_json", "broken", broken)),
            strict=True,
        )
    )
    assert row["source_offset"] == 42 and row["payload_bytes"] == len(broken)


def test_local_broker_paths_are_absolute_whatever_the_data_dir() -> None:
    from streams.local_kafka import LocalKafka

    broker = LocalKafka.from_bootstrap(Path(".data"), "127.0.0.1:19092,127.0.0.1:19093")
    assert broker.home.is_absolute()
    assert (broker.host, broker.port, broker.bootstrap) == ("127.0.0.1", 19092, "127.0.0.1:19092")
