"""``llmpulse demo``: the main job on embedded defaults, end to end on this machine.

1. starts the local Kafka broker (unless one already answers at ``LLMPULSE_KAFKA_BOOTSTRAP``);
2. starts a worker on the embedded ClickHouse store, with the shipped default alert rules
   (durations shortened, see `streams.demo_rules`) and 10-second metric windows;
3. runs the traffic simulator on a scripted scenario (normal traffic, an incident, recovery)
   in real time, and shows a live view: events/s, per-model p95 latency, error rate and cost,
   detections and alert states as they happen;
4. prints a summary (events, detections and alerts with their delays from the incident's
   start) and three analyst queries with their answers.

Alerts go to Slack when ``LLMPULSE_SLACK_BOT_TOKEN`` or ``LLMPULSE_SLACK_WEBHOOK_URL`` is set,
and to the console (the worker's log) always. Ctrl-C stops everything the demo started.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table

from streams import demo_rules
from streams.config import Settings, mask_url
from streams.demo_feed import TopicFollower, poll_worker
from streams.demo_view import DemoState
from streams.local_kafka import LocalKafka
from streams.simulation.labels import IncidentLabel, LabelRecorder
from streams.simulation.scenario import Scenario
from streams.worker_client import QueryError, query_worker, wait_healthy

__all__ = ["QUERIES", "WORKER_DEFAULTS", "run_demo"]

WORKER_DEFAULTS = {
    "LLMPULSE_METRICS_WINDOW_S": "10",
    "LLMPULSE_METRICS_LATENESS_S": "5",
    "LLMPULSE_METRICS_IDLE_CLOSE_S": "5",
}
"""Worker settings for the demo, unless the environment sets them: windows short enough to
watch move. Production defaults are 60 s windows with 120 s allowed lateness."""

SETTLE_S = 45.0
"""After the traffic ends, wait up to this long for open alerts to resolve."""

QUERIES = (
    (
        "Calls, errors and p95 latency per model, from the raw calls",
        "SELECT provider, model, count() AS calls, countIf(status = 'error') AS errors, "
        "round(quantile(0.95)(latency_ms)) AS p95_ms FROM llmpulse.llm_calls FINAL "
        "GROUP BY provider, model ORDER BY calls DESC",
    ),
    (
        "Detections per key and signal, with the level before and after",
        "SELECT model, signal, detector, count() AS n, round(avg(before_mean), 1) AS before, "
        "round(avg(after_level), 1) AS after, min(event_time) AS first "
        "FROM llmpulse.llm_detections FINAL WHERE key_set = 'provider_model' "
        "GROUP BY model, signal, detector ORDER BY first",
    ),
    (
        "The alert timeline",
        "SELECT at, rule, state, labels['model'] AS model, round(value, 1) AS value "
        "FROM llmpulse.llm_alerts FINAL ORDER BY at, sequence",
    ),
)


def run_demo(
    settings: Settings,
    scenario: Scenario,
    console: Console,
    svg: Path | None = None,
) -> DemoState:
    """Run the whole demo; stop whatever it started, also on Ctrl-C. Return the final state."""
    broker = LocalKafka.from_bootstrap(settings.data_dir, settings.kafka_bootstrap)
    started_broker = not broker.port_open()
    if started_broker:
        console.print("starting the local Kafka broker (the first run fetches its jars) ...")
        console.print(broker.start())
    else:
        console.print(f"using Kafka at {broker.bootstrap}")
    worker: subprocess.Popen[bytes] | None = None
    try:
        worker, log_path = _start_worker(settings, console)
        state = asyncio.run(_run_live(settings, scenario, console))
        _report(settings, state, console, svg)
        console.print(f"[dim]worker log (alerts are logged there too): {log_path}[/dim]")
        return state
    finally:
        if worker is not None:
            _stop(worker)
        if started_broker:
            console.print(broker.stop())


def _start_worker(settings: Settings, console: Console) -> tuple[subprocess.Popen[bytes], Path]:
    env = dict(os.environ)
    for name, value in WORKER_DEFAULTS.items():
        env.setdefault(name, value)
    if "LLMPULSE_ALERTS_RULES_FILE" not in env:
        rules = demo_rules.write(settings.data_dir / "demo_rules.yaml")
        env["LLMPULSE_ALERTS_RULES_FILE"] = str(rules)
        console.print(
            f"alert rules: the shipped defaults with every duration divided by "
            f"{demo_rules.SPEEDUP} ({rules})"
        )
    slack = any(env.get(n) for n in ("LLMPULSE_SLACK_BOT_TOKEN", "LLMPULSE_SLACK_WEBHOOK_URL"))
    console.print(f"alerts go to {'Slack and ' if slack else ''}the console (worker log)")
    log_path = settings.data_dir / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "info"],
        stdout=log_path.open("ab"), stderr=subprocess.STDOUT, env=env,
        start_new_session=True,  # Ctrl-C reaches the demo, which stops the worker in order
    )  # fmt: skip
    try:
        wait_healthy(settings.web_host, settings.web_port, worker, timeout=120)
    except (RuntimeError, TimeoutError) as exc:
        _stop(worker)
        raise RuntimeError(f"{exc}; see {log_path}") from exc
    console.print(f"worker up on embedded ClickHouse ({mask_url(settings.clickhouse_dsn)})")
    return worker, log_path


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(60)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


async def _run_live(settings: Settings, scenario: Scenario, console: Console) -> DemoState:
    from streams.simulation.producer import publish_scenario

    console.print(f"scenario {scenario.name!r}: {scenario.description}")
    state = DemoState(
        scenario=scenario.name,
        description=scenario.description,
        duration_s=scenario.duration_s,
        started=datetime.now(UTC),
        calls_topic=settings.topic_calls,
    )
    follower = TopicFollower(settings, _on_record(state, settings, console))
    await follower.start()
    stop = asyncio.Event()
    poller = asyncio.create_task(poll_worker(state, settings.web_host, settings.web_port, stop))
    following = asyncio.create_task(follower.run(stop))
    await _publish_malformed(settings, 3)
    run_id = f"demo-{uuid.uuid4().hex[:8]}"
    state.started = start = datetime.now(UTC)
    state.incidents = LabelRecorder(scenario, start).labels()
    # Feedback trails its calls by up to minutes; the demo stops with the calls.
    publishing = asyncio.create_task(
        publish_scenario(scenario, settings, start=start, realtime=True, run_id=run_id)
    )
    loop = asyncio.get_running_loop()
    traffic_ends = loop.time() + scenario.duration_s + 1.0
    try:
        with Live(state.render(), console=console, refresh_per_second=2) as live:
            ticks = 0
            while loop.time() < traffic_ends and not publishing.done():
                live.update(state.render())
                await asyncio.sleep(0.5)
                ticks += 1
                if not console.is_terminal and ticks % 30 == 0:
                    console.print(state.status_line())
            if publishing.done():
                publishing.result()  # raise what stopped the traffic early, if anything
            settle_until = loop.time() + SETTLE_S
            while state.firing() and loop.time() < settle_until:
                live.update(state.render())
                await asyncio.sleep(0.5)
            # The keys each incident touched, from the same seeded stream.
            state.incidents = await asyncio.to_thread(_labels, scenario, start, run_id)
            live.update(state.render())
        console.line()
    finally:
        stop.set()
        publishing.cancel()
        await asyncio.gather(poller, following, publishing, return_exceptions=True)
        await follower.stop()
    return state


def _labels(scenario: Scenario, start: datetime, run_id: str) -> list[IncidentLabel]:
    from streams.simulation.traffic import generate

    recorder = LabelRecorder(scenario, start)
    for event in generate(scenario, start, run_id=run_id):
        recorder.observe(event)
    return recorder.labels()


def _on_record(
    state: DemoState, settings: Settings, console: Console
) -> Callable[[str, Any], None]:
    def on_record(topic: str, value: Any) -> None:
        if not isinstance(value, dict):
            return
        if topic == settings.topic_detections:
            state.observe_detection(value)
        else:
            state.observe_alert(value)
        if not console.is_terminal:  # no live view: say it as it happens
            console.print(state.event_line(topic == settings.topic_detections))

    return on_record


async def _publish_malformed(settings: Settings, count: int) -> None:
    """A few records that fail validation, so the dead-letter path has something to show."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, **settings.kafka_client_options()
    )
    await producer.start()
    try:
        for i in range(count):
            bad = {"event_id": f"demo-bad-{i}", "app": "support-bot", "latency_ms": -1}
            await producer.send_and_wait(settings.topic_calls, orjson.dumps(bad))
    finally:
        await producer.stop()


def _report(settings: Settings, state: DemoState, console: Console, svg: Path | None) -> None:
    stored = _scalar(settings, "SELECT uniqExact(event_id) FROM llmpulse.llm_calls")
    summary = state.summary(stored)
    console.print(summary)
    if svg is not None:
        _save_svg(svg, state.render(), summary)
        console.print(f"saved the final view to {svg}")
    console.print("[bold]Try these analyst queries[/bold] (`llmpulse sql` asks the running worker,")
    console.print("or opens the embedded store when no worker runs):")
    for title, sql in QUERIES:
        try:
            columns, rows = query_worker(settings.web_host, settings.web_port, sql)
        except (QueryError, ConnectionError) as exc:
            console.print(f"[red]{title}: {exc}[/red]")
            continue
        table = Table(*columns, title=title, title_justify="left")
        for row in rows[:12]:
            table.add_row(*("" if v is None else str(v) for v in row))
        console.print(table)
        console.print(f'  [dim]llmpulse sql "{sql}"[/dim]')


def _scalar(settings: Settings, sql: str) -> int | None:
    try:
        return int(query_worker(settings.web_host, settings.web_port, sql)[1][0][0])
    except (QueryError, ConnectionError, IndexError, ValueError):
        return None


def _save_svg(path: Path, *renderables: RenderableType) -> None:
    recorder = Console(record=True, width=120, file=open(os.devnull, "w"))  # noqa: SIM115
    for renderable in renderables:
        recorder.print(renderable)
    path.parent.mkdir(parents=True, exist_ok=True)
    recorder.save_svg(str(path), title="llmpulse demo")
