"""Stand-ins for the alerting tests: clock, checkpoint store, sink, publisher, records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from alerting.receivers import build_receivers
from alerting.rules_file import RulesFile, load_rules_text
from alerting.silences import InMemorySilenceStore, SilenceStore
from alerting.slack_receiver import SlackReceiver, retry_handlers
from streams.alerts_stage import AlertsStage
from streams.metrics import MetricRecord
from tests.slack_standin import SlackStandIn

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

RULES = """
groups:
  - name: llm
    interval: 1m
    rules:
      - alert: HighErrorRate
        metric: error_rate
        by: [app, model]
        op: ">"
        threshold: 0.05
        recovery_threshold: 0.02
        min_requests: 20
        for: FOR
        labels: {severity: critical}
        annotations:
          summary: "{{ $labels.model }} errors at {{ $value | humanizePercentage }}"
route:
  receiver: slack
  group_by: GROUP_BY
  group_wait: 1s
  group_interval: GROUP_INTERVAL
  repeat_interval: 4h
receivers:
  - name: slack
    type: slack
    token_env: TEST_SLACK_TOKEN
    channel: "#llm-alerts"
"""


def rules(
    for_: str = "2m", group_by: str = "[alertname, app]", group_interval: str = "10s"
) -> RulesFile:
    text = RULES.replace("FOR", for_).replace("GROUP_BY", group_by)
    return load_rules_text(text.replace("GROUP_INTERVAL", group_interval))


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0.0, **delta: float) -> datetime:
        self.now += timedelta(seconds=seconds, **delta)
        return self.now


class WallClock:
    """The real clock, with the fake one's ``now``; it cannot be advanced."""

    @property
    def now(self) -> datetime:
        return datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        raise NotImplementedError("the wall clock advances by itself")


class MemoryCheckpoints:
    """The two calls of CheckpointStore the stage uses, over a dict."""

    def __init__(self) -> None:
        self.saved: dict[str, bytes] = {}
        self.saves = 0
        self.fail = False

    async def save(self, name: str, payload: bytes) -> None:
        if self.fail:
            raise RuntimeError("state topic unavailable")
        self.saved[name] = payload
        self.saves += 1

    async def load(self, names: Iterable[str] | None = None) -> dict[str, bytes]:
        wanted = set(self.saved) if names is None else set(names)
        return {name: data for name, data in self.saved.items() if name in wanted}


class RecordingSink:
    """Acknowledges rows as written at once, unless ``hold`` is set (store away)."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []
        self.hold = False
        self._unacked: list[Any] = []

    async def add(self, row: bytes, ack: Any = None) -> None:
        self.rows.append(orjson.loads(row))
        self._unacked.append(ack)
        if not self.hold:
            await self.flush()

    async def flush(self) -> None:
        if self.hold:
            return
        for ack in self._unacked:
            ack.ack()
        self._unacked.clear()


class RecordingPublisher:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, dict[str, Any]]] = []
        self.fail = False

    async def __call__(self, key: bytes, value: bytes) -> None:
        if self.fail:
            raise ConnectionError("broker away")
        self.records.append((key, orjson.loads(value)))

    def states(self) -> list[str]:
        return [value["state"] for _, value in self.records]


def fast(
    receiver: SlackReceiver, server_error_retries: int = 1, backoff_cap: float = 0.02
) -> SlackReceiver:
    """Keep slack-sdk's retry handlers but with tiny backoff, so tests stay fast."""
    handlers = retry_handlers(
        rate_limit_retries=1, server_error_retries=server_error_retries, backoff_cap=backoff_cap
    )
    for client in (receiver._web, receiver._webhook):
        if client is not None:
            client.retry_handlers = handlers
    return receiver


class Harness:
    """One worker's AlertsStage wired to fakes; ``restart`` builds the next one on the same
    checkpoints, publisher, sink and Slack."""

    def __init__(
        self,
        standin: SlackStandIn,
        rules_file: RulesFile,
        clock: FakeClock | WallClock | None = None,
        silences: SilenceStore | None = None,
    ) -> None:
        self.standin = standin
        self.rules = rules_file
        self.clock = clock or FakeClock()
        self.silences = silences or InMemorySilenceStore()
        self.checkpoints = MemoryCheckpoints()
        self.sink = RecordingSink()
        self.publish = RecordingPublisher()
        self.stage = self.new_stage()

    def new_stage(self, **options: Any) -> AlertsStage:
        env: Mapping[str, str] = {"TEST_SLACK_TOKEN": "xoxb-test"}
        receivers = build_receivers(self.rules, env=env, slack_base_url=self.standin.base_url)
        for receiver in receivers.values():
            if isinstance(receiver, SlackReceiver):
                fast(receiver)
        return AlertsStage(
            self.rules, receivers, self.silences, self.checkpoints, self.publish, self.sink,
            clock=self.clock, **options,
        )  # fmt: skip

    async def restart(self) -> AlertsStage:
        self.stage = self.new_stage()
        await self.stage.start(background=False)
        return self.stage

    def observe(self, error_rate: float, app: str = "chat", model: str = "gpt-4o") -> None:
        self.stage.observe_metric(window(error_rate, app, model, self.clock.now))

    async def run(self, seconds: float, step: float = 1.0) -> None:
        for _ in range(int(seconds / step)):
            await self.stage.tick()
            self.clock.advance(step)

    def posts(self) -> list[dict[str, Any]]:
        return [r.body for r in self.standin.calls("chat.postMessage")]


BASE = MetricRecord(
    key_set="app_model", dimensions={}, window_start=T0, window_end=T0, requests=100, errors=0,
    error_rate=0.0, latency_p50_ms=400.0, latency_p90_ms=800.0, latency_p95_ms=900.0,
    latency_p99_ms=1500.0, ttft_count=0, ttft_p50_ms=None, ttft_p95_ms=None,
    output_tokens_per_second_count=0, output_tokens_per_second_mean=None, input_tokens_sum=0,
    output_tokens_sum=0, cached_input_tokens_sum=0, cost_usd_sum=0.0, cost_missing=0,
    cost_per_1k_requests=None, finish_length_rate=0.0, finish_content_filter_rate=0.0,
    score_means={}, score_counts={}, feedback_means={}, feedback_counts={}, late_events=0,
    closed_by="watermark",
)  # fmt: skip


def window(error_rate: float, app: str, model: str, end: datetime) -> MetricRecord:
    """A closed one-minute window of ``app``/``model`` ending at ``end``."""
    return replace(
        BASE, dimensions={"app": app, "model": model}, window_start=end - timedelta(minutes=1),
        window_end=end, errors=round(error_rate * BASE.requests), error_rate=error_rate,
    )  # fmt: skip
