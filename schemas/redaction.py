"""Text policy for prompts and completions: dropped by default, else redacted and truncated."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from schemas.llm_call import LLMCall

EMAIL = "[EMAIL]"
PHONE = "[PHONE]"
CARD = "[CARD]"
SECRET = "[SECRET]"

# The lookbehind anchors a match at the start of a run; without it, long runs with no "@"
# make the search quadratic.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)

# Known credential shapes: OpenAI/Anthropic, AWS access key ids, GitHub, Slack, JWTs.
_KNOWN_SECRET = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"sk-(?:ant-)?[A-Za-z0-9_-]{16,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{22,}"
    r"|xox[bap]-[A-Za-z0-9-]{10,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r")"
)
_BEARER = re.compile(r"\b(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)

# Any long base64/hex-looking run; `_looks_random` decides whether it is a secret.
_TOKEN_CHARS = r"A-Za-z0-9+/_\-"
_LONG_TOKEN = re.compile(
    rf"(?<![{_TOKEN_CHARS}=])[{_TOKEN_CHARS}]{{32,}}={{0,2}}(?![{_TOKEN_CHARS}=])"
)
_HEX = frozenset("0123456789abcdefABCDEF")
_MIN_HEX_ENTROPY = 3.0
_MIN_TOKEN_ENTROPY = 4.0

# 13-19 digits, optionally grouped by single spaces or dashes; Luhn decides.
_CARD = re.compile(r"(?<![\d+-])\d(?:[ -]?\d){12,18}(?![\d])")

# Grouped numbers with an optional +country code and (area) code, or a bare +E.164 number.
_PHONE = re.compile(
    r"(?<![\w+])(?<!\d[ .-])"
    r"(?:"
    r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,4}"
    r"|\+\d{8,15}"
    r"|\d{10,11}"
    r")"
    r"(?![\w:]|[ .-]\d)"  # a following ":" means a time, not a phone
)
_MIN_PHONE_DIGITS = 9
_MAX_PHONE_DIGITS = 15


@dataclass(frozen=True)
class TextPolicy:
    """What happens to ``input_text`` and ``output_text`` before anything is stored.

    Parameters
    ----------
    store_text
        Keep the text (redacted and truncated). Off by default: only lengths are kept.
    max_chars
        Longest stored text, counted after redaction.
    """

    store_text: bool = False
    max_chars: int = 2000

    def __post_init__(self) -> None:
        if self.max_chars < 0:
            raise ValueError(f"max_chars must not be negative, got {self.max_chars}")


def redact(text: str) -> str:
    """Mask e-mail addresses, secrets, card numbers and phone numbers.

    Card numbers are masked only when they pass the Luhn check. Secrets are
    well-known API key shapes, ``Bearer`` tokens and long random-looking
    base64 or hex strings.

    Examples
    --------
    >>> redact("mail jo@example.com, card 4111 1111 1111 1111, key sk-ant-api03-abcdefghijklmnop")
    'mail [EMAIL], card [CARD], key [SECRET]'
    >>> redact("call +1 415 555 0100, order 4111 1111 1111 1112")
    'call [PHONE], order 4111 1111 1111 1112'
    """
    text = _EMAIL.sub(EMAIL, text)
    text = _KNOWN_SECRET.sub(SECRET, text)
    text = _BEARER.sub(rf"\1{SECRET}", text)
    text = _LONG_TOKEN.sub(_mask_if_random, text)
    text = _CARD.sub(_mask_if_card, text)
    return _PHONE.sub(_mask_if_phone, text)


def apply_text_policy(call: LLMCall, policy: TextPolicy) -> LLMCall:
    """Return a copy of ``call`` whose text obeys ``policy``.

    ``input_chars`` and ``output_chars`` are filled from the original text
    lengths when the producer did not send them.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> call = LLMCall(event_id="e", timestamp=datetime(2025, 1, 1, tzinfo=UTC), app="a",
    ...                provider="p", model="m", latency_ms=1.0, input_text="hi jo@example.com")
    >>> kept = apply_text_policy(call, TextPolicy())
    >>> kept.input_text, kept.input_chars
    (None, 17)
    >>> apply_text_policy(call, TextPolicy(store_text=True, max_chars=6)).input_text
    'hi [EM'
    """
    if call.input_text is None and call.output_text is None:
        return call  # nothing to drop, redact or count: spare the copy on the hot path
    return call.model_copy(
        update={
            "input_text": _stored_text(call.input_text, policy),
            "output_text": _stored_text(call.output_text, policy),
            "input_chars": _char_count(call.input_chars, call.input_text),
            "output_chars": _char_count(call.output_chars, call.output_text),
        }
    )


def _stored_text(text: str | None, policy: TextPolicy) -> str | None:
    if text is None or not policy.store_text:
        return None
    # Redact before truncating, so a cut never leaves half a secret unmasked.
    return redact(text)[: policy.max_chars]


def _char_count(sent: int | None, text: str | None) -> int | None:
    if sent is not None or text is None:
        return sent
    return len(text)


def luhn_valid(digits: str) -> bool:
    """Return whether a string of digits passes the Luhn checksum.

    Examples
    --------
    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
    (True, False)
    """
    total = 0
    for index, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if index % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _mask_if_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return CARD if luhn_valid(digits) else match.group()


def _mask_if_phone(match: re.Match[str]) -> str:
    digit_count = sum(char.isdigit() for char in match.group())
    if _MIN_PHONE_DIGITS <= digit_count <= _MAX_PHONE_DIGITS:
        return PHONE
    return match.group()


def _mask_if_random(match: re.Match[str]) -> str:
    token = match.group().rstrip("=")
    has_digit = any(char.isdigit() for char in token)
    has_letter = any(char.isalpha() for char in token)
    if not (has_digit and has_letter):
        return match.group()
    threshold = _MIN_HEX_ENTROPY if set(token) <= _HEX else _MIN_TOKEN_ENTROPY
    return SECRET if _shannon_entropy(token) >= threshold else match.group()


def _shannon_entropy(text: str) -> float:
    counts = Counter(text).values()
    size = len(text)
    return -sum(count / size * math.log2(count / size) for count in counts)
