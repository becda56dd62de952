"""Silences in a real compacted topic: shared between stores, followed, expired; and the CLI."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import typer
from typer.testing import CliRunner

from alerting.silences import Silence, silenced_by
from streams.alert_cli import register
from streams.silences_topic import KafkaSilenceStore

pytestmark = pytest.mark.integration


def new_topic() -> str:
    return f"llm.silences.{uuid.uuid4().hex[:8]}"


def silence(minutes: float = 60, starts_in: float = 0, **labels: str) -> Silence:
    now = datetime.now(UTC) + timedelta(minutes=starts_in)
    matchers = tuple(f'{k}="{v}"' for k, v in (labels or {"model": "gpt-4o"}).items())
    return Silence(matchers, now, now + timedelta(minutes=minutes), "ana", "provider incident")


async def eventually(check: Callable[[], bool], within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_a_silence_added_in_one_store_is_followed_by_another(kafka: str) -> None:
    topic = new_topic()
    writer = KafkaSilenceStore(kafka, {}, topic)
    follower = KafkaSilenceStore(kafka, {}, topic)
    await writer.start()
    await follower.start()
    try:
        muted = silence(model="gpt-4o")
        await writer.put(muted)
        await eventually(lambda: follower.get(muted.id) is not None)
        now = datetime.now(UTC)
        assert silenced_by(follower, {"model": "gpt-4o", "app": "x"}, now) == muted.id
        assert silenced_by(follower, {"model": "claude"}, now) is None

        ended = await follower.expire_now(muted.id)  # expired from the other store
        assert ended is not None and not ended.active(datetime.now(UTC))
        await eventually(lambda: not writer.silences()[0].active(datetime.now(UTC)))

        later = silence(starts_in=30)  # not started: expiring deletes it
        writer.add(later)  # the store protocol's call: applied now, written in the background
        await writer.flush()
        await eventually(lambda: follower.get(later.id) is not None)
        writer.expire(later.id, datetime.now(UTC))
        await writer.flush()
        await eventually(lambda: follower.get(later.id) is None)
        assert writer.get(later.id) is None
    finally:
        await writer.stop()
        await follower.stop()

    fresh = KafkaSilenceStore(kafka, {}, topic)  # a worker starting later reads the topic
    await fresh.start(follow=False)
    try:
        [only] = fresh.silences()
        assert only.id == muted.id and only.ends_at == ended.ends_at
        assert fresh.stats.invalid_records == 0
    finally:
        await fresh.stop()


async def test_bad_records_are_skipped_and_old_silences_pruned(kafka: str) -> None:
    from aiokafka import AIOKafkaProducer

    topic = new_topic()
    store = KafkaSilenceStore(kafka, {}, topic)
    await store.start(follow=False)
    old = silence(minutes=1, starts_in=-10 * 24 * 60)  # ended ten days ago
    await store.put(old)
    await store.stop()
    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    try:
        good = silence()
        await producer.send_and_wait(topic, b"not json", key=b"x", partition=0)
        other = orjson.dumps(good.to_dict())
        await producer.send_and_wait(topic, other, key=b"wrong-id", partition=0)
        await producer.send_and_wait(topic, other, key=good.id.encode(), partition=0)
    finally:
        await producer.stop()

    reader = KafkaSilenceStore(kafka, {}, topic)
    await reader.start(follow=False)
    try:
        assert reader.stats.invalid_records == 2
        assert {s.id for s in reader.silences()} == {old.id, good.id}
        assert await reader.prune() == 1
        assert [s.id for s in reader.silences()] == [good.id]
    finally:
        await reader.stop()


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_silence_cli_against_the_broker(kafka: str) -> None:
    runner = CliRunner()
    topic = new_topic()
    env = {"LLMPULSE_KAFKA_BOOTSTRAP": kafka, "LLMPULSE_TOPIC_SILENCES": topic}
    app = cli()
    added = runner.invoke(
        app,
        ["silence", "add", "-m", "model=gpt-4o", "-m", 'app=~"chat|search"', "--duration",
         "2h", "--author", "ana", "--comment", "provider incident"],
        env=env,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    silence_id = added.output.splitlines()[0]
    assert len(silence_id) == 32

    listed = runner.invoke(app, ["silence", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    [item] = orjson.loads(listed.output)
    assert item["id"] == silence_id and item["state"] == "active"
    assert item["matchers"] == ["model=gpt-4o", 'app=~"chat|search"']
    ends = datetime.fromisoformat(item["ends_at"]) - datetime.fromisoformat(item["starts_at"])
    assert ends == timedelta(hours=2)

    async def worker_sees_it() -> str | None:
        store = KafkaSilenceStore(kafka, {}, topic)
        await store.start(follow=False)
        try:
            labels = {"model": "gpt-4o", "app": "search"}
            return silenced_by(store, labels, datetime.now(UTC))
        finally:
            await store.stop()

    assert asyncio.run(worker_sees_it()) == silence_id

    expired = runner.invoke(app, ["silence", "expire", silence_id[:8]], env=env)
    assert expired.exit_code == 0 and f"silence {silence_id} expired" in expired.output
    assert asyncio.run(worker_sees_it()) is None
    shown = runner.invoke(app, ["silence", "list", "--json"], env=env)
    assert orjson.loads(shown.output) == []
    everything = runner.invoke(app, ["silence", "list", "--all", "--json"], env=env)
    assert [i["state"] for i in orjson.loads(everything.output)] == ["expired"]

    unknown = runner.invoke(app, ["silence", "expire", "feedface"], env=env)
    assert unknown.exit_code == 1 and "no silence with id 'feedface'" in unknown.output
    bad = runner.invoke(app, ["silence", "add", "-m", "model gpt", "--comment", "x"], env=env)
    assert bad.exit_code == 2 and "invalid matcher" in bad.output
