"""The ``llmpulse`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from streams.config import Settings

app = typer.Typer(help="llmpulse: real-time monitoring for LLM traffic.", no_args_is_help=True)
kafka_app = typer.Typer(
    help="A local single-node Kafka broker for development.", no_args_is_help=True
)
db_app = typer.Typer(help="ClickHouse schema.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(db_app, name="db")
console = Console()


def _settings() -> Settings:
    return Settings()


@app.command()
def config() -> None:
    """Print the effective configuration, secrets masked."""
    for key, value in _settings().masked().items():
        console.print(f"[bold]{key}[/bold] = {value}")


@app.command()
def worker(
    web_port: Annotated[int | None, typer.Option(help="Override LLMPULSE_WEB_PORT.")] = None,
    loglevel: Annotated[str, typer.Option(help="crit, error, warn, info or debug.")] = "warn",
    log_format: Annotated[
        str | None, typer.Option(help="auto, json or text; overrides LLMPULSE_LOG_FORMAT.")
    ] = None,
) -> None:
    """Run a worker: consume llm.calls and llm.feedback into ClickHouse."""
    import os

    import faust

    from streams.app import create_app
    from streams.logging_setup import (
        RedactionFilter,
        configure_logging,
        receiver_secrets,
        settings_secrets,
    )
    from streams.topics import ensure_topics

    if log_format not in (None, "auto", "json", "text"):
        raise typer.BadParameter("must be auto, json or text", param_hint="--log-format")
    settings = _settings()
    overrides = {"web_port": web_port, "log_format": log_format}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    redaction = RedactionFilter(settings_secrets(settings))
    logging_config = configure_logging(settings.log_format, loglevel, redaction)
    ensure_topics(settings)
    faust_app = create_app(settings)
    # Known once the app is built: the checkpoint key (maybe from its file), receiver tokens.
    runtime = faust_app.llmpulse_runtime  # type: ignore[attr-defined]
    redaction.add(settings.state_key_bytes().decode())
    if runtime.alerts is not None:
        redaction.add(*receiver_secrets(runtime.alerts.rules, os.environ))
    faust.Worker(
        faust_app, loglevel=loglevel, quiet=True, logging_config=logging_config
    ).execute_from_commandline()


@app.command()
def writer(
    web_port: Annotated[int | None, typer.Option(help="Override LLMPULSE_WEB_PORT.")] = None,
    loglevel: Annotated[str, typer.Option(help="crit, error, warn, info or debug.")] = "warn",
) -> None:
    """Own the store for workers with LLMPULSE_SINK_TARGET=kafka: store the rows of llm.rows."""
    import asyncio

    from streams.logging_setup import RedactionFilter, configure_logging, settings_secrets
    from streams.topics import ensure_topics, writer_topics
    from streams.writer import run_writer

    settings = _settings()
    if web_port is not None:
        settings = settings.model_copy(update={"web_port": web_port})
    configure_logging(settings.log_format, loglevel, RedactionFilter(settings_secrets(settings)))
    ensure_topics(settings, writer_topics(settings))
    raise typer.Exit(asyncio.run(run_writer(settings)))


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending schema migrations (workers also do this at start)."""
    from streams.migrations import current_version, migrate
    from streams.store import ClickHouseStore

    settings = _settings()
    store = ClickHouseStore(settings.clickhouse_dsn, settings.clickhouse_database)
    applied = migrate(store, settings.calls_ttl_days)
    console.print(f"applied {applied or 'nothing'}; schema version {current_version(store)}")
    store.close()


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One read-only statement.")],
    output: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
) -> None:
    """Query the store. While a worker runs on the embedded store, the query goes through it."""
    from streams.worker_client import run_query

    try:
        columns, rows, via = run_query(_settings(), query)
    except Exception as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    if output == "json":
        sys.stdout.write(
            orjson.dumps({"columns": columns, "rows": rows}, default=str).decode() + "\n"
        )
        return
    if output == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
        return
    table = Table(*columns, caption=f"{len(rows)} rows via {via}")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


@app.command()
def demo(
    scenario: Annotated[
        str,
        typer.Option(help="A built-in scenario (e.g. demo, provider_outage) or a YAML file."),
    ] = "demo",
    duration: Annotated[
        float | None,
        typer.Option(help="Seconds of traffic; default the scenario's (demo: 240)."),
    ] = None,
    svg: Annotated[
        Path | None, typer.Option(help="Also save the final live view as an SVG image.")
    ] = None,
) -> None:
    """The main job: local Kafka, a worker on embedded ClickHouse, live traffic with an incident."""
    from streams.demo import run_demo
    from streams.simulation.cli import with_duration
    from streams.simulation.suite import get_scenario

    try:
        chosen = get_scenario(scenario)
    except (ValueError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if duration is not None:
        chosen = with_duration(chosen, duration)
    try:
        run_demo(_settings(), chosen, console, svg=svg)
    except KeyboardInterrupt:
        console.print("interrupted; everything the demo started has been stopped")
        raise typer.Exit(130) from None


def _broker() -> object:
    from streams.local_kafka import LocalKafka

    settings = _settings()
    return LocalKafka.from_bootstrap(Path(settings.data_dir), settings.kafka_bootstrap)


@kafka_app.command("start")
def kafka_start() -> None:
    """Fetch the broker jars once (mvn), format storage, start the broker and wait for it."""
    from streams.local_kafka import LocalKafka, LocalKafkaError

    broker = _broker()
    assert isinstance(broker, LocalKafka)
    try:
        console.print(broker.start())
    except LocalKafkaError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the local broker."""
    from streams.local_kafka import LocalKafka

    broker = _broker()
    assert isinstance(broker, LocalKafka)
    console.print(broker.stop())


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the local broker runs."""
    from streams.local_kafka import LocalKafka

    broker = _broker()
    assert isinstance(broker, LocalKafka)
    console.print(broker.status())


def _register_commands() -> None:
    from streams import alert_cli, top
    from streams.simulation import cli as simulation_cli

    top.register(app)
    alert_cli.register(app)
    simulation_cli.register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
