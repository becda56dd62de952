"""PricingTable: family matching, the shipped table, overrides and counted misses."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from streams.metrics.pricing import OTHER_MODELS, PricingError, PricingTable


@pytest.fixture
def table() -> PricingTable:
    return PricingTable.load()


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("GPT-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gpt-5-nano", "gpt-5-nano"),
        ("o3-mini", "o3-mini"),
        ("o4-mini-2025-04-16", "o4-mini"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "claude-3-7-sonnet"),
        ("models/gemini-1.5-pro-002", "gemini-1.5-pro"),
        ("gemini-2.0-flash-lite-001", "gemini-2.0-flash-lite"),
        ("mistral-large-2411", "mistral-large"),
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "llama-3.3-70b-instruct-turbo"),
    ],
)
def test_dated_and_prefixed_names_match_their_family(
    table: PricingTable, model: str, family: str
) -> None:
    assert table.family(model) == family


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o-audio-preview",  # a different product, not a gpt-4o snapshot
        "gpt-5.1",
        "claude-sonnet-4-7",  # a minor version is a different model
        "gemini-2.5-flash-preview-04-17",
        "o1-pro",
        "my-finetune",
        "",
    ],
)
def test_names_that_are_not_a_version_of_a_family_do_not_match(
    table: PricingTable, model: str
) -> None:
    assert table.family(model) is None


def test_mini_is_never_priced_as_its_base_model(tmp_path: Path) -> None:
    base_only = tmp_path / "base.yaml"
    base_only.write_text("as_of: 2025-01-01\nmodels:\n  gpt-4o: {input: 2.5, output: 10}\n")
    table = PricingTable.load(base_only)
    assert table.cost("gpt-4o-mini", 1000, 1000) is None
    assert table.misses == {"gpt-4o-mini": 1}
    full = PricingTable.load()
    assert full.cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)
    assert full.cost("gpt-4o", 1_000_000, 0) == pytest.approx(2.50)


def test_cost_prices_cached_tokens_as_part_of_input(table: PricingTable) -> None:
    # gpt-4o: 2.50 input, 1.25 cached input, 10.00 output per million.
    cost = table.cost("gpt-4o-2024-08-06", 10_000, 2_000, cached_input_tokens=4_000)
    assert cost == pytest.approx((6_000 * 2.50 + 4_000 * 1.25 + 2_000 * 10.00) / 1e6)
    # Without a cached price, cached tokens cost the input price.
    assert table.cost("mistral-large", 1000, 0, 400) == table.cost("mistral-large", 1000, 0)
    # More cached than input: every input token is cached, never a negative count.
    assert table.cost("gpt-4o", 100, 0, 500) == pytest.approx(100 * 1.25 / 1e6)


def test_unknown_models_give_none_and_are_counted(table: PricingTable) -> None:
    assert table.cost("acme-llm-9", 10, 10) is None
    assert table.cost("acme-llm-9", 10, 10) is None
    assert table.cost("gpt-4o", 10, 10) is not None
    assert table.misses == {"acme-llm-9": 2}
    assert table.price("another-unknown") is None and "another-unknown" not in table.misses


def test_miss_list_is_bounded(table: PricingTable, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streams.metrics.pricing.MAX_LISTED_MISSES", 3)
    for i in range(5):
        table.cost(f"unknown-{i}", 1, 1)
    assert len(table.misses) == 4 and table.misses[OTHER_MODELS] == 2


def test_shipped_table_is_dated_and_covers_the_main_vendors(table: PricingTable) -> None:
    assert table.as_of >= date(2025, 1, 1)
    for model in ("gpt-4o", "gpt-5", "claude-opus-4", "gemini-2.5-pro", "mistral-large"):
        assert table.price(model) is not None, model


def test_user_file_overrides_and_extends_the_shipped_table(tmp_path: Path) -> None:
    override = tmp_path / "prices.yaml"
    override.write_text(
        "as_of: 2026-01-15\n"
        "models:\n"
        "  gpt-4o: {input: 2.0, cached_input: 1.0, output: 8.0}  # negotiated\n"
        "  acme-llm: {input: 1.0, output: 2.0}\n"
    )
    table = PricingTable.load(overrides=override)
    assert table.overrides_as_of == date(2026, 1, 15)
    assert table.cost("gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.0)
    assert table.cost("acme-llm-2026-01-01", 0, 1_000_000) == pytest.approx(2.0)
    assert table.cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)  # untouched


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: {a: {input: 1, output: 1}}", "as_of"),
        ("as_of: 2025-01-01\nmodels: {a: {input: -1, output: 1}}", ">= 0"),
        ("as_of: 2025-01-01\nmodels: {a: {input: 1}}", "'output' price is required"),
        ("as_of: 2025-01-01\nmodels: {a: {input: 1, output: 1, batch: 1}}", "unknown keys"),
        ("as_of: 2025-01-01\nmodels: {a: {input: '1', output: 1}}", "must be a number"),
        ("as_of: 2025-01-01\ncurrency: EUR\nmodels: {a: {input: 1, output: 1}}", "USD"),
        ("as_of: yesterday\nmodels: {a: {input: 1, output: 1}}", "YYYY-MM-DD"),
        ("as_of: 2025-01-01\nmodels: [gpt-4o]", "non-empty mapping"),
        ("as_of: [", "not valid YAML"),
    ],
)
def test_malformed_files_are_rejected_with_a_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PricingError, match=message):
        PricingTable.load(path)
