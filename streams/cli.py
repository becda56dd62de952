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
) -> None:
    """Run a worker: consume llm.calls and llm.feedback into ClickHouse."""
    import faust

    from streams.app import create_app
    from streams.topics import ensure_topics

    settings = _settings()
    if web_port is not None:
        settings = settings.model_copy(update={"web_port": web_port})
    ensure_topics(settings)
    faust_app = create_app(settings)
    faust.Worker(faust_app, loglevel=loglevel, quiet=True).execute_from_commandline()


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
    events: Annotated[int, typer.Option(help="How many sample events to publish.")] = 3000,
    rate: Annotated[float, typer.Option(help="Events per second.")] = 500.0,
) -> None:
    """The main job: local Kafka, a worker on embedded ClickHouse, sample traffic, queries."""
    from streams.demo import run_demo

    try:
        run_demo(_settings(), events, rate, console)
    except KeyboardInterrupt:
        console.print("interrupted; everything the demo started has been stopped")


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
