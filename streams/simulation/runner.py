"""Evaluate a suite of scenarios offline: our detectors and the static baseline, side by side.

Scenarios are independent, so they run in parallel processes (``jobs``); each generates its
stream once and feeds both methods.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from detectors import DetectorConfig
from streams.simulation.baseline import StaticThresholdMethod, StaticThresholds
from streams.simulation.evaluate import (
    ScenarioScore,
    ScoringRules,
    TypeRow,
    score_scenario,
    summarise,
)
from streams.simulation.labels import IncidentLabel
from streams.simulation.offline import DetectorMethod, Method, evaluation_configs, run_scenario
from streams.simulation.scenario import Scenario

__all__ = [
    "DEFAULT_START",
    "EvalReport",
    "MethodReport",
    "TargetCheck",
    "build_report",
    "evaluate_suite",
    "offline_methods",
]

DEFAULT_START = datetime(2025, 1, 6, tzinfo=UTC)
"""Simulated clock start of offline runs (a Monday, 00:00 UTC): results do not depend on now."""

LATENCY_TARGET_FACTOR = 1.3
LATENCY_TARGET_S = 60.0
FALSE_ALARM_TARGET = 1.0
NAB_TARGET = 80.0


@dataclass(frozen=True, slots=True)
class TargetCheck:
    """One of the issue's targets, and whether a method meets it on this suite."""

    name: str
    met: bool
    detail: str


@dataclass(frozen=True, slots=True)
class MethodReport:
    method: str
    rows: tuple[TypeRow, ...]
    scenarios: tuple[ScenarioScore, ...]
    targets: tuple[TargetCheck, ...]


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Everything ``llmpulse eval`` prints and writes."""

    suite: tuple[str, ...]
    events: int
    seconds: float
    methods: tuple[MethodReport, ...]
    labels: tuple[IncidentLabel, ...]


def offline_methods(
    configs: dict[str, DetectorConfig] | None, thresholds: StaticThresholds, settle_s: float
) -> list[Method]:
    """Our detectors (`evaluation_configs` unless ``configs``) and the static baseline."""
    return [
        DetectorMethod(configs or evaluation_configs()),
        StaticThresholdMethod(thresholds, settle_s=settle_s),
    ]


def _run_one(
    scenario: Scenario,
    configs: dict[str, DetectorConfig] | None,
    thresholds: StaticThresholds,
    rules: ScoringRules,
    start: datetime,
) -> tuple[list[ScenarioScore], list[IncidentLabel]]:
    methods = offline_methods(configs, thresholds, rules.settle_s)
    stream, alarms = run_scenario(scenario, methods, start)
    scores = [score_scenario(stream, alarms[m.name], m.name, rules) for m in methods]
    return scores, stream.labels


def _targets(
    rows: Sequence[TypeRow], scores: Sequence[ScenarioScore], big: set[str]
) -> list[TargetCheck]:
    """``big``: ids of latency incidents of x1.3 or more."""
    total = rows[-1]
    outcomes = [o for s in scores for o in s.outcomes if o.incident_id in big]
    slow = [o for o in outcomes if not o.detected or (o.delay_s or 0.0) > LATENCY_TARGET_S]
    worst = max((o.delay_s or math.inf for o in outcomes), default=math.nan)
    return [
        TargetCheck(
            f"every latency regression >= x{LATENCY_TARGET_FACTOR} "
            f"found within {LATENCY_TARGET_S:g} s",
            bool(outcomes) and not slow,
            f"{len(outcomes) - len(slow)}/{len(outcomes)}; slowest {worst:.1f} s",
        ),
        TargetCheck(
            f"<= {FALSE_ALARM_TARGET:g} false alarm per 100k normal events per key",
            total.false_per_100k <= FALSE_ALARM_TARGET,
            f"{total.false_alarms} in {total.normal_key_events:,} key-events "
            f"= {total.false_per_100k:.3f} per 100k",
        ),
        TargetCheck(
            f"NAB score >= {NAB_TARGET:g} on the suite",
            total.nab >= NAB_TARGET,
            f"{total.nab:.1f}",
        ),
    ]


def evaluate_suite(
    scenarios: Sequence[Scenario],
    *,
    jobs: int | None = None,
    configs: dict[str, DetectorConfig] | None = None,
    thresholds: StaticThresholds | None = None,
    rules: ScoringRules | None = None,
    start: datetime = DEFAULT_START,
    progress: Callable[[str], None] | None = None,
) -> EvalReport:
    """Run every scenario through our detectors and the static baseline; score both."""
    rules = rules or ScoringRules()
    thresholds = thresholds or StaticThresholds()
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(scenarios)))
    started = time.perf_counter()
    results: list[tuple[list[ScenarioScore], list[IncidentLabel]]] = []
    args = (configs, thresholds, rules, start)
    if jobs == 1:
        for scenario in scenarios:
            results.append(_run_one(scenario, *args))
            if progress:
                progress(scenario.name)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_run_one, scenario, *args) for scenario in scenarios]
            for scenario, future in zip(scenarios, futures, strict=True):
                results.append(future.result())
                if progress:
                    progress(scenario.name)
    return build_report(scenarios, results, time.perf_counter() - started)


def build_report(
    scenarios: Sequence[Scenario],
    results: Sequence[tuple[Sequence[ScenarioScore], Sequence[IncidentLabel]]],
    seconds: float,
) -> EvalReport:
    """Summarise per-scenario scores (the same methods, in the same order, for every scenario)."""
    big = {
        i.id
        for s in scenarios
        for i in s.incidents
        if i.effects.latency_factor >= LATENCY_TARGET_FACTOR
    }
    method_names = [score.method for score in results[0][0]] if results else []
    reports = []
    for position, name in enumerate(method_names):
        scores = [scores[position] for scores, _ in results]
        rows = summarise(scores)
        reports.append(
            MethodReport(name, tuple(rows), tuple(scores), tuple(_targets(rows, scores, big)))
        )
    return EvalReport(
        suite=tuple(s.name for s in scenarios),
        events=sum(scores[0].n_events for scores, _ in results),
        seconds=seconds,
        methods=tuple(reports),
        labels=tuple(label for _, labels in results for label in labels),
    )
