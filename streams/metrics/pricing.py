"""Model price table: turns token counts into US dollars for events that carry no cost.

Token convention: ``cached_input_tokens`` is a subset of ``input_tokens`` (the
OpenAI usage convention), so the uncached prompt tokens are
``input_tokens - cached_input_tokens``. A producer following Anthropic's usage
block, where cache reads are reported apart from ``input_tokens``, should send
their sum as ``input_tokens``. Should cached exceed input, every input token is
treated as cached.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

MAX_LISTED_MISSES = 1000
"""Distinct unknown model names listed in `PricingTable.misses`; the rest count as OTHER."""

OTHER_MODELS = "(other)"
_MAX_CACHED_NAMES = 4096

# Bedrock ids: optional cross-region prefix, then the vendor, e.g. us.anthropic.claude-...
_BEDROCK_PREFIX = re.compile(r"^(?:(?:us|eu|apac|global)\.)?(?:anthropic|meta|mistral|cohere)\.")
# What may follow a family name: dates, snapshot numbers of 3+ digits, "latest", "v2:0".
# Short numbers are not allowed: claude-sonnet-4-5 is a different model from claude-sonnet-4.
_VERSION_SUFFIX = re.compile(r"(?:[-@:_](?:\d{4}-\d{2}-\d{2}|\d{3,}|latest|v\d+(?::\d+)?))*")
_PRICE_KEYS = frozenset({"input", "output", "cached_input"})
_FILE_KEYS = frozenset({"as_of", "currency", "models"})


class PricingError(ValueError):
    """A price file is malformed; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens; `cached_input` None means cached tokens cost `input`."""

    input: float
    output: float
    cached_input: float | None = None


def normalise_model_name(name: str) -> str:
    """Lower-case, drop provider paths (``openai/``, ``models/``) and Bedrock prefixes.

    >>> normalise_model_name(" models/Gemini-1.5-Pro-002 ")
    'gemini-1.5-pro-002'
    >>> normalise_model_name("us.anthropic.claude-3-5-sonnet-20241022-v2:0")
    'claude-3-5-sonnet-20241022-v2:0'
    """
    text = name.strip().lower().rsplit("/", 1)[-1]
    return _BEDROCK_PREFIX.sub("", text)


class PricingTable:
    """Per-model prices with family matching, and a count of models it could not price.

    Examples
    --------
    >>> table = PricingTable.load()
    >>> table.family("openai/gpt-4o-2024-08-06"), table.family("gpt-4o-mini")
    ('gpt-4o', 'gpt-4o-mini')
    >>> round(table.cost("gpt-4o", 1_000_000, 100_000, cached_input_tokens=400_000), 4)
    3.0
    >>> table.cost("my-finetune", 10, 10) is None, table.misses["my-finetune"]
    (True, 1)
    """

    def __init__(
        self,
        prices: dict[str, ModelPrice],
        as_of: date,
        overrides_as_of: date | None = None,
    ) -> None:
        self.prices = {normalise_model_name(name): price for name, price in prices.items()}
        self.as_of = as_of
        self.overrides_as_of = overrides_as_of
        self.misses: Counter[str] = Counter()
        self._by_length = sorted(self.prices, key=len, reverse=True)
        # Prices by the name as given; bounded since names come from producers.
        self._price_of: dict[str, ModelPrice | None] = {}

    @classmethod
    def load(cls, path: Path | None = None, overrides: Path | None = None) -> PricingTable:
        """Read the shipped table (or ``path``), then let ``overrides`` replace or add models."""
        if path is None:
            text = resources.files(__package__).joinpath("prices.yaml").read_text("utf-8")
            prices, as_of = _parse(text, "prices.yaml (shipped)", require_date=True)
        else:
            prices, as_of = _parse(path.read_text("utf-8"), str(path), require_date=True)
        assert as_of is not None
        overrides_as_of = None
        if overrides is not None:
            extra, overrides_as_of = _parse(
                overrides.read_text("utf-8"), str(overrides), require_date=False
            )
            prices.update(extra)
        return cls(prices, as_of, overrides_as_of)

    def family(self, model: str) -> str | None:
        """The table key pricing ``model``: the longest key it starts with, followed only by
        a version or date; None when there is none."""
        name = normalise_model_name(model)
        for key in self._by_length:
            if name.startswith(key) and _VERSION_SUFFIX.fullmatch(name, len(key)):
                return key
        return None

    def price(self, model: str) -> ModelPrice | None:
        """The price of ``model``'s family, or None; does not count misses. Cached."""
        if model in self._price_of:
            return self._price_of[model]
        key = self.family(model)
        price = None if key is None else self.prices[key]
        if len(self._price_of) >= _MAX_CACHED_NAMES:
            self._price_of.clear()
        self._price_of[model] = price
        return price

    def cost(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
    ) -> float | None:
        """USD for one call, or None (and a counted miss) for a model not in the table.

        ``cached_input_tokens`` are part of ``input_tokens`` and billed at the cached price.
        """
        price = self.price(model)
        if price is None:
            self._count_miss(model)
            return None
        cached = min(cached_input_tokens, input_tokens)
        cached_price = price.input if price.cached_input is None else price.cached_input
        dollars = (
            (input_tokens - cached) * price.input
            + cached * cached_price
            + output_tokens * price.output
        )
        return dollars / 1_000_000

    def _count_miss(self, model: str) -> None:
        # The list is bounded: model names come from producers and could be anything.
        if model in self.misses or len(self.misses) < MAX_LISTED_MISSES:
            self.misses[model] += 1
        else:
            self.misses[OTHER_MODELS] += 1


def _parse(
    text: str, source: str, *, require_date: bool
) -> tuple[dict[str, ModelPrice], date | None]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PricingError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise PricingError(f"{source}: expected a mapping with 'as_of' and 'models'")
    unknown = set(doc) - _FILE_KEYS
    if unknown:
        raise PricingError(f"{source}: unknown top-level keys {sorted(map(str, unknown))}")
    if doc.get("currency", "USD") != "USD":
        raise PricingError(f"{source}: only currency USD is supported, got {doc['currency']!r}")
    as_of = _parse_date(doc.get("as_of"), source, required=require_date)
    models = doc.get("models")
    if not isinstance(models, dict) or not models:
        raise PricingError(f"{source}: 'models' must be a non-empty mapping of name -> prices")
    prices = {}
    for name, entry in models.items():
        if not isinstance(name, str) or not name.strip():
            raise PricingError(f"{source}: model names must be non-empty strings, got {name!r}")
        prices[normalise_model_name(name)] = _parse_price(entry, f"{source}: model {name!r}")
    return prices, as_of


def _parse_date(value: Any, source: str, *, required: bool) -> date | None:
    if value is None:
        if required:
            raise PricingError(f"{source}: 'as_of' (the date the prices hold) is required")
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise PricingError(f"{source}: 'as_of' must be a YYYY-MM-DD date, got {value!r}") from exc


def _parse_price(entry: Any, where: str) -> ModelPrice:
    if not isinstance(entry, dict):
        raise PricingError(f"{where}: expected a mapping with input, output and cached_input")
    unknown = set(entry) - _PRICE_KEYS
    if unknown:
        raise PricingError(f"{where}: unknown keys {sorted(map(str, unknown))}")
    values: dict[str, float] = {}
    for key in ("input", "output", "cached_input"):
        value = entry.get(key)
        if value is None:
            if key != "cached_input":
                raise PricingError(f"{where}: '{key}' price is required")
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PricingError(f"{where}: '{key}' must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise PricingError(f"{where}: '{key}' must be a finite number >= 0, got {value!r}")
        values[key] = float(value)
    return ModelPrice(values["input"], values["output"], values.get("cached_input"))
