"""How long from a condition holding (after its ``for``) to Slack receiving the message.

Measured through the real worker for lone alerts, for a burst of 20 alerts in one group and
for a burst of 20 alerts in four groups. The numbers are printed (``ALERT-LATENCY ...``, run
with ``-s``) and written to ``alert-latency.txt`` in the test's tmp dir; they are not
asserted, since machines are noisy. What is asserted is the grouping: a burst in one group
is one message, and four groups are four messages paced one second apart.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.alert_e2e_support import (
    AlertPipeline,
    Key,
    alert_pipeline,
    error_rate,
    latency_line,
    percentile,
)
from tests.integration.conftest import wait_until
from tests.slack_standin import RecordedRequest

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(
    kafka: str, worker_env: dict[str, str], make_worker: Any, tmp_path: Path
) -> Iterator[AlertPipeline]:
    with alert_pipeline(kafka, worker_env, make_worker, tmp_path) as running:
        yield running


FOR_S = 1.0
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
        min_requests: 5
        for: 1s
        labels: {severity: critical}
route:
  receiver: slack
  group_by: [alertname, app]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: slack
    type: slack
    token_env: LLMPULSE_SLACK_BOT_TOKEN
    channel: "#llm-alerts"
"""


class Timings:
    """Per alert: condition held (pending + `for`) -> fired (engine tick) -> Slack request."""

    def __init__(self, label: str, note: str) -> None:
        self.label, self.note = label, note
        self.posted: dict[Key, RecordedRequest] = {}

    def lines(self, pipeline: AlertPipeline) -> list[str]:
        def firing() -> dict[Key, dict[str, Any]]:
            stored = pipeline.transitions("HighErrorRate")
            by_key = {Key(t["app"], t["provider"], t["model"]): t for t in stored}
            return {k: t for k, t in by_key.items() if k in self.posted and t["state"] == "firing"}

        wait_until(lambda: len(firing()) == len(self.posted), 30, "firing stored", 0.2)
        fired = firing()
        total, tick, notify = [], [], []
        for key, post in self.posted.items():
            held = fired[key]["started_at"] + FOR_S
            total.append(post.wall - held)
            tick.append(fired[key]["fired_at"] - held)
            notify.append(post.wall - fired[key]["fired_at"])
        return [
            latency_line(self.label, total, f" ({self.note})"),
            f"  {self.label}: held->fired p50={percentile(tick, 0.5):.2f}s "
            f"p95={percentile(tick, 0.95):.2f}s, fired->Slack p50={percentile(notify, 0.5):.2f}s "
            f"p95={percentile(notify, 0.95):.2f}s",
        ]


def burst(pipeline: AlertPipeline, keys: list[Key], groups: int) -> list[RecordedRequest]:
    """All keys breach in one window; return the first message of each of their groups."""
    pipeline.send({key: error_rate(0.8) for key in keys})
    pipeline.advance()
    apps = {key.app for key in keys}
    wait_until(lambda: len(first_messages(pipeline, apps)) >= groups, 30, "burst posted", 0.05)
    return first_messages(pipeline, apps)


def first_messages(pipeline: AlertPipeline, apps: set[str]) -> list[RecordedRequest]:
    return [p for p in pipeline.top_level() if any(f"app={app}," in p.body["text"] for app in apps)]


def test_alert_latency_lone_and_in_bursts(pipeline: AlertPipeline, tmp_path: Path) -> None:
    pipeline.start(RULES)
    lone = Timings("lone", "one alert at a time")
    for i in range(5):  # one at a time: nothing else is queued for the channel
        key = Key(f"lone-{i}")
        pipeline.send({key: error_rate(0.8)})
        pipeline.advance()
        pipeline.wait_posts(1, key.dims)
        [lone.posted[key]] = pipeline.top_level(key.dims)

    one_group = Timings("burst-1-group", "20 alerts, 1 message")
    keys = [Key("burst-one", "openai", f"model-{i:02d}") for i in range(20)]
    [message] = burst(pipeline, keys, groups=1)
    assert message.body["text"].startswith("[FIRING:20] HighErrorRate")  # all in one message
    one_group.posted = dict.fromkeys(keys, message)

    four_groups = Timings("burst-4-groups", "20 alerts, 4 messages paced 1/s")
    spread = [Key(f"spread-{'abcd'[i % 4]}", "openai", f"model-{i:02d}") for i in range(20)]
    messages = burst(pipeline, spread, groups=4)
    assert [m.body["text"].split("\n")[0] for m in messages] == [
        "[FIRING:5] HighErrorRate (critical)"
    ] * 4
    gaps = [b.wall - a.wall for a, b in itertools.pairwise(messages)]
    assert all(gap >= 1.0 for gap in gaps), gaps  # Slack's pace: one message/s per channel
    for key in spread:
        [four_groups.posted[key]] = [m for m in messages if f"app={key.app}," in m.body["text"]]
    assert len(pipeline.posts()) == 5 + 1 + 4  # one message per group, nothing else

    report = [line for t in (lone, one_group, four_groups) for line in t.lines(pipeline)]
    (tmp_path / "alert-latency.txt").write_text("\n".join(report) + "\n")
    print("\n" + "\n".join(report) + f"\n(also in {tmp_path / 'alert-latency.txt'})")
