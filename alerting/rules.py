"""Alert rule and rule group models of the rules file (Prometheus-like semantics)."""

from __future__ import annotations

import re
from datetime import timedelta
from difflib import get_close_matches
from typing import Annotated, Any, Literal, NoReturn

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from alerting.durations import parse_duration
from alerting.matchers import parse_matcher
from alerting.templates import template_errors, template_labels

Op = Literal[">", ">=", "<", "<="]
NoDataMode = Literal["ok", "keep", "alerting"]
SEVERITIES = ("critical", "warning", "info")
DEFAULT_DETECTION_HOLD = timedelta(minutes=15)
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# The numeric fields of a closed metrics window (streams.metrics.MetricRecord), named as in
# the llm_metrics_1m table; score_means.<name> and feedback_means.<name> are open-ended.
# tests/unit/test_alert_inputs.py fails when a record gains a field this set lacks.
KNOWN_METRICS = frozenset(
    {
        "requests", "errors", "error_rate",
        "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
        "ttft_count", "ttft_p50_ms", "ttft_p95_ms",
        "output_tokens_per_second_count", "output_tokens_per_second_mean",
        "input_tokens_sum", "output_tokens_sum", "cached_input_tokens_sum",
        "cost_usd_sum", "cost_missing", "cost_per_1k_requests",
        "finish_length_rate", "finish_content_filter_rate", "late_events",
    }
)  # fmt: skip
OPEN_METRIC_PREFIXES = ("score_means.", "feedback_means.")


def fail(field: str, message: str) -> NoReturn:
    """Raise a model-level error that the rules checker reports under ``field``."""
    raise ValueError(f"@{field}: {message}")


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s or 5m")
    if isinstance(value, int | float):
        raise ValueError(f"bare number {value}: write a unit, like {value}s or {value}m")
    return value


def _minutes_or_duration(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return timedelta(minutes=value)
    return _duration(value)


Duration = Annotated[timedelta, BeforeValidator(_duration)]
AbsentFor = Annotated[timedelta, BeforeValidator(_minutes_or_duration)]


def check_metric_name(metric: str) -> None:
    if metric in KNOWN_METRICS:
        return
    if metric.startswith(OPEN_METRIC_PREFIXES) and metric.split(".", 1)[1]:
        return
    suffix = metric.split(".", 1)[1] if "." in metric else ""
    candidates = sorted(KNOWN_METRICS) + [p + suffix for p in OPEN_METRIC_PREFIXES if suffix]
    close = get_close_matches(metric, candidates, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    fail("metric", f"unknown metric {metric!r}{hint}")


def check_matchers(values: tuple[str, ...]) -> tuple[str, ...]:
    for text in values:
        parse_matcher(text)
    return values


class DetectionCondition(BaseModel):
    """Any detection of ``signal`` (a glob, e.g. ``score.*``) from ``detector``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signal: str = Field(min_length=1)
    detector: str | None = None
    matchers: tuple[str, ...] = ()

    _check_matchers = field_validator("matchers")(check_matchers)


class AlertRule(BaseModel):
    """One alerting rule: exactly one condition (threshold, detection or absence)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    alert: str
    metric: str | None = None
    by: tuple[str, ...] | None = None
    op: Op | None = None
    threshold: float | None = None
    recovery_threshold: float | None = None
    detection: DetectionCondition | None = None
    absent_for: AbsentFor | None = None
    matchers: tuple[str, ...] = ()
    min_requests: int = Field(default=0, ge=0)
    for_: Duration = Field(default=timedelta(0), alias="for")
    keep_firing_for: Duration | None = None
    no_data: NoDataMode = "ok"
    no_data_after: Duration = timedelta(minutes=5)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    _check_matchers = field_validator("matchers")(check_matchers)

    @field_validator("alert")
    @classmethod
    def _alert_name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"alert name {value!r} must match [A-Za-z_][A-Za-z0-9_]*")
        return value

    @field_validator("by")
    @classmethod
    def _by(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in value or ():
            if not NAME.match(name):
                raise ValueError(f"dimension {name!r} is not a valid name")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("dimensions are listed twice")
        return value

    @property
    def kind(self) -> Literal["threshold", "detection", "absence"]:
        if self.detection is not None:
            return "detection"
        if self.absent_for is not None:
            return "absence"
        return "threshold"

    @property
    def hold(self) -> timedelta:
        """How long the alert keeps firing once its condition stops."""
        if self.keep_firing_for is not None:
            return self.keep_firing_for
        return DEFAULT_DETECTION_HOLD if self.kind == "detection" else timedelta(0)

    @model_validator(mode="after")
    def _one_condition(self) -> AlertRule:
        threshold_fields = [
            name
            for name in ("metric", "op", "threshold", "recovery_threshold")
            if getattr(self, name) is not None
        ]
        kinds = [
            kind
            for kind, present in (
                ("threshold", bool(threshold_fields)),
                ("detection", self.detection is not None),
                ("absent_for", self.absent_for is not None),
            )
            if present
        ]
        if len(kinds) != 1:
            found = " and ".join(kinds) if kinds else "none"
            raise ValueError(
                "a rule needs exactly one condition: a threshold (metric, by, op, threshold), "
                f"a detection, or absent_for; found {found}"
            )
        if self.kind == "threshold":
            self._check_threshold()
        elif self.kind == "detection":
            self._check_detection()
        elif self.by is None:
            fail("by", "an absence condition needs the key set's dimensions in by")
        self._check_labels_and_annotations()
        return self

    def _check_threshold(self) -> None:
        for name in ("metric", "op", "threshold"):
            if getattr(self, name) is None:
                fail(name, "required for a threshold condition")
        if self.by is None:
            fail("by", "required for a threshold condition (the key set's dimensions)")
        assert self.metric is not None and self.threshold is not None
        check_metric_name(self.metric)
        recovery = self.recovery_threshold
        if recovery is None:
            return
        if self.op in (">", ">=") and recovery > self.threshold:
            fail(
                "recovery_threshold",
                f"{recovery:g} must be <= threshold {self.threshold:g}: an alert raised when "
                f"the value is {self.op} {self.threshold:g} recovers at or below the "
                "recovery threshold",
            )
        if self.op in ("<", "<=") and recovery < self.threshold:
            fail(
                "recovery_threshold",
                f"{recovery:g} must be >= threshold {self.threshold:g}: an alert raised when "
                f"the value is {self.op} {self.threshold:g} recovers at or above the "
                "recovery threshold",
            )

    def _check_detection(self) -> None:
        if self.by is not None:
            fail("by", "a detection carries its own dimensions; filter them with "
                 "detection.matchers")  # fmt: skip
        if self.matchers:
            fail("matchers", "use detection.matchers for a detection condition")
        if self.for_:
            fail("for", "a detection is a point event; use keep_firing_for instead")
        for name in ("min_requests", "no_data", "no_data_after"):
            if name in self.model_fields_set:
                fail(name, "does not apply to a detection condition")

    def _check_labels_and_annotations(self) -> None:
        for name in self.labels:
            if not NAME.match(name):
                fail(f"labels.{name}", "label names must match [A-Za-z_][A-Za-z0-9_]*")
        severity = self.labels.get("severity")
        if severity not in SEVERITIES:
            got = "missing" if severity is None else f"{severity!r} is not allowed"
            fail("labels.severity", f"{got}; use one of {', '.join(SEVERITIES)}")
        known = {"alertname", *self.labels, *(self.by or ())}
        for key, text in self.annotations.items():
            for error in template_errors(text):
                fail(f"annotations.{key}", error)
            if self.kind == "detection":
                continue
            for name in sorted(template_labels(text) - known):
                fail(
                    f"annotations.{key}",
                    f"refers to label {name!r}, which this rule's alerts never carry "
                    f"(they carry {', '.join(sorted(known))})",
                )


class RuleGroup(BaseModel):
    """A named group of rules evaluated at ``interval``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    interval: Duration = timedelta(minutes=1)
    rules: list[AlertRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_alerts(self) -> RuleGroup:
        seen: set[str] = set()
        for index, rule in enumerate(self.rules):
            if rule.alert in seen:
                fail(f"rules[{index}].alert", f"{rule.alert!r} is defined twice in this group")
            seen.add(rule.alert)
        return self
