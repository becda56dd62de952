"""Ready-to-paste ClickHouse queries for investigating an alert."""

from __future__ import annotations

import re
from datetime import timedelta

from alerting.rules import OPEN_METRIC_PREFIXES
from alerting.state import AlertTransition

DATABASE = "llmpulse"
AND = "\n  AND "
CALL_COLUMNS = ("app", "environment", "provider", "model", "prompt_id", "prompt_version")
METRIC_COLUMNS = (
    "requests", "errors", "error_rate", "latency_p50_ms", "latency_p95_ms", "cost_usd_sum",
)  # fmt: skip
_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")
_SKIP_LABELS = {"alertname", "severity", "signal", "detector", "team"}


def quote(value: str) -> str:
    """A ClickHouse string literal.

    Examples
    --------
    >>> quote("it's")
    "'it\\\\'s'"
    """
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name: str) -> str:
    """A ClickHouse identifier in backquotes.

    Examples
    --------
    >>> quote_identifier("score_means.tox")
    '`score_means.tox`'
    """
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _window(alert: AlertTransition) -> str:
    start = (alert.active_since or alert.at) - timedelta(hours=1)
    return f"toDateTime64({quote(start.strftime('%Y-%m-%d %H:%M:%S'))}, 3, 'UTC')"


def _dimensions(alert: AlertTransition) -> dict[str, str]:
    return {k: v for k, v in sorted(alert.labels.items()) if k not in _SKIP_LABELS}


def metrics_query(alert: AlertTransition) -> str:
    """Windows of the alert's key around the time it became active."""
    columns = list(METRIC_COLUMNS)
    metric = alert.metric or ""
    if _COLUMN.match(metric) and metric not in columns:
        columns.append(metric)
    elif metric.startswith(OPEN_METRIC_PREFIXES):
        column, name = metric.split(".", 1)
        columns.append(f"{column}[{quote(name)}] AS {quote_identifier(metric)}")
    where = [f"window_start >= {_window(alert)}"]
    if alert.key_set:
        where.append(f"key_set = {quote(alert.key_set)}")
    for name, value in _dimensions(alert).items():
        column = name if name in CALL_COLUMNS else f"dimensions[{quote(name)}]"
        where.append(f"{column} = {quote(value)}")
    return (
        f"SELECT window_start, {', '.join(columns)}\n"
        f"FROM {DATABASE}.llm_metrics_1m\n"
        f"WHERE {AND.join(where)}\n"
        "ORDER BY window_start"
    )


def calls_query(alert: AlertTransition) -> str:
    """The individual calls behind the alert, slowest and failed first."""
    where = [f"timestamp >= {_window(alert)}"]
    where += [
        f"{name} = {quote(value)}"
        for name, value in _dimensions(alert).items()
        if name in CALL_COLUMNS
    ]
    return (
        "SELECT timestamp, event_id, provider, model, status, error_type, finish_reason,\n"
        "       latency_ms, ttft_ms, input_tokens, output_tokens, cost_usd\n"
        f"FROM {DATABASE}.llm_calls\n"
        f"WHERE {AND.join(where)}\n"
        "ORDER BY status != 'ok' DESC, latency_ms DESC\n"
        "LIMIT 100"
    )
