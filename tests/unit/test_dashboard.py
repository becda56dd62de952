"""The provisioned Grafana dashboard's queries run on the real ClickHouse engine and add up.

Every panel's and variable's SQL is rewritten the way Grafana 12 with grafana-clickhouse-datasource
4.x rewrites it, then run read-only on embedded chDB after the project's migrations, over rows
written with the project's own row code (``streams.rows``). The rewrite, in the plugin's order:

1. Frontend, ``applyTemplateVariables`` in ``src/data/CHDatasource.ts`` of the plugin
   (github.com/grafana/clickhouse-datasource):

   * ``$__conditionalAll(condition, $var)`` becomes ``1=1`` when ``$var`` is All (``$__all``) or
     empty, else ``condition`` (arguments split on commas outside brackets).
   * Grafana's template service replaces variables: ``${var:singlequote}`` is every value in single
     quotes (``'`` escaped as ``\\'``) joined by commas; ``$var`` and ``${var}`` use the plugin's
     format, which writes the list of a multi-value variable as ``'a','b'``; All stands for every
     option. ``$__name`` that is no variable is left for the backend.

2. Backend, ``pkg/macros/macros.go`` of the plugin, matched by grafana/sqlds as ``\\$__name\\b``
   with an optional bracketed argument list split on top-level commas and trimmed; ``from`` and
   ``to`` are Unix seconds (Go's ``Time.Unix``, truncated), ``s`` is the panel interval in whole
   seconds, at least 1:

   * ``$__timeFilter(c)`` -> ``c >= toDateTime(from) AND c <= toDateTime(to)``
   * ``$__timeFilter_ms(c)`` -> the same with ``fromUnixTimestamp64Milli(milliseconds)``
   * ``$__fromTime``, ``$__toTime`` -> ``toDateTime(from)``, ``toDateTime(to)``
   * ``$__fromTime_ms``, ``$__toTime_ms`` -> ``fromUnixTimestamp64Milli(milliseconds)``
   * ``$__dateFilter(c)`` -> ``c >= toDate('YYYY-MM-DD') AND c <= toDate('YYYY-MM-DD')``
   * ``$__dateTimeFilter(d, t)`` (alias ``$__dt``) -> the date filter on ``d`` AND the time filter
     on ``t``, each in brackets
   * ``$__timeInterval(c)`` -> ``toStartOfInterval(toDateTime(c), INTERVAL s second)``
   * ``$__timeInterval_ms(c)`` -> ``toStartOfInterval(toDateTime64(c, 3), INTERVAL ms millisecond)``
   * ``$__interval_s`` -> ``s``

   Any other ``$__`` left in the SQL fails the test, so a misspelt macro cannot pass.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson
import pytest
import yaml

from alerting.state import AlertState, AlertTransition, fingerprint
from schemas import LLMCall, TextPolicy, apply_text_policy, decode_call
from streams.detections_stage import DetectionRecord
from streams.metrics import MetricsAggregator, MetricsConfig, PricingTable
from streams.migrations import migrate
from streams.rows import (
    ALERT_COLUMNS,
    CALL_COLUMNS,
    DETECTION_COLUMNS,
    METRIC_COLUMNS,
    alert_row,
    call_row,
    detection_row,
    metric_row,
)
from streams.store import ClickHouseStore, QueryResult
from tests.events import valid_call

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "docs" / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "llmpulse.json").read_text())
PLUGIN = "grafana-clickhouse-datasource"

# Minutes aligned to five, so a 300 s interval holds the first three minutes in one bucket.
_NOW = datetime.now(UTC).replace(second=0, microsecond=0)
BASE = _NOW - timedelta(minutes=40 + _NOW.minute % 5)
START, END = BASE - timedelta(minutes=10), BASE + timedelta(minutes=20)

TRAFFIC = "Traffic: calls per minute by model"
LATENCY = "Latency p50 / p95 / p99 by model"
ERRORS = "Error rate by model"
COST = "Cost per minute by model (USD)"
TIMELINE = "Alert timeline"
DETECTIONS = "Detections"
TRANSITIONS = "Alert transitions"

COLUMNS = {
    TRAFFIC: ("time", "model", "calls_per_minute"),
    LATENCY: ("time", "model", "p50_ms", "p95_ms", "p99_ms"),
    ERRORS: ("time", "model", "error_rate"),
    COST: ("time", "model", "cost_usd_per_minute"),
    TIMELINE: ("time", "alert", "state"),
    DETECTIONS: (
        "time", "signal", "detector", "key", "before_mean", "after_level", "score", "event_id",
    ),
    TRANSITIONS: (
        "time", "rule", "severity", "previous_state", "state", "reason", "value", "threshold",
        "alert_labels", "summary",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Call:
    app: str
    provider: str
    model: str
    minute: int
    latency_ms: float
    error: bool
    cost_usd: float  # powers of two: sums are exact in any order


CHAT_4O = ("chat", "openai", "gpt-4o")
CHAT_HAIKU = ("chat", "anthropic", "claude-3-5-haiku")
SEARCH_4O = ("search", "openai", "gpt-4o")
CALLS = [
    *(Call(*CHAT_4O, 0, ms, ms == 200, 2**-7) for ms in (100.0, 200.0, 300.0, 400.0)),
    *(Call(*CHAT_HAIKU, 0, ms, False, 2**-5) for ms in (1000.0, 2000.0)),
    Call(*SEARCH_4O, 0, 500.0, False, 2**-6),
    *(Call(*CHAT_4O, 1, ms, ms == 250, 2**-7) for ms in (150.0, 250.0)),
    *(Call(*SEARCH_4O, 2, ms, False, 2**-6) for ms in (600.0, 700.0, 800.0)),
]


@dataclass(frozen=True)
class Selection:
    """The current value of a dashboard variable."""

    values: tuple[str, ...]
    is_all: bool = False


def at(minutes: float) -> datetime:
    return BASE + timedelta(minutes=minutes)


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# The rewrite described in the module docstring.


def _bracketed_args(text: str, start: int) -> tuple[list[str], int]:
    """Arguments of a call whose ``(`` is at ``text[start]``, split on top-level commas."""
    depth, args, current = 0, [], start + 1
    for index in range(start, len(text)):
        char = text[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                args.append(text[current:index].strip())
                return args, index + 1
        elif char == "," and depth == 1:
            args.append(text[current:index].strip())
            current = index + 1
    raise ValueError(f"unclosed bracket in {text[start : start + 80]!r}")


def _conditional_all(sql: str, variables: Mapping[str, Selection]) -> str:
    macro = "$__conditionalAll"
    while (index := sql.find(macro)) != -1:
        (condition, variable), end = _bracketed_args(sql, index + len(macro))
        name = variable.lstrip("$").strip("{}")
        selection = variables[name]
        phrase = "1=1" if selection.is_all or not selection.values else condition
        sql = sql[:index] + phrase + sql[end:]
    return sql


_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def _template(sql: str, variables: Mapping[str, Selection]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name not in variables:
            return match.group(0)
        values = variables[name].values
        if match.group(2) == "singlequote":
            return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
        assert match.group(2) is None, f"format {match.group(2)} is not modelled"
        return "'" + "','".join(values) + "'"

    return _VARIABLE.sub(replace, sql)


def _backend_macros(sql: str, start: datetime, end: datetime, interval_s: float) -> str:
    s, ms = max(int(interval_s), 1), max(int(interval_s * 1000), 1)
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    m0, m1 = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    d0, d1 = start.astimezone(UTC).date().isoformat(), end.astimezone(UTC).date().isoformat()

    def between(column: str, low: str, high: str) -> str:
        return f"{column} >= {low} AND {column} <= {high}"

    def date_time(args: list[str]) -> str:
        dates = between(args[0], f"toDate('{d0}')", f"toDate('{d1}')")
        return f"({dates}) AND ({between(args[1], f'toDateTime({t0})', f'toDateTime({t1})')})"

    macros: dict[str, Callable[[list[str]], str]] = {
        "fromTime": lambda a: f"toDateTime({t0})",
        "toTime": lambda a: f"toDateTime({t1})",
        "fromTime_ms": lambda a: f"fromUnixTimestamp64Milli({m0})",
        "toTime_ms": lambda a: f"fromUnixTimestamp64Milli({m1})",
        "timeFilter": lambda a: between(a[0], f"toDateTime({t0})", f"toDateTime({t1})"),
        "timeFilter_ms": lambda a: between(
            a[0], f"fromUnixTimestamp64Milli({m0})", f"fromUnixTimestamp64Milli({m1})"
        ),
        "dateFilter": lambda a: between(a[0], f"toDate('{d0}')", f"toDate('{d1}')"),
        "dateTimeFilter": date_time,
        "dt": date_time,
        "timeInterval": lambda a: f"toStartOfInterval(toDateTime({a[0]}), INTERVAL {s} second)",
        "timeInterval_ms": lambda a: (
            f"toStartOfInterval(toDateTime64({a[0]}, 3), INTERVAL {ms} millisecond)"
        ),
        "interval_s": lambda a: str(s),
    }
    arity = {"timeFilter": 1, "timeFilter_ms": 1, "dateFilter": 1, "dateTimeFilter": 2, "dt": 2,
             "timeInterval": 1, "timeInterval_ms": 1}  # fmt: skip
    out: list[str] = []
    position = 0
    for match in re.finditer(r"\$__(\w+)", sql):
        if match.start() < position:
            continue
        name = match.group(1)
        assert name in macros, f"$__{name} is not a macro of the ClickHouse plugin"
        args: list[str] = []
        after = match.end()
        if sql.startswith("(", after):
            args, after = _bracketed_args(sql, after)
        assert len(args) == arity.get(name, len(args)), f"$__{name} takes {arity[name]} args"
        out.append(sql[position : match.start()] + macros[name](args))
        position = after
    return "".join(out) + sql[position:]


def render(
    sql: str,
    variables: Mapping[str, Selection],
    start: datetime = START,
    end: datetime = END,
    interval_s: float = 60,
) -> str:
    sql = _template(_conditional_all(sql, variables), variables)
    return _backend_macros(sql, start, end, interval_s)


# The dashboard and the data.


def panels() -> list[dict[str, Any]]:
    found = []
    for panel in DASHBOARD["panels"]:
        found.extend([panel, *panel.get("panels", [])])
    return [p for p in found if p["type"] != "row"]


def panel_sql(title: str) -> str:
    [panel] = [p for p in panels() if p["title"] == title]
    [target] = panel["targets"]
    return str(target["rawSql"])


def app_variable() -> dict[str, Any]:
    [variable] = [v for v in DASHBOARD["templating"]["list"] if v["name"] == "app"]
    return dict(variable)


def variable_sql(variable: Mapping[str, Any]) -> str:
    query = variable["query"]
    return str(query if isinstance(query, str) else query["rawSql"])


ALL = {"app": Selection(("chat", "search"), is_all=True)}
CHAT = {"app": Selection(("chat",))}


def _calls() -> list[LLMCall]:
    rng = random.Random(7)
    calls = []
    for i, c in enumerate(CALLS):
        event = valid_call(
            i, rng, timestamp=at(c.minute + (5 + i) / 60).isoformat(), app=c.app,
            environment="production", provider=c.provider, model=c.model,
            latency_ms=c.latency_ms, status="error" if c.error else "ok", cost_usd=c.cost_usd,
        )  # fmt: skip
        calls.append(apply_text_policy(decode_call(orjson.dumps(event)), TextPolicy()))
    return calls


def _metrics(calls: list[LLMCall]) -> bytes:
    """The stream's window records for the same calls, as the worker writes them."""
    agg = MetricsAggregator(
        MetricsConfig(allowed_lateness_seconds=3600.0), PricingTable.load(), clock=lambda: 0.0
    )
    assert all(agg.add_call(call) for call in calls)
    return b"\n".join(metric_row(r) for r in agg.close_due(now=1e9))


def _detection(key_set: str, dims: dict[str, str], signal: str, when: datetime) -> bytes:
    record = DetectionRecord(
        key_set=key_set, dimensions=dims, signal=signal, detector="adwin",
        params={"delta": 0.002}, score=4.0, before_mean=250.0, before_quantile=400.0,
        after_level=900.0, event_time=when, event_id=f"evt-{signal}-{key_set}",
        source_partition=0, source_offset=7, detected_at=_NOW,
    )  # fmt: skip
    return detection_row(record)


CHAT_KEY = {"app": "chat", "environment": "production", "provider": "openai", "model": "gpt-4o"}
SEARCH_KEY = {**CHAT_KEY, "app": "search"}


def _detections() -> bytes:
    shared_key = {"provider": "openai", "model": "gpt-4o"}
    return b"\n".join([
        _detection("app_environment_provider_model", CHAT_KEY, "latency", at(1.5)),
        _detection("provider_model", shared_key, "latency", at(1.5)),
        # Before the range: not listed.
        _detection("app_environment_provider_model", SEARCH_KEY, "error", at(-15)),
    ])  # fmt: skip


def _transition(
    rule: str,
    key: dict[str, str],
    state: AlertState,
    previous: AlertState,
    when: datetime,
    sequence: int,
) -> bytes:
    rule_id = f"llm-health/{rule}"
    labels = {**key, "alertname": rule, "severity": "critical"}
    transition = AlertTransition(
        rule_id=rule_id, rule=rule, kind="threshold", fingerprint=fingerprint(rule_id, labels),
        labels=labels, annotations={"summary": f"{rule} in {key['app']}"}, state=state,
        previous_state=previous, at=when, sequence=sequence, value=0.2, threshold=0.05,
        op=">", metric="error_rate", key_set="app_environment_provider_model",
    )  # fmt: skip
    return alert_row(transition)


INACTIVE, PENDING = AlertState.INACTIVE, AlertState.PENDING
FIRING, RESOLVED = AlertState.FIRING, AlertState.RESOLVED
QUIET_KEY = {"app": "chat", "environment": "production"}
ERROR_ALERT = "HighErrorRate app=chat, environment=production, model=gpt-4o, provider=openai"
LATENCY_ALERT = "HighLatencyP95 app=search, environment=production, model=gpt-4o, provider=openai"


def _alerts() -> bytes:
    before = START - timedelta(minutes=10)
    return b"\n".join([
        # Firing since before the range, resolved inside it.
        _transition("HighErrorRate", CHAT_KEY, PENDING, INACTIVE, before, 1),
        _transition("HighErrorRate", CHAT_KEY, FIRING, PENDING, before + timedelta(minutes=2), 2),
        _transition("HighErrorRate", CHAT_KEY, RESOLVED, FIRING, at(2), 3),
        # Pending and firing inside the range.
        _transition("HighLatencyP95", SEARCH_KEY, PENDING, INACTIVE, at(1), 1),
        _transition("HighLatencyP95", SEARCH_KEY, FIRING, PENDING, at(2), 2),
        # Pending and back to inactive before the range: not shown.
        _transition("NoTraffic", QUIET_KEY, PENDING, INACTIVE, before, 1),
        _transition("NoTraffic", QUIET_KEY, INACTIVE, PENDING, before + timedelta(minutes=1), 2),
    ])  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore(f"chdb://{tmp_path_factory.mktemp('dashboard') / 'ch'}")
    try:
        migrate(store, ttl_days=30)
        calls = _calls()
        rows = b"\n".join(call_row(call, 0, offset) for offset, call in enumerate(calls))
        store.insert_json_rows("llm_calls", CALL_COLUMNS, rows)
        store.insert_json_rows("llm_metrics_1m", METRIC_COLUMNS, _metrics(calls))
        store.insert_json_rows("llm_detections", DETECTION_COLUMNS, _detections())
        store.insert_json_rows("llm_alerts", ALERT_COLUMNS, _alerts())
        yield store
    finally:
        store.close()


def run(
    store: ClickHouseStore, title: str, variables: Mapping[str, Selection], **kwargs: Any
) -> QueryResult:
    result = store.query(render(panel_sql(title), variables, **kwargs), read_only=True)
    assert result.columns == COLUMNS[title]
    return result


def by_minute_and_model(
    reduce: Callable[[list[Call]], T], apps: tuple[str, ...], bucket_minutes: int = 1
) -> dict[tuple[datetime, str], T]:
    groups: dict[tuple[datetime, str], list[Call]] = defaultdict(list)
    for c in CALLS:
        if c.app in apps:
            groups[(at(c.minute // bucket_minutes * bucket_minutes), c.model)].append(c)
    return {key: reduce(calls) for key, calls in groups.items()}


def series(result: QueryResult) -> dict[tuple[datetime, str], tuple[Any, ...]]:
    return {(utc(row[0]), row[1]): row[2:] for row in result.rows}


# Tests.


def test_the_expansion_matches_the_plugins_documented_examples() -> None:
    start, end = datetime.fromtimestamp(1415792726, UTC), datetime.fromtimestamp(1447328726, UTC)

    def expand(sql: str) -> str:
        return render(sql, CHAT, start, end, interval_s=20)

    assert expand("$__timeFilter(time)") == (
        "time >= toDateTime(1415792726) AND time <= toDateTime(1447328726)"
    )
    assert expand("$__fromTime, $__toTime_ms") == (
        "toDateTime(1415792726), fromUnixTimestamp64Milli(1447328726000)"
    )
    assert expand("$__dateFilter(date)") == (
        "date >= toDate('2014-11-12') AND date <= toDate('2015-11-12')"
    )
    assert expand("$__timeInterval(ts) / $__interval_s") == (
        "toStartOfInterval(toDateTime(ts), INTERVAL 20 second) / 20"
    )
    assert render("$__interval_s", CHAT, interval_s=0.2) == "1"  # at least a second
    chat_or_all = "$__conditionalAll(app IN (${app:singlequote}), $app)"
    assert render(chat_or_all, CHAT) == "app IN ('chat')"
    assert render(chat_or_all, ALL) == "1=1"
    quoted = {"app": Selection(("o'brien", "x"))}
    assert render("${app:singlequote} $app", quoted) == "'o\\'brien','x' 'o'brien','x'"
    with pytest.raises(AssertionError, match="not a macro"):
        render("$__timeFiltr(x)", CHAT)


def test_the_dashboard_is_wired_to_the_provisioned_data_source() -> None:
    provisioning = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml").read_text()
    )
    [source] = provisioning["datasources"]
    assert source["type"] == PLUGIN
    expected = {"type": PLUGIN, "uid": source["uid"]}
    assert DASHBOARD["schemaVersion"] >= 39 and DASHBOARD["uid"]
    assert app_variable()["datasource"] == expected
    found = panels()
    assert [p["title"] for p in found] == list(COLUMNS)
    assert len({p["id"] for p in found}) == len(found)
    for panel in found:
        assert panel["datasource"] == expected, panel["title"]
        [target] = panel["targets"]
        assert target["datasource"] == expected and target["editorType"] == "sql"
        as_table = panel["type"] != "timeseries"
        # The plugin turns (time, label, values...) into one series per label only as time series.
        assert (target["format"], target["queryType"]) == (
            (1, "table") if as_table else (0, "timeseries")
        ), panel["title"]
        assert "$__" in target["rawSql"]
    timeline = next(p for p in found if p["type"] == "state-timeline")
    [partition] = timeline["transformations"]
    assert partition["id"] == "partitionByValues"
    assert partition["options"]["fields"] == [COLUMNS[TIMELINE][1]]


@pytest.mark.parametrize("variables", [ALL, CHAT], ids=["all-apps", "one-app"])
@pytest.mark.parametrize("title", list(COLUMNS))
def test_every_panel_query_runs_and_has_its_columns(
    store: ClickHouseStore, title: str, variables: dict[str, Selection]
) -> None:
    result = run(store, title, variables)
    assert result.rows, title
    if COLUMNS[title][1] == "model":  # the plugin's multi-series shape: time, label, numbers
        for row in result.rows:
            assert isinstance(row[0], datetime) and isinstance(row[1], str)
            assert all(isinstance(v, int | float) for v in row[2:]), row


def test_the_app_variable_lists_the_apps_in_the_range(store: ClickHouseStore) -> None:
    sql = variable_sql(app_variable())
    assert app_variable()["includeAll"] and app_variable()["multi"]
    assert store.query(render(sql, ALL), read_only=True).rows == [("chat",), ("search",)]
    later = render(sql, ALL, start=END, end=END + timedelta(hours=1))
    assert store.query(later, read_only=True).rows == []


@pytest.mark.parametrize(
    ("variables", "interval_s"), [(ALL, 60), (CHAT, 60), (ALL, 300), (CHAT, 300)]
)
def test_traffic_is_calls_per_minute(
    store: ClickHouseStore, variables: dict[str, Selection], interval_s: int
) -> None:
    bucket = interval_s // 60
    expected = by_minute_and_model(lambda c: len(c) / bucket, variables["app"].values, bucket)
    result = run(store, TRAFFIC, variables, interval_s=interval_s)
    assert {k: v[0] for k, v in series(result).items()} == pytest.approx(expected)
    if interval_s == 60 and variables is ALL:
        assert expected[(at(0), "gpt-4o")] == 5 and expected[(at(0), "claude-3-5-haiku")] == 2


@pytest.mark.parametrize("variables", [ALL, CHAT], ids=["all-apps", "one-app"])
def test_latency_percentiles_are_exact(
    store: ClickHouseStore, variables: dict[str, Selection]
) -> None:
    def percentiles(calls: list[Call]) -> tuple[float, ...]:
        return tuple(np.quantile([c.latency_ms for c in calls], [0.5, 0.95, 0.99]).tolist())

    expected = by_minute_and_model(percentiles, variables["app"].values)
    result = series(run(store, LATENCY, variables))
    assert result.keys() == expected.keys()
    for key, values in result.items():
        assert values == pytest.approx(expected[key]), key
    if variables is ALL:
        assert expected[(at(0), "gpt-4o")] == pytest.approx((300.0, 480.0, 496.0))


def test_error_rate_is_errors_over_calls(store: ClickHouseStore) -> None:
    expected = by_minute_and_model(lambda c: sum(x.error for x in c) / len(c), ("chat", "search"))
    result = series(run(store, ERRORS, ALL))
    assert {k: v[0] for k, v in result.items()} == pytest.approx(expected)
    assert result[(at(0), "gpt-4o")] == (0.2,) and result[(at(1), "gpt-4o")] == (0.5,)


@pytest.mark.parametrize(("variables", "interval_s"), [(ALL, 60), (CHAT, 60), (ALL, 300)])
def test_cost_is_usd_per_minute_from_the_stream(
    store: ClickHouseStore, variables: dict[str, Selection], interval_s: int
) -> None:
    bucket = interval_s // 60
    expected = by_minute_and_model(
        lambda c: sum(x.cost_usd for x in c) / bucket, variables["app"].values, bucket
    )
    result = run(store, COST, variables, interval_s=interval_s)
    assert {k: v[0] for k, v in series(result).items()} == expected  # exact: powers of two


def test_detections_in_the_range_are_listed_with_their_key(store: ClickHouseStore) -> None:
    rows = run(store, DETECTIONS, ALL).rows
    assert [(utc(r[0]), r[1], r[2], r[3]) for r in rows] == [
        (at(1.5), "latency", "adwin", "app=chat, environment=production, provider=openai, "
         "model=gpt-4o"),  # in the key set's order
        (at(1.5), "latency", "adwin", "provider=openai, model=gpt-4o"),
    ]  # fmt: skip
    assert rows[0][4:7] == (250.0, 900.0, 4.0)
    # A detection of a provider x model key has no app: one app's view leaves it out.
    assert [r[3] for r in run(store, DETECTIONS, CHAT).rows] == [rows[0][3]]


@pytest.mark.parametrize("variables", [ALL, CHAT], ids=["all-apps", "one-app"])
def test_the_alert_timeline_starts_active_alerts_at_the_range_start(
    store: ClickHouseStore, variables: dict[str, Selection]
) -> None:
    rows = [(utc(t), alert, state) for t, alert, state in run(store, TIMELINE, variables).rows]
    firing, pending, ok = 2, 1, 0
    expected = [
        (START, ERROR_ALERT, firing),  # fired before the range
        (at(1), LATENCY_ALERT, pending),
        (at(2), ERROR_ALERT, ok),
        (at(2), LATENCY_ALERT, firing),
    ]
    if variables is CHAT:
        expected = [row for row in expected if row[1] == ERROR_ALERT]
    assert rows == expected


def test_alert_transitions_are_listed_newest_first(store: ClickHouseStore) -> None:
    rows = run(store, TRANSITIONS, ALL).rows
    assert [(utc(r[0]), r[1], r[3], r[4]) for r in rows] == [
        (at(2), "HighErrorRate", "firing", "resolved"),  # sequence 3
        (at(2), "HighLatencyP95", "pending", "firing"),  # sequence 2
        (at(1), "HighLatencyP95", "inactive", "pending"),
    ]  # fmt: skip
    assert rows[0][2] == "critical" and rows[0][6:8] == (0.2, 0.05)
    assert rows[0][8] == (
        "alertname=HighErrorRate, app=chat, environment=production, model=gpt-4o, "
        "provider=openai, severity=critical"
    )
    assert rows[0][9] == "HighErrorRate in chat"
