"""Routing, grouping, repeat_interval, inhibition, silences and the notification log."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from alerting.engine import AlertEngine
from alerting.inputs import MetricWindow
from alerting.notification import MessageRef, Notification, RetryableDeliveryError
from alerting.notifier import Notifier
from alerting.rules_file import RulesFile, load_rules_text
from alerting.silences import InMemorySilenceStore, Silence
from tests.unit.alert_fakes import T0, FakeClock

RULES = """
groups:
  - name: g
    rules:
      - alert: ProviderDown
        metric: error_rate
        by: [provider, model]
        op: ">"
        threshold: 0.5
        labels: {severity: critical}
      - alert: Slow
        metric: latency_p95_ms
        by: [provider, model]
        op: ">"
        threshold: 2000
        labels: {severity: warning, team: ml}
route:
  receiver: default
  group_by: [alertname]
  group_wait: 10s
  group_interval: 1m
  repeat_interval: 10m
  routes:
    - receiver: ml
      matchers: ['team="ml"']
      continue: true
    - receiver: ml-copy
      matchers: ['team=~"m.*"']
inhibit_rules:
  - source_matchers: ['alertname="ProviderDown"']
    target_matchers: ['alertname="Slow"']
    equal: [provider]
receivers:
  - {name: default, type: console}
  - {name: ml, type: console}
  - {name: ml-copy, type: console, send_resolved: false}
"""


class RecordingReceiver:
    def __init__(self, name: str, send_resolved: bool = True, min_interval: float = 0.0) -> None:
        self.name, self.send_resolved, self.min_interval = name, send_resolved, min_interval
        self.sent: list[Notification] = []
        self.fail_with: Exception | None = None

    def pace_key(self, notification: Notification) -> str:
        return self.name

    async def send(self, notification: Notification, ref: MessageRef | None) -> MessageRef | None:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(notification)
        return ref or MessageRef("C1", f"{len(self.sent)}.0")


class Setup:
    def __init__(self, text: str = RULES) -> None:
        self.rules: RulesFile = load_rules_text(text)
        self.clock = FakeClock()
        self.engine = AlertEngine(self.rules, clock=self.clock)
        self.receivers = {
            r.name: RecordingReceiver(r.name, r.send_resolved) for r in self.rules.receivers
        }
        self.silences = InMemorySilenceStore()
        self.notifier = self.new_notifier()

    def new_notifier(self) -> Notifier:
        return Notifier(self.rules, self.receivers, self.silences, clock=self.clock)

    def observe(self, provider: str, model: str, **metrics: float) -> None:
        record = MetricWindow("pm", {"provider": provider, "model": model}, T0, T0, 100, metrics)
        for transition in self.engine.observe_metrics(record):
            self.notifier.ingest(transition)

    async def run_for(self, seconds: float, step: float = 5) -> None:
        elapsed = 0.0
        while elapsed <= seconds:
            await self.notifier.tick()
            self.clock.advance(step)
            elapsed += step

    def kinds(self, receiver: str) -> list[tuple[str, int, int]]:
        return [(n.kind, len(n.firing), len(n.resolved)) for n in self.receivers[receiver].sent]


async def test_routing_with_continue_and_grouping_after_group_wait() -> None:
    s = Setup()
    s.observe("openai", "gpt-4o", latency_p95_ms=2500)
    s.observe("openai", "gpt-4o-mini", latency_p95_ms=2600)
    await s.notifier.tick()
    assert s.kinds("ml") == []  # group_wait
    await s.run_for(10)
    assert s.kinds("ml") == [("new", 2, 0)]
    assert s.kinds("ml-copy") == [("new", 2, 0)]
    assert s.kinds("default") == []


async def test_repeat_interval_caps_repeats_and_changes_wait_for_group_interval() -> None:
    s = Setup()
    s.observe("openai", "gpt-4o", latency_p95_ms=2500)
    await s.run_for(60 * 25, step=10)
    assert s.kinds("ml") == [("new", 1, 0), ("repeat", 1, 0), ("repeat", 1, 0)]
    s.observe("anthropic", "claude", latency_p95_ms=3000)
    await s.run_for(65, step=5)
    assert s.kinds("ml")[-1] == ("update", 2, 0)
    s.observe("openai", "gpt-4o", latency_p95_ms=100)
    await s.run_for(65, step=5)
    assert s.kinds("ml")[-1] == ("update", 1, 1)
    assert s.kinds("ml-copy")[-1] != ("update", 1, 1)  # send_resolved: false
    s.observe("anthropic", "claude", latency_p95_ms=100)
    await s.run_for(65, step=5)
    assert s.kinds("ml")[-1] == ("resolved", 0, 1)
    assert s.notifier.snapshot()["groups"] == []


async def test_inhibition_mutes_the_dependent_alert() -> None:
    s = Setup()
    s.observe("openai", "gpt-4o", error_rate=0.9)
    s.observe("openai", "gpt-4o", latency_p95_ms=5000)
    s.observe("anthropic", "claude", latency_p95_ms=5000)
    await s.run_for(15)
    assert s.kinds("default") == [("new", 1, 0)]
    [sent] = s.receivers["ml"].sent
    assert [a.labels["provider"] for a in sent.alerts] == ["anthropic"]


async def test_silence_mutes_until_it_ends() -> None:
    s = Setup()
    s.silences.add(
        Silence(('model="gpt-4o"',), T0, T0 + timedelta(minutes=5), author="ana", comment="deploy")
    )
    s.observe("openai", "gpt-4o", latency_p95_ms=5000)
    await s.run_for(60 * 4)
    assert s.kinds("ml") == []
    await s.run_for(60 * 2)
    assert s.kinds("ml") == [("new", 1, 0)]


async def test_restart_does_not_post_twice_and_still_sends_the_resolution() -> None:
    s = Setup()
    s.observe("openai", "gpt-4o", latency_p95_ms=5000)
    await s.run_for(15)
    assert s.kinds("ml") == [("new", 1, 0)]
    engine_state = json.loads(json.dumps(s.engine.snapshot()))
    notifier_state = json.loads(json.dumps(s.notifier.snapshot()))

    s.engine = AlertEngine(s.rules, clock=s.clock)
    s.engine.restore(engine_state)
    s.notifier = s.new_notifier()
    s.notifier.restore(notifier_state)
    s.observe("openai", "gpt-4o", latency_p95_ms=5000)  # still firing: no transition
    await s.run_for(60)
    assert s.kinds("ml") == [("new", 1, 0)]
    s.observe("openai", "gpt-4o", latency_p95_ms=10)
    await s.run_for(65)
    assert s.kinds("ml") == [("new", 1, 0), ("resolved", 0, 1)]
    assert s.receivers["ml"].sent[1].id.endswith(":2")


async def test_replayed_transitions_are_ignored() -> None:
    s = Setup()
    record = MetricWindow(
        "pm", {"provider": "p", "model": "m"}, T0, T0, 100, {"latency_p95_ms": 5000}
    )
    [transition] = s.engine.observe_metrics(record)
    for _ in range(3):
        s.notifier.ingest(transition)
    await s.run_for(15)
    s.notifier.ingest(transition)  # at-least-once input delivers it again after sending
    await s.run_for(120)
    assert s.kinds("ml") == [("new", 1, 0)]


async def test_failed_delivery_waits_in_the_outbox_and_survives_restart() -> None:
    s = Setup()
    s.receivers["ml"].fail_with = RetryableDeliveryError("slack down", retry_after=30)
    s.observe("openai", "gpt-4o", latency_p95_ms=5000)
    await s.run_for(20)
    assert s.receivers["ml"].sent == [] and s.notifier.queued == 1
    saved: dict[str, Any] = json.loads(json.dumps(s.notifier.snapshot()))
    s.notifier = s.new_notifier()
    s.notifier.restore(saved)
    s.receivers["ml"].fail_with = None
    await s.run_for(40)
    assert s.kinds("ml") == [("new", 1, 0)] and s.notifier.queued == 0


async def test_pacing_spaces_messages_on_one_channel() -> None:
    s = Setup()
    s.receivers["ml"].min_interval = 1.0
    s.observe("openai", "gpt-4o", latency_p95_ms=5000)
    s.observe("openai", "gpt-4o", error_rate=0.9)
    text = RULES.replace("group_by: [alertname]", "group_by: [model]")
    s2 = Setup(text)
    s2.receivers["ml"].min_interval = 1.0
    for model in ("a", "b", "c"):
        s2.observe("p", model, latency_p95_ms=5000)
    s2.clock.advance(10)
    assert await s2.notifier.tick() == 2  # ml + ml-copy heads for the first group
    assert await s2.notifier.tick() == 1  # ml-copy is not paced; ml waits a second
    s2.clock.advance(1)
    assert await s2.notifier.tick() == 2
