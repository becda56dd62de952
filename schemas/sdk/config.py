"""Where and how a client sends events: one frozen object, checked when it is made."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from schemas.sdk.events import check_field_names

BOOTSTRAP_ENV = "LLMPULSE_KAFKA_BOOTSTRAP"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_TOPIC = "llm.calls"

# Option values shown in repr; every other value may be a secret and prints masked.
_SHOWN_OPTIONS = frozenset(
    {"security_protocol", "sasl_mechanism", "client_id", "acks", "compression_type"}
)
# Defaults the caller's client options may override: a delivery gives up after 10 s
# (aiokafka's 40 s would hold a dead broker's records far longer than they are useful).
_PRODUCER_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {"client_id": "llmpulse-sdk", "request_timeout_ms": 10_000}
)


def bootstrap_from_env() -> str:
    """``LLMPULSE_KAFKA_BOOTSTRAP``, else ``127.0.0.1:9092``."""
    return os.environ.get(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP


@dataclass(frozen=True, repr=False)
class PulseConfig:
    """Settings of a `PulseClient` or `SyncPulseClient`.

    Parameters
    ----------
    bootstrap
        Kafka ``host:port[,host:port...]``; None reads ``LLMPULSE_KAFKA_BOOTSTRAP``.
    topic
        Topic the events go to.
    buffer_size
        Events held in memory while Kafka is slow or down; beyond it, events are dropped.
    linger_ms
        How long the producer waits to fill a batch.
    retry_initial_s, retry_max_s
        Backoff between connection attempts while the broker is unreachable.
    client_options
        Passed through to ``AIOKafkaProducer`` (``security_protocol``,
        ``sasl_plain_password``, ``ssl_context``, ...); values print masked.
    defaults
        Event fields applied to every keyword-argument event, e.g. ``app``.
    """

    bootstrap: str | None = None
    topic: str = DEFAULT_TOPIC
    buffer_size: int = 10_000
    linger_ms: int = 50
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    client_options: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bootstrap = self.bootstrap if self.bootstrap is not None else bootstrap_from_env()
        if not bootstrap.strip():
            raise ValueError("bootstrap must list at least one host:port")
        object.__setattr__(self, "bootstrap", bootstrap)
        if not self.topic:
            raise ValueError("topic must not be empty")
        if self.buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, got {self.buffer_size}")
        if self.linger_ms < 0:
            raise ValueError(f"linger_ms must not be negative, got {self.linger_ms}")
        if not 0 < self.retry_initial_s <= self.retry_max_s:
            raise ValueError(
                "need 0 < retry_initial_s <= retry_max_s, got "
                f"{self.retry_initial_s} and {self.retry_max_s}"
            )
        reserved = {"bootstrap_servers", "linger_ms"} & set(self.client_options)
        if reserved:
            raise ValueError(f"set {', '.join(sorted(reserved))} with the client's own argument")
        check_field_names(self.defaults)
        object.__setattr__(self, "client_options", MappingProxyType(dict(self.client_options)))
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    def producer_options(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaProducer``."""
        return {
            **_PRODUCER_DEFAULTS,
            **self.client_options,
            "bootstrap_servers": self.bootstrap,
            "linger_ms": self.linger_ms,
        }

    def __repr__(self) -> str:
        options = {
            name: value if name in _SHOWN_OPTIONS else "***"
            for name, value in self.client_options.items()
        }
        return (
            f"PulseConfig(bootstrap={self.bootstrap!r}, topic={self.topic!r}, "
            f"buffer_size={self.buffer_size}, linger_ms={self.linger_ms}, "
            f"client_options={options!r}, defaults={dict(self.defaults)!r})"
        )
