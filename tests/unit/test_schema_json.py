"""Committed JSON Schema files must match the models (regenerate: python -m schemas.json_schema)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas import OTEL_ALIASES
from schemas.json_schema import (
    SCHEMA_DIR,
    SCHEMA_FILES,
    render_schemas,
    stale_schemas,
    write_schemas,
)


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_committed_schema_matches_the_model(name: str) -> None:
    committed = (SCHEMA_DIR / name).read_text(encoding="utf-8")
    assert committed == render_schemas()[name], (
        f"{name} drifted from its model; run: python -m schemas.json_schema"
    )


def test_llm_call_schema_describes_the_contract() -> None:
    schema = json.loads((SCHEMA_DIR / "llm_call.schema.json").read_text(encoding="utf-8"))
    assert schema["required"] == ["event_id", "timestamp", "app", "provider", "model", "latency_ms"]
    properties = schema["properties"]
    assert properties["timestamp"]["format"] == "date-time"
    assert properties["latency_ms"]["minimum"] == 0
    assert properties["event_id"]["maxLength"] == 128
    aliases = {
        prop["x-otel-alias"]: key for key, prop in properties.items() if "x-otel-alias" in prop
    }
    assert aliases == dict(OTEL_ALIASES)


def test_stale_files_are_detected_and_rewritten(tmp_path: Path) -> None:
    assert stale_schemas(tmp_path) == list(SCHEMA_FILES)
    write_schemas(tmp_path)
    assert stale_schemas(tmp_path) == []
    (tmp_path / "feedback.schema.json").write_text("{}", encoding="utf-8")
    assert stale_schemas(tmp_path) == ["feedback.schema.json"]
