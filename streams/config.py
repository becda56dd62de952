"""The one settings object, read from ``LLMPULSE_*`` environment variables at the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path(".data")


class Settings(BaseSettings):
    """Everything a worker, the CLI or the demo needs to know.

    Secrets are ``SecretStr``: they print as ``**********`` in ``repr``, in logs and in
    ``llmpulse config``. The ClickHouse URL may carry a password, so it is masked too.
    """

    model_config = SettingsConfigDict(env_prefix="LLMPULSE_", frozen=True, extra="ignore")

    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description="Local state: chDB store, broker.")

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    topic_partitions: int = Field(default=4, ge=1)
    topic_replication: int = Field(default=1, ge=1)
    consumer_group: str = "llmpulse"
    topic_calls: str = "llm.calls"
    topic_feedback: str = "llm.feedback"
    topic_dlq: str = "llm.calls.dlq"
    topic_metrics: str = "llm.metrics"
    topic_detections: str = "llm.detections"
    topic_alerts: str = "llm.alerts"
    topic_silences: str = Field(
        default="llm.silences", description="Compacted topic of silences, read by every worker."
    )
    topic_state: str = Field(
        default="llmpulse.state", description="Compacted topic of signed state checkpoints."
    )

    # ClickHouse
    clickhouse_url: SecretStr | None = Field(
        default=None, description="chdb:///path (embedded) or http(s)://user:pass@host:port/db"
    )
    clickhouse_database: str = "llmpulse"
    calls_ttl_days: int = Field(default=90, ge=1)

    # Sink
    sink_batch_rows: int = Field(default=5000, ge=1)
    sink_flush_interval_s: float = Field(default=1.0, gt=0)
    sink_max_pending_batches: int = Field(default=2, ge=1)
    sink_retry_initial_s: float = Field(default=0.2, gt=0)
    sink_retry_max_s: float = Field(default=10.0, gt=0)
    sink_target: Literal["store", "kafka"] = Field(
        default="store",
        description="store: each worker inserts into ClickHouse; kafka: workers publish their "
        "row batches to topic_rows and one `llmpulse writer` stores them (docs/deployment.md).",
    )
    topic_rows: str = Field(
        default="llm.rows",
        description="Row batches from workers to the writer (sink_target=kafka).",
    )

    # Validation and text handling
    max_event_bytes: int = Field(default=256 * 1024, ge=1024)
    max_past_days: float = Field(default=7.0, gt=0)
    max_future_minutes: float = Field(default=5.0, ge=0)
    store_text: bool = False
    text_max_chars: int = Field(default=2000, ge=0)

    # Rolling metrics (docs/metrics.md)
    metrics_enabled: bool = True
    metrics_window_s: float = Field(default=60.0, gt=0)
    metrics_lateness_s: float = Field(default=120.0, ge=0)
    metrics_idle_close_s: float | None = Field(default=None, gt=0)
    pricing_file: Path | None = Field(
        default=None, description="YAML that overrides or extends the shipped price table."
    )

    # Drift and anomaly detectors (docs/detectors.md)
    detectors_enabled: bool = True
    detectors_max_keys_per_partition: int = Field(default=1000, ge=1)
    detectors_hst_key_set: str = Field(
        default="app,environment,provider,model",
        description="Key set that also runs HalfSpaceTrees; empty for none.",
    )
    detectors_checkpoint_interval_s: float = Field(default=30.0, gt=0)

    # Alert rules (docs/alerting.md); Slack secrets come from variables the rules file names
    alerts_enabled: bool = True
    alerts_rules_file: Path | None = Field(
        default=None, description="Rules YAML; unset: the shipped alerting/default_rules.yaml."
    )
    alerts_slack_base_url: str | None = Field(
        default=None, description="Slack Web API base URL override (a local stand-in in tests)."
    )

    # State checkpoints (metric windows, detectors, alerts)
    checkpoint_interval_s: float = Field(default=5.0, gt=0)
    state_key: SecretStr | None = Field(
        default=None,
        description="HMAC key that signs checkpoints; the same on every worker. "
        "Unset: a random key kept in data_dir/state.key (one worker only).",
    )

    # Worker web server (health, Prometheus metrics, read-only SQL)
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)

    # Worker logs (docs/operations.md)
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="json, text, or auto: JSON lines unless stderr is a TTY."
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must list at least one host:port")
        return value

    @property
    def clickhouse_dsn(self) -> str:
        """The DSN to connect with; defaults to an embedded store under ``data_dir``."""
        if self.clickhouse_url is not None:
            return self.clickhouse_url.get_secret_value()
        return f"chdb://{(self.data_dir / 'chdb').resolve()}"

    @property
    def is_embedded_store(self) -> bool:
        return self.clickhouse_dsn.startswith("chdb:")

    def state_key_bytes(self) -> bytes:
        """The checkpoint HMAC key: ``LLMPULSE_STATE_KEY``, else a key file made once."""
        if self.state_key is not None:
            return self.state_key.get_secret_value().encode()
        path = self.data_dir / "state.key"
        if not path.exists():
            import os
            import secrets

            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_hex(32))
        return path.read_text().strip().encode()

    def kafka_client_options(self) -> dict[str, Any]:
        """Security options passed through to aiokafka clients (producers, consumers, admin)."""
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None,
                certfile=str(self.kafka_ssl_certfile) if self.kafka_ssl_certfile else None,
                keyfile=str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None,
            )
        if self.kafka_security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.kafka_sasl_mechanism or "PLAIN"
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        return options

    def masked(self) -> dict[str, Any]:
        """A printable view: secrets masked, including a password inside the ClickHouse URL."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = mask_url(value.get_secret_value()) if name == "clickhouse_url" else "***"
            out[name] = value
        out["clickhouse_dsn"] = mask_url(self.clickhouse_dsn)
        return out


def mask_url(url: str) -> str:
    """Replace the password of ``scheme://user:pass@host`` with ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
