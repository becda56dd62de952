"""What a simulation runs: the traffic (apps x models x prompt versions) and the incidents.

Every distribution and incident shape is a parameter, so a suite other than the built-in one
(`streams.simulation.suite`) is only a different `Scenario`; `scenario_file` reads them from YAML.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from streams.metrics.config import DIMENSIONS

__all__ = [
    "DIMENSIONS",
    "INCIDENT_TYPES",
    "AppProfile",
    "DailyCycle",
    "Effects",
    "FeedbackProfile",
    "Incident",
    "LogNormal",
    "ModelProfile",
    "Scenario",
    "ScoreProfile",
    "Traffic",
]

INCIDENT_TYPES = (
    "latency_regression",
    "error_burst",
    "error_creep",
    "token_cost_spike",
    "score_drift",
    "bad_prompt_version",
    "new_error_type",
    "provider_outage",
    "custom",
)
"""Labels used to group results; what an incident does is set by its `Effects`."""

RAMPS = ("step", "linear")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_probability(name: str, value: float) -> None:
    _require(0.0 <= value <= 1.0, f"{name} must be in [0, 1], got {value!r}")


def _check_positive(name: str, value: float) -> None:
    _require(
        math.isfinite(value) and value > 0, f"{name} must be a finite number > 0, got {value!r}"
    )


def _check_weights(name: str, weights: Mapping[str, float]) -> None:
    _require(bool(weights), f"{name} must not be empty")
    for key, weight in weights.items():
        _require(
            math.isfinite(weight) and weight >= 0, f"{name}.{key} must be >= 0, got {weight!r}"
        )
    _require(sum(weights.values()) > 0, f"{name} must have a positive total")


@dataclass(frozen=True, slots=True)
class LogNormal:
    """A lognormal distribution given by its median and the sd of its logarithm."""

    median: float
    sigma: float

    def __post_init__(self) -> None:
        _check_positive("median", self.median)
        _require(0 <= self.sigma < 5, f"sigma must be in [0, 5), got {self.sigma!r}")

    @property
    def mu(self) -> float:
        return math.log(self.median)


@dataclass(frozen=True, slots=True)
class ScoreProfile:
    """An evaluator score in (0, 1): Beta with this mean and sd, on ``probability`` of ok calls."""

    mean: float
    sd: float
    probability: float = 1.0

    def __post_init__(self) -> None:
        _require(0 < self.mean < 1, f"mean must be in (0, 1), got {self.mean!r}")
        _require(
            0 < self.sd < math.sqrt(self.mean * (1 - self.mean)),
            f"sd must be in (0, sqrt(mean * (1 - mean))) for a Beta, got {self.sd!r}",
        )
        _check_probability("probability", self.probability)

    @property
    def concentration(self) -> float:
        """alpha + beta of the Beta distribution."""
        return self.mean * (1 - self.mean) / self.sd**2 - 1


@dataclass(frozen=True, slots=True)
class FeedbackProfile:
    """User feedback (0 or 1) on a share of ok calls, arriving after an exponential delay.

    The value is 1 with probability ``from_score``'s score of the call when it has one,
    otherwise ``positive_rate``; so a drift of that score also moves the feedback.
    """

    probability: float = 0.05
    name: str = "thumbs_up"
    from_score: str | None = None
    positive_rate: float = 0.8
    delay_s: float = 30.0

    def __post_init__(self) -> None:
        _check_probability("probability", self.probability)
        _check_probability("positive_rate", self.positive_rate)
        _require(bool(self.name), "name must not be empty")
        _check_positive("delay_s", self.delay_s)


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """How one model behaves: latency, time to first token, prices and errors.

    ``latency`` is the latency of an ok call with the app's median output tokens; see
    `Traffic.latency_token_elasticity`. Failed calls take ``error_latency_factor`` times
    an ok call's latency, carry one of ``error_types`` (weights) and no tokens, cost or scores.
    """

    provider: str
    latency: LogNormal
    ttft: LogNormal
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    error_rate: float = 0.01
    error_types: Mapping[str, float] = field(
        default_factory=lambda: {"rate_limit": 0.5, "timeout": 0.3, "server_error": 0.2}
    )
    error_latency_factor: float = 0.3

    def __post_init__(self) -> None:
        _require(bool(self.provider), "provider must not be empty")
        _require(self.input_usd_per_mtok >= 0, "input_usd_per_mtok must be >= 0")
        _require(self.output_usd_per_mtok >= 0, "output_usd_per_mtok must be >= 0")
        _check_probability("error_rate", self.error_rate)
        _check_weights("error_types", self.error_types)
        _check_positive("error_latency_factor", self.error_latency_factor)


@dataclass(frozen=True, slots=True)
class AppProfile:
    """One calling application: its models with their rates (events/s), prompts and scores."""

    models: Mapping[str, float]
    prompt_id: str = "default"
    prompt_versions: Mapping[str, float] = field(default_factory=lambda: {"v1": 1.0})
    environment: str = "production"
    input_tokens: LogNormal = LogNormal(800.0, 0.5)
    output_tokens: LogNormal = LogNormal(250.0, 0.6)
    scores: Mapping[str, ScoreProfile] = field(default_factory=dict)
    feedback: FeedbackProfile | None = None
    refusal_rate: float = 0.002
    streaming_share: float = 0.5

    def __post_init__(self) -> None:
        _require(bool(self.models), "models must name at least one model")
        for model, rate in self.models.items():
            _check_positive(f"models.{model}", rate)
        _check_weights("prompt_versions", self.prompt_versions)
        _check_probability("refusal_rate", self.refusal_rate)
        _check_probability("streaming_share", self.streaming_share)
        if self.feedback is not None and self.feedback.from_score is not None:
            _require(
                self.feedback.from_score in self.scores,
                f"feedback.from_score {self.feedback.from_score!r} is not one of the scores "
                f"{sorted(self.scores)}",
            )


@dataclass(frozen=True, slots=True)
class DailyCycle:
    """Rates times ``1 + amplitude * cos(2 pi (t - peak) / period)``; amplitude 0 is flat."""

    amplitude: float = 0.0
    peak_hour_utc: float = 14.0
    period_s: float = 86_400.0

    def __post_init__(self) -> None:
        _require(0 <= self.amplitude < 1, f"amplitude must be in [0, 1), got {self.amplitude!r}")
        _require(0 <= self.peak_hour_utc < 24, "peak_hour_utc must be in [0, 24)")
        _check_positive("period_s", self.period_s)


@dataclass(frozen=True, slots=True)
class Traffic:
    """Every model profile and app, and how latency follows output tokens.

    Latency is ``model.latency`` times ``(output_tokens / app median) ** elasticity`` times
    lognormal noise whose sigma is chosen so that the latency of ok calls stays lognormal
    with exactly ``model.latency.sigma``. Elasticity 0 makes latency independent of tokens.
    """

    models: Mapping[str, ModelProfile]
    apps: Mapping[str, AppProfile]
    latency_token_elasticity: float = 0.3
    daily_cycle: DailyCycle = DailyCycle()

    def __post_init__(self) -> None:
        _require(bool(self.apps), "apps must name at least one app")
        _require(0 <= self.latency_token_elasticity <= 1, "latency_token_elasticity not in [0, 1]")
        for app_name, app in self.apps.items():
            for model_name in app.models:
                model = self.models.get(model_name)
                _require(
                    model is not None,
                    f"apps.{app_name}.models: unknown model {model_name!r}; "
                    f"models are {sorted(self.models)}",
                )
                assert model is not None
                coupled = self.latency_token_elasticity * app.output_tokens.sigma
                _require(
                    coupled <= model.latency.sigma,
                    f"apps.{app_name}: latency_token_elasticity * output_tokens.sigma "
                    f"({coupled:.3g}) exceeds models.{model_name}.latency.sigma",
                )

    @property
    def total_rate(self) -> float:
        """Mean events/s over all apps and models (before the daily cycle)."""
        return sum(sum(app.models.values()) for app in self.apps.values())

    def values_of(self, dimension: str) -> set[str]:
        """Every value ``dimension`` can take in this traffic (before incidents)."""
        out: set[str] = set()
        for app_name, app in self.apps.items():
            for model_name in app.models:
                out.add(
                    {
                        "app": app_name,
                        "environment": app.environment,
                        "provider": self.models[model_name].provider,
                        "model": model_name,
                        "prompt_id": app.prompt_id,
                    }.get(dimension, "")
                )
            if dimension == "prompt_version":
                out.update(app.prompt_versions)
        out.discard("")
        return out


@dataclass(frozen=True, slots=True)
class Effects:
    """What an incident does to the calls it affects (the neutral values change nothing).

    ``error_rate`` is the error rate of affected calls; errors added above the model's
    own rate take ``error_type`` (default: the model's usual types). ``score_shift`` is
    added to the mean of ``scores`` (all scores when empty). ``prompt_version`` moves the
    affected calls to that version (a rollout).
    """

    latency_factor: float = 1.0
    ttft_factor: float | None = None
    error_rate: float | None = None
    error_type: str | None = None
    output_tokens_factor: float = 1.0
    score_shift: float = 0.0
    scores: tuple[str, ...] = ()
    prompt_version: str | None = None

    def __post_init__(self) -> None:
        _check_positive("latency_factor", self.latency_factor)
        if self.ttft_factor is not None:
            _check_positive("ttft_factor", self.ttft_factor)
        if self.error_rate is not None:
            _check_probability("error_rate", self.error_rate)
        _check_positive("output_tokens_factor", self.output_tokens_factor)
        _require(
            -1 < self.score_shift < 1, f"score_shift must be in (-1, 1), got {self.score_shift}"
        )
        neutral = (1.0, None, None, None, 1.0, 0.0, None)
        current = (
            self.latency_factor,
            self.ttft_factor,
            self.error_rate,
            self.error_type,
            self.output_tokens_factor,
            self.score_shift,
            self.prompt_version,
        )
        _require(current != neutral, "effects change nothing; set at least one effect")


@dataclass(frozen=True, slots=True)
class Incident:
    """An injected incident: which calls, from when, for how long, how strongly.

    ``target`` maps dimensions (`DIMENSIONS`) to values; a call is targeted when it matches
    all of them (an empty target is all traffic). A ``share`` of targeted calls is affected.
    With ``ramp="linear"`` the effects grow from nothing to full over ``ramp_s`` seconds
    (factors geometrically); for a prompt-version rollout it is the share that grows.
    """

    id: str
    type: str
    start_s: float
    duration_s: float
    effects: Effects
    target: Mapping[str, str] = field(default_factory=dict)
    share: float = 1.0
    ramp: str = "step"
    ramp_s: float = 0.0

    def __post_init__(self) -> None:
        _require(bool(self.id), "id must not be empty")
        _require(self.type in INCIDENT_TYPES, f"type must be one of {INCIDENT_TYPES}")
        _require(self.start_s >= 0, f"start_s must be >= 0, got {self.start_s!r}")
        _check_positive("duration_s", self.duration_s)
        unknown = sorted(set(self.target) - set(DIMENSIONS))
        _require(not unknown, f"target: unknown dimensions {unknown}; use {DIMENSIONS}")
        _require(0 < self.share <= 1, f"share must be in (0, 1], got {self.share!r}")
        _require(self.ramp in RAMPS, f"ramp must be one of {RAMPS}, got {self.ramp!r}")
        _require(0 <= self.ramp_s <= self.duration_s, "ramp_s must be in [0, duration_s]")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def intensity(self, offset_s: float) -> float:
        """How much of the effect applies at ``offset_s`` (0 outside the incident)."""
        if not self.start_s <= offset_s < self.end_s:
            return 0.0
        if self.ramp == "step" or self.ramp_s == 0:
            return 1.0
        return min(1.0, (offset_s - self.start_s) / self.ramp_s)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named, seeded run: traffic for ``duration_s`` seconds and its incidents."""

    name: str
    traffic: Traffic
    duration_s: float
    seed: int = 0
    incidents: tuple[Incident, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        _require(bool(self.name), "name must not be empty")
        _check_positive("duration_s", self.duration_s)
        ids = [incident.id for incident in self.incidents]
        _require(len(set(ids)) == len(ids), f"incident ids must be unique, got {ids}")
        for incident in self.incidents:
            where = f"incidents.{incident.id}"
            _require(
                incident.start_s < self.duration_s,
                f"{where}: start_s {incident.start_s} is not before duration_s {self.duration_s}",
            )
            for dimension, value in incident.target.items():
                known = self.traffic.values_of(dimension)
                _require(
                    value in known,
                    f"{where}.target.{dimension}: {value!r} matches no traffic; "
                    f"known: {sorted(known)}",
                )
            score_names = {name for app in self.traffic.apps.values() for name in app.scores}
            unknown = sorted(set(incident.effects.scores) - score_names)
            _require(not unknown, f"{where}.effects.scores: unknown scores {unknown}")
