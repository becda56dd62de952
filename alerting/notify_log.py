"""What was notified, per receiver and alert group, so a restart never notifies twice."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from alerting.notification import MessageRef


class LogEntry(BaseModel):
    """The last accepted notification of one group at one receiver."""

    model_config = ConfigDict(extra="forbid")

    firing: list[str] = Field(default_factory=list)
    last_sent_at: AwareDatetime | None = None
    sent_count: int = Field(default=0, ge=0)
    channel: str | None = None
    ts: str | None = None

    @property
    def ref(self) -> MessageRef | None:
        return MessageRef(self.channel, self.ts) if self.channel and self.ts else None


class NotificationLog:
    """Keyed by ``receiver`` and group key; updated only after a receiver accepted a message."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], LogEntry] = {}

    def get(self, receiver: str, group_key: str) -> LogEntry:
        return self._entries.get((receiver, group_key)) or LogEntry()

    def record(
        self,
        receiver: str,
        group_key: str,
        firing: list[str],
        sent_at: datetime,
        ref: MessageRef | None,
    ) -> LogEntry:
        previous = self.get(receiver, group_key)
        keep = ref or previous.ref
        entry = LogEntry(
            firing=sorted(firing),
            last_sent_at=sent_at,
            sent_count=previous.sent_count + 1,
            channel=keep.channel if keep else None,
            ts=keep.ts if keep else None,
        )
        self._entries[(receiver, group_key)] = entry
        return entry

    def forget(self, receiver: str, group_key: str) -> None:
        self._entries.pop((receiver, group_key), None)

    def to_dict(self) -> list[dict[str, Any]]:
        return [
            {"receiver": receiver, "group_key": key, **entry.model_dump(mode="json")}
            for (receiver, key), entry in self._entries.items()
        ]

    @classmethod
    def from_dict(cls, data: Any) -> NotificationLog:
        log = cls()
        if not isinstance(data, list):
            raise ValueError("notification log must be a list")
        for item in data:
            if not isinstance(item, Mapping):
                raise ValueError("notification log entries must be objects")
            values = dict(item)
            receiver, key = str(values.pop("receiver")), str(values.pop("group_key"))
            log._entries[(receiver, key)] = LogEntry.model_validate(values)
        return log
