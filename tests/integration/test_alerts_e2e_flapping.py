"""`for` and hysteresis end to end: a noisy error rate hovering around the threshold.

The worker sees an error rate alternating 0.55 / 0.45 per window around a threshold of 0.5.
A rule with ``for`` and ``recovery_threshold: 0.3`` fires once and resolves only when the rate
drops to 0.1; the same comparison without either flaps with every window.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.alert_e2e_support import AlertPipeline, Key, alert_pipeline, error_rate, ts

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
      - alert: SteadyErrors
        metric: error_rate
        by: [app, environment, provider, model]
        op: ">"
        threshold: 0.5
        recovery_threshold: 0.3
        min_requests: 5
        for: 2s
        labels: {severity: critical}
      - alert: JumpyErrors
        metric: error_rate
        by: [app, environment, provider, model]
        op: ">"
        threshold: 0.5
        min_requests: 5
        labels: {severity: warning}
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

NOISY = [0.55, 0.45, 0.55, 0.45]
KEY = Key("noisy")


def feed(pipeline: AlertPipeline, rates: list[float], previous: int | None) -> int:
    """One window per rate; each waits until the window before it reached the rules.

    So consecutive windows reach the rules at least one metrics tick (1 s) apart, as windows
    of a live service would, instead of all at once.
    """
    for rate in rates:
        index = pipeline.send({KEY: error_rate(rate)})
        if previous is not None:
            pipeline.wait_observed(previous, [KEY])
        previous = index
    assert previous is not None
    return previous


def test_for_and_hysteresis_fire_once_on_a_noisy_series(pipeline: AlertPipeline) -> None:
    pipeline.start(RULES)
    last = feed(pipeline, NOISY, None)
    pipeline.wait_posts(1, "SteadyErrors")  # `for: 2s` held through 0.55, 0.45, 0.55
    last = feed(pipeline, NOISY, last)  # still hovering around 0.5 after it fired
    assert pipeline.replies(pipeline.top_level("SteadyErrors")[0]) == []
    last = feed(pipeline, [0.10, 0.10], last)  # below the recovery threshold
    pipeline.advance()
    pipeline.wait_observed(last, [KEY])
    pipeline.wait_posts(1, "SteadyErrors", "[RESOLVED]", top=False)

    # What the rules saw: eight windows around the threshold, then two well below.
    assert pipeline.error_rates(KEY) == [*NOISY, *NOISY, 0.1, 0.1]

    steady = pipeline.transitions("SteadyErrors", KEY)
    assert [t["state"] for t in steady] == ["pending", "firing", "resolved"]
    assert steady[2]["value"] == pytest.approx(0.1)  # resolved by the drop, not by a 0.45
    [first] = pipeline.top_level("SteadyErrors")
    assert (
        first.body["text"].startswith("[FIRING:1] SteadyErrors") and KEY.dims in first.body["text"]
    )
    [resolved] = pipeline.replies(first)
    assert resolved.body["text"].startswith("[RESOLVED] SteadyErrors")
    assert pipeline.standin.messages[(first.response["channel"], ts(first))]["text"].startswith(
        "[RESOLVED]"
    )
    assert len(pipeline.posts("SteadyErrors")) == 2  # one firing message, one resolution

    # The same comparison without `for` or hysteresis flaps with every window.
    jumpy = pipeline.states("JumpyErrors", KEY)
    assert jumpy == ["firing", "resolved"] * 4
    jumpy_firing = pipeline.top_level("[FIRING:1] JumpyErrors")
    print(f"\nJumpyErrors: {len(jumpy_firing)} firing messages, SteadyErrors: 1")
    assert len(jumpy_firing) >= 2
