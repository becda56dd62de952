"""The alert engine: turns metric windows, detections and clock ticks into alert transitions.

Timers (``for``, ``keep_firing_for``, ``absent_for``, ``no_data_after``) run on the injected
clock, as Prometheus runs them on evaluation time; window times are only carried along.
"""

from __future__ import annotations

import fnmatch
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from alerting.inputs import Detection, MetricWindow
from alerting.instances import AlertInstance
from alerting.matchers import Matcher, matches_all, parse_matchers
from alerting.rules import AlertRule
from alerting.rules_file import RulesFile
from alerting.state import AlertState, AlertTransition, DetectionInfo, fingerprint
from alerting.templates import render

Clock = Callable[[], datetime]
STATE_VERSION = 1
RESOLVED_RETENTION = timedelta(minutes=15)
IDLE_EVICTION = timedelta(hours=6)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CompiledRule:
    rule: AlertRule
    rule_id: str
    interval: timedelta
    matchers: tuple[Matcher, ...]

    @classmethod
    def build(cls, group: str, interval: timedelta, rule: AlertRule) -> CompiledRule:
        texts = rule.detection.matchers if rule.detection else rule.matchers
        return cls(rule, f"{group}/{rule.alert}", interval, parse_matchers(texts))

    def triggered(self, value: float) -> bool:
        return _COMPARE[self.rule.op or ">"](value, self.rule.threshold or 0.0)

    def recovered(self, value: float) -> bool:
        rule = self.rule
        if rule.recovery_threshold is None:
            return not self.triggered(value)
        if rule.op in (">", ">="):
            return value <= rule.recovery_threshold
        return value >= rule.recovery_threshold


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


class AlertEngine:
    """Evaluates every rule of a rules file; each public call returns the transitions it caused."""

    def __init__(self, rules: RulesFile, clock: Clock = utc_now) -> None:
        self._clock = clock
        self._rules = {
            compiled.rule_id: compiled
            for group in rules.groups
            for compiled in (CompiledRule.build(group.name, group.interval, r) for r in group.rules)
        }
        self._instances: dict[str, dict[str, AlertInstance]] = {rid: {} for rid in self._rules}
        self._last_timed_eval: dict[str, datetime] = {}
        # Instances a timer may move between a rule's timed evaluations (pending, or firing
        # with the condition gone): ticks in between look at these only, not every key.
        self._hot: dict[str, set[str]] = {rid: set() for rid in self._rules}

    @property
    def tick_interval(self) -> timedelta:
        """The shortest group interval; calling :meth:`tick` more often is fine."""
        return min((rule.interval for rule in self._rules.values()), default=timedelta(minutes=1))

    def instances(self) -> list[AlertInstance]:
        return [inst for group in self._instances.values() for inst in group.values()]

    def observe_metrics(
        self, record: MetricWindow, now: datetime | None = None
    ) -> list[AlertTransition]:
        now = now or self._clock()
        out: list[AlertTransition] = []
        dims = set(record.dimensions)
        for compiled in self._rules.values():
            rule = compiled.rule
            if rule.kind == "detection" or dims != set(rule.by or ()):
                continue
            if not matches_all(compiled.matchers, record.dimensions):
                continue
            inst = self._instance(compiled, dict(record.dimensions), record.key_set)
            inst.last_seen = now
            if rule.kind == "absence":
                inst.no_data = False
                self._step(compiled, inst, False, now, out)
                continue
            value = (
                record.requests
                if rule.metric == "requests"
                else record.metrics.get(rule.metric or "")
            )
            usable = value is not None and not math.isnan(value)
            inst.history.append(float(value) if usable and value is not None else None)
            if not usable or record.requests < rule.min_requests:
                continue
            assert value is not None
            inst.value, inst.last_decided, inst.no_data = float(value), now, False
            active = inst.state in (AlertState.PENDING, AlertState.FIRING)
            condition = not compiled.recovered(value) if active else compiled.triggered(value)
            self._step(compiled, inst, condition, now, out)
        return out

    def observe_detection(
        self, detection: Detection, now: datetime | None = None
    ) -> list[AlertTransition]:
        now = now or self._clock()
        out: list[AlertTransition] = []
        for compiled in self._rules.values():
            condition = compiled.rule.detection
            if condition is None or not fnmatch.fnmatchcase(detection.signal, condition.signal):
                continue
            if condition.detector is not None and condition.detector != detection.detector:
                continue
            if not matches_all(compiled.matchers, detection.dimensions):
                continue
            labels = {
                **detection.dimensions,
                "signal": detection.signal,
                "detector": detection.detector,
            }
            inst = self._instance(compiled, labels, None)
            inst.last_seen = inst.last_decided = now
            inst.value = detection.after_level
            inst.history.append(detection.after_level)
            inst.detection = DetectionInfo(
                detection.signal, detection.detector, detection.score, detection.before_mean,
                detection.before_quantile, detection.after_level, detection.event_time,
            )  # fmt: skip
            # A detection is a point event: it starts the keep_firing_for countdown at once.
            was_firing = inst.state == AlertState.FIRING
            self._step(compiled, inst, True, now, out)
            inst.condition_false_since = now
            if was_firing:
                out.append(
                    self._transition(compiled, inst, AlertState.FIRING, now, "detection repeated")
                )
        return out

    def tick(self, now: datetime | None = None) -> list[AlertTransition]:
        """Advance timers: pending → firing, keep_firing_for expiry, absence and no-data."""
        now = now or self._clock()
        out: list[AlertTransition] = []
        for rule_id, compiled in self._rules.items():
            last = self._last_timed_eval.get(rule_id)
            timed = last is None or now - last >= compiled.interval
            instances = self._instances[rule_id]
            hot = self._hot[rule_id]
            if timed:
                self._last_timed_eval[rule_id] = now
                keys = list(instances)
            else:
                keys = list(hot)
            for key in keys:
                inst = instances.get(key)
                if inst is None:
                    hot.discard(key)
                    continue
                if timed:
                    self._check_data(compiled, inst, now, out)
                held = inst.no_data and compiled.rule.no_data == "keep"
                if inst.state == AlertState.PENDING and inst.condition and not held:
                    self._step(compiled, inst, True, now, out)
                elif inst.state == AlertState.FIRING and inst.condition_false_since is not None:
                    self._step(compiled, inst, False, now, out)
                if inst.state not in (AlertState.PENDING, AlertState.FIRING):
                    hot.discard(key)
                if timed and self._evictable(compiled, inst, now):
                    del instances[key]
                    hot.discard(key)
        return out

    def _check_data(
        self, compiled: CompiledRule, inst: AlertInstance, now: datetime, out: list[AlertTransition]
    ) -> None:
        rule = compiled.rule
        if rule.kind == "absence":
            assert rule.absent_for is not None and inst.last_seen is not None
            if now - inst.last_seen >= rule.absent_for:
                inst.no_data = True
                self._step(compiled, inst, True, now, out, reason="absent")
            return
        if rule.kind == "detection" or rule.no_data == "keep":
            inst.no_data = inst.no_data or self._stale(rule, inst, now)
            return
        if not self._stale(rule, inst, now):
            return
        inst.no_data = True
        if rule.no_data == "alerting":
            inst.value = None
            self._step(compiled, inst, True, now, out, reason="no_data")
        elif inst.state in (AlertState.PENDING, AlertState.FIRING):
            self._step(compiled, inst, False, now, out, reason="no_data")

    @staticmethod
    def _stale(rule: AlertRule, inst: AlertInstance, now: datetime) -> bool:
        last = inst.last_decided or inst.last_seen
        return last is not None and now - last >= rule.no_data_after

    @staticmethod
    def _evictable(compiled: CompiledRule, inst: AlertInstance, now: datetime) -> bool:
        if inst.state in (AlertState.PENDING, AlertState.FIRING) or compiled.rule.kind == "absence":
            return False
        if inst.state == AlertState.RESOLVED and compiled.rule.kind == "detection":
            return inst.resolved_at is not None and now - inst.resolved_at >= RESOLVED_RETENTION
        return inst.last_seen is None or now - inst.last_seen >= IDLE_EVICTION

    def _instance(
        self, compiled: CompiledRule, key_labels: dict[str, str], key_set: str | None
    ) -> AlertInstance:
        labels = {**key_labels, **compiled.rule.labels, "alertname": compiled.rule.alert}
        fp = fingerprint(compiled.rule_id, labels)
        inst = self._instances[compiled.rule_id].get(fp)
        if inst is None:
            inst = AlertInstance(compiled.rule_id, labels, fp, key_set=key_set)
            self._instances[compiled.rule_id][fp] = inst
        return inst

    def _step(
        self,
        compiled: CompiledRule,
        inst: AlertInstance,
        condition: bool,
        now: datetime,
        out: list[AlertTransition],
        reason: str = "condition",
    ) -> None:
        rule = compiled.rule
        inst.condition = condition
        self._hot[compiled.rule_id].add(inst.fingerprint)
        if condition:
            inst.condition_false_since = None
            previous = inst.state
            if inst.state in (AlertState.INACTIVE, AlertState.RESOLVED):
                inst.active_since, inst.fired_at, inst.resolved_at = now, None, None
                inst.state = previous = AlertState.PENDING
                if rule.for_:
                    out.append(self._transition(compiled, inst, AlertState.INACTIVE, now, reason))
                else:
                    previous = AlertState.INACTIVE
            elapsed = now - (inst.active_since or now)
            if inst.state == AlertState.PENDING and elapsed >= rule.for_:
                inst.state, inst.fired_at = AlertState.FIRING, now
                out.append(self._transition(compiled, inst, previous, now, reason))
            return
        if inst.state == AlertState.PENDING:
            inst.state, inst.active_since = AlertState.INACTIVE, None
            out.append(self._transition(compiled, inst, AlertState.PENDING, now, reason))
        elif inst.state == AlertState.FIRING:
            inst.condition_false_since = inst.condition_false_since or now
            if now - inst.condition_false_since >= rule.hold:
                inst.state, inst.resolved_at = AlertState.RESOLVED, now
                inst.condition_false_since = None
                out.append(self._transition(compiled, inst, AlertState.FIRING, now, reason))

    def _transition(
        self,
        compiled: CompiledRule,
        inst: AlertInstance,
        previous: AlertState,
        now: datetime,
        reason: str,
    ) -> AlertTransition:
        rule = compiled.rule
        inst.sequence += 1
        threshold = rule.threshold
        annotations = {
            key: render(text, inst.labels, inst.value, threshold)
            for key, text in rule.annotations.items()
        }
        return AlertTransition(
            rule_id=compiled.rule_id,
            rule=rule.alert,
            kind=rule.kind,
            fingerprint=inst.fingerprint,
            labels=dict(inst.labels),
            annotations=annotations,
            state=inst.state,
            previous_state=previous,
            at=now,
            sequence=inst.sequence,
            value=inst.value,
            threshold=threshold,
            recovery_threshold=rule.recovery_threshold,
            op=rule.op,
            metric=rule.metric,
            key_set=inst.key_set,
            reason=reason,
            active_since=inst.active_since,
            fired_at=inst.fired_at,
            resolved_at=inst.resolved_at,
            detection=inst.detection,
            history=tuple(inst.history),
        )

    def snapshot(self) -> dict[str, Any]:
        """A JSON-compatible dict of every instance; feed it to :meth:`restore` after a restart."""
        return {
            "version": STATE_VERSION,
            "saved_at": self._clock().isoformat(),
            "instances": [inst.to_dict() for inst in self.instances()],
        }

    def restore(
        self, data: Mapping[str, Any], now: datetime | None = None
    ) -> list[AlertTransition]:
        """Load a snapshot (validated; raises ``ValueError``) into an engine with no instances.

        Firing alerts of rules that no longer exist are returned as resolutions, so that their
        notification is not left open forever.
        """
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"alert state version {data.get('version')!r} is not {STATE_VERSION}")
        if any(self._instances.values()):
            raise RuntimeError("restore() must be called before the engine has seen any data")
        now = now or self._clock()
        out: list[AlertTransition] = []
        for item in _records(data.get("instances")):
            inst = AlertInstance.from_dict(item)
            compiled = self._rules.get(inst.rule_id)
            if compiled is not None:
                self._instances[inst.rule_id][inst.fingerprint] = inst
                self._hot[inst.rule_id].add(inst.fingerprint)
            elif inst.state == AlertState.FIRING:
                group = inst.rule_id.split("/", 1)[0]
                orphan = CompiledRule.build(group, timedelta(0), _orphan(inst))
                inst.state, inst.resolved_at = AlertState.RESOLVED, now
                out.append(self._transition(orphan, inst, AlertState.FIRING, now, "rule removed"))
        return out

    def resume(self, now: datetime | None = None) -> None:
        """Restart the data timers of restored instances: downtime is not missing data.

        Call it after :meth:`restore`. Otherwise a worker down longer than ``no_data_after``
        (or ``absent_for``) would resolve or fire every key on its first tick, before the
        windows of the downtime are replayed to it.
        """
        now = now or self._clock()
        for inst in self.instances():
            inst.last_seen = now if inst.last_seen is not None else None
            inst.last_decided = now if inst.last_decided is not None else None


def _records(value: Any) -> Iterable[Any]:
    if not isinstance(value, list):
        raise ValueError("alert state: 'instances' must be a list")
    return value


def _orphan(inst: AlertInstance) -> AlertRule:
    return AlertRule.model_validate(
        {
            "alert": inst.labels.get("alertname", inst.rule_id.split("/")[-1]),
            "absent_for": 1,
            "by": [],
            "labels": {"severity": inst.labels.get("severity", "info")},
        }
    )
