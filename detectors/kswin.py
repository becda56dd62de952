"""KSWIN: a Kolmogorov-Smirnov test between a recent and an older window of one signal."""

from __future__ import annotations

from detectors._river import drift
from detectors.base import UnivariateDetector, check_in_range, check_positive_int

__all__ = ["KswinDetector"]


class KswinDetector(UnivariateDetector):
    """River's ``drift.KSWIN``: compares the whole distribution, not just the mean.

    It catches changes of shape (a new slow tail, a bimodal latency) that mean-based
    detectors miss, but runs a two-sample KS test on every update (scipy, ~0.1-0.5 ms),
    so use it only on low-rate keys or signals. River's default ``alpha=0.005`` is a
    per-update significance level and fires every few hundred values on a stationary
    stream; the default here is far smaller.

    Parameters
    ----------
    signal
        Name of the monitored signal, copied into each detection.
    alpha
        Significance level of each KS test.
    window_size
        Values kept; the test compares the last ``stat_size`` with a sample of the rest.
    stat_size
        Size of the recent window.
    seed
        Seed of the sampling of the older window.
    warm_up
        Updates after creation and after each change during which nothing is reported.
    direction
        ``"up"``, ``"down"`` or ``"both"``: which changes of the mean are reported.
    quantile, block_size, n_blocks, recent_size
        How the before/after statistics are kept (see :class:`~detectors.base.BaselineStats`).

    Examples
    --------
    >>> import math, random
    >>> rng = random.Random(7)
    >>> stream = [rng.gauss(math.log(200), 0.4) for _ in range(1000)]
    >>> stream += [rng.gauss(math.log(400), 0.4) for _ in range(500)]
    >>> detector = KswinDetector(signal="latency", seed=1)
    >>> for x in stream:
    ...     if (d := detector.update(x)) is not None:
    ...         print(d.index, round(math.exp(d.before_mean)), round(math.exp(d.after_level)))
    1039 203 409

    """

    name = "kswin"
    _param_names = ("alpha", "window_size", "stat_size", "seed")

    def __init__(
        self,
        *,
        signal: str = "value",
        alpha: float = 1e-6,
        window_size: int = 200,
        stat_size: int = 50,
        seed: int = 0,
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
        check_in_range("alpha", alpha, 0.0, 1.0)
        check_positive_int("stat_size", stat_size, minimum=5)
        check_positive_int("window_size", window_size, minimum=2 * stat_size)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.alpha = alpha
        self.window_size = window_size
        self.stat_size = stat_size
        self.seed = seed
        self._restart()

    def _restart(self) -> None:
        self._kswin = drift.KSWIN(
            alpha=self.alpha,
            window_size=self.window_size,
            stat_size=self.stat_size,
            seed=self.seed + self._n_seen,
        )

    def _learn(self, x: float) -> bool:
        self._kswin.update(x)
        return bool(self._kswin.drift_detected)

    def _change_index(self) -> int:
        return self._n_seen - self.stat_size + 1
