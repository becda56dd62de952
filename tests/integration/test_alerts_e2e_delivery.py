"""Delivery end to end: a 429 storm, and a worker killed while Slack is slow or failing.

The Slack stand-in answers 429 with Retry-After, 503, or holds requests; the worker is a real
process on the real broker, SIGKILLed and restarted on the same state topic and data dir.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.alert_e2e_support import AlertPipeline, Key, alert_pipeline, error_rate, ts
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(
    kafka: str, worker_env: dict[str, str], make_worker: Any, tmp_path: Path
) -> Iterator[AlertPipeline]:
    with alert_pipeline(kafka, worker_env, make_worker, tmp_path) as running:
        yield running


RULES = """
groups:
  - name: e2e
    interval: 1s
    rules:
      - alert: HighErrorRate
        metric: error_rate
        by: [app, environment, provider, model]
        op: ">"
        threshold: 0.5
        recovery_threshold: 0.1
        min_requests: 5
        for: FOR
        labels: {severity: critical}
route:
  receiver: slack
  group_by: [alertname, app]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: slack
    type: slack
    token_env: LLMPULSE_SLACK_BOT_TOKEN
    channel: "#llm-alerts"
"""


def fire(pipeline: AlertPipeline, key: Key, rate: float = 0.8) -> None:
    pipeline.send({key: error_rate(rate)})
    pipeline.advance()


def test_a_429_storm_delays_notifications_but_loses_and_repeats_none(
    pipeline: AlertPipeline,
) -> None:
    pipeline.start(RULES.replace("FOR", "0s"))
    standin = pipeline.standin
    standin.fail_for(600, status=429, retry_after=1)  # until healed below
    order = [
        Key("storm-a", "openai", "gpt-4o"),
        Key("storm-b", "openai", "gpt-4o"),
        Key("storm-a", "anthropic", "claude-3-5-haiku"),  # joins storm-a's queued message
        Key("storm-c", "openai", "gpt-4o"),
    ]
    for key in order:
        fire(pipeline, key)
        pipeline.wait_state("HighErrorRate", key, "firing")

    def merged_and_refused() -> bool:  # storm-a's queued message took in its second alert
        texts = [r.body.get("text", "") for r in standin.requests if r.status == 429]
        return any(t.startswith("[FIRING:2]") and order[2].dims in t for t in texts)

    wait_until(merged_and_refused, 30, "storm-a's merged message rate limited", 0.1)
    assert pipeline.posts() == []
    healed_at = time.time()
    standin.heal()

    pipeline.wait_posts(3)
    posts = pipeline.posts()
    statuses = [r.status for r in standin.requests]
    last_limited = max(i for i, status in enumerate(statuses) if status == 429)
    assert statuses[: last_limited + 1].count(200) == 0  # nothing got through the storm
    heads = [post.body["text"].split("\n")[0] for post in posts]
    assert (
        heads
        == ["[FIRING:2] HighErrorRate (critical)"] + ["[FIRING:1] HighErrorRate (critical)"] * 2
    )
    assert [k.dims in posts[0].body["text"] for k in order] == [True, False, True, False]
    assert order[1].dims in posts[1].body["text"] and order[3].dims in posts[2].body["text"]
    wait_until(lambda: pipeline.alerts_health()["notifications"]["queued"] == 0, 30, "drained")
    health = pipeline.alerts_health()
    assert health["notifications"]["dead_letters"] == 0
    assert health["slack"]["rate_limited"] >= 1 and health["slack"]["sent"] == 3
    assert len(pipeline.posts()) == 3 and standin.calls("chat.update") == []
    limited = sum(r.status == 429 for r in standin.requests)
    print(
        f"\n429 storm: {limited} requests answered 429; all 3 groups delivered "
        f"{posts[-1].wall - healed_at:.2f} s after Slack recovered"
    )


def wait_checkpointed_firing(pipeline: AlertPipeline) -> None:
    """Until the firing transition is published, stored and in the saved alert state."""

    def done() -> bool:
        health = pipeline.alerts_health()
        firing = health.get("transitions", {}).get("firing")
        return bool(firing == 1 and health["outputs_pending"] == 0)

    wait_until(done, 30, "firing transition checkpointed", 0.1)


def test_killed_mid_delivery_then_restarted_posts_once_and_resolves_in_the_thread(
    pipeline: AlertPipeline,
) -> None:
    pipeline.start(RULES.replace("FOR", "1s"))
    standin = pipeline.standin
    standin.slow(2.0)
    standin.fail_for(600, status=503)
    key = Key("crash")
    fire(pipeline, key)
    wait_checkpointed_firing(pipeline)
    wait_until(lambda: standin.in_flight >= 1, 30, "a message on its way to Slack", 0.05)
    pipeline.kill()  # SIGKILL while the message is in flight
    standin.heal()
    wait_until(lambda: standin.in_flight == 0, 30, "in-flight request ended", 0.05)
    assert pipeline.posts() == []
    assert standin.requests[-1].status == 499  # cut off on its way: Slack never saw it

    pipeline.restart()
    pipeline.wait_posts(1)
    fire(pipeline, key, rate=0.0)  # the condition clears
    pipeline.wait_posts(2, top=False)
    [first] = pipeline.top_level()
    assert (
        first.body["text"].startswith("[FIRING:1] HighErrorRate") and key.dims in first.body["text"]
    )
    [resolution] = pipeline.replies(first)
    assert resolution.body["text"].startswith("[RESOLVED] HighErrorRate")
    wait_until(lambda: len(standin.calls("chat.update")) >= 1, 30, "original edited")
    assert [u.body["ts"] for u in standin.calls("chat.update")] == [ts(first)]
    assert standin.messages[(first.response["channel"], ts(first))]["text"].startswith("[RESOLVED]")
    assert len(pipeline.posts()) == 2
    pipeline.wait_state("HighErrorRate", key, "resolved")
    assert pipeline.states("HighErrorRate", key) == ["pending", "firing", "resolved"]


def test_an_alert_that_resolves_while_slack_is_down_is_not_left_firing_after_a_restart(
    pipeline: AlertPipeline,
) -> None:
    """The queued firing message is withdrawn once its alert resolved unannounced.

    Sent late, it would show the alert firing in Slack for good: the resolution of an alert
    that was never announced is not sent.
    """
    pipeline.start(RULES.replace("FOR", "0s"))
    standin = pipeline.standin
    standin.fail_for(600, status=503)
    key = Key("outage")
    fire(pipeline, key)
    wait_checkpointed_firing(pipeline)
    wait_until(lambda: len(standin.requests) >= 1, 30, "delivery tried", 0.05)
    pipeline.kill()
    fire(pipeline, key, rate=0.0)  # recovers while the worker is down

    pipeline.restart()  # Slack still failing
    pipeline.wait_state("HighErrorRate", key, "resolved")
    wait_until(lambda: pipeline.alerts_health()["notifications"]["queued"] == 0, 30, "withdrawn")
    standin.heal()
    later = Key("after-outage")
    fire(pipeline, later)  # the next message on the channel queue goes out first and alone
    pipeline.wait_posts(1)
    [only] = pipeline.posts()
    assert later.dims in only.body["text"] and key.dims not in only.body["text"]
    assert pipeline.states("HighErrorRate", key) == ["firing", "resolved"]
    assert pipeline.alerts_health()["notifications"]["dead_letters"] == 0
