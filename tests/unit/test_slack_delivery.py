"""Slack and webhook delivery through the local stand-in (no internet)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from pydantic import SecretStr

from alerting.blocks import MAX_BLOCKS, MAX_HEADER_TEXT, MAX_SECTION_TEXT, build_message
from alerting.engine import AlertEngine
from alerting.inputs import MetricWindow
from alerting.notification import Notification, PermanentDeliveryError, RetryableDeliveryError
from alerting.notifier import Notifier
from alerting.receivers import build_receivers
from alerting.rules_file import load_rules_text
from alerting.silences import InMemorySilenceStore
from alerting.slack_receiver import SlackReceiver
from alerting.state import AlertState, AlertTransition
from alerting.webhook_receiver import WebhookReceiver
from tests.slack_standin import SlackStandIn
from tests.unit.alert_fakes import T0, FakeClock, fast

RULES = """
groups:
  - name: g
    rules:
      - alert: HighLatencyP95
        metric: latency_p95_ms
        by: [app, model]
        op: ">"
        threshold: 2000
        recovery_threshold: 1500
        labels: {severity: critical}
        annotations:
          summary: "p95 {{ $value }} ms on {{ $labels.model }}"
          runbook_url: https://runbooks.example/latency
route:
  receiver: slack
  group_by: [alertname]
  group_wait: 1s
  group_interval: 10s
  repeat_interval: 1h
receivers:
  - name: slack
    type: slack
    SLACK_MODE
"""
BOT = "token_env: TEST_SLACK_TOKEN\n    channel: '#llm-alerts'"
HOOK = "webhook_url_env: TEST_SLACK_WEBHOOK"


@pytest.fixture
async def standin() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn() as server:
        yield server


def quick(receiver: SlackReceiver) -> SlackReceiver:
    """Two server-error retries: the 500s test expects two failures, then the post."""
    return fast(receiver, server_error_retries=2, backoff_cap=0.05)


class Pipeline:
    def __init__(self, standin: SlackStandIn, mode: str) -> None:
        self.rules = load_rules_text(RULES.replace("SLACK_MODE", mode))
        env = {"TEST_SLACK_TOKEN": "xoxb-test", "TEST_SLACK_WEBHOOK": standin.webhook_url}
        receivers = build_receivers(self.rules, env=env, slack_base_url=standin.base_url)
        self.receiver = quick(receivers["slack"])  # type: ignore[arg-type]
        self.clock = FakeClock()
        self.engine = AlertEngine(self.rules, clock=self.clock)
        self.notifier = Notifier(
            self.rules, {"slack": self.receiver}, InMemorySilenceStore(), clock=self.clock
        )

    def observe(self, model: str, value: float) -> None:
        record = MetricWindow(
            "am", {"app": "chat", "model": model}, T0, T0, 50, {"latency_p95_ms": value}
        )
        for transition in self.engine.observe_metrics(record):
            self.notifier.ingest(transition)

    async def run(self, seconds: float, step: float = 1.0) -> None:
        for _ in range(int(seconds / step) + 1):
            await self.notifier.tick()
            self.clock.now += timedelta(seconds=step)


async def test_bot_posts_then_threads_updates_and_edits_the_original(standin: SlackStandIn) -> None:
    p = Pipeline(standin, BOT)
    for value in (1800, 2100, 2600):
        p.observe("gpt-4o", value)
    await p.run(2)
    [post] = standin.calls("chat.postMessage")
    assert post.headers["Authorization"] == "Bearer xoxb-test"
    assert post.body["channel"] == "#llm-alerts" and "thread_ts" not in post.body
    text = str(post.body["blocks"])
    assert "HighLatencyP95" in text and "model=gpt-4o" in text and "▁" in text
    assert "https://runbooks.example/latency" in text and "FROM llmpulse.llm_calls" in text
    assert post.body["text"].startswith("[FIRING:1] HighLatencyP95 (critical)")

    p.observe("gpt-4o-mini", 3000)
    await p.run(12)
    p.observe("gpt-4o", 1400)
    p.observe("gpt-4o-mini", 1000)
    await p.run(12)
    posts, updates = standin.calls("chat.postMessage"), standin.calls("chat.update")
    first_ts = standin.messages and next(iter(standin.messages))[1]
    assert [r.body.get("thread_ts") for r in posts] == [None, first_ts, first_ts]
    assert len(updates) == 2 and all(u.body["ts"] == first_ts for u in updates)
    original = next(iter(standin.messages.values()))
    assert original["text"].startswith("[RESOLVED] HighLatencyP95")
    assert p.notifier.snapshot()["groups"] == []


async def test_webhook_mode_posts_updates_as_new_messages(standin: SlackStandIn) -> None:
    p = Pipeline(standin, HOOK)
    p.observe("gpt-4o", 2600)
    await p.run(2)
    p.observe("gpt-4o", 100)
    await p.run(12)
    posts = standin.webhook_posts()
    assert [r.body["text"].split("]")[0] for r in posts] == ["[FIRING:1", "[RESOLVED"]
    assert standin.calls("chat.update") == []


async def test_a_429_storm_delays_but_loses_nothing(standin: SlackStandIn) -> None:
    p = Pipeline(standin, BOT)
    p.rules = load_rules_text(RULES.replace("SLACK_MODE", BOT).replace("[alertname]", "[model]"))
    p.notifier = Notifier(p.rules, {"slack": p.receiver}, InMemorySilenceStore(), clock=p.clock)
    models = [f"model-{i}" for i in range(4)]
    for model in models:
        p.observe(model, 5000)
    standin.fail_next(5, status=429, retry_after=0)
    await p.run(30)
    posts = standin.calls("chat.postMessage")
    rejected = [r for r in standin.requests if r.status == 429]
    assert len(rejected) == 5
    assert [re.search(r"model=(model-\d)", r.body["text"]).group(1) for r in posts] == models  # type: ignore[union-attr]
    assert p.notifier.queued == 0
    times = [r.time for r in posts]
    assert times == sorted(times)


async def test_server_errors_are_retried_by_the_sdk_handlers(standin: SlackStandIn) -> None:
    p = Pipeline(standin, BOT)
    p.observe("gpt-4o", 2600)
    standin.fail_next(2, status=500, retry_after=None)
    await p.run(2)
    assert [r.status for r in standin.requests] == [500, 500, 200]
    assert len(standin.calls("chat.postMessage")) == 1


async def test_unreachable_slack_keeps_the_notification_queued(standin: SlackStandIn) -> None:
    p = Pipeline(standin, BOT)
    p.observe("gpt-4o", 2600)
    standin.fail_for(60, status=503)
    await p.run(5)
    assert p.notifier.queued == 1 and standin.calls("chat.postMessage") == []
    standin.heal()
    p.clock.now += timedelta(seconds=120)
    await p.run(1)
    assert p.notifier.queued == 0 and len(standin.calls("chat.postMessage")) == 1


async def test_bad_token_is_a_permanent_failure(standin: SlackStandIn) -> None:
    receiver = SlackReceiver("s", token=SecretStr("nope"), channel="#a", base_url=standin.base_url)
    with pytest.raises(PermanentDeliveryError, match="not_authed"):
        await receiver.send(notification(alerts(1)), None)
    assert "nope" not in repr(receiver)


def alerts(count: int, labels: int = 3, width: int = 10) -> tuple[AlertTransition, ...]:
    return tuple(
        AlertTransition(
            rule_id="g/Huge",
            rule="Huge" * 20,
            kind="threshold",
            fingerprint=f"{i:016x}",
            labels={"severity": "critical", **{f"label_{j}": "v" * width for j in range(labels)}},
            annotations={"summary": "s" * 5000, "runbook_url": "https://r.example/x"},
            state=AlertState.FIRING,
            previous_state=AlertState.PENDING,
            at=T0,
            sequence=1,
            value=2500.0,
            threshold=2000.0,
            op=">",
            metric="latency_p95_ms",
            key_set="k",
            active_since=T0,
            fired_at=T0,
            history=tuple(float(v) for v in range(30)),
        )
        for i in range(count)
    )


def notification(items: tuple[AlertTransition, ...]) -> Notification:
    return Notification("r:g:1", "r", "g", {"alertname": "Huge"}, "new", items, T0)


async def test_block_kit_limits_hold_with_huge_label_sets(standin: SlackStandIn) -> None:
    huge = notification(alerts(200, labels=60, width=300))
    text, blocks = build_message(huge, T0 + timedelta(minutes=5))
    assert len(blocks) <= MAX_BLOCKS and len(text) <= 3000
    assert len(blocks[0]["text"]["text"]) <= MAX_HEADER_TEXT
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert sections and all(len(s) <= MAX_SECTION_TEXT for s in sections)
    assert sections[-1].endswith("```")
    receiver = quick(
        SlackReceiver("s", token=SecretStr("xoxb-1"), channel="#a", base_url=standin.base_url)
    )
    ref = await receiver.send(huge, None)
    assert ref is not None and ref.ts.endswith(".000100")


async def test_generic_webhook_retries_and_sends_json(standin: SlackStandIn) -> None:
    receiver = WebhookReceiver(
        "hook", SecretStr(standin.generic_url), max_retries=2, backoff_cap=0.01
    )
    standin.fail_next(1, status=503, retry_after=None)
    await receiver.send(notification(alerts(1)), None)
    [post] = standin.generic_posts()
    assert post.headers["Idempotency-Key"] == "r:g:1"
    assert (
        post.body["status"] == "firing"
        and post.body["alerts"][0]["labels"]["severity"] == "critical"
    )
    standin.fail_next(5, status=502, retry_after=None)
    with pytest.raises(RetryableDeliveryError):
        await receiver.send(notification(alerts(1)), None)
