"""Increases in the rate of a 0/1 flag (errors, refusals) with river's binary drift detectors."""

from __future__ import annotations

from typing import Any

from detectors._river import binary
from detectors.base import UnivariateDetector, check_in_range, check_positive_int
from detectors.detection import ParamValue

__all__ = ["BinaryRateDetector"]

METHODS = ("ddm", "eddm", "hddm_a", "hddm_w")


class BinaryRateDetector(UnivariateDetector):
    """A rise in the rate of a 0/1 flag, with DDM, EDDM, HDDM_A or HDDM_W from river.

    These detectors were designed for classifier error streams and only look for
    *increases* of the rate, which is what an error or refusal burst is. Values are read
    as 1 when ``x >= 0.5``. DDM and HDDM_A compare against the cumulative rate since their
    last change, so they become slower the longer a key runs without one; ADWIN
    (:class:`~detectors.adwin.AdwinDetector` with ``direction="up"``) does not, and is the
    default for flags (see ``docs/detectors.md`` for the measured comparison).

    Parameters
    ----------
    signal
        Name of the monitored flag, copied into each detection.
    method
        ``"ddm"``, ``"eddm"``, ``"hddm_a"`` or ``"hddm_w"``.
    drift_threshold
        DDM only: alarm when the rate exceeds its minimum by this many standard errors.
    drift_confidence
        HDDM_A and HDDM_W only: confidence level of the drift test.
    warm_start
        DDM and EDDM only: values (EDDM: errors) seen before the test starts.
    warm_up
        Updates after creation and after each change during which nothing is reported.
    quantile, block_size, n_blocks, recent_size
        How the before/after statistics are kept (see :class:`~detectors.base.BaselineStats`).

    Examples
    --------
    An error burst, the rate going from 2 % to 20 % at index 3000:

    >>> import random
    >>> rng = random.Random(3)
    >>> stream = [float(rng.random() < 0.02) for _ in range(3000)]
    >>> stream += [float(rng.random() < 0.2) for _ in range(1000)]
    >>> detector = BinaryRateDetector(signal="error", method="ddm")
    >>> for x in stream:
    ...     if (d := detector.update(x)) is not None:
    ...         print(d.index, round(d.before_mean, 3), round(d.after_level, 3))
    3281 0.016 0.125

    """

    name = "binary_rate"
    _param_names = ("method", "drift_threshold", "drift_confidence", "warm_start")

    def __init__(
        self,
        *,
        signal: str = "flag",
        method: str = "ddm",
        drift_threshold: float = 3.0,
        drift_confidence: float = 0.001,
        warm_start: int = 30,
        warm_up: int = 500,
        quantile: float = 0.9,
        block_size: int = 128,
        n_blocks: int = 16,
        recent_size: int = 32,
    ) -> None:
        super().__init__(
            signal=signal,
            warm_up=warm_up,
            direction="up",
            quantile=quantile,
            block_size=block_size,
            n_blocks=n_blocks,
            recent_size=recent_size,
        )
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if not drift_threshold > 0:
            raise ValueError(f"drift_threshold must be > 0, got {drift_threshold!r}")
        check_in_range("drift_confidence", drift_confidence, 0.0, 1.0)
        check_positive_int("warm_start", warm_start)
        self.method = method
        self.drift_threshold = drift_threshold
        self.drift_confidence = drift_confidence
        self.warm_start = warm_start
        self._restart()

    def _make(self) -> Any:
        if self.method == "ddm":
            return binary.DDM(
                warm_start=self.warm_start,
                warning_threshold=min(2.0, self.drift_threshold),
                drift_threshold=self.drift_threshold,
            )
        if self.method == "eddm":
            return binary.EDDM(warm_start=self.warm_start)
        confidence = self.drift_confidence
        warning = max(confidence, 0.005)
        if self.method == "hddm_a":
            return binary.HDDMA(drift_confidence=confidence, warning_confidence=warning)
        return binary.HDDMW(drift_confidence=confidence, warning_confidence=warning)

    def _restart(self) -> None:
        self._detector = self._make()

    def _learn(self, x: float) -> bool:
        self._detector.update(1 if x >= 0.5 else 0)
        return bool(self._detector.drift_detected)

    @property
    def params(self) -> dict[str, ParamValue]:
        params = super().params
        del params["direction"]
        return params
