"""The bundle of detectors the worker keeps for one key (an app, an app x model, ...)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from detectors.adwin import AdwinDetector
from detectors.base import UnivariateDetector, check_positive_int
from detectors.binary_rate import BinaryRateDetector
from detectors.detection import Detection, ParamValue
from detectors.features import extract_features
from detectors.half_space_trees import HalfSpaceTreesDetector
from detectors.kswin import KswinDetector
from detectors.new_value import NewValueDetector
from detectors.page_hinkley import StandardizedPageHinkley

__all__ = ["DETECTORS", "DetectorConfig", "KeyDetectors", "SignalConfig", "default_signals"]

DETECTORS: Mapping[str, type[UnivariateDetector]] = MappingProxyType(
    {
        "adwin": AdwinDetector,
        "page_hinkley": StandardizedPageHinkley,
        "kswin": KswinDetector,
        "binary_rate": BinaryRateDetector,
    }
)
TRANSFORMS = ("identity", "log1p")


@dataclass(frozen=True, slots=True)
class SignalConfig:
    """How one signal is watched: which detector, its parameters, and the input transform.

    ``transform="log1p"`` feeds ``log1p(x * scale)`` to the detector (a x1.3 regression is
    then the same shift at any level) and maps ``before_mean``, ``before_quantile`` and
    ``after_level`` of detections back to raw units, so means become geometric means.
    """

    detector: str = "adwin"
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    transform: str = "identity"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {sorted(DETECTORS)}, got {self.detector!r}")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {self.transform!r}")
        if not self.scale > 0 or not math.isfinite(self.scale):
            raise ValueError(f"scale must be a finite number > 0, got {self.scale!r}")
        self.build("check")  # fail now, not on the first event, on bad parameters

    def build(self, signal: str) -> UnivariateDetector:
        try:
            return DETECTORS[self.detector](signal=signal, **self.params)  # type: ignore[arg-type]
        except TypeError as error:
            raise ValueError(f"bad parameters for {self.detector}: {error}") from None

    def forward(self, x: float) -> float:
        if self.transform == "log1p":
            y = x * self.scale
            return math.log1p(y) if y > -1 else math.nan
        return x

    def backward(self, detection: Detection) -> Detection:
        if self.transform == "identity":
            return detection

        def raw(v: float) -> float:
            return math.expm1(v) / self.scale

        return dataclasses.replace(
            detection,
            params={**detection.params, "transform": self.transform, "scale": self.scale},
            before_mean=raw(detection.before_mean),
            before_quantile=raw(detection.before_quantile),
            after_level=raw(detection.after_level),
        )


def default_signals() -> dict[str, SignalConfig]:
    """ADWIN everywhere; increases only, except for output tokens."""
    up: dict[str, ParamValue] = {"direction": "up"}
    return {
        "latency": SignalConfig(params=up, transform="log1p"),
        "ttft": SignalConfig(params=up, transform="log1p"),
        "output_tokens": SignalConfig(params={"direction": "both"}, transform="log1p"),
        # Cost in micro-dollars, so log1p is a log over the whole range of per-call costs.
        "cost": SignalConfig(params=up, transform="log1p", scale=1e6),
        "error": SignalConfig(params=up),
        "refusal": SignalConfig(params=up),
    }


def _default_new_values() -> dict[str, Mapping[str, ParamValue]]:
    return {
        "model": {"min_count": 1, "warm_up": 100},
        "error_type": {"min_count": 3, "window": 200, "warm_up": 200},
    }


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Which detectors a :class:`KeyDetectors` runs, with what parameters and budget.

    Parameters
    ----------
    signals
        Fixed signals and their configuration (see :func:`default_signals`).
    score, feedback
        Templates for every ``score.<name>`` and ``feedback.<name>`` signal.
    max_score_names
        At most this many ``score.*`` and this many ``feedback.*`` detectors per key;
        further names are ignored (and counted). Bounds cost and memory per key.
    anomaly_features
        Signals scored together by Half-Space Trees (after their transform); empty
        disables the multivariate detector.
    anomaly_params
        Keyword arguments of :class:`~detectors.half_space_trees.HalfSpaceTreesDetector`.
    new_values
        Categorical attribute -> keyword arguments of
        :class:`~detectors.new_value.NewValueDetector`.
    """

    signals: Mapping[str, SignalConfig] = field(default_factory=default_signals)
    score: SignalConfig = SignalConfig(params={"direction": "both"})
    feedback: SignalConfig = SignalConfig(params={"direction": "both"})
    max_score_names: int = 8
    anomaly_features: tuple[str, ...] = ("latency", "ttft", "output_tokens", "cost")
    anomaly_params: Mapping[str, ParamValue] = field(default_factory=dict)
    new_values: Mapping[str, Mapping[str, ParamValue]] = field(default_factory=_default_new_values)

    def __post_init__(self) -> None:
        check_positive_int("max_score_names", self.max_score_names, minimum=0)
        unknown = set(self.anomaly_features) - set(self.signals)
        if unknown:
            raise ValueError(f"anomaly_features not in signals: {sorted(unknown)}")
        try:
            self._build_extras()
        except TypeError as error:
            raise ValueError(f"bad anomaly_params or new_values: {error}") from None

    def _build_extras(self) -> tuple[HalfSpaceTreesDetector | None, dict[str, NewValueDetector]]:
        anomaly = None
        if self.anomaly_features:
            anomaly = HalfSpaceTreesDetector(self.anomaly_features, **self.anomaly_params)  # type: ignore[arg-type]
        new_values = {
            name: NewValueDetector(signal=name, **params)  # type: ignore[arg-type]
            for name, params in self.new_values.items()
        }
        return anomaly, new_values

    def template_for(self, signal: str) -> SignalConfig | None:
        """The configuration of ``signal``, or ``None`` if it is not monitored."""
        if (config := self.signals.get(signal)) is not None:
            return config
        if signal.startswith("score."):
            return self.score
        if signal.startswith("feedback."):
            return self.feedback
        return None

    def transform(self, features: Mapping[str, float]) -> dict[str, float]:
        """``features`` as their detectors see them (``SignalConfig.forward``), in order.

        Names that are not monitored pass unchanged (a :class:`KeyDetectors` counts them as
        ignored). The result depends only on ``signals``, ``score`` and ``feedback``, so
        keys whose configurations share those can share it (see
        :meth:`KeyDetectors.update_transformed`).
        """
        out: dict[str, float] = {}
        for name, raw in features.items():
            config = self.template_for(name)
            out[name] = raw if config is None else config.forward(raw)
        return out


class KeyDetectors:
    """Every detector for one key; ``update`` takes one call's features.

    Fixed signals are created up front; ``score.*`` and ``feedback.*`` detectors are
    created the first time a name is seen, up to ``config.max_score_names`` each.
    The whole object pickles (for checkpoints) and restores without re-learning.
    ``update_transformed`` takes features already transformed, for callers that update
    several keys with one call's features.

    Examples
    --------
    A x2 latency regression at call 3000 of a seeded stream:

    >>> import random
    >>> rng = random.Random(11)
    >>> key = KeyDetectors(DetectorConfig())
    >>> for i in range(4000):
    ...     call = {"latency_ms": rng.lognormvariate(6.0 + (0.69 if i >= 3000 else 0), 0.4),
    ...             "status": "ok", "model": "gpt-4o-mini"}
    ...     for d in key.update_call(call):
    ...         print(d.signal, d.index, f"{d.before_mean:.3g} -> {d.after_level:.3g}")
    latency 3040 402 -> 772
    anomaly 3066 0.0117 -> 0.219

    """

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self._univariate: dict[str, UnivariateDetector] = {
            name: cfg.build(name) for name, cfg in self.config.signals.items()
        }
        self._anomaly, self._new_values = self.config._build_extras()
        self._n_dynamic = {"score.": 0, "feedback.": 0}
        self.n_seen = 0
        self.n_ignored = 0

    @property
    def detectors(self) -> Mapping[str, object]:
        """Every detector by signal (``"anomaly"`` for Half-Space Trees)."""
        out: dict[str, object] = {**self._univariate, **self._new_values}
        if self._anomaly is not None:
            out["anomaly"] = self._anomaly
        return out

    def update(
        self, features: Mapping[str, float], *, categorical: Mapping[str, str] | None = None
    ) -> list[Detection]:
        """Update every detector concerned by one call; return what they detected."""
        return self.update_transformed(self.config.transform(features), categorical=categorical)

    def update_transformed(
        self, transformed: Mapping[str, float], *, categorical: Mapping[str, str] | None = None
    ) -> list[Detection]:
        """``update`` given ``config.transform(features)``, which several keys may share.

        The worker updates a call's key in every key set: it transforms the call's features
        once for all of them. ``transformed`` is not modified.
        """
        self.n_seen += 1
        detections: list[Detection] = []
        univariate = self._univariate
        for name, x in transformed.items():
            detector = univariate.get(name) or self._create(name)
            if detector is not None and (detection := detector.update(x)) is not None:
                signal_config = self.config.template_for(name)
                assert signal_config is not None  # _create returned a detector for it
                detections.append(signal_config.backward(detection))
        if self._anomaly is not None:
            # Every anomaly feature is a fixed signal, so it has its detector.
            point = {k: transformed[k] for k in self.config.anomaly_features if k in transformed}
            if point and (detection := self._anomaly.update(point)) is not None:
                detections.append(detection)
        if categorical:
            new_values = self._new_values
            for name, value in categorical.items():
                new_value = new_values.get(name)
                if new_value is not None and (detection := new_value.update(value)) is not None:
                    detections.append(detection)
        return detections

    def update_call(self, call: Any) -> list[Detection]:
        """Shorthand for ``update`` on :func:`~detectors.features.extract_features` of ``call``."""
        features, categorical = extract_features(call)
        return self.update(features, categorical=categorical)

    def _create(self, name: str) -> UnivariateDetector | None:
        prefix = next((p for p in self._n_dynamic if name.startswith(p)), None)
        if prefix is None or self._n_dynamic[prefix] >= self.config.max_score_names:
            self.n_ignored += 1
            return None
        template = self.config.template_for(name)
        assert template is not None
        self._n_dynamic[prefix] += 1
        detector = self._univariate[name] = template.build(name)
        return detector
