"""Notifications waiting for delivery, in order per pace key (e.g. one Slack channel)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alerting.notification import Notification


@dataclass
class OutboxItem:
    pace_key: str
    notification: Notification
    attempts: int = 0
    not_before: datetime | None = None
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pace_key": self.pace_key,
            "notification": self.notification.to_dict(),
            "attempts": self.attempts,
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "last_error": self.last_error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutboxItem:
        not_before = data.get("not_before")
        return cls(
            pace_key=str(data["pace_key"]),
            notification=Notification.from_dict(data["notification"]),
            attempts=int(data.get("attempts", 0)),
            not_before=datetime.fromisoformat(not_before) if not_before else None,
            last_error=data.get("last_error"),
        )


class Outbox:
    """FIFO queues per pace key holding at most one notification per (receiver, group).

    A newer notification for a group replaces a queued one in place, so the queue is
    bounded by the number of alert groups, not by how long a receiver was unreachable,
    and nothing is dropped.
    """

    def __init__(self) -> None:
        self._queues: dict[str, deque[OutboxItem]] = {}

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def put(self, pace_key: str, notification: Notification) -> None:
        queue = self._queues.setdefault(pace_key, deque())
        for item in queue:
            same = item.notification.receiver == notification.receiver
            if same and item.notification.group_key == notification.group_key:
                item.notification = notification
                return
        queue.append(OutboxItem(pace_key, notification))

    def heads(self) -> list[OutboxItem]:
        return [queue[0] for queue in self._queues.values() if queue]

    def pop(self, item: OutboxItem) -> None:
        queue = self._queues[item.pace_key]
        if queue and queue[0] is item:
            queue.popleft()
        if not queue:
            del self._queues[item.pace_key]

    def withdraw(self, receiver: str, group_key: str) -> bool:
        """Drop the group's queued notification; True if there was one."""
        for pace_key, queue in self._queues.items():
            for item in queue:
                notification = item.notification
                if notification.receiver == receiver and notification.group_key == group_key:
                    queue.remove(item)
                    if not queue:
                        del self._queues[pace_key]
                    return True
        return False

    def pending(self, receiver: str, group_key: str) -> bool:
        return any(
            item.notification.receiver == receiver and item.notification.group_key == group_key
            for queue in self._queues.values()
            for item in queue
        )

    def to_dict(self) -> list[dict[str, Any]]:
        return [item.to_dict() for queue in self._queues.values() for item in queue]

    @classmethod
    def from_dict(cls, data: Any) -> Outbox:
        if not isinstance(data, list):
            raise ValueError("outbox must be a list")
        outbox = cls()
        for raw in data:
            item = OutboxItem.from_dict(raw)
            outbox._queues.setdefault(item.pace_key, deque()).append(item)
        return outbox
