"""Versioned, idempotent schema migrations for the llmpulse database.

Each migration is a numbered list of statements. Applied versions are recorded in
``schema_migrations``; every statement is written so that re-running it is harmless, which keeps
a migration that was interrupted half-way safe to apply again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from streams.store import ClickHouseStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


CALLS_TABLE = """
CREATE TABLE IF NOT EXISTS {db}.llm_calls
(
    event_id            String,
    timestamp           DateTime64(3, 'UTC'),
    app                 LowCardinality(String),
    environment         LowCardinality(String),
    operation           LowCardinality(String),
    provider            LowCardinality(String),
    model               LowCardinality(String),
    response_model      LowCardinality(String),
    prompt_id           LowCardinality(String),
    prompt_version      LowCardinality(String),
    user_id             String,
    session_id          String,
    trace_id            String,
    span_id             String,
    latency_ms          Float64,
    ttft_ms             Nullable(Float64),
    input_tokens        Nullable(UInt64),
    output_tokens       Nullable(UInt64),
    cached_input_tokens Nullable(UInt64),
    cost_usd            Nullable(Float64),
    cost_source         LowCardinality(String),
    status              LowCardinality(String),
    error_type          LowCardinality(String),
    finish_reason       LowCardinality(String),
    streaming           Nullable(Bool),
    input_chars         Nullable(UInt64),
    output_chars        Nullable(UInt64),
    input_text          Nullable(String),
    output_text         Nullable(String),
    scores              Map(LowCardinality(String), Float64),
    tags                Map(LowCardinality(String), String),
    schema_version      UInt8,
    kafka_partition     UInt32,
    kafka_offset        UInt64,
    ingested_at         DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (app, toStartOfHour(timestamp), event_id)
TTL toDateTime(timestamp) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000
"""

FEEDBACK_TABLE = """
CREATE TABLE IF NOT EXISTS {db}.llm_feedback
(
    event_id        String,
    timestamp       DateTime64(3, 'UTC'),
    name            LowCardinality(String),
    value           Float64,
    source          LowCardinality(String),
    comment         String,
    kafka_partition UInt32,
    kafka_offset    UInt64,
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (name, event_id, source, timestamp)
TTL toDateTime(timestamp) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000
"""

DEAD_LETTERS_TABLE = """
CREATE TABLE IF NOT EXISTS {db}.llm_dead_letters
(
    received_at      DateTime64(3, 'UTC'),
    source_topic     LowCardinality(String),
    source_partition UInt32,
    source_offset    UInt64,
    reason_code      LowCardinality(String),
    reason           String,
    payload_bytes    UInt64,
    payload_sha256   FixedString(64),
    payload_excerpt  String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (source_topic, source_partition, source_offset)
SETTINGS non_replicated_deduplication_window = 1000
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "ingestion tables", (CALLS_TABLE, FEEDBACK_TABLE, DEAD_LETTERS_TABLE)),
)


def migrate(store: ClickHouseStore, ttl_days: int = 90) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied now."""
    db = store.database
    store.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    store.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {row[0] for row in store.query(f"SELECT version FROM {db}.schema_migrations").rows}
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        for statement in migration.statements:
            store.command(statement.format(db=db, ttl_days=ttl_days))
        store.command(
            f"INSERT INTO {db}.schema_migrations (version, name) "
            f"VALUES ({migration.version}, '{migration.name}')"
        )
        log.info("applied migration %s: %s", migration.version, migration.name)
        applied.append(migration.version)
    _apply_ttl(store, ttl_days)
    return applied


def _apply_ttl(store: ClickHouseStore, ttl_days: int) -> None:
    """Keep the raw tables' TTL in step with the configured retention."""
    db = store.database
    for table in ("llm_calls", "llm_feedback"):
        engine = store.query(
            f"SELECT engine_full FROM system.tables WHERE database = '{db}' AND name = '{table}'"
        ).rows
        wanted = f"toIntervalDay({ttl_days})"
        if engine and wanted not in str(engine[0][0]):
            store.command(
                f"ALTER TABLE {db}.{table} MODIFY TTL "
                f"toDateTime(timestamp) + INTERVAL {ttl_days} DAY "
                "SETTINGS materialize_ttl_after_modify = 0"
            )


def current_version(store: ClickHouseStore) -> int:
    rows = store.query(f"SELECT max(version) FROM {store.database}.schema_migrations").rows
    return int(rows[0][0] or 0)
