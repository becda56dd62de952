"""``llmpulse eval --worker``: the same scenarios through the real worker, scored the same way.

For each scenario: generate the stream once in-process (the offline detectors and the static
baseline see it, and it gives the scorer its `StreamRecord`); start a worker of our own on
fresh topics (`worker_process`); publish the same stream, with the same seed and start, to
its calls topic; wait until it has read every call and published every detection; read
``llm.detections`` back and place each record in the stream (`worker_alarms`). The worker's
alarms, the offline detectors' and the baseline's are scored by the same
`evaluate.score_scenario`, and the suite by `runner.build_report`.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from streams.config import Settings
from streams.simulation.baseline import StaticThresholds
from streams.simulation.evaluate import ScenarioScore, ScoringRules, score_scenario
from streams.simulation.labels import IncidentLabel
from streams.simulation.offline import run_scenario
from streams.simulation.producer import publish_scenario
from streams.simulation.report import to_json
from streams.simulation.runner import EvalReport, build_report, offline_methods
from streams.simulation.scenario import Scenario
from streams.simulation.scenario_file import to_plain
from streams.simulation.worker_alarms import Agreement, alarms_from_detections, compare_alarms
from streams.simulation.worker_process import (
    EvalWorker,
    delete_topics,
    eval_settings,
    read_detections,
)

__all__ = [
    "FEEDBACK_MARGIN_S",
    "RUN_COLUMNS",
    "WORKER_METHOD",
    "WorkerEval",
    "WorkerRun",
    "evaluate_suite_worker",
    "run_cells",
    "runs_markdown",
    "worker_start",
]

WORKER_METHOD = "llmpulse-worker"
FEEDBACK_MARGIN_S = 900.0
"""How far before now a stream ends: feedback comes after its call, up to minutes later,
and the worker rejects events more than ``LLMPULSE_MAX_FUTURE_MINUTES`` (5) ahead."""

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class WorkerRun:
    """How one scenario went through the worker."""

    scenario: str
    run_id: str
    calls: int
    feedback: int
    calls_counted: int
    rejected: dict[str, int]
    detections: int
    scored: int
    other_key_sets: dict[str, int]
    unplaced: int
    agreement: Agreement
    publish_s: float
    process_s: float
    us_per_call: float | None


@dataclass(frozen=True, slots=True)
class WorkerEval:
    """The report (worker, offline detectors and baseline side by side) and the runs."""

    report: EvalReport
    runs: tuple[WorkerRun, ...]

    def to_json(self) -> dict[str, Any]:
        return {**to_json(self.report), "mode": "worker", "worker_runs": to_plain(self.runs)}


def worker_start(scenario: Scenario, now: datetime | None = None) -> datetime:
    """A start that puts the whole stream, and its feedback, in the past (whole seconds)."""
    now = now or datetime.now(UTC)
    start = now - timedelta(seconds=scenario.duration_s + FEEDBACK_MARGIN_S)
    return start.replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class _Delivery:
    run_id: str
    calls: int
    feedback: int
    health: dict[str, Any]
    records: list[Any]
    publish_s: float
    process_s: float


def _every_100k(name: str, say: Progress) -> Callable[[int], None]:
    def tell(sent: int) -> None:
        if sent % 100_000 == 0:
            say(f"  {name}: {sent:,} calls sent")

    return tell


def _through_worker(
    scenario: Scenario,
    settings: Settings,
    start: datetime,
    workdir: Path,
    keep_topics: bool,
    say: Progress,
) -> _Delivery:
    suffix = uuid.uuid4().hex[:8]
    # Events are up to duration + margin old when validated: keep them all acceptable.
    age_days = math.ceil((scenario.duration_s + FEEDBACK_MARGIN_S) / 86400) + 1
    run = eval_settings(
        settings,
        suffix,
        workdir / suffix / "data",
        max_past_days=max(settings.max_past_days, age_days),
    )
    worker = EvalWorker(run, workdir / suffix / "worker.log")
    say(f"  {scenario.name}: starting a worker on topics *.eval-{suffix}")
    try:
        worker.start()
        began = time.monotonic()
        sent = asyncio.run(
            publish_scenario(
                scenario,
                run,
                start=start,
                realtime=False,
                run_id=f"eval-{suffix}",
                progress=_every_100k(scenario.name, say),
            )
        )
        say(f"  {scenario.name}: {sent.calls:,} calls sent in {sent.seconds:.0f} s")
        health = worker.wait_processed(
            sent.calls,
            progress=lambda n, total: say(f"  {scenario.name}: worker read {n:,}/{total:,}"),
        )
        processed = time.monotonic() - began
        records = read_detections(run, int(health["detections"]["published"]))
    finally:
        worker.stop()
        if not keep_topics:
            try:
                delete_topics(run)
            except Exception as exc:  # leftover topics are untidy, not wrong
                say(f"  {scenario.name}: could not delete the run's topics: {exc}")
    return _Delivery(
        f"eval-{suffix}", sent.calls, sent.feedback, health, records, sent.seconds, processed
    )


def _one(
    scenario: Scenario,
    settings: Settings,
    rules: ScoringRules,
    thresholds: StaticThresholds,
    workdir: Path,
    keep_topics: bool,
    say: Progress,
) -> tuple[list[ScenarioScore], list[IncidentLabel], WorkerRun]:
    start = worker_start(scenario)
    methods = offline_methods(None, thresholds, rules.settle_s)
    stream, offline = run_scenario(scenario, methods, start)
    say(f"  {scenario.name}: {stream.n_events:,} events scored offline")
    got = _through_worker(scenario, settings, start, workdir, keep_topics, say)
    if got.calls != stream.n_events:  # the same scenario and start make the same stream
        raise RuntimeError(f"published {got.calls} calls but generated {stream.n_events}")
    alarms, placement = alarms_from_detections(got.records, stream, got.run_id)
    scores = [score_scenario(stream, alarms, WORKER_METHOD, rules)]
    scores += [score_scenario(stream, offline[m.name], m.name, rules) for m in methods]
    detections = got.health.get("detections", {})
    run = WorkerRun(
        scenario=scenario.name,
        run_id=got.run_id,
        calls=got.calls,
        feedback=got.feedback,
        calls_counted=int(detections.get("calls_counted", 0)),
        rejected=dict(got.health.get("rejected", {})),
        detections=placement.records,
        scored=placement.scored,
        other_key_sets=dict(placement.other_key_sets),
        unplaced=placement.unplaced,
        agreement=compare_alarms(alarms, offline[methods[0].name]),
        publish_s=round(got.publish_s, 1),
        process_s=round(got.process_s, 1),
        us_per_call=detections.get("us_per_call"),
    )
    if run.calls_counted != run.calls or run.rejected:
        say(
            f"  [yellow]warning:[/yellow] {scenario.name}: the detectors counted "
            f"{run.calls_counted:,} of {run.calls:,} calls; rejected: {run.rejected}"
        )
    return scores, stream.labels, run


def evaluate_suite_worker(
    scenarios: Sequence[Scenario],
    settings: Settings,
    *,
    rules: ScoringRules | None = None,
    thresholds: StaticThresholds | None = None,
    workdir: Path | None = None,
    keep_topics: bool = False,
    progress: Progress | None = None,
) -> WorkerEval:
    """Run each scenario through a worker of its own, one after the other; score everything.

    Worker data and logs go to ``workdir`` (kept), or to a temporary directory removed at the
    end. The run's topics are deleted unless ``keep_topics``.
    """
    rules = rules or ScoringRules()
    thresholds = thresholds or StaticThresholds()
    say = progress or (lambda _: None)
    started = time.perf_counter()
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="llmpulse-eval-")) if workdir is None else workdir
    results: list[tuple[list[ScenarioScore], list[IncidentLabel]]] = []
    runs: list[WorkerRun] = []
    try:
        for scenario in scenarios:
            scores, labels, run = _one(
                scenario, settings, rules, thresholds, root, keep_topics, say
            )
            results.append((scores, labels))
            runs.append(run)
            say(f"  {scenario.name} done")
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    report = build_report(scenarios, results, time.perf_counter() - started)
    return WorkerEval(report, tuple(runs))


RUN_COLUMNS = (
    "scenario", "calls", "counted", "detections", "scored", "same as offline",
    "worker only", "offline only", "publish s", "process s",
)  # fmt: skip


def _signals(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def run_cells(run: WorkerRun) -> list[str]:
    """One row of the runs table, in `RUN_COLUMNS` order."""
    agreement = run.agreement
    worker_only = f"{agreement.worker_only:,}"
    if agreement.worker_only_signals:
        worker_only += f" ({_signals(agreement.worker_only_signals)})"
    offline_only = f"{agreement.offline_only:,}"
    if agreement.offline_only_signals:
        offline_only += f" ({_signals(agreement.offline_only_signals)})"
    return [
        run.scenario,
        f"{run.calls:,}",
        f"{run.calls_counted:,}",
        f"{run.detections:,}",
        f"{run.scored:,}",
        f"{agreement.both:,}",
        worker_only,
        offline_only,
        f"{run.publish_s:.0f}",
        f"{run.process_s:.0f}",
    ]


def runs_markdown(runs: Sequence[WorkerRun]) -> str:
    """The runs as a Markdown table, with what the columns mean."""
    lines = [
        "| " + " | ".join(RUN_COLUMNS) + " |",
        "|---|" + "---:|" * (len(RUN_COLUMNS) - 1),
        *("| " + " | ".join(run_cells(run)) + " |" for run in runs),
        "",
        "Each scenario ran through its own `llmpulse worker` (detectors as in a default worker, "
        "metrics and alerts off) on fresh topics. *counted*: calls the detectors took; "
        "*detections*: records on `llm.detections`, *scored* those on the evaluated key sets "
        "(the worker's provider x model key set is not scored, as offline); *same as offline*: "
        "detections equal to an offline one (key, signal, detector, event); *publish s*: "
        "time to publish the calls; *process s*: from the start of publishing until the worker "
        "had read every call and published every detection. `static` is the baseline computed "
        "offline on the same stream: it models other tools, not our worker.",
    ]
    return "\n".join(lines) + "\n"
