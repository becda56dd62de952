"""Grouping, repeat_interval, inhibition and silences end to end, through the real worker.

Calls go to the real broker, the worker turns them into metric windows and alerts, and the
notifier posts to the Slack stand-in; every assertion is on what Slack and ``llm_alerts`` got.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.alert_e2e_support import (
    AlertPipeline,
    Key,
    Traffic,
    alert_pipeline,
    error_rate,
    ts,
)
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(
    kafka: str, worker_env: dict[str, str], make_worker: Any, tmp_path: Path
) -> Iterator[AlertPipeline]:
    with alert_pipeline(kafka, worker_env, make_worker, tmp_path) as running:
        yield running


SLACK = """
receivers:
  - name: slack
    type: slack
    token_env: LLMPULSE_SLACK_BOT_TOKEN
    channel: "#llm-alerts"
"""
ERROR_RULE = """
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
        labels: {severity: critical}
"""


def route(group_by: str, repeat: str = "1h", group_wait: str = "0s") -> str:
    return f"""
route:
  receiver: slack
  group_by: {group_by}
  group_wait: {group_wait}
  group_interval: 1s
  repeat_interval: {repeat}
"""


def test_a_burst_in_one_group_is_one_message_repeated_no_sooner_than_repeat_interval(
    pipeline: AlertPipeline,
) -> None:
    pipeline.start(ERROR_RULE + route("[alertname, app]", repeat="3s", group_wait="1s") + SLACK)
    keys = [Key("fleet", "openai", f"model-{i}") for i in range(8)]
    pipeline.send({key: error_rate(0.8) for key in keys})
    pipeline.advance()
    pipeline.wait_posts(1, "HighErrorRate")
    [first] = pipeline.top_level()
    assert first.body["text"].startswith("[FIRING:8] HighErrorRate")
    assert all(key.dims in first.body["text"] for key in keys)  # one message, not eight

    # Still firing and unchanged: re-posted in the thread, no sooner than every 3 s.
    pipeline.wait_posts(2, top=False, timeout=30)
    pipeline.wait_posts(3, top=False, timeout=30)
    posts = pipeline.posts()[:3]
    gaps = [b.wall - a.wall for a, b in itertools.pairwise(posts)]
    print(f"\nrepeat_interval 3s: gaps between posts {[round(g, 2) for g in gaps]} s")
    assert all(gap >= 3.0 for gap in gaps), gaps
    assert pipeline.top_level() == [first]
    for repeat in posts[1:]:
        assert repeat.body["thread_ts"] == ts(first)
        assert repeat.body["text"].startswith("Still firing: [FIRING:8] HighErrorRate")
    fired = [pipeline.states("HighErrorRate", key) for key in keys]
    assert fired == [["firing"]] * len(keys)  # eight alerts, one group


INHIBITION_RULES = """
groups:
  - name: e2e
    interval: 1s
    rules:
      - alert: ProviderErrors
        metric: error_rate
        by: [app, environment, provider, model]
        op: ">"
        threshold: 0.5
        min_requests: 5
        labels: {severity: critical}
      - alert: SlowResponses
        metric: latency_p95_ms
        by: [app, environment, provider, model]
        op: ">"
        threshold: 1000
        min_requests: 5
        for: 1s
        labels: {severity: warning}
inhibit_rules:
  - source_matchers: ['alertname="ProviderErrors"']
    target_matchers: ['alertname="SlowResponses"']
    equal: [provider]
"""


def test_a_provider_outage_inhibits_its_latency_alert_only(pipeline: AlertPipeline) -> None:
    pipeline.start(INHIBITION_RULES + route("[alertname, provider]") + SLACK)
    failing = Key("inhibit", "openai", "gpt-4o")
    other = Key("inhibit", "anthropic", "claude-3-5-haiku")
    pipeline.send({failing: Traffic(20, 16, 3000.0), other: Traffic(20, 0, 3000.0)})
    pipeline.advance()
    pipeline.wait_posts(1, "SlowResponses", other.dims)
    pipeline.wait_state("SlowResponses", failing, "firing")  # firing, but muted
    assert pipeline.posts("SlowResponses", failing.dims) == []

    pipeline.send({failing: Traffic(20, 0, 3000.0), other: Traffic(20, 0, 3000.0)})
    pipeline.advance()  # the provider recovers; its responses stay slow
    pipeline.wait_posts(1, "SlowResponses", failing.dims)

    [source_fired, source_resolved] = pipeline.transitions("ProviderErrors", failing)
    assert (source_fired["state"], source_resolved["state"]) == ("firing", "resolved")
    [_, target] = pipeline.transitions("SlowResponses", failing)
    assert target["state"] == "firing" and target["at"] < source_resolved["at"]
    [muted_then_posted] = pipeline.top_level("SlowResponses", failing.dims)
    assert muted_then_posted.wall > source_resolved["at"]  # not while the source fired
    [other_post] = pipeline.top_level("SlowResponses", other.dims)
    assert other_post.wall < source_resolved["at"]  # the other provider was never muted
    [source_post] = pipeline.top_level("ProviderErrors")
    pipeline.wait_posts(1, "[RESOLVED] ProviderErrors", top=False)
    assert [r.body["text"].split("\n")[0] for r in pipeline.replies(source_post)] == [
        "[RESOLVED] ProviderErrors (critical)"
    ]
    assert len(pipeline.posts()) == 4


def test_a_silence_from_the_cli_mutes_matching_alerts_until_it_is_expired(
    pipeline: AlertPipeline,
) -> None:
    pipeline.start(ERROR_RULE + route("[alertname, model]") + SLACK)
    silenced = Key("quiet", "openai", "gpt-4o")
    loud = Key("quiet", "anthropic", "claude-3-5-haiku")
    added = pipeline.cli(
        "silence", "add", "-m", "model=gpt-4o", "-m", 'app=~"quiet|calm"', "--duration", "10m",
        "--author", "e2e", "--comment", "provider incident",
    )  # fmt: skip
    silence_id = added.splitlines()[0]
    health = pipeline.alerts_health
    wait_until(lambda: health().get("silences_active") == 1, 30, "silence followed", 0.1)

    pipeline.send({silenced: error_rate(0.8), loud: error_rate(0.8)})
    pipeline.advance()
    pipeline.wait_posts(1, loud.dims)
    pipeline.wait_state("HighErrorRate", silenced, "firing")  # published, stored, not posted
    assert pipeline.posts(silenced.dims) == []

    expired = pipeline.cli("silence", "expire", silence_id[:8])
    assert expired.startswith(f"silence {silence_id} expired at ")
    ended_at = datetime.fromisoformat(expired.strip().rsplit(" ", 1)[-1]).timestamp()
    pipeline.wait_posts(1, silenced.dims)
    [late] = pipeline.top_level(silenced.dims)
    assert late.body["text"].startswith("[FIRING:1] HighErrorRate") and late.wall > ended_at
    [fired] = pipeline.transitions("HighErrorRate", silenced)
    assert fired["at"] < ended_at  # it fired while silenced and was held back until now
    assert len(pipeline.top_level(loud.dims)) == 1 and len(pipeline.posts()) == 2
