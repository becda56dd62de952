"""A real single-node Apache Kafka broker (KRaft) on 127.0.0.1 for development, tests and the demo.

The broker jars come from Maven Central through ``mvn`` into a cache, once. ``start`` formats the
storage on first use, starts the JVM detached, and waits until the broker answers metadata
requests. ``start`` on a running broker is a no-op.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

KAFKA_VERSION = os.environ.get("LLMPULSE_KAFKA_VERSION", "4.1.1")


class LocalKafkaError(RuntimeError):
    """The local broker could not be fetched, formatted or started."""


def cache_dir() -> Path:
    base = os.environ.get("LLMPULSE_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return root / "llmpulse" / f"kafka-{KAFKA_VERSION}"


def _resource_text(name: str) -> str:
    return (resources.files("streams") / "kafka_runtime" / name).read_text(encoding="utf-8")


def fetch_jars(quiet: bool = True) -> Path:
    """Resolve the broker's jars with mvn into the cache; return the directory holding them."""
    cache = cache_dir()
    libs = cache / "libs"
    marker = cache / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError("mvn is not on PATH; install Maven to fetch the Kafka broker jars")
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "pom.xml").write_text(
        _resource_text("pom.xml").replace("@KAFKA_VERSION@", KAFKA_VERSION)
    )
    staging = cache / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        mvn, "-B", "-q" if quiet else "-ntp", "-f", str(cache / "pom.xml"),
        "dependency:copy-dependencies", f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LocalKafkaError(f"mvn failed ({result.returncode}):\n{result.stdout[-4000:]}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    marker.write_text(KAFKA_VERSION)
    return libs


@dataclass(frozen=True)
class LocalKafka:
    """One broker: its data lives in ``home``; it listens on ``host:port`` (controller: port+1)."""

    home: Path
    host: str = "127.0.0.1"
    port: int = 9092
    heap: str = "512m"

    @classmethod
    def from_bootstrap(cls, data_dir: Path, bootstrap: str) -> LocalKafka:
        first = bootstrap.split(",")[0].strip()
        host, _, port = first.rpartition(":")
        return cls(
            home=(data_dir / "kafka").resolve(), host=host or "127.0.0.1", port=int(port or 9092)
        )

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    def pid(self) -> int | None:
        """The broker's pid if it is alive, else None (stale pid files are removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self.pid_file.unlink(missing_ok=True)
            return None
        except PermissionError:
            return pid
        return pid

    def port_open(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            return sock.connect_ex((self.host, self.port)) == 0

    def status(self) -> str:
        pid = self.pid()
        if pid is None:
            return f"stopped ({self.bootstrap})"
        ready = "ready" if self.port_open() else "starting"
        return f"running pid={pid} {ready} on {self.bootstrap}, data in {self.home}"

    def _write_config(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        text = (
            _resource_text("server.properties")
            .replace("@HOST@", self.host)
            .replace("@PORT@", str(self.port))
            .replace("@CONTROLLER_PORT@", str(self.port + 1))
            .replace("@LOG_DIR@", str((self.home / "data").resolve()))
        )
        config = (self.home / "server.properties").resolve()
        config.write_text(text)
        (self.home / "log4j2.yaml").write_text(_resource_text("log4j2.yaml"))
        return config

    def _java(self, libs: Path, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise LocalKafkaError("java is not on PATH; Kafka needs a JDK 17 or newer")
        return [
            java, f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={(self.home / 'log4j2.yaml').resolve()}",
            "-cp", f"{libs}/*", *args,
        ]  # fmt: skip

    def _format(self, libs: Path, config: Path) -> None:
        if (self.home / "data" / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cmd = self._java(
            libs, "kafka.tools.StorageTool", "format", "--standalone",
            f"--cluster-id={cluster_id}", "-c", str(config),
        )  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LocalKafkaError(
                f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}"
            )

    def start(self, timeout: float = 90.0) -> str:
        """Start the broker unless it already runs; wait until it serves metadata."""
        if self.pid() is not None:
            self.wait_ready(timeout)
            return f"already running: {self.status()}"
        if self.port_open():
            raise LocalKafkaError(
                f"{self.bootstrap} is taken by a process this data dir does not own"
            )
        libs = fetch_jars()
        config = self._write_config()
        self._format(libs, config)
        log = self.log_file.open("ab")
        proc = subprocess.Popen(
            self._java(libs, "kafka.Kafka", str(config)),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.home,
        )  # fmt: skip
        self.pid_file.write_text(str(proc.pid))
        try:
            self.wait_ready(timeout, proc)
        except LocalKafkaError:
            self.stop()
            raise
        return f"started: {self.status()}"

    def wait_ready(self, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-3000:]
                raise LocalKafkaError(f"broker exited with {proc.returncode}:\n{tail}")
            if self.port_open() and _metadata_ok(self.bootstrap):
                return
            time.sleep(0.3)
        raise LocalKafkaError(f"broker not ready after {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> str:
        pid = self.pid()
        if pid is None:
            return "not running"
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None or not _alive(pid):
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return f"stopped pid={pid}"


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _metadata_ok(bootstrap: str) -> bool:
    async def probe() -> bool:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            await admin.close()

    try:
        return asyncio.run(probe())
    except Exception:
        return False
