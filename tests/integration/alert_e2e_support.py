"""Shared parts of the alerting end-to-end tests (``tests/integration/test_alerts_e2e*.py``).

A real worker process runs a rules file on the real broker and posts to the Slack stand-in.
`AlertPipeline` feeds it calls in event-time windows the test controls and reads back what
Slack, ``llm_alerts``, ``llm_metrics_1m`` and the health page saw. Each test module makes its
``pipeline`` fixture from `alert_pipeline`.
"""

from __future__ import annotations

import asyncio
import math
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from tests.events import valid_call
from tests.integration.conftest import REPO, WorkerProcess, wait_until
from tests.slack_standin import RecordedRequest, SlackStandIn

T = TypeVar("T")
WINDOW_S = 10
"""Metrics window length in event time; the tests choose every call's timestamp."""
KEY_SET = "app_environment_provider_model"
TOKEN = "xoxb-" + "e2e-" + "token"


class LoopThread:
    """An asyncio event loop in a daemon thread: the stand-in and the producer live there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextmanager
def slack_standin(loop: LoopThread | None = None) -> Iterator[SlackStandIn]:
    """The Slack stand-in served from a thread, for a worker in another process."""
    own = loop is None
    thread = loop or LoopThread()
    server = SlackStandIn()
    thread.run(server.start(), 10)
    try:
        yield server
    finally:
        thread.run(server.stop(), 10)
        if own:
            thread.close()


@contextmanager
def alert_pipeline(
    kafka: str, worker_env: dict[str, str], make_worker: Any, tmp_path: Path
) -> Iterator[AlertPipeline]:
    """An `AlertPipeline` with its stand-in; for a test module's ``pipeline`` fixture."""
    loop = LoopThread()
    try:
        with slack_standin(loop) as standin:
            pipe = AlertPipeline(kafka, worker_env, make_worker, standin, loop, tmp_path)
            try:
                yield pipe
            finally:
                pipe.close()
    finally:
        loop.close()


@dataclass(frozen=True)
class Key:
    """One key of the ``app_environment_provider_model`` key set (environment ``prod``)."""

    app: str
    provider: str = "openai"
    model: str = "gpt-4o"

    @property
    def dims(self) -> str:
        """As Slack messages print an alert's labels (`alerting.blocks.dimensions`)."""
        return f"app={self.app}, environment=prod, model={self.model}, provider={self.provider}"


@dataclass(frozen=True)
class Traffic:
    """What one key sends in one window."""

    requests: int = 20
    errors: int = 0
    latency_ms: float = 200.0


def error_rate(rate: float, requests: int = 20, latency_ms: float = 200.0) -> Traffic:
    return Traffic(requests, round(rate * requests), latency_ms)


CLOCK_KEY = Key("event-clock", "openai", "gpt-4o-mini")


class AlertPipeline:
    """One worker with a rules file, the calls it is fed, and the Slack stand-in it posts to.

    Every call goes to partition 0 of the calls topic, so the worker sees them in the order
    sent and the watermark (lateness 0) closes a window as soon as a later window's call
    arrives: `send` one window, `advance` to close it.
    """

    def __init__(
        self,
        kafka: str,
        worker_env: dict[str, str],
        make_worker: Any,
        standin: SlackStandIn,
        loop_thread: LoopThread,
        tmp_path: Path,
    ) -> None:
        self.kafka = kafka
        self.standin = standin
        self.topic = worker_env["LLMPULSE_TOPIC_CALLS"]
        suffix = self.topic.rsplit(".", 1)[-1]
        self.rules_path = tmp_path / "rules.yaml"
        # Own alerts, silences and detections topics: nothing leaks between tests.
        self.env = {
            "LLMPULSE_METRICS_WINDOW_S": str(WINDOW_S),
            "LLMPULSE_METRICS_LATENESS_S": "0",
            "LLMPULSE_METRICS_IDLE_CLOSE_S": "600",
            "LLMPULSE_CHECKPOINT_INTERVAL_S": "1",
            "LLMPULSE_TOPIC_ALERTS": f"llm.alerts.{suffix}",
            "LLMPULSE_TOPIC_SILENCES": f"llm.silences.{suffix}",
            "LLMPULSE_TOPIC_DETECTIONS": f"llm.detections.{suffix}",
            "LLMPULSE_ALERTS_RULES_FILE": str(self.rules_path),
            "LLMPULSE_ALERTS_SLACK_BASE_URL": standin.base_url,
            "LLMPULSE_SLACK_BOT_TOKEN": TOKEN,
            # faust's own group (read by the faust env): a SIGKILLed worker's member is
            # dropped after 6 s instead of 60 s, so a restart does not wait a minute.
            "BROKER_SESSION_TIMEOUT": "6",
            "BROKER_HEARTBEAT_INTERVAL": "1",
        }
        self.cli_env = {**worker_env, **self.env}
        self._make_worker = make_worker
        self._loop = loop_thread
        self._rng = random.Random(7)
        self._window = int((time.time() - 3600) // WINDOW_S)  # event time starts an hour ago
        self._producer: Any = loop_thread.run(self._start_producer())
        self.worker: WorkerProcess | None = None

    # -- the worker ----------------------------------------------------------------------------
    def start(self, rules: str) -> WorkerProcess:
        self.rules_path.write_text(rules)
        return self.restart()

    def restart(self) -> WorkerProcess:
        """Start a worker (again) on the same data dir, consumer group and state topic."""
        self.worker = self._make_worker(**self.env).start()
        return self.worker

    def kill(self) -> None:
        assert self.worker is not None
        self.worker.kill()

    def alerts_health(self) -> dict[str, Any]:
        assert self.worker is not None
        return dict((self.worker.health() or {}).get("alerts") or {})

    def cli(self, *args: str) -> str:
        """Run ``llmpulse ARGS`` as an operator would; return its output."""
        done = subprocess.run(
            [sys.executable, "-m", "streams.cli", *args], env=self.cli_env, cwd=REPO,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    # -- calls ---------------------------------------------------------------------------------
    def send(self, traffic: Mapping[Key, Traffic]) -> int:
        """Send the calls of the next window for these keys; return the window's index."""
        self._window += 1
        start = self._window * WINDOW_S
        values = [
            self._call(key, t, start + (i + 0.5) * WINDOW_S / t.requests, i < t.errors)
            for key, t in traffic.items()
            for i in range(t.requests)
        ]
        self._loop.run(self._produce(values))
        return self._window

    def advance(self) -> int:
        """One call in the next window: the windows sent so far close at the next tick."""
        return self.send({CLOCK_KEY: Traffic(requests=1)})

    def window_start(self, index: int) -> datetime:
        return datetime.fromtimestamp(index * WINDOW_S, UTC)

    def wait_observed(self, index: int, keys: Sequence[Key], timeout: float = 30.0) -> None:
        """Wait until window ``index`` of these keys is closed, stored and seen by the rules.

        The metrics stage hands a closed window to the rules before it stores it.
        """
        apps = ", ".join(f"'{k.app}'" for k in {k.app: k for k in keys}.values())
        models = ", ".join(f"'{k.model}'" for k in {k.model: k for k in keys}.values())
        query = (
            f"SELECT count() FROM llmpulse.llm_metrics_1m WHERE key_set = '{KEY_SET}' "
            f"AND window_start = toDateTime64({index * WINDOW_S}, 3, 'UTC') "
            f"AND app IN ({apps}) AND model IN ({models})"
        )
        assert self.worker is not None
        worker = self.worker
        wait_until(lambda: worker.scalar(query) >= len(keys), timeout, "window observed", 0.1)

    def error_rates(self, key: Key) -> list[float]:
        """The error rate of every closed window of ``key``, in window order."""
        assert self.worker is not None
        rows = self.worker.sql(
            f"SELECT error_rate FROM llmpulse.llm_metrics_1m WHERE key_set = '{KEY_SET}' "
            f"AND app = '{key.app}' AND provider = '{key.provider}' AND model = '{key.model}' "
            "ORDER BY window_start"
        )
        return [round(rate, 4) for (rate,) in rows]

    # -- what came out -------------------------------------------------------------------------
    def transitions(self, rule: str, key: Key | None = None) -> list[dict[str, Any]]:
        """Rows of ``llm_alerts`` for one rule (and key), in order; times in epoch seconds."""
        where = f"rule = '{rule}'"
        if key is not None:
            where += (
                f" AND labels['app'] = '{key.app}' AND labels['provider'] = '{key.provider}'"
                f" AND labels['model'] = '{key.model}'"
            )
        assert self.worker is not None
        rows = self.worker.sql(
            "SELECT state, value, toUnixTimestamp64Milli(at), labels['model'], "
            "labels['provider'], labels['app'], toUnixTimestamp64Milli(started_at), "
            f"toUnixTimestamp64Milli(fired_at) FROM llmpulse.llm_alerts FINAL WHERE {where} "
            "ORDER BY at, sequence"
        )
        names = ("state", "value", "at", "model", "provider", "app", "started_at", "fired_at")
        out = []
        for row in rows:
            item = dict(zip(names, row, strict=True))
            for name in ("at", "started_at", "fired_at"):
                item[name] = None if item[name] is None else item[name] / 1000
            out.append(item)
        return out

    def states(self, rule: str, key: Key | None = None) -> list[str]:
        return [t["state"] for t in self.transitions(rule, key)]

    def wait_state(self, rule: str, key: Key, state: str, timeout: float = 30.0) -> None:
        wait_until(lambda: state in self.states(rule, key), timeout, f"{rule} {key} {state}", 0.2)

    def posts(self, *texts: str) -> list[RecordedRequest]:
        """Accepted chat.postMessage calls whose text has every one of ``texts``."""
        return [
            r
            for r in self.standin.calls("chat.postMessage")
            if all(text in r.body.get("text", "") for text in texts)
        ]

    def top_level(self, *texts: str) -> list[RecordedRequest]:
        """Posts that start a thread: the first message of an alert group."""
        return [r for r in self.posts(*texts) if "thread_ts" not in r.body]

    def replies(self, first: RecordedRequest) -> list[RecordedRequest]:
        """Posts in the thread of ``first``."""
        return [r for r in self.posts() if r.body.get("thread_ts") == ts(first)]

    def wait_posts(self, count: int, *texts: str, top: bool = True, timeout: float = 30.0) -> None:
        found = self.top_level if top else self.posts
        wait_until(lambda: len(found(*texts)) >= count, timeout, f"{count} posts {texts}", 0.05)

    # -- internals -----------------------------------------------------------------------------
    def _call(self, key: Key, traffic: Traffic, at: float, error: bool) -> bytes:
        event = valid_call(
            0, self._rng, app=key.app, environment="prod", provider=key.provider,
            model=key.model, event_id=uuid.uuid4().hex,
            timestamp=datetime.fromtimestamp(at, UTC).isoformat(),
            latency_ms=traffic.latency_ms, ttft_ms=min(50.0, traffic.latency_ms / 2),
            status="error" if error else "ok", error_type="server_error" if error else None,
        )  # fmt: skip
        return orjson.dumps(event)

    async def _start_producer(self) -> Any:
        from aiokafka import AIOKafkaProducer
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.topic, 3, 1)])
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=self.kafka, linger_ms=2, acks="all")
        await producer.start()
        return producer

    async def _produce(self, values: list[bytes]) -> None:
        sent = [await self._producer.send(self.topic, value, partition=0) for value in values]
        await asyncio.gather(*sent)

    def close(self) -> None:
        worker = self.worker
        if worker is not None and worker.proc is not None and worker.proc.poll() is None:
            worker.kill()  # its data is thrown away: no need to wait for a graceful stop
        self._loop.run(self._producer.stop())


def ts(post: RecordedRequest) -> str:
    """The Slack ``ts`` of an accepted post."""
    return str(post.response["ts"])


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def latency_line(label: str, values: Sequence[float], extra: str = "") -> str:
    return (
        f"ALERT-LATENCY {label} n={len(values)} p50={percentile(values, 0.5):.2f}s "
        f"p95={percentile(values, 0.95):.2f}s max={max(values):.2f}s{extra}"
    )
