"""The notification pipeline: route → group → inhibit/silence → outbox → receivers.

Feed it :class:`AlertTransition` records (as consumed from ``llm.alerts``) with
:meth:`Notifier.ingest`, and call :meth:`Notifier.tick` (or :meth:`Notifier.run`) often.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from alerting.engine import Clock, utc_now
from alerting.grouping import AggregationGroup, group_key, plan_flush
from alerting.inhibition import Inhibitor
from alerting.notification import (
    Notification,
    PermanentDeliveryError,
    Receiver,
    RetryableDeliveryError,
)
from alerting.notify_log import NotificationLog
from alerting.outbox import Outbox, OutboxItem
from alerting.routing import ResolvedRoute
from alerting.rules_file import RulesFile
from alerting.silences import SilenceStore, silenced_by
from alerting.state import AlertState, AlertTransition

log = logging.getLogger("llmpulse.alerting.notifier")
STATE_VERSION = 1
Checkpoint = Callable[[dict[str, Any]], Awaitable[None]]


class Notifier:
    """Turns alert transitions into grouped, deduplicated notifications, delivered in order."""

    def __init__(
        self,
        rules: RulesFile,
        receivers: Mapping[str, Receiver],
        silences: SilenceStore,
        clock: Clock = utc_now,
        checkpoint: Checkpoint | None = None,
        max_backoff: float = 60.0,
    ) -> None:
        self._root = ResolvedRoute.build(rules.route)
        self._routes = {route.route_id: route for route in _walk(self._root)}
        self._inhibitor = Inhibitor(rules.inhibit_rules)
        self._receivers = dict(receivers)
        self._silences = silences
        self._clock = clock
        self._checkpoint = checkpoint
        self._max_backoff = max_backoff
        self._alerts: dict[str, AlertTransition] = {}
        self._groups: dict[str, AggregationGroup] = {}
        self._log = NotificationLog()
        self._outbox = Outbox()
        self._pace: dict[str, datetime] = {}
        self.dead_letters: list[dict[str, Any]] = []

    @property
    def queued(self) -> int:
        """Notifications waiting for delivery."""
        return len(self._outbox)

    def ingest(self, transition: AlertTransition) -> None:
        """Take one transition; duplicates and stale replays (at-least-once input) are ignored."""
        if transition.state not in (AlertState.FIRING, AlertState.RESOLVED):
            return
        known = self._alerts.get(transition.fingerprint)
        if known is not None and (known.at, known.sequence) >= (transition.at, transition.sequence):
            return
        if known is None and transition.state == AlertState.RESOLVED:
            return  # never notified as firing here, so there is nothing to resolve
        self._alerts[transition.fingerprint] = transition
        now = self._clock()
        for route in self._root.match(transition.labels):
            labels = route.group_labels(transition.labels)
            key = group_key(route.route_id, labels)
            group = self._groups.get(key)
            if group is None:
                group = AggregationGroup(
                    key, route.route_id, route.receiver, labels, now + route.group_wait
                )
                self._groups[key] = group
            group.fingerprints.add(transition.fingerprint)

    async def tick(self) -> int:
        """Flush due groups to the outbox, deliver what pacing allows; return messages sent."""
        self._flush(self._clock())
        return await self._deliver(self._clock())

    async def run(self, stop: asyncio.Event, period: float = 0.2) -> None:
        """Tick until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("notifier tick failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)

    def _muted(self, alerts: list[AlertTransition], now: datetime) -> set[str]:
        firing = [
            (a.fingerprint, a.labels) for a in self._alerts.values() if a.state == AlertState.FIRING
        ]
        muted = set()
        for alert in alerts:
            if alert.state != AlertState.FIRING:
                continue
            silence = silenced_by(self._silences, alert.labels, now)
            if silence is not None or self._inhibitor.inhibited(
                alert.fingerprint, alert.labels, firing
            ):
                muted.add(alert.fingerprint)
        return muted

    def _flush(self, now: datetime) -> None:
        for key, group in list(self._groups.items()):
            if group.next_flush_at > now:
                continue
            route = self._routes.get(group.route_id)
            if route is None:
                del self._groups[key]
                continue
            group.next_flush_at = now + route.group_interval
            alerts = [self._alerts[fp] for fp in sorted(group.fingerprints) if fp in self._alerts]
            receiver = self._receivers.get(group.receiver)
            entry = self._log.get(group.receiver, key)
            send_resolved = receiver.send_resolved if receiver else False
            plan = plan_flush(
                alerts, self._muted(alerts, now), entry, now, route.repeat_interval, send_resolved
            )
            if plan.kind is not None and receiver is not None:
                notification = Notification(
                    id=f"{group.receiver}:{key}:{entry.sent_count + 1}",
                    receiver=group.receiver,
                    group_key=key,
                    group_labels=group.labels,
                    kind=plan.kind,
                    alerts=plan.firing + plan.resolved,
                    created_at=now,
                )
                self._outbox.put(receiver.pace_key(notification), notification)
            elif self._outbox.withdraw(group.receiver, key):
                # A message planned on an earlier state is still queued and none of it is news
                # now: e.g. its only alert resolved before Slack took it (never announced, so
                # its resolution is not news). Sent, it would show a firing alert for good.
                log.info("queued notification of group %s withdrawn: nothing new", key)
            keep = {a.fingerprint for a in plan.resolved} | {
                a.fingerprint for a in alerts if a.state == AlertState.FIRING
            }
            self._drop_from_group(group, group.fingerprints - keep)

    def _drop_from_group(self, group: AggregationGroup, fingerprints: set[str]) -> None:
        group.fingerprints -= fingerprints
        if not group.fingerprints and not self._outbox.pending(group.receiver, group.key):
            self._groups.pop(group.key, None)
            self._log.forget(group.receiver, group.key)
        in_use = {fp for g in self._groups.values() for fp in g.fingerprints}
        for fp in fingerprints - in_use:
            alert = self._alerts.get(fp)
            if alert is not None and alert.state == AlertState.RESOLVED:
                del self._alerts[fp]

    async def _deliver(self, now: datetime) -> int:
        ready = [
            item
            for item in self._outbox.heads()
            if (item.not_before is None or item.not_before <= now)
            and self._pace.get(item.pace_key, now) <= now
        ]
        results = await asyncio.gather(*(self._send(item) for item in ready))
        return sum(results)

    async def _send(self, item: OutboxItem) -> bool:
        notification = item.notification
        receiver = self._receivers.get(notification.receiver)
        if receiver is None:
            self._outbox.pop(item)
            return False
        entry = self._log.get(notification.receiver, notification.group_key)
        try:
            ref = await receiver.send(notification, entry.ref)
        except PermanentDeliveryError as exc:
            log.error("notification %s cannot be delivered: %s", notification.id, exc)
            self._outbox.pop(item)
            self.dead_letters.append({"error": str(exc), "notification": notification.to_dict()})
            return False
        except Exception as exc:
            item.attempts += 1
            retry_after = exc.retry_after if isinstance(exc, RetryableDeliveryError) else None
            delay = (
                retry_after
                if retry_after is not None
                else min(2.0**item.attempts, self._max_backoff)
            )
            item.not_before = self._clock() + timedelta(seconds=delay)
            item.last_error = str(exc)
            log.warning(
                "notification %s not delivered (attempt %d), retrying in %.1fs: %s",
                notification.id, item.attempts, delay, exc,
            )  # fmt: skip
            return False
        sent_at = self._clock()
        self._outbox.pop(item)
        self._pace[item.pace_key] = sent_at + timedelta(seconds=receiver.min_interval)
        self._log.record(
            notification.receiver,
            notification.group_key,
            [a.fingerprint for a in notification.firing],
            sent_at,
            ref,
        )
        group = self._groups.get(notification.group_key)
        if group is not None:
            self._drop_from_group(group, {a.fingerprint for a in notification.resolved})
        if self._checkpoint is not None:
            await self._checkpoint(self.snapshot())
        return True

    def snapshot(self) -> dict[str, Any]:
        """JSON-compatible state: alerts, groups, notification log, outbox and dead letters."""
        return {
            "version": STATE_VERSION,
            "alerts": [alert.to_dict() for alert in self._alerts.values()],
            "groups": [group.to_dict() for group in self._groups.values()],
            "log": self._log.to_dict(),
            "outbox": self._outbox.to_dict(),
            "dead_letters": list(self.dead_letters),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load a snapshot into a fresh notifier; raises ``ValueError`` if it is malformed."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(
                f"notifier state version {data.get('version')!r} is not {STATE_VERSION}"
            )
        try:
            alerts = [AlertTransition.from_dict(item) for item in data["alerts"]]
            groups = [AggregationGroup.from_dict(item) for item in data["groups"]]
            self._log = NotificationLog.from_dict(data["log"])
            self._outbox = Outbox.from_dict(data["outbox"])
            self.dead_letters = list(data.get("dead_letters", []))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"invalid notifier state: {exc!r}") from exc
        self._alerts = {alert.fingerprint: alert for alert in alerts}
        self._groups = {group.key: group for group in groups}


def _walk(route: ResolvedRoute) -> Iterator[ResolvedRoute]:
    yield route
    for child in route.children:
        yield from _walk(child)
