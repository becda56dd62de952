"""New categorical values: a model never seen for an app, a surge of a new error type."""

from __future__ import annotations

from collections import OrderedDict, deque

from detectors.base import SignalDetector, check_positive_int
from detectors.detection import Detection, ParamValue

__all__ = ["NewValueDetector"]


class NewValueDetector(SignalDetector):
    """Reports a value never seen before once it occurs ``min_count`` times in ``window`` updates.

    Values seen during warm-up are the baseline. With ``min_count=1`` the first sighting
    is reported (a new model name); with ``min_count=3`` a one-off is ignored and a surge
    is reported (a new ``error_type``). Memory is bounded: at most ``max_values`` known
    values (least recently seen forgotten first) and ``max_candidates`` pending ones.

    In a detection, ``params["value"]`` is the new value, ``score`` its count in the
    window, ``before_mean`` and ``before_quantile`` are 0 (its share in the baseline) and
    ``after_level`` its share of the window.

    Parameters
    ----------
    signal
        Name of the monitored attribute, e.g. ``"model"``.
    min_count
        Occurrences within ``window`` updates needed to report a new value.
    window
        Updates over which occurrences are counted.
    max_values, max_candidates
        Bounds on known and pending values.
    warm_up
        Updates whose values form the baseline; nothing is reported meanwhile.

    Examples
    --------
    >>> detector = NewValueDetector(signal="error_type", min_count=3, window=100, warm_up=10)
    >>> stream = ["timeout", "rate_limit"] * 50 + ["context_length"] + ["timeout"] * 20
    >>> stream += ["context_length", "timeout", "context_length"]
    >>> for value in stream:
    ...     if (d := detector.update(value)) is not None:
    ...         print(d.index, d.params["value"], d.score)
    124 context_length 3.0

    """

    name = "new_value"

    def __init__(
        self,
        *,
        signal: str = "value",
        min_count: int = 1,
        window: int = 1000,
        max_values: int = 256,
        max_candidates: int = 64,
        warm_up: int = 100,
    ) -> None:
        check_positive_int("min_count", min_count)
        check_positive_int("window", window, minimum=min_count)
        check_positive_int("max_values", max_values)
        check_positive_int("max_candidates", max_candidates)
        super().__init__(signal=signal, warm_up=warm_up)
        self.min_count = min_count
        self.window = window
        self.max_values = max_values
        self.max_candidates = max_candidates
        self._known: OrderedDict[str, None] = OrderedDict()
        self._candidates: OrderedDict[str, deque[int]] = OrderedDict()

    @property
    def params(self) -> dict[str, ParamValue]:
        return {
            "min_count": self.min_count,
            "window": self.window,
            "max_values": self.max_values,
            "max_candidates": self.max_candidates,
            "warm_up": self._warm_up,
        }

    def update(self, value: str) -> Detection | None:
        """Learn one value; return a :class:`Detection` when a new value is confirmed."""
        self._n_seen += 1
        if value in self._known:
            self._known.move_to_end(value)
            return None
        if self._n_seen <= self._warm_up:
            self._remember(value)
            return None
        sightings = self._candidates.pop(value, None) or deque(maxlen=self.min_count)
        sightings.append(self._n_seen)
        if len(sightings) < self.min_count or sightings[0] <= self._n_seen - self.window:
            self._candidates[value] = sightings
            if len(self._candidates) > self.max_candidates:
                self._candidates.popitem(last=False)
            return None
        self._remember(value)
        return Detection(
            signal=self.signal,
            detector=self.name,
            score=float(self.min_count),
            params={**self.params, "value": value},
            before_mean=0.0,
            before_quantile=0.0,
            after_level=self.min_count / min(self.window, self._n_seen),
            index=self._n_seen,
        )

    def _remember(self, value: str) -> None:
        self._known[value] = None
        if len(self._known) > self.max_values:
            self._known.popitem(last=False)
