"""Mutable per-(rule, label set) alert instances and their validated JSON form."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from alerting.state import HISTORY_LENGTH, AlertState, DetectionInfo


@dataclass
class AlertInstance:
    """Everything the engine remembers about one key of one rule."""

    rule_id: str
    labels: dict[str, str]
    fingerprint: str
    key_set: str | None = None
    state: AlertState = AlertState.INACTIVE
    condition: bool = False
    value: float | None = None
    active_since: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    condition_false_since: datetime | None = None
    last_seen: datetime | None = None
    last_decided: datetime | None = None
    no_data: bool = False
    sequence: int = 0
    detection: DetectionInfo | None = None
    history: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY_LENGTH))

    def to_dict(self) -> dict[str, Any]:
        return InstanceRecord(
            rule_id=self.rule_id,
            labels=self.labels,
            fingerprint=self.fingerprint,
            key_set=self.key_set,
            state=self.state,
            condition=self.condition,
            value=self.value,
            active_since=self.active_since,
            fired_at=self.fired_at,
            resolved_at=self.resolved_at,
            condition_false_since=self.condition_false_since,
            last_seen=self.last_seen,
            last_decided=self.last_decided,
            no_data=self.no_data,
            sequence=self.sequence,
            detection=DetectionRecord(**vars(self.detection)) if self.detection else None,
            history=list(self.history),
        ).model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Any) -> AlertInstance:
        record = InstanceRecord.model_validate(data)
        instance = cls(
            rule_id=record.rule_id,
            labels=dict(record.labels),
            fingerprint=record.fingerprint,
            key_set=record.key_set,
            state=record.state,
            condition=record.condition,
            value=record.value,
            active_since=record.active_since,
            fired_at=record.fired_at,
            resolved_at=record.resolved_at,
            condition_false_since=record.condition_false_since,
            last_seen=record.last_seen,
            last_decided=record.last_decided,
            no_data=record.no_data,
            sequence=record.sequence,
            detection=DetectionInfo(**record.detection.model_dump()) if record.detection else None,
        )
        instance.history.extend(record.history)
        return instance


class DetectionRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signal: str
    detector: str
    score: float
    before_mean: float | None
    before_quantile: float | None
    after_level: float | None
    event_time: AwareDatetime


class InstanceRecord(BaseModel):
    """The persisted form of an :class:`AlertInstance`; validated on restore."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str
    labels: dict[str, str]
    fingerprint: str = Field(pattern=r"^[0-9a-f]{16}$")
    key_set: str | None
    state: AlertState
    condition: bool
    value: float | None
    active_since: AwareDatetime | None
    fired_at: AwareDatetime | None
    resolved_at: AwareDatetime | None
    condition_false_since: AwareDatetime | None
    last_seen: AwareDatetime | None
    last_decided: AwareDatetime | None
    no_data: bool
    sequence: int = Field(ge=0)
    detection: DetectionRecord | None
    history: list[float | None] = Field(max_length=HISTORY_LENGTH)
