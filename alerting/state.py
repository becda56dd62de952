"""Alert states, the transition record published to ``llm.alerts``, and alert fingerprints."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

HISTORY_LENGTH = 30


class AlertState(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


def fingerprint(rule_id: str, labels: Mapping[str, str]) -> str:
    """A stable id for one alert instance: the rule and its sorted label set.

    Examples
    --------
    >>> fingerprint("llm/HighErrorRate", {"model": "gpt-4o", "app": "chat"})
    '6722735adf784691'
    """
    payload = json.dumps([rule_id, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DetectionInfo:
    """What a detector reported; shown as before/after in notifications."""

    signal: str
    detector: str
    score: float
    before_mean: float | None
    before_quantile: float | None
    after_level: float | None
    event_time: datetime


@dataclass(frozen=True)
class AlertTransition:
    """One state change of one alert instance (rule, label set)."""

    rule_id: str
    rule: str
    kind: str
    fingerprint: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    state: AlertState
    previous_state: AlertState
    at: datetime
    sequence: int
    value: float | None = None
    threshold: float | None = None
    recovery_threshold: float | None = None
    op: str | None = None
    metric: str | None = None
    key_set: str | None = None
    reason: str = "condition"
    active_since: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    detection: DetectionInfo | None = None
    history: tuple[float | None, ...] = field(default_factory=tuple)

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "none")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (datetimes as ISO 8601) for ``llm.alerts``/``llm_alerts``."""
        data = asdict(self)
        data["labels"] = dict(self.labels)
        data["annotations"] = dict(self.annotations)
        data["history"] = list(self.history)
        return _iso(data)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertTransition:
        values = dict(data)
        for name in ("at", "active_since", "fired_at", "resolved_at"):
            values[name] = _parse_time(values.get(name))
        values["state"] = AlertState(values["state"])
        values["previous_state"] = AlertState(values["previous_state"])
        values["history"] = tuple(values.get("history") or ())
        if values.get("detection") is not None:
            detection = dict(values["detection"])
            detection["event_time"] = _parse_time(detection["event_time"])
            values["detection"] = DetectionInfo(**detection)
        return cls(**values)


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _iso(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_iso(item) for item in value]
    return value


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return parsed
