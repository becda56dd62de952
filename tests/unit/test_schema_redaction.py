"""Unit tests for text redaction and the text storage policy."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from schemas import LLMCall, TextPolicy, apply_text_policy, redact


@pytest.mark.parametrize(
    "email", ["jo@example.com", "first.last+tag@mail.example.co.uk", "A_B-9@sub-domain.io"]
)
def test_emails_are_masked(email: str) -> None:
    assert redact(f"write to {email} today") == "write to [EMAIL] today"


@pytest.mark.parametrize(
    "phone",
    [
        "+1 415 555 0100",
        "(415) 555-0100",
        "415.555.0100",
        "+44 20 7946 0958",
        "+4915112345678",
        "4155550100",
        "+33 (0)1 23 45 67 89",
    ],
)
def test_phone_numbers_are_masked(phone: str) -> None:
    assert redact(f"call {phone} now") == "call [PHONE] now"


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "5500 0000 0000 0004",
        "3782 822463 10005",
        "6011111111111117",
        "4222222222222",
    ],
)
def test_luhn_valid_card_numbers_are_masked(card: str) -> None:
    assert redact(f"card {card}, thanks") == "card [CARD], thanks"


@pytest.mark.parametrize(
    "number",
    ["4111 1111 1111 1112", "4111-1111-1111-1113", "1234567890123456", "42222222222222222"],
)
def test_luhn_invalid_card_numbers_are_not_masked_as_cards(number: str) -> None:
    redacted = redact(f"order {number}")
    assert "[CARD]" not in redacted
    assert redacted == f"order {number}"


def fake_key(prefix: str, body: str) -> str:
    """A key-shaped fake, assembled so the repository holds no key-shaped literal."""
    return prefix + body


@pytest.mark.parametrize(
    "secret",
    [
        fake_key("sk-proj-", "Ab3dEf6hIj9kLm2nOp5qRs8t"),
        fake_key("sk-ant-api03-", "AbCdEfGhIjKlMnOpQrStUvWx-_12"),
        fake_key("sk-", "1234567890abcdefghij"),
        fake_key("AKIA", "IOSFODNN7EXAMPLE"),
        fake_key("ghp_", "1234567890abcdefghijABCDEFGHIJklmnop"),
        fake_key("github_pat_", "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"),
        fake_key("xoxb-", "000000000000-0000000000000-FakeFakeFakeFakeFakeFake"),
        fake_key("xoxp-", "0000-0000-fakefake"),
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbA==",
    ],
)
def test_api_key_like_tokens_are_masked(secret: str) -> None:
    assert redact(f"use {secret} please") == "use [SECRET] please"


def test_bearer_tokens_keep_the_scheme_word() -> None:
    header = "Authorization: Bearer abc.DEF-123_xyz~"
    assert redact(header) == "Authorization: Bearer [SECRET]"


@pytest.mark.parametrize(
    "text",
    [
        "The meeting is on 2025-01-31 12:30 in room 4.",
        "It costs 1234 dollars and weighs 12.5 kg.",
        "request id 550e8400-e29b-41d4-a716-446655440000",
        "a_very_long_snake_case_identifier_without_digits_at_all",
        "skip the sk- prefix talk; ask-anything",
        "Version 3.11.7 of Python",
        "",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_several_kinds_in_one_text() -> None:
    text = "Jo (jo@example.com, +1 415 555 0100) paid with 4111 1111 1111 1111 using sk-ant-" + (
        "a" * 24
    )
    assert redact(text) == "Jo ([EMAIL], [PHONE]) paid with [CARD] using [SECRET]"


def make_call(**changes: object) -> LLMCall:
    base: dict[str, object] = {
        "event_id": "e",
        "timestamp": datetime(2025, 1, 31, 12, tzinfo=UTC),
        "app": "a",
        "provider": "p",
        "model": "m",
        "latency_ms": 1.0,
        "input_text": "my mail is jo@example.com",
        "output_text": "noted",
    }
    return LLMCall.model_validate({**base, **changes})


def test_default_policy_drops_text_but_keeps_lengths() -> None:
    call = make_call()
    stored = apply_text_policy(call, TextPolicy())
    assert stored.input_text is None and stored.output_text is None
    assert (stored.input_chars, stored.output_chars) == (25, 5)
    assert call.input_text == "my mail is jo@example.com"  # the original is untouched


def test_producer_lengths_are_not_overwritten() -> None:
    stored = apply_text_policy(make_call(input_chars=9000, output_text=None), TextPolicy())
    assert (stored.input_chars, stored.output_chars) == (9000, None)


def test_store_text_redacts_then_truncates() -> None:
    policy = TextPolicy(store_text=True, max_chars=15)
    stored = apply_text_policy(make_call(), policy)
    assert stored.input_text == "my mail is [EMA"
    assert stored.output_text == "noted"
    assert stored.input_chars == 25
    assert apply_text_policy(make_call(), TextPolicy(store_text=True)).input_text == (
        "my mail is [EMAIL]"
    )


def test_truncation_never_leaves_part_of_a_secret() -> None:
    key = "sk-ant-" + "Q" * 40
    stored = apply_text_policy(make_call(input_text=f"key {key}"), TextPolicy(True, max_chars=20))
    assert stored.input_text == "key [SECRET]"


def test_policy_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        TextPolicy(max_chars=-1)


@pytest.mark.parametrize(
    "text",
    [
        "1" * 200_000,
        "12-" * 66_000,
        "Ab3+" * 50_000,
        "a@" * 100_000,
        "a@" + "b." * 99_000 + "1",
        "Bearer " * 28_000,
    ],
    ids=["digits", "dashed", "base64", "at-signs", "dotted-domain", "bearer"],
)
def test_redaction_stays_linear_on_pathological_text(text: str) -> None:
    # Quadratic backtracking took over 50 s on the largest allowed text; linear takes ~0.1 s.
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 3.0
