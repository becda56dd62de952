"""Turn one LLM call (a dict or any object with the right attributes) into detector inputs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["OK_STATUSES", "REFUSAL_FINISH_REASONS", "extract_features"]

# A call is an error when its status is set and not one of these (case-insensitive).
OK_STATUSES = frozenset({"ok", "success", "succeeded", "completed"})
REFUSAL_FINISH_REASONS = frozenset({"content_filter", "refusal"})


# Read in one go, in this order: a mapping's `get` or an object's attributes.
_FIELDS = (
    "latency_ms",
    "ttft_ms",
    "output_tokens",
    "cost_usd",
    "status",
    "error_type",
    "finish_reason",
    "scores",
    "feedback",
    "model",
)
_NUMERIC = ("latency", "ttft", "output_tokens", "cost")


def _fields(call: Any) -> list[Any]:
    # One isinstance check per call: Mapping is an ABC, and its check is not free.
    if isinstance(call, (dict, Mapping)):
        get = call.get
        return [get(name) for name in _FIELDS]
    return [getattr(call, name, None) for name in _FIELDS]


def _number(value: Any) -> float | None:
    if type(value) is float:  # the common case, what float() would return
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def extract_features(call: Any) -> tuple[dict[str, float], dict[str, str]]:
    """Read the numeric signals and categorical values of one call, in raw units.

    ``call`` is a mapping or an object with (any of) the attributes ``latency_ms``,
    ``ttft_ms``, ``output_tokens``, ``cost_usd``, ``status``, ``error_type``,
    ``finish_reason``, ``scores`` (name -> number), ``feedback`` (name -> number) and
    ``model``. Missing or non-numeric fields are left out.

    Returns ``(features, categorical)``: features ``latency``, ``ttft``,
    ``output_tokens``, ``cost``, ``error`` (0/1), ``refusal`` (0/1), ``score.<name>`` and
    ``feedback.<name>``; categorical ``model`` and ``error_type``. Transforms such as
    the log scale are applied by :class:`~detectors.key_detectors.KeyDetectors`.

    Examples
    --------
    >>> features, categorical = extract_features({
    ...     "latency_ms": 812.0, "ttft_ms": None, "output_tokens": 120, "cost_usd": 0.0021,
    ...     "status": "ok", "finish_reason": "stop", "scores": {"faithfulness": 0.9},
    ...     "model": "gpt-4o-mini",
    ... })
    >>> sorted(features.items())  # doctest: +NORMALIZE_WHITESPACE
    [('cost', 0.0021), ('error', 0.0), ('latency', 812.0), ('output_tokens', 120.0),
     ('refusal', 0.0), ('score.faithfulness', 0.9)]
    >>> categorical
    {'model': 'gpt-4o-mini'}

    """
    values = _fields(call)
    features: dict[str, float] = {}
    for name, raw in zip(_NUMERIC, values, strict=False):  # the first four
        if (value := _number(raw)) is not None:
            features[name] = value

    status, error_type, finish_reason, scores, feedback, model = values[4:]
    if status is not None:
        features["error"] = float(str(status).lower() not in OK_STATUSES)
    elif error_type is not None:
        features["error"] = 1.0
    if finish_reason is not None:
        features["refusal"] = float(str(finish_reason).lower() in REFUSAL_FINISH_REASONS)

    for prefix, named in (("score.", scores), ("feedback.", feedback)):
        if type(named) is dict or isinstance(named, Mapping):
            for name, raw in named.items():
                if (value := _number(raw)) is not None:
                    features[f"{prefix}{name}"] = value

    categorical: dict[str, str] = {}
    if model is not None and model != "":
        categorical["model"] = str(model)
    if error_type is not None and error_type != "":
        categorical["error_type"] = str(error_type)
    return features, categorical
