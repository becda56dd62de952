"""Workers with ``sink_target=kafka`` hand their rows to one ``llmpulse writer`` through llm.rows:
real broker, real worker and writer processes, the writer owning an embedded chDB store."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.worker_client import QueryError, query_worker
from tests.events import invalid_payloads, valid_call
from tests.integration.conftest import REPO, WorkerProcess, free_port, produce, wait_until

pytestmark = pytest.mark.integration

CALLS = "llmpulse.llm_calls"


class WriterProcess(WorkerProcess):
    """``llmpulse writer`` in a child process."""

    def start(self, timeout: float = 90.0) -> WriterProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "writer", "--loglevel", "info"],
            env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.wait_healthy(timeout)
        return self


@pytest.fixture
def rows_env(worker_env: dict[str, str]) -> dict[str, str]:
    """The worker environment with every sink publishing to this test's own rows topic."""
    suffix = worker_env["LLMPULSE_TOPIC_CALLS"].rsplit(".", 1)[1]
    return {
        **worker_env,
        "LLMPULSE_SINK_TARGET": "kafka",
        "LLMPULSE_TOPIC_ROWS": f"llm.rows.{suffix}",
        "LLMPULSE_TOPIC_DETECTIONS": f"llm.detections.{suffix}",
        "LLMPULSE_TOPIC_ALERTS": f"llm.alerts.{suffix}",
        "LLMPULSE_TOPIC_SILENCES": f"llm.silences.{suffix}",
        "LLMPULSE_STATE_KEY": "test-state-key-shared-by-the-workers",
        # Short windows that close soon after the traffic stops, so metric rows appear.
        "LLMPULSE_METRICS_WINDOW_S": "10",
        "LLMPULSE_METRICS_LATENESS_S": "5",
        "LLMPULSE_METRICS_IDLE_CLOSE_S": "15",
        "LLMPULSE_CHECKPOINT_INTERVAL_S": "1",
    }


@pytest.fixture
def make_writer(rows_env: dict[str, str], tmp_path: Path) -> Any:
    """Writers of one store: a restarted writer keeps the data directory and the web port."""
    env = {
        **rows_env,
        "LLMPULSE_DATA_DIR": str(tmp_path / "writer"),
        "LLMPULSE_WEB_PORT": str(free_port()),
    }
    writers: list[WriterProcess] = []

    def factory() -> WriterProcess:
        writer = WriterProcess(env, tmp_path / f"writer{len(writers)}.log")
        writers.append(writer)
        return writer

    yield factory
    for writer in writers:
        if writer.proc is not None and writer.proc.poll() is None:
            writer.stop()


def _kafka_worker(make_worker: Any, rows_env: dict[str, str], data_dir: Path) -> WorkerProcess:
    """A started worker with its own data directory and web port."""
    env = {**rows_env, "LLMPULSE_DATA_DIR": str(data_dir), "LLMPULSE_WEB_PORT": str(free_port())}
    worker: WorkerProcess = make_worker(**env).start()
    return worker


def _valid(n: int, start: int = 0, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    return [orjson.dumps(valid_call(start + i, rng)) for i in range(n)]


def _distinct(store: WriterProcess) -> Any:
    return store.scalar(f"SELECT uniqExact(event_id) FROM {CALLS}")


def _no_duplicates(store: WriterProcess, expected: int) -> None:
    assert store.scalar(f"SELECT count() FROM {CALLS} FINAL") == expected
    dupes = store.scalar(
        f"SELECT count() FROM (SELECT event_id FROM {CALLS} FINAL "
        "GROUP BY event_id HAVING count() > 1)"
    )
    assert dupes == 0


def test_a_worker_hands_its_rows_to_the_writer(
    kafka: str, rows_env: dict[str, str], make_worker: Any, make_writer: Any, tmp_path: Path
) -> None:
    rng = random.Random(5)
    mixed = _valid(5_000) + [payload for _, payload in invalid_payloads(100, rng)]
    rng.shuffle(mixed)
    produce(kafka, rows_env["LLMPULSE_TOPIC_CALLS"], mixed)

    writer = make_writer().start()
    worker = _kafka_worker(make_worker, rows_env, tmp_path / "worker")
    dead_letters = "SELECT count() FROM llmpulse.llm_dead_letters FINAL"
    wait_until(
        lambda: (
            (_distinct(writer) == 5_000 and writer.scalar(dead_letters) == 100)
            or (_distinct(writer), writer.health())
        ),
        timeout=240,
        message="all rows stored by the writer",
    )
    _no_duplicates(writer, 5_000)
    metrics = "SELECT count(), sum(requests) FROM llmpulse.llm_metrics_1m FINAL"
    wait_until(lambda: writer.sql(metrics)[0][0] > 0 or writer.sql(metrics), 90, "metric rows")

    # The worker never opened a store: its /sql points to the writer, and `llmpulse sql` with
    # the writer's port answers through it.
    assert not (tmp_path / "worker" / "chdb").exists()
    with pytest.raises(QueryError, match="llmpulse writer"):
        query_worker("127.0.0.1", worker.web_port, "SELECT 1")
    cli = subprocess.run(
        [sys.executable, "-m", "streams.cli", "sql", "--format", "json",
         f"SELECT count() FROM {CALLS} FINAL"],
        env=writer.env, cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert orjson.loads(cli.stdout)["rows"] == [[5_000]]

    health = writer.health()
    assert health is not None and health["writer"]["bad_records"] == 0
    assert health["tables"]["llm_calls"]["rows_written"] >= 5_000
    assert worker.stop() == 0
    assert writer.stop() == 0


def test_a_writer_killed_mid_stream_loses_and_duplicates_nothing(
    kafka: str, rows_env: dict[str, str], make_worker: Any, make_writer: Any, tmp_path: Path
) -> None:
    topic = rows_env["LLMPULSE_TOPIC_CALLS"]
    produce(kafka, topic, _valid(4_000))
    writer = make_writer().start()
    # Small batches: many records on llm.rows, so that the kill lands between two of them.
    env = {**rows_env, "LLMPULSE_SINK_BATCH_ROWS": "200"}
    worker = _kafka_worker(make_worker, env, tmp_path / "worker")
    wait_until(lambda: _distinct(writer) == 4_000 or _distinct(writer), 120, "first rows stored")

    def trickle() -> None:  # the second half arrives while the writer is killed
        for start in range(4_000, 10_000, 500):
            produce(kafka, topic, _valid(500, start=start))
            time.sleep(0.3)

    feeder = threading.Thread(target=trickle)
    feeder.start()
    wait_until(lambda: _distinct(writer) > 5_000, 120, "storing the second half", interval=0.05)
    writer.kill()
    feeder.join()

    restarted = make_writer().start()
    wait_until(lambda: _distinct(restarted) == 10_000 or _distinct(restarted), 240, "all stored")
    _no_duplicates(restarted, 10_000)
    # Records stored but not committed before the kill came again with the same tokens: the
    # store dropped them, so even without FINAL each call is there once.
    assert restarted.scalar(f"SELECT count() FROM {CALLS}") == 10_000
    assert worker.stop() == 0
    assert restarted.stop() == 0


def test_two_workers_share_the_partitions_and_one_writer_stores_everything_once(
    kafka: str, rows_env: dict[str, str], make_worker: Any, make_writer: Any, tmp_path: Path
) -> None:
    topic = rows_env["LLMPULSE_TOPIC_CALLS"]
    writer = make_writer().start()
    workers = [_kafka_worker(make_worker, rows_env, tmp_path / f"worker{i}") for i in range(2)]

    group = rows_env["LLMPULSE_CONSUMER_GROUP"]

    def assigned(worker: WorkerProcess) -> set[int]:
        """The partitions of the last assignment the worker's consumer logged (empty topics show
        nowhere else: /health lists a partition once records came from it)."""
        lines = [
            line
            for line in worker.log_path.read_text(errors="replace").splitlines()
            if "Setting newly assigned partitions" in line and f'for group {group}"' in line
        ]
        return {int(p) for p in re.findall(r"partition=(\d+)", lines[-1])} if lines else set()

    def settled() -> Any:
        owned = [assigned(w) for w in workers]
        split = all(owned) and owned[0] | owned[1] == {0, 1, 2} and not owned[0] & owned[1]
        return split or owned

    # Traffic starts once the group is settled, so that both workers take part.
    wait_until(settled, 120, "the two workers split the 3 partitions")
    produce(kafka, topic, _valid(6_000))
    wait_until(lambda: _distinct(writer) == 6_000 or _distinct(writer), 240, "all stored")
    _no_duplicates(writer, 6_000)
    processed = []
    for worker in workers:
        health = worker.health()
        assert health is not None
        processed.append(health["events_in"].get(topic, 0))
    assert all(n > 0 for n in processed) and sum(processed) >= 6_000, processed
    for worker in workers:
        assert worker.stop() == 0
    assert writer.stop() == 0
