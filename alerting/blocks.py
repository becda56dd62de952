"""Slack Block Kit messages for alert groups, kept within Slack's limits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from alerting.durations import format_duration
from alerting.notification import Notification
from alerting.sparkline import sparkline
from alerting.sql import calls_query, metrics_query
from alerting.state import AlertState, AlertTransition
from alerting.templates import humanize

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_FALLBACK_TEXT = 3000
MAX_ALERTS_SHOWN = 10
SEVERITY_ICON = {
    "critical": ":red_circle:",
    "warning": ":large_orange_circle:",
    "info": ":large_blue_circle:",
}
KIND_TITLE = {"new": "", "update": "Update: ", "repeat": "Still firing: ", "resolved": ""}
_HIDDEN_LABELS = {"alertname", "severity"}


def escape(text: str) -> str:
    """Escape Slack mrkdwn control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else humanize(value)


def dimensions(alert: AlertTransition) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k not in _HIDDEN_LABELS)


def _condition_line(alert: AlertTransition) -> str:
    if alert.detection is not None:
        d = alert.detection
        before = f"mean {_fmt(d.before_mean)}"
        if d.before_quantile is not None:
            before += f", p95 {_fmt(d.before_quantile)}"
        return (
            f"{escape(d.signal)} changed: before {before} → after *{_fmt(d.after_level)}* "
            f"({escape(d.detector)}, score {d.score:.3g})"
        )
    if alert.reason in ("absent", "no_data") and alert.value is None:
        return "no data for this key"
    metric, op = escape(alert.metric or "value"), escape(alert.op or ">")
    line = f"{metric} *{_fmt(alert.value)}* {op} {_fmt(alert.threshold)}"
    if alert.recovery_threshold is not None:
        line += f" (recovers at {_fmt(alert.recovery_threshold)})"
    return line


def _timing_line(alert: AlertTransition, now: datetime) -> str:
    start = alert.fired_at or alert.active_since or alert.at
    if alert.state == AlertState.RESOLVED and alert.resolved_at is not None:
        lasted = format_duration(alert.resolved_at - start)
        return f"resolved {alert.resolved_at:%H:%M:%S} UTC after {lasted}"
    return f"firing for {format_duration(now - start)} (since {start:%Y-%m-%d %H:%M:%S} UTC)"


def alert_text(alert: AlertTransition, now: datetime) -> str:
    icon = (
        ":white_check_mark:"
        if alert.state == AlertState.RESOLVED
        else SEVERITY_ICON.get(alert.severity, ":grey_question:")
    )
    lines = [f"{icon} *{escape(alert.rule)}* `{escape(dimensions(alert))}`"]
    summary = alert.annotations.get("summary")
    if summary:
        lines.append(escape(summary))
    lines.append(_condition_line(alert))
    lines.append(_timing_line(alert, now))
    spark = sparkline(alert.history)
    if spark:
        lines.append(f"`{spark}` last {len(alert.history)} windows")
    runbook = alert.annotations.get("runbook_url", "")
    if runbook.startswith(("http://", "https://")):
        lines.append(f"<{runbook.replace('|', '%7C').replace('>', '%3E')}|Runbook>")
    return "\n".join(lines)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION_TEXT)}}


def headline(notification: Notification) -> str:
    alerts = notification.alerts
    rules = sorted({a.rule for a in alerts})
    severities = sorted({a.severity for a in notification.firing}) or sorted(
        {a.severity for a in alerts}
    )
    status = f"FIRING:{len(notification.firing)}" if notification.firing else "RESOLVED"
    return f"[{status}] {', '.join(rules)} ({', '.join(severities)})"


def build_message(
    notification: Notification, now: datetime, reply: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """Return the plain-text fallback and the blocks for one notification."""
    title = (KIND_TITLE[notification.kind] if reply else "") + headline(notification)
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": clip(title, MAX_HEADER_TEXT), "emoji": True},
        }
    ]
    ordered = notification.firing + notification.resolved
    blocks.extend(_section(alert_text(alert, now)) for alert in ordered[:MAX_ALERTS_SHOWN])
    if len(ordered) > MAX_ALERTS_SHOWN:
        rest = len(ordered) - MAX_ALERTS_SHOWN
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"…and {rest} more alerts in this group"}],
            }
        )
    if notification.firing and not reply:
        first = notification.firing[0]
        query = metrics_query(first)
        if first.kind == "detection" or (first.metric or "").startswith(
            ("error", "latency", "ttft")
        ):
            query = calls_query(first)
        blocks.append({"type": "divider"})
        query = clip(query, MAX_SECTION_TEXT - 40)
        blocks.append(_section(f"*Investigate* (ClickHouse):\n```{query}```"))
    fallback_lines = [title] + [
        f"{a.rule} {dimensions(a)}: {_condition_line(a)}" for a in ordered[:MAX_ALERTS_SHOWN]
    ]
    return clip("\n".join(fallback_lines), MAX_FALLBACK_TEXT), blocks[:MAX_BLOCKS]
