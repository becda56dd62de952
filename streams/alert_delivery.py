"""What `streams.alerts_stage.AlertsStage` works with: the contracts of its state store and
sink, receiver results for the health page, and transitions on their way out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from alerting.notification import (
    MessageRef,
    Notification,
    PermanentDeliveryError,
    Receiver,
    RetryableDeliveryError,
)
from alerting.state import AlertTransition

Publish = Callable[[bytes, bytes], Awaitable[None]]


class StateStore(Protocol):
    """Where state is saved: `streams.checkpoints.CheckpointStore` in the worker."""

    async def save(self, name: str, payload: bytes) -> None: ...

    async def load(self, names: Iterable[str] | None = None) -> dict[str, bytes]: ...


class RowSink(Protocol):
    """Where ``llm_alerts`` rows go: a `streams.sink.ClickHouseSink` in the worker."""

    async def add(self, row: bytes, ack: Any = None) -> None: ...

    async def flush(self) -> None: ...


@dataclass
class ReceiverStats:
    """What one receiver answered; ``rate_limited`` counts failures that carried Retry-After."""

    kind: str
    sent: int = 0
    retryable: int = 0
    rate_limited: int = 0
    permanent: int = 0
    last_error: str | None = None

    @property
    def failed(self) -> int:
        return self.retryable + self.rate_limited + self.permanent

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summed(stats: list[ReceiverStats]) -> dict[str, Any]:
    """Totals over several receivers (e.g. every Slack receiver) for the health page."""
    return {
        "receivers": len(stats),
        "sent": sum(s.sent for s in stats),
        "rate_limited": sum(s.rate_limited for s in stats),
        "retryable": sum(s.retryable for s in stats),
        "permanent": sum(s.permanent for s in stats),
        "last_error": next((s.last_error for s in stats if s.last_error), None),
    }


class CountingReceiver:
    """Wraps a :class:`Receiver` and counts its results for the health page."""

    def __init__(self, inner: Receiver) -> None:
        self.inner = inner
        # SlackReceiver -> "slack", WebhookReceiver -> "webhook", ConsoleReceiver -> "console"
        self.stats = ReceiverStats(type(inner).__name__.removesuffix("Receiver").lower())

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def send_resolved(self) -> bool:
        return self.inner.send_resolved

    @property
    def min_interval(self) -> float:
        return self.inner.min_interval

    def pace_key(self, notification: Notification) -> str:
        return self.inner.pace_key(notification)

    async def send(self, notification: Notification, ref: MessageRef | None) -> MessageRef | None:
        try:
            result = await self.inner.send(notification, ref)
        except PermanentDeliveryError as exc:
            self.stats.permanent += 1
            self.stats.last_error = str(exc)[:300]
            raise
        except Exception as exc:
            limited = isinstance(exc, RetryableDeliveryError) and exc.retry_after is not None
            if limited:
                self.stats.rate_limited += 1
            else:
                self.stats.retryable += 1
            self.stats.last_error = str(exc)[:300]
            raise
        self.stats.sent += 1
        return result


class PendingOutput:
    """A transition on its way to ``llm.alerts`` and ``llm_alerts``; kept until both have it.

    It is its own sink acknowledgement: the sink calls `ack` once the row is written.
    """

    __slots__ = ("published", "row_queued", "stored", "transition")

    def __init__(
        self, transition: AlertTransition, published: bool = False, stored: bool = False
    ) -> None:
        self.transition = transition
        self.published = published
        self.stored = stored
        self.row_queued = stored

    @property
    def done(self) -> bool:
        return self.published and self.stored

    def ack(self) -> None:
        self.stored = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "transition": self.transition.to_dict(),
            "published": self.published,
            "stored": self.stored,
        }

    @classmethod
    def from_dict(cls, data: Any) -> PendingOutput:
        if not isinstance(data, dict):
            raise ValueError("a pending alert output must be an object")
        return cls(
            AlertTransition.from_dict(data["transition"]),
            published=bool(data["published"]),
            stored=bool(data["stored"]),
        )
