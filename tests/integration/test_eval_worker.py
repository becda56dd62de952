"""``llmpulse eval --worker`` as an operator runs it: a small scenario through a real worker.

The worker runs the detectors of `offline.evaluation_configs` on each (key, partition); calls
are keyed by app and both scored key sets contain the app, so each scored key's calls reach
the worker's detectors in the stream's order, and its detections must be exactly the offline
ones on the same stream. The one input the worker lacks is feedback (its detectors see calls
only), so the offline detectors may have ``feedback.*`` detections the worker has not.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration

SCENARIO = """
name: two-keys-latency
seed: 5
duration_s: 120
description: Two apps on a model each; latency x2 on checkout from 60 s to 100 s.
traffic:
  models:
    m-fast:
      provider: openai
      latency: {median: 800, sigma: 0.4}
      ttft: {median: 300, sigma: 0.3}
      input_usd_per_mtok: 1.0
      output_usd_per_mtok: 4.0
      error_rate: 0.01
    m-slow:
      provider: anthropic
      latency: {median: 1200, sigma: 0.4}
      ttft: {median: 400, sigma: 0.3}
      input_usd_per_mtok: 1.0
      output_usd_per_mtok: 4.0
      error_rate: 0.01
  apps:
    checkout:
      models: {m-fast: 25}
      prompt_id: ask
      prompt_versions: {v1: 0.5, v2: 0.5}
      scores: {quality: {mean: 0.8, sd: 0.1}}
    search:
      models: {m-slow: 25}
      prompt_id: find
      prompt_versions: {v1: 1.0}
      feedback: {probability: 0.2, positive_rate: 0.8, delay_s: 5}
incidents:
  - id: slow-checkout
    type: latency_regression
    start_s: 60
    duration_s: 40
    target: {app: checkout}
    effects: {latency_factor: 2.0}
"""


def run_eval(kafka: str, tmp_path: Path) -> dict[str, Any]:
    scenario = tmp_path / "two-keys.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMPULSE_")}
    env["LLMPULSE_TOPIC_PARTITIONS"] = "3"
    result = subprocess.run(
        [
            sys.executable, "-m", "streams.cli", "eval", "--worker", "--scenario", str(scenario),
            "--bootstrap", kafka, "--output", str(report), "--workdir", str(tmp_path / "work"),
        ],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return dict(orjson.loads(report.read_bytes()))


def test_eval_worker_scores_the_worker_like_the_offline_detectors(
    kafka: str, tmp_path: Path
) -> None:
    report = run_eval(kafka, tmp_path)
    assert report["mode"] == "worker"
    methods = {m["method"]: m for m in report["methods"]}
    assert list(methods) == ["llmpulse-worker", "llmpulse", "static"]
    (label,) = report["labels"]

    worker, offline = methods["llmpulse-worker"], methods["llmpulse"]
    (outcome,) = worker["scenarios"][0]["outcomes"]
    assert outcome["detected"] is True
    assert outcome["key"][0] == "checkout" and outcome["signal"] in label["signals"]
    assert 0 <= outcome["delay_s"] <= label["end_s"] - label["start_s"]
    assert 1 <= outcome["delay_events"] <= 40 * 25
    assert worker["rows"][0]["detection_rate"] == 1.0

    (run,) = report["worker_runs"]
    assert run["calls"] == run["calls_counted"] == report["events"]
    assert run["rejected"] == {} and run["unplaced"] == 0
    assert set(run["other_key_sets"]) <= {"provider_model"}
    agreement = run["agreement"]
    assert agreement["worker_only"] == 0 and agreement["both"] == run["scored"] > 0
    assert all(s.startswith("feedback.") for s in agreement["offline_only_signals"])
    assert run["feedback"] > 0  # published, read by the worker, not given to its detectors
    # The same detections as offline (no feedback one here), so the same scores.
    assert agreement["offline_only"] == 0
    assert outcome == offline["scenarios"][0]["outcomes"][0]
    assert worker["rows"] == offline["rows"]

    suffix = run["run_id"].removeprefix("eval-")
    assert not [t for t in list_topics(kafka) if t.endswith(f".eval-{suffix}")]


def list_topics(bootstrap: str) -> list[str]:
    async def run() -> list[str]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return list(await admin.list_topics())
        finally:
            await admin.close()

    return asyncio.run(run())
