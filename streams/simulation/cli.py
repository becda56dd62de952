"""``llmpulse simulate`` and ``llmpulse eval``; `register` adds them to the main CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import shlex
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console

from streams.simulation.scenario import Scenario

if TYPE_CHECKING:
    from streams.simulation.evaluate import ScoringRules
    from streams.simulation.worker_mode import WorkerEval

__all__ = ["register", "with_duration", "with_total_rate"]

console = Console(stderr=True)


def with_duration(scenario: Scenario, duration_s: float) -> Scenario:
    """The scenario cut (or extended) to ``duration_s``; incidents starting later are dropped."""
    incidents = tuple(i for i in scenario.incidents if i.start_s < duration_s)
    return dataclasses.replace(scenario, duration_s=duration_s, incidents=incidents)


def with_total_rate(scenario: Scenario, rate: float) -> Scenario:
    """The scenario with every rate scaled so that all keys together make ``rate`` events/s."""
    from streams.simulation.traffic import scale_rates

    factor = rate / scenario.traffic.total_rate
    return dataclasses.replace(scenario, traffic=scale_rates(scenario.traffic, factor))


def _load(name: str) -> Scenario:
    from streams.simulation.scenario_file import ScenarioError
    from streams.simulation.suite import get_scenario

    try:
        return get_scenario(name)
    except (ScenarioError, ValueError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def simulate(
    scenario: Annotated[
        str, typer.Option(help="A built-in scenario (see `eval --help`) or a YAML file.")
    ] = "demo",
    rate: Annotated[
        float | None, typer.Option(help="Total events/s over all keys; default the scenario's.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Seconds of simulated traffic; default the scenario's.")
    ] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers.")] = None,
    topic: Annotated[str | None, typer.Option(help="Calls topic (LLMPULSE_TOPIC_CALLS).")] = None,
    feedback_topic: Annotated[
        str | None, typer.Option(help="Feedback topic (LLMPULSE_TOPIC_FEEDBACK).")
    ] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Write the ground-truth labels here (JSON Lines).")
    ] = None,
    realtime: Annotated[
        bool, typer.Option("--realtime/--fast", help="Pace events by event time, or flood.")
    ] = True,
    start: Annotated[
        datetime | None,
        typer.Option(help="Event time of the first call; default now (--fast: now - duration)."),
    ] = None,
    run_id: Annotated[str | None, typer.Option(help="Event id prefix; default random.")] = None,
) -> None:
    """Produce realistic LLM traffic with injected incidents to Kafka."""
    import uuid

    from streams.config import Settings
    from streams.simulation.labels import write_labels
    from streams.simulation.producer import publish_scenario
    from streams.topics import ensure_topics

    chosen = _load(scenario)
    if duration is not None:
        chosen = with_duration(chosen, duration)
    if rate is not None:
        chosen = with_total_rate(chosen, rate)
    settings = Settings()
    updates = {"kafka_bootstrap": bootstrap, "topic_calls": topic, "topic_feedback": feedback_topic}
    settings = settings.model_copy(update={k: v for k, v in updates.items() if v is not None})
    if start is None:
        start = datetime.now(UTC)
        if not realtime:  # events would lie in the future, which the worker rejects
            start -= timedelta(seconds=chosen.duration_s)
    elif start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    ensure_topics(settings, (settings.topic_calls, settings.topic_feedback))
    console.print(
        f"simulating {chosen.name!r}: {chosen.duration_s:g} s at {chosen.traffic.total_rate:g} "
        f"events/s, {len(chosen.incidents)} incident(s), to {settings.kafka_bootstrap}"
    )
    try:
        result = asyncio.run(
            publish_scenario(
                chosen,
                settings,
                start=start,
                realtime=realtime,
                run_id=run_id or f"sim-{uuid.uuid4().hex[:8]}",
                progress=lambda n: console.print(f"  {n:,} calls sent"),
            )
        )
    except KeyboardInterrupt:
        console.print("interrupted")
        raise typer.Exit(130) from None
    if labels is not None:
        write_labels(labels, result.labels)
    console.print(
        f"sent {result.calls:,} calls and {result.feedback:,} feedback in {result.seconds:.1f} s"
        + (f"; labels in {labels}" if labels else "")
    )


def evaluate(
    suite: Annotated[str, typer.Option(help="A built-in suite or a YAML suite file.")] = "default",
    scenario: Annotated[
        list[str] | None,
        typer.Option(help="Evaluate these scenarios (names or files) instead of the suite."),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline/--worker",
            help="Run the detectors in-process, or through a real worker started per scenario "
            "(needs a broker: LLMPULSE_KAFKA_BOOTSTRAP or --bootstrap).",
        ),
    ] = True,
    seeds: Annotated[
        int, typer.Option(help="Run each scenario with this many seeds (more trials per type).")
    ] = 1,
    jobs: Annotated[int, typer.Option(help="Scenarios evaluated in parallel.")] = 2,
    output: Annotated[Path | None, typer.Option(help="Write the full report as JSON.")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write the tables as Markdown.")] = None,
    labels: Annotated[Path | None, typer.Option(help="Write every label (JSON Lines).")] = None,
    hold: Annotated[
        float, typer.Option(help="Seconds a (key, signal) alert keeps firing, for NAB.")
    ] = 1800.0,
    bootstrap: Annotated[
        str | None, typer.Option(help="--worker: Kafka bootstrap servers.")
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(help="--worker: keep the workers' data and logs here (default: a temp dir)."),
    ] = None,
    keep_topics: Annotated[
        bool, typer.Option(help="--worker: keep each run's topics instead of deleting them.")
    ] = False,
) -> None:
    """Score our detectors and a static-threshold baseline on scenarios with known incidents."""
    from streams.simulation.evaluate import ScoringRules
    from streams.simulation.labels import write_labels
    from streams.simulation.report import print_report, to_json, to_markdown
    from streams.simulation.runner import evaluate_suite
    from streams.simulation.suite import SCENARIOS, get_suite, with_seeds

    if scenario:
        scenarios = [_load(name) for name in scenario]
    else:
        try:
            scenarios = get_suite(suite)
        except (ValueError, OSError) as exc:
            console.print(f"[red]error:[/red] {exc}; built-in scenarios: {', '.join(SCENARIOS)}")
            raise typer.Exit(2) from exc
    scenarios = with_seeds(scenarios, seeds)
    rules = ScoringRules(hold_s=hold)
    command = "llmpulse " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if offline:
        console.print(f"evaluating {len(scenarios)} scenario(s) with {jobs} job(s) ...")
        report = evaluate_suite(
            scenarios,
            jobs=jobs,
            rules=rules,
            progress=lambda name: console.print(f"  {name} done"),
        )
        print_report(report, Console())
        body, text = to_json(report), to_markdown(report, command)
    else:
        from streams.simulation.worker_mode import runs_markdown

        result = _evaluate_worker(scenarios, rules, bootstrap, workdir, keep_topics)
        report = result.report
        body = result.to_json()
        text = to_markdown(report, command) + "\n" + runs_markdown(result.runs)
    if output is not None:
        output.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
    if markdown is not None:
        markdown.write_text(text, encoding="utf-8")
    if labels is not None:
        write_labels(labels, report.labels)


def _evaluate_worker(
    scenarios: list[Scenario],
    rules: ScoringRules,
    bootstrap: str | None,
    workdir: Path | None,
    keep_topics: bool,
) -> WorkerEval:
    """``eval --worker``: one worker per scenario, one scenario at a time (``--jobs`` unused)."""
    from rich.markup import escape
    from rich.table import Table

    from streams.config import Settings
    from streams.simulation.report import print_report
    from streams.simulation.worker_mode import RUN_COLUMNS, evaluate_suite_worker, run_cells
    from streams.simulation.worker_process import WorkerFailed, broker_reachable

    settings = Settings()
    if bootstrap is not None:
        settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})
    problem = broker_reachable(settings)
    if problem is not None:
        console.print(
            f"[red]error:[/red] no Kafka broker answers at {settings.kafka_bootstrap} "
            f"({problem}); start one with `llmpulse kafka start` or set LLMPULSE_KAFKA_BOOTSTRAP"
        )
        raise typer.Exit(2)
    events = sum(s.traffic.total_rate * s.duration_s for s in scenarios)
    console.print(
        f"evaluating {len(scenarios)} scenario(s), about {events:,.0f} calls, through a worker "
        f"each, against {settings.kafka_bootstrap} ..."
    )
    try:
        result = evaluate_suite_worker(
            scenarios, settings, rules=rules, workdir=workdir, keep_topics=keep_topics,
            progress=console.print,
        )  # fmt: skip
    except WorkerFailed as exc:  # its message ends with the worker's log, not rich markup
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    out = Console()
    print_report(result.report, out)
    table = Table(*RUN_COLUMNS, title="worker runs")
    for run in result.runs:
        table.add_row(*run_cells(run))
    out.print(table)
    return result


def register(app: typer.Typer) -> None:
    """Add ``simulate`` and ``eval`` to ``app``."""
    app.command("simulate")(simulate)
    app.command("eval")(evaluate)
