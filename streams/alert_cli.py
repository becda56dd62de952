"""``llmpulse rules check`` and ``llmpulse silence add|list|expire``."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table

from alerting.durations import format_duration, parse_duration
from alerting.notify_config import ReceiverConfig
from alerting.rules import AlertRule
from alerting.rules_file import RulesError, RulesFile, load_rules_file
from alerting.silences import Silence

T = TypeVar("T")
DEFAULT_TOPIC = "llm.silences"
console = Console()
errors = Console(stderr=True)

rules_app = typer.Typer(help="Alert rules files.", no_args_is_help=True)
silence_app = typer.Typer(
    help="Silences: mute matching alerts for a while, on every worker.", no_args_is_help=True
)
TopicOption = Annotated[
    str,
    typer.Option("--topic", envvar="LLMPULSE_TOPIC_SILENCES", help="The compacted silences topic."),
]


def _condition(rule: AlertRule) -> str:
    if rule.detection is not None:
        detector = f" from {rule.detection.detector}" if rule.detection.detector else ""
        return f"detection {rule.detection.signal}{detector}"
    if rule.absent_for is not None:
        return f"absent for {format_duration(rule.absent_for)} by {', '.join(rule.by or ())}"
    text = f"{rule.metric} {rule.op} {rule.threshold:g}"
    if rule.recovery_threshold is not None:
        text += f" (recovers at {rule.recovery_threshold:g})"
    if rule.for_:
        text += f" for {format_duration(rule.for_)}"
    return text


def _receiver_line(config: ReceiverConfig) -> str:
    parts: list[str] = [config.type]
    channel = getattr(config, "channel", None)
    if channel:
        parts.append(str(channel))
    for env_name in config.env_names():
        state = "set" if os.environ.get(env_name) else "unset"
        if state == "unset" and config.optional:
            state = "unset: skipped, optional"
        parts.append(f"{env_name} {state}")
    return f"  {config.name}: {', '.join(parts)}"


def summary(path: Path, rules: RulesFile) -> list[str]:
    """What a valid rules file defines, one line each."""
    count = sum(len(group.rules) for group in rules.groups)
    lines = [
        f"{path}: OK: {len(rules.groups)} groups, {count} rules, {len(rules.receivers)} "
        f"receivers, {len(rules.inhibit_rules)} inhibit rules"
    ]
    for group in rules.groups:
        lines.append(f"group {group.name} (every {format_duration(group.interval)}):")
        for rule in group.rules:
            severity = rule.labels.get("severity", "")
            lines.append(f"  {rule.alert} [{severity}]: {_condition(rule)}")
    lines.append("receivers:")
    lines.extend(_receiver_line(receiver) for receiver in rules.receivers)
    return lines


@rules_app.command("check")
def rules_check(
    file: Annotated[Path, typer.Argument(help="The rules file (YAML).")],
) -> None:
    """Validate a rules file: FILE:LINE: field: message for each problem, exit code 1."""
    try:
        rules = load_rules_file(file)
    except RulesError as exc:
        for error in exc.errors:
            typer.echo(error, err=True)
        count = len(exc.errors)
        typer.echo(f"{count} error{'s' if count != 1 else ''}", err=True)
        raise typer.Exit(1) from None
    for line in summary(file, rules):
        typer.echo(line)


def _run(topic: str, action: Callable[[Any], Awaitable[T]]) -> T:
    from streams.config import Settings
    from streams.silences_topic import KafkaSilenceStore

    settings = Settings()
    store = KafkaSilenceStore(
        settings.kafka_bootstrap, settings.kafka_client_options(), topic,
        replication=settings.topic_replication,
    )  # fmt: skip

    async def run() -> T:
        await store.start(follow=False)
        try:
            return await action(store)
        finally:
            await store.stop()

    try:
        return asyncio.run(run())
    except typer.Exit:
        raise
    except Exception as exc:
        where = f"silences topic {topic} at {settings.kafka_bootstrap}"
        errors.print(f"[red]error:[/red] {where}: {exc}", highlight=False)
        raise typer.Exit(1) from exc


def _state(silence: Silence, now: datetime) -> str:
    if silence.active(now):
        return "active"
    return "pending" if now < silence.starts_at else "expired"


@silence_app.command("add")
def silence_add(
    matcher: Annotated[
        list[str],
        typer.Option("--matcher", "-m", help="Label matcher, e.g. 'model=gpt-4o'; repeatable."),
    ],
    comment: Annotated[str, typer.Option("--comment", "-c", help="Why (required).")],
    duration: Annotated[str, typer.Option("--duration", "-d", help="How long: 30m, 2h.")] = "2h",
    author: Annotated[str | None, typer.Option(help="Who; default: your login name.")] = None,
    topic: TopicOption = DEFAULT_TOPIC,
) -> None:
    """Mute alerts matching every matcher, from now for DURATION."""
    try:
        length = parse_duration(duration)
        if length <= timedelta(0):
            raise ValueError("must be greater than 0s")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--duration") from exc
    now = datetime.now(UTC)
    try:
        silence = Silence(tuple(matcher), now, now + length, author or getpass.getuser(), comment)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--matcher/--author/--comment") from exc

    async def put(store: Any) -> None:
        await store.put(silence)

    _run(topic, put)
    typer.echo(silence.id)
    console.print(
        f"silenced {' '.join(silence.matchers)} until {silence.ends_at:%Y-%m-%d %H:%M:%S} UTC",
        highlight=False,
    )


@silence_app.command("list")
def silence_list(
    show_all: Annotated[bool, typer.Option("--all", help="Include expired silences.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
    topic: TopicOption = DEFAULT_TOPIC,
) -> None:
    """Active and pending silences (with --all, expired ones too), newest first."""

    async def read(store: Any) -> list[Silence]:
        return list(store.silences())

    now = datetime.now(UTC)
    found = sorted(_run(topic, read), key=lambda s: s.starts_at, reverse=True)
    shown = [s for s in found if show_all or _state(s, now) != "expired"]
    if as_json:
        items = [{**s.to_dict(), "state": _state(s, now)} for s in shown]
        sys.stdout.write(orjson.dumps(items).decode() + "\n")
        return
    table = Table("id", "state", "matchers", "ends (UTC)", "author", "comment")
    for s in shown:
        table.add_row(
            s.id, _state(s, now), " ".join(s.matchers), f"{s.ends_at:%Y-%m-%d %H:%M:%S}",
            s.author, s.comment,
        )  # fmt: skip
    console.print(table)
    console.print(f"{len(shown)} silences" + ("" if show_all else " (--all for expired)"))


@silence_app.command("expire")
def silence_expire(
    silence_id: Annotated[str, typer.Argument(metavar="ID", help="Silence id (or a prefix).")],
    topic: TopicOption = DEFAULT_TOPIC,
) -> None:
    """End a silence now; one that has not started yet is deleted."""

    async def expire(store: Any) -> tuple[str, Silence | None, bool]:
        ids = [s.id for s in store.silences() if s.id.startswith(silence_id)]
        exact = silence_id if store.get(silence_id) is not None else None
        if exact is None and len(ids) != 1:
            problem = "no silence" if not ids else f"{len(ids)} silences"
            errors.print(f"[red]error:[/red] {problem} with id {silence_id!r}", highlight=False)
            raise typer.Exit(1)
        target = exact or ids[0]
        before = store.get(target)
        ended = await store.expire_now(target)
        return target, ended, ended is before

    target, ended, unchanged = _run(topic, expire)
    if ended is None:
        typer.echo(f"silence {target} deleted (it had not started)")
    elif unchanged:
        typer.echo(f"silence {target} had already expired at {ended.ends_at.isoformat()}")
    else:
        typer.echo(f"silence {target} expired at {ended.ends_at.isoformat()}")


def register(app: typer.Typer) -> None:
    """Add ``rules`` and ``silence`` to ``app``."""
    app.add_typer(rules_app, name="rules")
    app.add_typer(silence_app, name="silence")
