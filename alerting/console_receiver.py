"""Notifications as log lines on the ``llmpulse.alerts`` logger."""

from __future__ import annotations

import logging

from alerting.blocks import dimensions
from alerting.notification import BaseReceiver, MessageRef, Notification

log = logging.getLogger("llmpulse.alerts")


class ConsoleReceiver(BaseReceiver):
    """One log line per alert in the notification; never fails."""

    def __init__(self, name: str, send_resolved: bool = True, logger: logging.Logger = log) -> None:
        super().__init__(name, send_resolved=send_resolved)
        self._log = logger
        self.lines: int = 0

    def pace_key(self, notification: Notification) -> str:
        return f"console:{self._name}"

    async def send(self, notification: Notification, ref: MessageRef | None) -> MessageRef | None:
        for alert in notification.alerts:
            level = logging.WARNING if alert.state == "firing" else logging.INFO
            self._log.log(
                level,
                "%s %s severity=%s %s value=%s threshold=%s summary=%r",
                alert.state.upper(), alert.rule, alert.severity, dimensions(alert),
                alert.value, alert.threshold, alert.annotations.get("summary", ""),
            )  # fmt: skip
            self.lines += 1
        return None
