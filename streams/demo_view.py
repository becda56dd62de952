"""What ``llmpulse demo`` shows: live state gathered from the worker, drawn with rich.

`DemoState` is fed by `streams.demo_feed` (the worker's ``/health`` and ``/live`` pages and the
``llm.detections`` / ``llm.alerts`` topics) and knows the scenario's incidents, so it can tell
how long after an incident began each detection and alert came.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streams.metrics.config import DEFAULT_KEY_SETS, key_set_name
from streams.simulation.labels import IncidentLabel
from streams.top_view import LiveSnapshot

__all__ = ["AlertEvent", "DemoState", "DetectionEvent", "matches_incident"]

MODEL_KEY_SET = "provider_model"
KEY_SET_DIMENSIONS = {key_set_name(names): names for names in DEFAULT_KEY_SETS}
RECENT = 8
NOT_KEY_LABELS = frozenset({"alertname", "severity", "signal", "detector"})
GRACE = timedelta(seconds=60)
"""A detection or alert this long after an incident ends still counts as about it."""


def matches_incident(labels: Mapping[str, str], incident: IncidentLabel) -> bool:
    """Whether a key (or an alert's label set) is one the incident touched.

    Either every dimension of the incident's target that ``labels`` carries agrees (and it
    carries at least one: a ``(provider, model)`` key matches a ``{model: ...}`` target), or
    ``labels`` holds one of the keys the simulator saw the incident change (an
    ``(app, prompt_id, prompt_version)`` key whose calls went partly to the target model).
    """
    shared = [name for name in incident.target if name in labels]
    if shared and all(labels[name] == incident.target[name] for name in shared):
        return True
    for affected in incident.affected:
        names = KEY_SET_DIMENSIONS.get(affected.key_set, ())
        if names and all(labels.get(n) == v for n, v in zip(names, affected.key, strict=True)):
            return True
    return False


@dataclass(frozen=True, slots=True)
class DetectionEvent:
    at: datetime
    dimensions: dict[str, str]
    signal: str
    detector: str
    before: float | None
    after: float | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DetectionEvent:
        return cls(
            at=_time(data.get("detected_at")) or datetime.now(UTC),
            dimensions={str(k): str(v) for k, v in dict(data.get("dimensions") or {}).items()},
            signal=str(data.get("signal")),
            detector=str(data.get("detector")),
            before=_float(data.get("before_mean")),
            after=_float(data.get("after_level")),
        )


@dataclass(frozen=True, slots=True)
class AlertEvent:
    at: datetime
    rule: str
    state: str
    fingerprint: str
    labels: dict[str, str]
    summary: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlertEvent:
        labels = {str(k): str(v) for k, v in dict(data.get("labels") or {}).items()}
        return cls(
            at=_time(data.get("at")) or datetime.now(UTC),
            rule=str(data.get("rule")),
            state=str(data.get("state")),
            fingerprint=str(data.get("fingerprint")),
            labels=labels,
            summary=str(dict(data.get("annotations") or {}).get("summary", "")),
        )


@dataclass
class DemoState:
    """Everything the live view and the final summary need."""

    scenario: str
    description: str
    duration_s: float
    started: datetime
    incidents: Sequence[IncidentLabel] = ()
    calls_topic: str = "llm.calls"
    events_in: int = 0
    rejected: int = 0
    events_per_second: float = 0.0
    snapshot: LiveSnapshot | None = None
    detections: list[DetectionEvent] = field(default_factory=list)
    alerts: list[AlertEvent] = field(default_factory=list)
    alert_states: dict[str, AlertEvent] = field(default_factory=dict)
    worker_problem: str | None = None
    _samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=6))

    def observe_health(self, health: Mapping[str, Any], monotonic: float) -> None:
        events_in = dict(health.get("events_in") or {})
        self.events_in = int(events_in.get(self.calls_topic, 0))
        self.rejected = sum(int(v) for v in dict(health.get("rejected") or {}).values())
        self._samples.append((monotonic, self.events_in))
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        self.events_per_second = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
        self.worker_problem = None

    def observe_live(self, payload: Any) -> None:
        self.snapshot = LiveSnapshot.from_json(payload)

    def observe_detection(self, data: Mapping[str, Any]) -> None:
        self.detections.append(DetectionEvent.from_json(data))

    def observe_alert(self, data: Mapping[str, Any]) -> None:
        event = AlertEvent.from_json(data)
        self.alerts.append(event)
        self.alert_states[event.fingerprint] = event

    def elapsed_s(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(UTC)) - self.started).total_seconds()

    def phase(self, now: datetime | None = None) -> str:
        moment = now or datetime.now(UTC)
        for incident in self.incidents:
            if incident.start <= moment < incident.end:
                return (
                    f"INCIDENT {incident.incident_id}: {incident.type} on {_dims(incident.target)}"
                )
        if any(moment >= incident.end for incident in self.incidents):
            return "recovery"
        return "normal traffic"

    def incident_of(self, labels: Mapping[str, str], at: datetime) -> IncidentLabel | None:
        """The incident this key's event at ``at`` is about, if any."""
        for incident in self.incidents:
            if incident.start <= at <= incident.end + GRACE and matches_incident(labels, incident):
                return incident
        return None

    def firing(self) -> list[AlertEvent]:
        return [a for a in self.alert_states.values() if a.state in ("pending", "firing")]

    def status_line(self, now: datetime | None = None) -> str:
        """One line for a console that cannot redraw in place."""
        now = now or datetime.now(UTC)
        firing = ", ".join(sorted({a.rule for a in self.firing()})) or "none"
        return (
            f"{self.elapsed_s(now):5.0f}s {self.phase(now)}: {self.events_per_second:.0f} "
            f"events/s, {self.events_in:,} calls in, {len(self.detections)} detections, "
            f"alerts pending/firing: {firing}"
        )

    def event_line(self, detection: bool) -> str:
        """The newest detection or alert transition, as one line."""
        if detection:
            d = self.detections[-1]
            return (
                f"{self.elapsed_s(d.at):5.0f}s detection {d.signal}/{d.detector} on "
                f"{_dims(d.dimensions)}: {_fmt(d.before, '{:.4g}')} -> {_fmt(d.after, '{:.4g}')}"
            )
        a = self.alerts[-1]
        return f"{self.elapsed_s(a.at):5.0f}s alert {a.rule} {a.state}: {a.summary}"

    # -- drawing ------------------------------------------------------------------------------

    def render(self, now: datetime | None = None) -> RenderableType:
        now = now or datetime.now(UTC)
        head = Text.assemble(
            ("llmpulse demo ", "bold"),
            (f"{self.scenario} ", "cyan"),
            f"{min(self.elapsed_s(now), self.duration_s):5.0f}/{self.duration_s:.0f} s  ",
            (self.phase(now), "bold red" if "INCIDENT" in self.phase(now) else "green"),
            f"\n{self.events_per_second:7.1f} events/s   {self.events_in:,} calls in   "
            f"{self.rejected:,} rejected",
        )
        if self.worker_problem:
            head.append(f"\nworker: {self.worker_problem}", style="yellow")
        return Group(
            head, self._models_table(), self._detections_table(now), self._alerts_table(now)
        )

    def _models_table(self) -> Table:
        table = Table(title="per model, current window", title_justify="left", expand=False)
        for name in ("provider", "model", "req/s", "p95 ms", "error %", "cost $/min"):
            table.add_column(name, justify="left" if name in ("provider", "model") else "right")
        rows = self.snapshot.rows(MODEL_KEY_SET) if self.snapshot else []
        for row in sorted(rows, key=lambda r: tuple(r.dimensions.values())):
            v = row.values
            per_s = v.get("requests_per_second")
            requests, cost = v.get("requests"), v.get("cost_usd_sum")
            per_min = (
                cost / requests * per_s * 60 if cost is not None and requests and per_s else None
            )
            table.add_row(
                row.dimensions.get("provider", ""),
                row.dimensions.get("model", ""),
                _fmt(per_s, "{:.1f}"),
                _fmt(v.get("latency_p95_ms"), "{:,.0f}"),
                _fmt(_percent(v.get("error_rate")), "{:.1f}"),
                _fmt(per_min, "{:.3f}"),
            )
        return table

    def _detections_table(self, now: datetime) -> Table:
        table = Table(
            title=f"detections ({len(self.detections)})", title_justify="left", expand=False
        )
        for name in ("ago", "key", "signal", "detector", "before -> after"):
            table.add_column(name)
        for d in self.detections[-RECENT:][::-1]:
            table.add_row(
                _ago(d.at, now),
                _key(d.dimensions),
                d.signal,
                d.detector,
                f"{_fmt(d.before, '{:.4g}')} -> {_fmt(d.after, '{:.4g}')}",
            )
        return table

    def _alerts_table(self, now: datetime) -> Table:
        table = Table(title=f"alerts ({len(self.alerts)} transitions)", title_justify="left")
        for name in ("ago", "state", "alert", "key", "summary"):
            table.add_column(name)
        styles = {"pending": "yellow", "firing": "bold red", "resolved": "green"}
        for a in self.alerts[-RECENT:][::-1]:
            labels = {k: v for k, v in a.labels.items() if k not in NOT_KEY_LABELS}
            table.add_row(
                _ago(a.at, now),
                Text(a.state, style=styles.get(a.state, "")),
                a.rule,
                _key(labels),
                a.summary[:70],
            )
        return table

    # -- the end -----------------------------------------------------------------------------

    def summary(self, stored_calls: int | None) -> RenderableType:
        """Events processed, detections and alerts, with delays from their incident's start."""
        lines = Text()
        lines.append(f"{self.events_in:,} calls consumed", style="bold")
        if stored_calls is not None:
            lines.append(f", {stored_calls:,} stored in ClickHouse")
        lines.append(f", {self.rejected:,} rejected\n")
        table = Table(title="incidents: first detection and alert", title_justify="left")
        for name in ("incident", "target", "first detection", "first firing alert", "resolved"):
            table.add_column(name)
        for incident in self.incidents:
            table.add_row(
                f"{incident.incident_id} ({incident.type})",
                _dims(incident.target),
                self._first_detection(incident),
                self._first_alert(incident, "firing"),
                self._first_alert(incident, "resolved"),
            )
        outside = [d for d in self.detections if self.incident_of(d.dimensions, d.at) is None]
        lines.append(
            f"{len(self.detections)} detections, {len(outside)} outside any incident; "
            f"{sum(a.state == 'firing' for a in self.alerts)} alerts fired, "
            f"{sum(a.state == 'resolved' for a in self.alerts)} resolved\n"
        )
        return Panel(Group(lines, table), title="summary", expand=False)

    def _first_detection(self, incident: IncidentLabel) -> str:
        hits = [d for d in self.detections if self.incident_of(d.dimensions, d.at) is incident]
        if not hits:
            return "none"
        first = min(hits, key=lambda d: d.at)
        delay = (first.at - incident.start).total_seconds()
        return f"+{delay:.1f} s {first.signal}/{first.detector} ({len(hits)} in all)"

    def _first_alert(self, incident: IncidentLabel, state: str) -> str:
        hits = [
            a
            for a in self.alerts
            if a.state == state and self.incident_of(a.labels, a.at) is incident
        ]
        if not hits:
            return "none"
        first = min(hits, key=lambda a: a.at)
        return f"+{(first.at - incident.start).total_seconds():.1f} s {first.rule}"


def _dims(dimensions: Mapping[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in dimensions.items())


def _percent(rate: float | None) -> float | None:
    return None if rate is None else 100 * rate


def _key(dimensions: Mapping[str, str]) -> str:
    """A key's values, e.g. ``support-bot/production/openai/gpt-4o-mini``."""
    return "/".join(dimensions.values())


def _ago(at: datetime, now: datetime) -> str:
    return f"{max((now - at).total_seconds(), 0):.0f}s"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
