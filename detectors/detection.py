"""The record a detector returns when it finds a change: what, where, and before vs after."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Detection", "ParamValue"]

ParamValue = float | int | str


@dataclass(frozen=True, slots=True)
class Detection:
    """A change (or anomaly) found by one detector on one signal.

    Parameters
    ----------
    signal
        The monitored signal, e.g. ``"latency"`` or ``"score.faithfulness"``.
    detector
        The detector's short name, e.g. ``"adwin"``.
    score
        How strong the change is. For univariate detectors it is the signed effect size
        ``(after_level - before_mean) / before_std`` (positive means an increase).
    params
        The detector's parameters, so a detection can be reproduced.
    before_mean
        Mean of the baseline before the change.
    before_quantile
        A high quantile of the baseline (``params["quantile"]``, p90 by default).
    after_level
        Mean of the most recent values, after the change.
    index
        How many updates the detector had seen when it fired (1-based).

    Examples
    --------
    >>> d = Detection("latency", "adwin", 2.5, {"delta": 0.002}, 100.0, 150.0, 200.0, 1234)
    >>> d.to_dict()["after_level"]
    200.0

    """

    signal: str
    detector: str
    score: float
    params: Mapping[str, ParamValue]
    before_mean: float
    before_quantile: float
    after_level: float
    index: int

    def to_dict(self) -> dict[str, Any]:
        """Return a plain, JSON-ready dict (``params`` copied into a plain dict)."""
        return {
            "signal": self.signal,
            "detector": self.detector,
            "score": self.score,
            "params": dict(self.params),
            "before_mean": self.before_mean,
            "before_quantile": self.before_quantile,
            "after_level": self.after_level,
            "index": self.index,
        }
