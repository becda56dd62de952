"""A deterministic generator of LLM traffic with injected incidents, on a simulated clock.

Each (app, model) pair is an independent Poisson stream with its own seeded random source,
so an incident on one key never changes the calls of another. The merged stream comes out
in event-time order; timestamps are ``start`` plus the simulated offset, so the same stream
can be replayed offline as fast as possible or paced in real time.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas import Feedback, LLMCall
from streams.simulation.scenario import AppProfile, Incident, ModelProfile, Scenario, Traffic

__all__ = ["SimulatedEvent", "generate", "scale_rates"]


@dataclass(frozen=True, slots=True)
class SimulatedEvent:
    """One call of the stream, the feedback it will receive, and the incidents that shaped it.

    ``call`` and each ``feedback`` item are plain dicts valid under the `LLMCall` and
    `Feedback` schemas (absent optional fields are left out). Feedback timestamps lie after
    the call's. ``incidents`` holds the ids of the incidents that changed this call.
    """

    index: int
    offset_s: float
    call: dict[str, Any]
    feedback: tuple[dict[str, Any], ...]
    incidents: tuple[str, ...]

    def to_models(self) -> tuple[LLMCall, list[Feedback]]:
        """The call and its feedback as validated schema objects."""
        return (
            LLMCall.model_validate(self.call),
            [Feedback.model_validate(item) for item in self.feedback],
        )


def scale_rates(traffic: Traffic, factor: float) -> Traffic:
    """The same traffic with every (app, model) rate multiplied by ``factor``."""
    if not factor > 0:
        raise ValueError(f"factor must be > 0, got {factor!r}")
    apps = {
        name: dataclasses.replace(app, models={m: r * factor for m, r in app.models.items()})
        for name, app in traffic.apps.items()
    }
    return dataclasses.replace(traffic, apps=apps)


def generate(
    scenario: Scenario, start: datetime, *, run_id: str | None = None
) -> Iterator[SimulatedEvent]:
    """Yield the scenario's calls in event-time order, from ``start`` for its duration.

    The stream depends only on the scenario (its seed included) and ``start`` (through the
    daily cycle); event ids are ``{run_id}-{index}`` (default: scenario name and seed).
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    prefix = run_id or f"{scenario.name}-{scenario.seed}"
    start_epoch = start.timestamp()
    streams = [
        _Stream(scenario, app_name, model_name, start_epoch)
        for app_name, app in scenario.traffic.apps.items()
        for model_name in app.models
    ]
    heap = [(stream.next_arrival(0.0), number) for number, stream in enumerate(streams)]
    heapq.heapify(heap)
    for index in itertools.count():
        offset, number = heap[0]
        if offset >= scenario.duration_s:
            return
        stream = streams[number]
        call_id = f"{prefix}-{index}"
        call, feedback, incidents = stream.call(offset, call_id)
        heapq.heapreplace(heap, (stream.next_arrival(offset), number))
        yield SimulatedEvent(index, offset, call, feedback, incidents)


def _timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _cumulative(weights: dict[str, float]) -> tuple[list[str], list[float]]:
    names = list(weights)
    total = sum(weights.values())
    return names, list(itertools.accumulate(weights[n] / total for n in names))


def _pick(names: list[str], cumulative: list[float], u: float) -> str:
    return names[min(bisect.bisect_right(cumulative, u), len(names) - 1)]


class _Stream:
    """The calls of one (app, model) pair."""

    def __init__(self, scenario: Scenario, app_name: str, model_name: str, epoch: float) -> None:
        traffic = scenario.traffic
        self.app: AppProfile = traffic.apps[app_name]
        self.model: ModelProfile = traffic.models[model_name]
        self.rng = random.Random(f"{scenario.seed}:{app_name}:{model_name}")
        # Arrivals have their own source, so an incident (which draws more numbers for the
        # calls it changes) never moves the arrival times, and so the indices, of any call.
        self.clock = random.Random(f"{scenario.seed}:{app_name}:{model_name}:arrivals")
        self.epoch = epoch
        self.base = {
            "app": app_name,
            "environment": self.app.environment,
            "provider": self.model.provider,
            "model": model_name,
            "operation": "chat",
            "prompt_id": self.app.prompt_id,
        }
        self.tags = {"source": "llmpulse-simulate", "scenario": scenario.name}
        cycle = traffic.daily_cycle
        self.cycle = cycle
        self.peak_rate = self.app.models[model_name] * (1 + cycle.amplitude)
        self.versions = _cumulative(dict(self.app.prompt_versions))
        self.error_types = _cumulative(dict(self.model.error_types))
        self.incidents = [
            incident
            for incident in scenario.incidents
            if all(
                self.base.get(dim, value) == value
                for dim, value in incident.target.items()
                if dim != "prompt_version"
            )
        ]
        out = self.app.output_tokens
        self.mu = {
            "latency": self.model.latency.mu,
            "ttft": self.model.ttft.mu,
            "input": self.app.input_tokens.mu,
        }
        self.elasticity = traffic.latency_token_elasticity
        self.latency_noise = math.sqrt(
            max(0.0, self.model.latency.sigma**2 - (self.elasticity * out.sigma) ** 2)
        )

    def next_arrival(self, offset: float) -> float:
        """The next arrival after ``offset``; thinning follows the daily cycle."""
        while True:
            offset += self.clock.expovariate(self.peak_rate)
            if self.cycle.amplitude == 0:
                return offset
            since_peak = self.epoch + offset - self.cycle.peak_hour_utc * 3600
            angle = 2 * math.pi * (since_peak % self.cycle.period_s) / self.cycle.period_s
            level = 1 + self.cycle.amplitude * math.cos(angle)
            if self.clock.random() * (1 + self.cycle.amplitude) < level:
                return offset

    def call(
        self, offset: float, call_id: str
    ) -> tuple[dict[str, Any], tuple[dict[str, Any], ...], tuple[str, ...]]:
        rng, model, app = self.rng, self.model, self.app
        version = _pick(*self.versions, rng.random())
        latency_f = ttft_f = tokens_f = 1.0
        error_rate, error_type = model.error_rate, None
        shifts: dict[str, float] = {}
        hits: list[str] = []
        for incident in self.incidents:
            applied = self._apply(incident, offset, version)
            if applied is None:
                continue
            weight, version = applied
            effects = incident.effects
            hits.append(incident.id)
            latency_f *= effects.latency_factor**weight
            ttft_f *= (effects.ttft_factor or effects.latency_factor) ** weight
            tokens_f *= effects.output_tokens_factor**weight
            if effects.error_rate is not None:
                error_rate += (effects.error_rate - error_rate) * weight
                error_type = effects.error_type
            for name in effects.scores or app.scores:
                shifts[name] = shifts.get(name, 0.0) + effects.score_shift * weight
        call: dict[str, Any] = {
            "event_id": call_id,
            "timestamp": _timestamp(self.epoch + offset),
            **self.base,
            "prompt_version": version,
            "user_id": f"user-{rng.randrange(2000)}",
            "streaming": rng.random() < app.streaming_share,
            "tags": dict(self.tags),
        }
        u = rng.random()
        if u < error_rate:
            if u < model.error_rate or error_type is None:  # the model's own kind of error
                error_type = _pick(*self.error_types, rng.random())
            latency = rng.lognormvariate(self.mu["latency"], model.latency.sigma)
            call["latency_ms"] = round(latency * latency_f * model.error_latency_factor, 1)
            call["status"] = "error"
            call["error_type"] = error_type
            return call, (), tuple(hits)
        feedback = self._ok_call(call, offset, latency_f, ttft_f, tokens_f, shifts)
        return call, feedback, tuple(hits)

    def _apply(self, incident: Incident, offset: float, version: str) -> tuple[float, str] | None:
        """(effect weight, prompt version) if ``incident`` affects this call, else None."""
        weight = incident.intensity(offset)
        wanted = incident.target.get("prompt_version")
        if weight <= 0 or (wanted is not None and wanted != version):
            return None
        rollout = incident.effects.prompt_version
        share = incident.share * (weight if rollout else 1.0)
        if share < 1.0 and self.rng.random() >= share:
            return None
        return (1.0, rollout) if rollout else (weight, version)

    def _ok_call(
        self,
        call: dict[str, Any],
        offset: float,
        latency_f: float,
        ttft_f: float,
        tokens_f: float,
        shifts: dict[str, float],
    ) -> tuple[dict[str, Any], ...]:
        rng, model, app = self.rng, self.model, self.app
        out = app.output_tokens
        z_out = rng.gauss(0.0, 1.0)
        output_tokens = max(1, round(out.median * math.exp(out.sigma * z_out) * tokens_f))
        input_tokens = max(1, round(rng.lognormvariate(self.mu["input"], app.input_tokens.sigma)))
        log_latency = (
            self.mu["latency"]
            + self.elasticity * (out.sigma * z_out + math.log(tokens_f))
            + self.latency_noise * rng.gauss(0.0, 1.0)
        )
        latency = math.exp(log_latency) * latency_f
        ttft = min(latency, rng.lognormvariate(self.mu["ttft"], model.ttft.sigma) * ttft_f)
        cost = input_tokens * model.input_usd_per_mtok + output_tokens * model.output_usd_per_mtok
        refused = rng.random() < app.refusal_rate
        scores: dict[str, float] = {}
        for name, profile in app.scores.items():
            if profile.probability < 1 and rng.random() >= profile.probability:
                continue
            mean = min(0.99, max(0.01, profile.mean + shifts.get(name, 0.0)))
            k = profile.concentration
            scores[name] = round(rng.betavariate(mean * k, (1 - mean) * k), 4)
        call.update(
            latency_ms=round(latency, 1),
            ttft_ms=round(ttft, 1),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=round(cost / 1e6, 8),
            status="ok",
            finish_reason="content_filter" if refused else "stop",
            scores=scores,
        )
        fb = app.feedback
        if fb is None or rng.random() >= fb.probability:
            return ()
        positive = (
            scores.get(fb.from_score, fb.positive_rate) if fb.from_score else fb.positive_rate
        )
        when = self.epoch + offset + latency / 1000 + rng.expovariate(1 / fb.delay_s)
        item = {
            "event_id": call["event_id"],
            "timestamp": _timestamp(when),
            "name": fb.name,
            "value": 1.0 if rng.random() < positive else 0.0,
            "source": "user",
        }
        return (item,)
