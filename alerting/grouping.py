"""Aggregation groups: alerts that share a route and group labels are notified together."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alerting.notification import NotificationKind
from alerting.notify_log import LogEntry
from alerting.state import AlertState, AlertTransition


def group_key(route_id: str, group_labels: Mapping[str, str]) -> str:
    """A stable key: route path plus the grouping labels.

    Examples
    --------
    >>> group_key("0.1", {"provider": "openai", "alertname": "HighLatency"})
    '0.1:{"alertname":"HighLatency","provider":"openai"}'
    """
    return f"{route_id}:{json.dumps(dict(sorted(group_labels.items())), separators=(',', ':'))}"


@dataclass
class AggregationGroup:
    key: str
    route_id: str
    receiver: str
    labels: dict[str, str]
    next_flush_at: datetime
    fingerprints: set[str] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "route_id": self.route_id,
            "receiver": self.receiver,
            "labels": self.labels,
            "next_flush_at": self.next_flush_at.isoformat(),
            "fingerprints": sorted(self.fingerprints),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AggregationGroup:
        next_flush = datetime.fromisoformat(data["next_flush_at"])
        if next_flush.tzinfo is None:
            raise ValueError("group next_flush_at has no time zone")
        return cls(
            key=str(data["key"]),
            route_id=str(data["route_id"]),
            receiver=str(data["receiver"]),
            labels={str(k): str(v) for k, v in data["labels"].items()},
            next_flush_at=next_flush,
            fingerprints={str(fp) for fp in data["fingerprints"]},
        )


@dataclass(frozen=True)
class FlushPlan:
    """What a group flush should send: ``kind`` is None when nothing needs sending."""

    kind: NotificationKind | None
    firing: tuple[AlertTransition, ...]
    resolved: tuple[AlertTransition, ...]


def plan_flush(
    alerts: list[AlertTransition],
    muted: set[str],
    entry: LogEntry,
    now: datetime,
    repeat_interval: timedelta,
    send_resolved: bool,
) -> FlushPlan:
    """Decide, as Alertmanager does, whether a group needs a notification now.

    New unmuted firing alerts, or resolutions of alerts that were notified, trigger one;
    otherwise an unchanged group is repeated only once ``repeat_interval`` has passed.
    """
    notified = set(entry.firing)
    firing = tuple(a for a in alerts if a.state == AlertState.FIRING and a.fingerprint not in muted)
    resolved = tuple(
        a for a in alerts if a.state == AlertState.RESOLVED and a.fingerprint in notified
    )
    shown_resolved = resolved if send_resolved else ()
    new = {a.fingerprint for a in firing} - notified
    first = entry.last_sent_at is None
    if new:
        return FlushPlan("new" if first else "update", firing, shown_resolved)
    if shown_resolved:
        return FlushPlan("resolved" if not firing else "update", firing, shown_resolved)
    due = entry.last_sent_at is not None and now - entry.last_sent_at >= repeat_interval
    if firing and due:
        return FlushPlan("repeat", firing, ())
    return FlushPlan(None, firing, ())
