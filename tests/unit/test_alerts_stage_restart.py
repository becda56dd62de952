"""AlertsStage across restarts (state from checkpoints), and end-to-end delivery latency."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from datetime import datetime

import orjson
import pytest

from streams.alerts_stage import ENGINE_STATE, NOTIFIER_STATE
from tests.slack_standin import SlackStandIn
from tests.unit.alert_fakes import Harness, WallClock, rules


@pytest.fixture
async def standin() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn() as server:
        yield server


async def fired_and_posted(standin: SlackStandIn) -> Harness:
    h = Harness(standin, rules(for_="0s"))
    await h.stage.start(background=False)
    h.observe(0.5)
    await h.run(5)
    assert len(h.posts()) == 1 and h.publish.states() == ["firing"]
    return h


async def test_a_firing_alert_is_not_announced_again_after_a_crash(
    standin: SlackStandIn,
) -> None:
    h = await fired_and_posted(standin)
    # Crash: no stop(); the next worker starts from what was checkpointed along the way.
    h.clock.advance(120)
    await h.restart()
    h.observe(0.5)
    await h.run(60)
    assert len(h.posts()) == 1 and standin.calls("chat.update") == []
    assert h.publish.states() == ["firing"]  # no transition: it was firing all along


async def test_a_resolution_missed_while_down_is_sent_in_the_thread(
    standin: SlackStandIn,
) -> None:
    h = await fired_and_posted(standin)
    original_ts = next(iter(standin.messages))[1]
    h.clock.advance(10 * 60)  # down for ten minutes, during which the key recovered
    await h.restart()
    h.observe(0.0)  # the downtime's windows, replayed by the metrics stage
    await h.run(15)
    posts = h.posts()
    assert len(posts) == 2 and posts[1]["thread_ts"] == original_ts
    assert "[RESOLVED]" in posts[1]["text"]
    assert [u.body["ts"] for u in standin.calls("chat.update")] == [original_ts]
    assert h.publish.states() == ["firing", "resolved"]


async def test_downtime_alone_does_not_resolve_a_firing_alert(standin: SlackStandIn) -> None:
    h = await fired_and_posted(standin)
    h.clock.advance(10 * 60)  # longer than no_data_after (5m)
    await h.restart()
    await h.run(60)  # no windows yet: the downtime is not evidence of missing data
    assert h.publish.states() == ["firing"] and len(h.posts()) == 1
    await h.run(5 * 60)  # but five minutes without data after the restart is
    assert h.publish.states() == ["firing", "resolved"]
    assert h.publish.records[-1][1]["reason"] == "no_data"


async def test_windows_seen_before_the_restore_wait_for_it(standin: SlackStandIn) -> None:
    h = await fired_and_posted(standin)
    h.stage = h.new_stage()
    h.observe(0.0)  # the metrics stage may emit before the alerts stage has started
    await h.stage.start(background=False)
    await h.run(15)
    assert h.publish.states() == ["firing", "resolved"] and len(h.posts()) == 2
    assert h.stage.health()["restore_errors"] == []


async def test_a_queued_resolution_is_delivered_after_a_restart(standin: SlackStandIn) -> None:
    h = await fired_and_posted(standin)
    standin.fail_for(3600, status=503)
    h.observe(0.0)
    await h.run(30)
    assert h.stage.notifier.queued == 1 and len(h.posts()) == 1
    await h.stage.stop()
    standin.heal()
    h.clock.advance(60)
    await h.restart()
    await h.run(70)
    posts = h.posts()
    assert len(posts) == 2 and posts[1]["thread_ts"] == next(iter(standin.messages))[1]
    assert "[RESOLVED]" in posts[1]["text"]
    assert h.stage.notifier.queued == 0
    await h.run(15 * 60)
    assert len(h.posts()) == 2  # and never again


async def test_outputs_lost_in_a_crash_are_published_after_restart(
    standin: SlackStandIn,
) -> None:
    h = Harness(standin, rules(for_="0s"))
    await h.stage.start(background=False)
    h.publish.fail = True
    h.sink.hold = True
    h.observe(0.5)
    await h.run(3)
    assert h.publish.records == [] and len(h.sink.rows) == 1
    saved = orjson.loads(h.checkpoints.saved[ENGINE_STATE])
    assert [o["published"] for o in saved["outputs"]] == [False]
    h.publish.fail = False
    h.sink.hold = False
    await h.restart()  # crash: the row never reached the store, the record not the topic
    await h.run(2)
    assert h.publish.states() == ["firing"] and len(h.sink.rows) == 2
    assert h.stage.health()["outputs_pending"] == 0
    assert len(h.posts()) == 1  # the notifier knew it already


async def test_invalid_state_starts_fresh_and_says_so(standin: SlackStandIn) -> None:
    h = Harness(standin, rules(for_="0s"))
    h.checkpoints.saved[ENGINE_STATE] = orjson.dumps({"version": 1, "engine": {}, "outputs": []})
    h.checkpoints.saved[NOTIFIER_STATE] = b'{"version": 1, "alerts": "nope"}'
    await h.restart()
    errors = h.stage.health()["restore_errors"]
    assert [e.split(":")[0] for e in errors] == ["alerts/notifier", "alerts/engine"]
    h.observe(0.5)
    await h.run(3)
    assert len(h.posts()) == 1


async def test_a_failing_state_topic_does_not_hold_back_slack(standin: SlackStandIn) -> None:
    h = Harness(standin, rules(for_="0s"))
    await h.stage.start(background=False)
    h.checkpoints.fail = True
    h.observe(0.5)
    await h.run(5)
    assert len(h.posts()) == 1
    health = h.stage.health()
    assert health["checkpoint_failures"] >= 2 and health["checkpoint_age_s"] is None
    h.checkpoints.fail = False
    await h.run(1)  # the transition is still unsaved, so the next tick saves
    assert ENGINE_STATE in h.checkpoints.saved and NOTIFIER_STATE in h.checkpoints.saved


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def test_latency_from_condition_to_slack(standin: SlackStandIn) -> None:
    """Real clock, background tasks, the worker's default periods; prints p50/p95."""
    h = Harness(standin, rules(for_="1s", group_interval="1s"), clock=WallClock())
    await h.stage.start()
    keys = [(f"app{i % 4}", f"model{i}") for i in range(20)]
    try:
        for app, model in keys:  # a burst: one new failing key every 100 ms
            h.observe(0.5, app=app, model=model)
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            texts = " ".join(p["text"] for p in h.posts())
            if all(f"app={a}, model={m}" in texts for a, m in keys):
                break
            await asyncio.sleep(0.1)
    finally:
        await h.stage.stop()
    offset = time.time() - time.monotonic()
    firing = {
        (v["labels"]["app"], v["labels"]["model"]): v
        for _, v in h.publish.records
        if v["state"] == "firing"
    }
    accepted = standin.calls("chat.postMessage")
    total, tick, delivery = [], [], []
    for app, model in keys:
        alert = firing[(app, model)]
        held = datetime.fromisoformat(alert["active_since"]).timestamp() + 1.0
        fired = datetime.fromisoformat(alert["fired_at"]).timestamp()
        seen = next(r.time for r in accepted if f"app={app}, model={model}" in r.body["text"])
        total.append(seen + offset - held)
        tick.append(fired - held)
        delivery.append(seen + offset - fired)
    print(
        f"\nalert latency over {len(keys)} alerts in 4 groups (for 1s, group_wait 1s, "
        f"group_interval 1s, 1 msg/s): condition held -> Slack p50 {percentile(total, 0.5):.2f}s "
        f"p95 {percentile(total, 0.95):.2f}s; held -> fired p50 {percentile(tick, 0.5):.2f}s "
        f"p95 {percentile(tick, 0.95):.2f}s; fired -> Slack p50 {percentile(delivery, 0.5):.2f}s "
        f"p95 {percentile(delivery, 0.95):.2f}s; messages {len(accepted)}"
    )
    assert len(firing) == len(keys)
