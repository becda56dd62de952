"""AlertsStage with a fake clock and the local Slack stand-in: states, hysteresis, outputs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from alerting.silences import Silence
from streams.migrations import migrate
from streams.rows import ALERT_COLUMNS
from streams.store import ClickHouseStore
from tests.slack_standin import SlackStandIn
from tests.unit.alert_fakes import T0, FakeClock, Harness, rules


@pytest.fixture
async def standin() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn() as server:
        yield server


async def test_pending_firing_resolved_through_slack_with_hysteresis(
    standin: SlackStandIn,
) -> None:
    h = Harness(standin, rules(for_="2m"))
    await h.stage.start(background=False)
    h.observe(0.08)  # above 0.05: pending
    await h.run(60)
    h.observe(0.04)  # between recovery (0.02) and threshold: still pending, not reset
    await h.run(62)  # for: 2m has passed
    assert h.publish.states() == ["pending", "firing"] and len(h.posts()) == 1
    [post] = h.posts()
    assert post["channel"] == "#llm-alerts" and "thread_ts" not in post
    assert post["text"].startswith("[FIRING:1] HighErrorRate (critical)")
    assert "app=chat, model=gpt-4o" in post["text"]

    h.observe(0.03)  # below the threshold but above recovery: keeps firing
    await h.run(30)
    assert h.publish.states() == ["pending", "firing"] and len(h.posts()) == 1
    h.observe(0.01)  # recovered
    await h.run(30)
    assert h.publish.states() == ["pending", "firing", "resolved"]
    posts, updates = h.posts(), standin.calls("chat.update")
    original_ts = standin.calls("chat.postMessage")[0].body and next(iter(standin.messages))[1]
    assert len(posts) == 2 and posts[1]["thread_ts"] == original_ts
    assert [u.body["ts"] for u in updates] == [original_ts]
    assert standin.messages[next(iter(standin.messages))]["text"].startswith("[RESOLVED]")

    keys = {key for key, _ in h.publish.records}
    assert len(keys) == 1 and h.publish.records[0][1]["labels"]["model"] == "gpt-4o"
    rows = [dict(zip(ALERT_COLUMNS, row, strict=True)) for row in h.sink.rows]
    assert [(r["previous_state"], r["state"]) for r in rows] == [
        ("inactive", "pending"), ("pending", "firing"), ("firing", "resolved"),
    ]  # fmt: skip
    assert rows[1]["rule_group"] == "llm" and rows[1]["value"] == 0.04
    health = h.stage.health()
    assert health["notifications"] == {"sent": 2, "failed": 0, "queued": 0, "dead_letters": 0}
    assert health["slack"]["sent"] == 2 and health["instances"]["resolved"] == 1
    assert health["published"] == 3 and health["outputs_pending"] == 0
    assert health["checkpoint_age_s"] is not None


async def test_a_short_spike_never_leaves_pending(standin: SlackStandIn) -> None:
    h = Harness(standin, rules(for_="2m"))
    await h.stage.start(background=False)
    h.observe(0.09)
    await h.run(60)
    h.observe(0.01)
    await h.run(120)
    assert h.publish.states() == ["pending", "inactive"] and h.posts() == []


async def test_a_429_storm_delays_but_loses_nothing(standin: SlackStandIn) -> None:
    h = Harness(standin, rules(for_="0s", group_by="[alertname, app, model]"))
    await h.stage.start(background=False)
    models = [f"model-{i}" for i in range(4)]
    standin.fail_next(6, status=429, retry_after=0)
    for model in models:
        h.observe(0.5, model=model)
    await h.run(30)
    rejected = [r for r in standin.requests if r.status == 429]
    assert len(rejected) == 6
    found = [re.search(r"model=(model-\d)", p["text"]) for p in h.posts()]
    assert [m.group(1) for m in found if m] == models  # each once, in order
    health = h.stage.health()
    assert health["notifications"]["queued"] == 0 and health["slack"]["sent"] == 4
    assert health["slack"]["rate_limited"] >= 1
    assert "429" in (health["slack"]["last_error"] or "")


async def test_slack_down_for_minutes_then_grouped_in_order(standin: SlackStandIn) -> None:
    h = Harness(standin, rules(for_="0s", group_by="[alertname, app]"))
    await h.stage.start(background=False)
    standin.fail_for(3600, status=503)
    rates: dict[tuple[str, str], float] = {}
    for app, model in (("a", "m1"), ("b", "m1"), ("a", "m2"), ("b", "m2")):
        rates[(app, model)] = 0.5
        h.observe(0.5, app=app, model=model)
        await h.run(15)
    rates[("b", "m1")] = 0.0  # resolved while Slack is away
    for _ in range(5):  # windows keep coming every minute
        for (app, model), rate in rates.items():
            h.observe(rate, app=app, model=model)
        await h.run(60)
    assert h.posts() == [] and h.stage.notifier.queued == 2
    standin.heal()
    for (app, model), rate in rates.items():
        h.observe(rate, app=app, model=model)
    await h.run(90)
    texts = [p["text"] for p in h.posts()]
    assert len(texts) == 2, texts  # one message per group, with its latest state
    assert texts[0].startswith("[FIRING:2]") and "app=a, model=m1" in texts[0]
    assert "app=a, model=m2" in texts[0]
    assert texts[1].startswith("[FIRING:1]") and "app=b, model=m2" in texts[1]
    assert "m1" not in texts[1]  # never announced, so its resolution is not news
    assert h.stage.health()["slack"]["retryable"] >= 1


async def test_silenced_alerts_are_published_but_not_notified(standin: SlackStandIn) -> None:
    h = Harness(standin, rules(for_="0s"))
    h.silences.add(
        Silence(('model="gpt-4o"',), T0, T0 + timedelta(hours=1), author="ana", comment="deploy")
    )
    await h.stage.start(background=False)
    h.observe(0.5)
    await h.run(30)
    assert h.publish.states() == ["firing"] and h.posts() == []
    assert h.stage.health()["silences_active"] == 1


async def test_unpublished_transitions_wait_and_keep_their_order(standin: SlackStandIn) -> None:
    h = Harness(standin, rules(for_="0s"))
    await h.stage.start(background=False)
    h.publish.fail = True
    h.sink.hold = True
    h.observe(0.5)
    await h.run(5)
    h.observe(0.0)
    await h.run(5)
    health = h.stage.health()
    assert health["publish_failures"] >= 2 and health["outputs_pending"] == 2
    assert len(h.sink.rows) == 2  # queued once each, not again on every attempt
    h.publish.fail = False
    await h.run(2)
    assert h.publish.states() == ["firing", "resolved"]
    assert h.stage.health()["outputs_pending"] == 2  # rows not stored yet
    h.sink.hold = False
    await h.sink.flush()
    await h.run(2)
    assert h.stage.health()["outputs_pending"] == 0 and len(h.sink.rows) == 2


def test_alert_rows_fit_the_table_and_replays_collapse(tmp_path: Path) -> None:
    async def transitions() -> list[bytes]:
        async with SlackStandIn() as server:
            # Recent times: rows older than the table's TTL are dropped on insert.
            h = Harness(server, rules(for_="1m"), FakeClock(datetime.now(UTC)))
            await h.stage.start(background=False)
            h.observe(0.5, model="a")
            h.observe(0.5, model="b")
            await h.run(61)
            h.observe(0.0, model="a")
            await h.run(1)
            return [orjson.dumps(row) for row in h.sink.rows]

    rows = asyncio.run(transitions())
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}")
    migrate(store, ttl_days=30)
    store.insert_json_rows("llm_alerts", ALERT_COLUMNS, b"\n".join(rows), "a")
    store.insert_json_rows("llm_alerts", ALERT_COLUMNS, b"\n".join(rows[:2]), "b")  # a replay
    timeline = store.query(
        "SELECT labels['model'], previous_state, state, value, fired_at IS NOT NULL "
        "FROM llmpulse.llm_alerts FINAL WHERE rule = 'HighErrorRate' "
        "ORDER BY fingerprint, at, sequence"
    ).rows
    by_model = sorted(timeline, key=lambda r: r[0])
    assert [r[:3] for r in by_model] == [
        ("a", "inactive", "pending"), ("a", "pending", "firing"), ("a", "firing", "resolved"),
        ("b", "inactive", "pending"), ("b", "pending", "firing"),
    ]  # fmt: skip
    assert by_model[2][3] == 0.0 and by_model[1][4] == 1
    store.close()
