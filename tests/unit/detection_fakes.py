"""Seeded call streams and helpers shared by the detection stage tests."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

from streams.detections_stage import DetectionRecord, DetectionsStage
from tests.unit.metrics_fakes import Call, at

NOW = datetime(2025, 3, 2, tzinfo=UTC)
"""The stages' fixed wall clock, so records of two runs compare equal."""

Event = tuple[int, int, Call]  # (partition, offset, call)


def stream(seed: int, per_app: int, slow: dict[str, int] | None = None) -> list[Event]:
    """Calls alternating between apps ``bot`` (partition 0) and ``search`` (partition 1).

    Both share provider, model and prompt. ``slow[app] = k``: that app's latency doubles
    from its k-th call on.
    """
    rng = random.Random(seed)
    slow = slow or {}
    events: list[Event] = []
    for i in range(per_app):
        for partition, app in enumerate(("bot", "search")):
            factor = 2.0 if i >= slow.get(app, per_app) else 1.0
            call = Call(
                event_id=f"{app}-{i}",
                timestamp=at(i * 0.01),
                app=app,
                latency_ms=rng.lognormvariate(math.log(800), 0.4) * factor,
                ttft_ms=rng.lognormvariate(math.log(300), 0.4),
                output_tokens=int(rng.lognormvariate(math.log(200), 0.5)),
                cost_usd=rng.lognormvariate(math.log(0.002), 0.5),
            )
            events.append((partition, i, call))
    return events


def run(stage: DetectionsStage, events: list[Event]) -> list[DetectionRecord]:
    """Feed ``events`` in order; return what was detected (the pending queue is emptied)."""
    for partition, offset, call in events:
        stage.add_call(call, partition, offset)
    return stage.take_pending()
