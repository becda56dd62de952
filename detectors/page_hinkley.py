"""Page-Hinkley on standardized input: a CUSUM test whose threshold is in standard deviations."""

from __future__ import annotations

import math

from detectors._river import drift
from detectors.base import UnivariateDetector, check_positive_int

__all__ = ["StandardizedPageHinkley"]


class StandardizedPageHinkley(UnivariateDetector):
    """River's ``drift.PageHinkley`` fed with ``(x - mean) / std`` of the warm-up values.

    River's defaults (``delta=0.005``, ``threshold=50``) are in raw units, so on raw
    latency in milliseconds they fire every few dozen points. Here the mean and standard
    deviation are estimated during warm-up (and again after each change), and ``delta``
    and ``threshold`` are in standard deviations. ``alpha`` defaults to 1 (no forgetting):
    with forgetting, the cumulative sum becomes an AR(1) process whose noise
    (``1 / sqrt(2 * (1 - alpha))`` standard deviations, ~70 for river's ``1 - 1e-4``)
    dwarfs the threshold, and it raises a few false alarms per 100,000 points whatever
    the threshold.

    Parameters
    ----------
    signal
        Name of the monitored signal, copied into each detection.
    delta
        Allowed drift of the mean, in standard deviations (CUSUM's ``k``; half the
        smallest shift worth detecting).
    threshold
        Alarm threshold on the cumulative sum, in standard deviations (CUSUM's ``h``).
    alpha
        Forgetting factor of the cumulative sum, in (0, 1].
    min_instances
        Standardized values PageHinkley sees before it may fire.
    warm_up
        Values used to estimate mean and standard deviation, after creation and after
        each change; nothing is reported meanwhile.
    direction
        ``"up"``, ``"down"`` or ``"both"``.
    quantile, block_size, n_blocks, recent_size
        How the before/after statistics are kept (see :class:`~detectors.base.BaselineStats`).

    Examples
    --------
    >>> import math, random
    >>> rng = random.Random(7)
    >>> stream = [rng.gauss(math.log(200), 0.4) for _ in range(2000)]
    >>> stream += [rng.gauss(math.log(260), 0.4) for _ in range(2000)]
    >>> detector = StandardizedPageHinkley(signal="latency", direction="up")
    >>> for x in stream:
    ...     if (d := detector.update(x)) is not None:
    ...         print(d.index, round(math.exp(d.before_mean)), round(math.exp(d.after_level)))
    2054 199 274

    """

    name = "page_hinkley"
    _param_names = ("delta", "threshold", "alpha", "min_instances")

    def __init__(
        self,
        *,
        signal: str = "value",
        delta: float = 0.25,
        threshold: float = 25.0,
        alpha: float = 1.0,
        min_instances: int = 30,
        warm_up: int = 200,
        direction: str = "both",
        quantile: float = 0.9,
        block_size: int = 128,
        n_blocks: int = 16,
        recent_size: int = 32,
    ) -> None:
        super().__init__(
            signal=signal,
            warm_up=warm_up,
            direction=direction,
            quantile=quantile,
            block_size=block_size,
            n_blocks=n_blocks,
            recent_size=recent_size,
        )
        if not delta >= 0 or not math.isfinite(delta):
            raise ValueError(f"delta must be a finite number >= 0, got {delta!r}")
        if not threshold > 0 or not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        check_positive_int("min_instances", min_instances)
        check_positive_int("warm_up", warm_up, minimum=2)
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.min_instances = min_instances
        self._restart()

    def _restart(self) -> None:
        self._ph = drift.PageHinkley(
            min_instances=self.min_instances,
            delta=self.delta,
            threshold=self.threshold,
            alpha=self.alpha,
            mode=self.direction,
        )
        # Welford's running mean and sum of squares over the regime's warm-up values;
        # the scale stays 0 until the warm-up is over.
        self._mean = 0.0
        self._m2 = 0.0
        self._scale = 0.0
        self._argmin_up = 0
        self._argmax_down = 0

    def _learn(self, x: float) -> bool:
        if not self._scale:
            n = self._n_seen - self._regime_start  # the base class counts the warm-up
            step = x - self._mean
            self._mean += step / n
            self._m2 += step * (x - self._mean)
            if n == self._warm_up:
                std = math.sqrt(self._m2 / (n - 1))
                self._scale = 1.0 / std if std > 0 else 1.0
            return False
        ph = self._ph
        ph.update((x - self._mean) * self._scale)
        # CUSUM's change-point estimate: where the cumulative sum was at its extreme.
        if ph._sum_increase <= ph._min_increase:
            self._argmin_up = self._n_seen
        if ph._sum_decrease >= ph._max_decrease:
            self._argmax_down = self._n_seen
        return bool(ph.drift_detected)

    def _change_index(self) -> int:
        up = self._ph._sum_increase - self._ph._min_increase
        down = self._ph._max_decrease - self._ph._sum_decrease
        return (self._argmin_up if up >= down else self._argmax_down) + 1
