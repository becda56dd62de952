"""The producer SDK: applications emit one `LLMCall` event per LLM call to Kafka, never blocking.

See docs/sdk.md. `PulseClient` is for asyncio code, `SyncPulseClient` for everything
else; both offer ``emit(...)`` and ``track(...)`` (context manager and decorator).
"""

from __future__ import annotations

from schemas.sdk.buffer import PulseCounters
from schemas.sdk.client import PulseClient
from schemas.sdk.config import BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP, DEFAULT_TOPIC, PulseConfig
from schemas.sdk.sync_client import SyncPulseClient
from schemas.sdk.timing import TrackedCall
from schemas.sdk.usage import FINISH_REASONS, Usage, normalise_finish_reason, read_usage
from schemas.validation import InvalidEvent

__all__ = [
    "BOOTSTRAP_ENV",
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_TOPIC",
    "FINISH_REASONS",
    "InvalidEvent",
    "PulseClient",
    "PulseConfig",
    "PulseCounters",
    "SyncPulseClient",
    "TrackedCall",
    "Usage",
    "normalise_finish_reason",
    "read_usage",
]
