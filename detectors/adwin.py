"""ADWIN on one signal: the default change detector for continuous values and flags."""

from __future__ import annotations

from detectors._river import drift
from detectors.base import UnivariateDetector, check_in_range, check_positive_int

__all__ = ["AdwinDetector"]


class AdwinDetector(UnivariateDetector):
    """Adaptive windowing (river's ``drift.ADWIN``) with warm-up and a bounded window.

    ADWIN keeps a window of recent values and cuts it when two sub-windows have
    significantly different means. It needs no scale parameter, so the same defaults
    work for log-latency, token counts, scores and 0/1 flags. River's implementation is
    in Rust (under 1 µs an update).

    Parameters
    ----------
    signal
        Name of the monitored signal, copied into each detection.
    delta
        Significance level of the cut test; smaller means fewer false alarms, later detection.
    clock
        Test for a cut every ``clock`` updates.
    max_window
        The window is restarted after this many updates without a change, which bounds
        memory (ADWIN's buckets otherwise grow with the log of the stream length).
    min_window_length
        Smallest sub-window ADWIN will compare.
    warm_up
        Updates after creation and after each change during which nothing is reported.
    direction
        ``"up"``, ``"down"`` or ``"both"``: which changes of the mean are reported.
    quantile
        Level of the baseline quantile put in detections.
    block_size, n_blocks, recent_size
        How the before/after statistics are kept (see :class:`~detectors.base.BaselineStats`).

    Examples
    --------
    A x1.3 latency regression on a log scale (lognormal, sigma 0.4) at index 2000:

    >>> import math, random
    >>> rng = random.Random(7)
    >>> stream = [rng.gauss(math.log(200), 0.4) for _ in range(2000)]
    >>> stream += [rng.gauss(math.log(260), 0.4) for _ in range(2000)]
    >>> detector = AdwinDetector(signal="latency", direction="up")
    >>> for x in stream:
    ...     if (d := detector.update(x)) is not None:
    ...         print(d.index, round(math.exp(d.before_mean)), round(math.exp(d.after_level)))
    2176 201 249

    """

    name = "adwin"
    _param_names = ("delta", "clock", "max_window", "min_window_length")

    def __init__(
        self,
        *,
        signal: str = "value",
        delta: float = 0.002,
        clock: int = 32,
        max_window: int = 100_000,
        min_window_length: int = 5,
        warm_up: int = 100,
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
        check_in_range("delta", delta, 0.0, 1.0)
        check_positive_int("clock", clock)
        check_positive_int("min_window_length", min_window_length)
        check_positive_int("max_window", max_window, minimum=4 * min_window_length)
        self.delta = delta
        self.clock = clock
        self.max_window = max_window
        self.min_window_length = min_window_length
        self._restart()

    def _restart(self) -> None:
        self._adwin = drift.ADWIN(
            delta=self.delta, clock=self.clock, min_window_length=self.min_window_length
        )
        self._since_restart = 0

    def _learn(self, x: float) -> bool:
        if self._since_restart >= self.max_window:
            self._restart()
        self._since_restart += 1
        # River's ADWIN.update is a Python wrapper around its Rust `_helper` that also resets
        # the window after a drift; `_restart` does that here (a new ADWIN after every
        # drift), so calling the helper directly is the same and ~0.2 µs an update cheaper.
        detected: bool = self._adwin._helper.update(x)
        return detected

    def _change_index(self) -> int:
        # After a cut, ADWIN's window holds only the values it judged to be the new regime.
        return self._n_seen - int(self._adwin.width) + 1
