"""Alert rules end to end: calls on the real broker -> worker -> metrics -> rule -> Slack stand-in.

A threshold rule on the error rate goes pending -> firing (after its ``for``) -> resolved; the
firing message is posted to the channel and the resolution is threaded under it while the
original is edited.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.events import valid_call
from tests.integration.alert_e2e_support import slack_standin
from tests.integration.conftest import produce, wait_until
from tests.slack_standin import SlackStandIn

pytestmark = pytest.mark.integration

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
        for: 2s
        labels: {severity: critical}
        annotations:
          summary: "errors at {{ $value }} in {{ $labels.app }}"
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
    send_resolved: true
"""


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with slack_standin() as server:
        yield server


def _call(i: int, ts: float, error: bool, rng: random.Random) -> bytes:
    event = valid_call(i, rng, app="shop", environment="prod", provider="openai", model="gpt-4o")
    event.update(
        timestamp=datetime.fromtimestamp(ts, UTC).isoformat(),
        status="error" if error else "ok",
        error_type="server_error" if error else None,
    )
    return orjson.dumps(event)


def test_threshold_rule_fires_and_resolves_in_slack(
    kafka: str, worker_env: dict[str, str], make_worker: Any, standin: SlackStandIn, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    topic = worker_env["LLMPULSE_TOPIC_CALLS"]
    worker = make_worker(
        LLMPULSE_METRICS_WINDOW_S="10",
        LLMPULSE_METRICS_LATENESS_S="2",
        LLMPULSE_METRICS_IDLE_CLOSE_S="30",
        LLMPULSE_ALERTS_RULES_FILE=str(rules),
        LLMPULSE_ALERTS_SLACK_BASE_URL=standin.base_url,
        LLMPULSE_SLACK_BOT_TOKEN="xoxb-" + "e2e-" + "token",
    ).start()
    rng = random.Random(9)
    base = (time.time() // 10) * 10 - 120
    bad = [_call(i, base + i, error=i % 5 != 0, rng=rng) for i in range(10)]  # 80% errors
    good = [_call(100 + i, base + 10 + i, error=False, rng=rng) for i in range(10)]
    produce(kafka, topic, bad)
    wait_until(lambda: (worker.health() or {}).get("events_in", {}).get(topic) == 10, 60, "bad")
    produce(kafka, topic, good[:5])  # base+10..14: the watermark passes base+12, closing window 1
    closed_at = time.monotonic()
    wait_until(lambda: len(standin.calls("chat.postMessage")) >= 1, 60, "firing posted")
    firing = standin.calls("chat.postMessage")[0]
    assert firing.body["channel"] == "#llm-alerts" and "thread_ts" not in firing.body
    assert "HighErrorRate" in firing.body["text"] and "FIRING" in firing.body["text"]
    assert "app=shop" in firing.body["text"]
    # Includes producing the closing calls, the 1 s metrics tick and the rule's 2 s `for`.
    print(f"window closed -> Slack request: {firing.time - closed_at:.2f} s")

    produce(kafka, topic, [*good[5:], _call(200, base + 23, error=False, rng=rng)])
    wait_until(lambda: len(standin.calls("chat.postMessage")) >= 2, 60, "resolution posted")
    resolved = standin.calls("chat.postMessage")[1]
    channel, ts = next(iter(standin.messages))  # the firing message, posted first
    assert resolved.body.get("thread_ts") == ts and "RESOLVED" in resolved.body["text"]
    wait_until(lambda: len(standin.calls("chat.update")) >= 1, 30, "original edited")
    assert standin.messages[(channel, ts)]["text"].startswith("[RESOLVED]")
    states = worker.sql(
        "SELECT state FROM llmpulse.llm_alerts FINAL WHERE rule = 'HighErrorRate' "
        "ORDER BY at, sequence"
    )
    assert [s for (s,) in states] == ["pending", "firing", "resolved"]
