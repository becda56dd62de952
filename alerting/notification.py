"""What the notifier hands to receivers, and the contract receivers implement."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from alerting.state import AlertState, AlertTransition

NotificationKind = Literal["new", "update", "repeat", "resolved"]


@dataclass(frozen=True)
class MessageRef:
    """Where a group's first message landed (a Slack channel id and message ``ts``)."""

    channel: str
    ts: str


@dataclass(frozen=True)
class Notification:
    """One message about one alert group for one receiver."""

    id: str
    receiver: str
    group_key: str
    group_labels: Mapping[str, str]
    kind: NotificationKind
    alerts: tuple[AlertTransition, ...]
    created_at: datetime

    @property
    def firing(self) -> list[AlertTransition]:
        return [alert for alert in self.alerts if alert.state == AlertState.FIRING]

    @property
    def resolved(self) -> list[AlertTransition]:
        return [alert for alert in self.alerts if alert.state == AlertState.RESOLVED]

    @property
    def status(self) -> str:
        return "firing" if self.firing else "resolved"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "receiver": self.receiver,
            "group_key": self.group_key,
            "group_labels": dict(self.group_labels),
            "kind": self.kind,
            "status": self.status,
            "alerts": [alert.to_dict() for alert in self.alerts],
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notification:
        return cls(
            id=data["id"],
            receiver=data["receiver"],
            group_key=data["group_key"],
            group_labels=dict(data["group_labels"]),
            kind=data["kind"],
            alerts=tuple(AlertTransition.from_dict(item) for item in data["alerts"]),
            created_at=datetime.fromisoformat(data["created_at"]),
        )


class DeliveryError(Exception):
    """A receiver could not deliver a notification."""


class RetryableDeliveryError(DeliveryError):
    """Try again later (rate limit, 5xx, network); ``retry_after`` is in seconds when known."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help (bad token, unknown channel, rejected payload)."""


class Receiver(Protocol):
    """Delivers notifications; ``send`` returns only once the far end accepted the message."""

    @property
    def name(self) -> str: ...

    @property
    def send_resolved(self) -> bool: ...

    @property
    def min_interval(self) -> float:
        """Seconds between two messages on one pace key (Slack: 1 per second per channel)."""
        ...

    def pace_key(self, notification: Notification) -> str: ...

    async def send(self, notification: Notification, ref: MessageRef | None) -> MessageRef | None:
        """Deliver; ``ref`` is the group's first message, if any. Raise a DeliveryError."""
        ...


class BaseReceiver:
    """The name, ``send_resolved`` and pacing a :class:`Receiver` exposes, kept in one place."""

    def __init__(self, name: str, *, send_resolved: bool = True, min_interval: float = 0.0) -> None:
        self._name, self._send_resolved, self._min_interval = name, send_resolved, min_interval

    @property
    def name(self) -> str:
        return self._name

    @property
    def send_resolved(self) -> bool:
        return self._send_resolved

    @property
    def min_interval(self) -> float:
        return self._min_interval
