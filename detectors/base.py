"""The contract every change detector follows, and the shared warm-up and baseline logic."""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from array import array
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

from detectors.detection import Detection, ParamValue

__all__ = [
    "BaselineStats",
    "ChangeDetector",
    "SignalDetector",
    "UnivariateDetector",
    "check_in_range",
    "check_positive_int",
]

DIRECTIONS = ("up", "down", "both")
# Blocks pooled into the "before" statistics: 4 x 128 values give the mean to ~2 % of a std.
_POOLED_BLOCKS = 4
_isfinite = math.isfinite  # a global, not an attribute lookup, on the per-value path


@runtime_checkable
class ChangeDetector(Protocol):
    """A univariate online change detector.

    ``update`` learns from one value and returns a :class:`Detection` when a change is
    found, otherwise ``None``. Nothing is returned before ``warm_up`` updates have been seen.
    """

    @property
    def n_seen(self) -> int: ...

    @property
    def warm_up(self) -> int: ...

    def update(self, x: float) -> Detection | None: ...


def check_positive_int(name: str, value: int, *, minimum: int = 1) -> None:
    """Raise ``ValueError`` unless ``value`` is an int ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_in_range(
    name: str, value: float, low: float, high: float, *, inclusive: bool = False
) -> None:
    """Raise ``ValueError`` unless ``low < value < high`` (or ``<=`` when ``inclusive``)."""
    ok = low <= value <= high if inclusive else low < value < high
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok:
        bounds = f"[{low}, {high}]" if inclusive else f"({low}, {high})"
        raise ValueError(f"{name} must be in {bounds}, got {value!r}")


class BaselineStats:
    """Before/after statistics around a change point, in fixed memory.

    Values are summarised in blocks of ``block_size`` (mean, std and the ``quantile`` of
    each completed block); the last ``n_blocks`` summaries are kept. The last
    ``recent_size`` values are kept raw to give the level *after* a change. Given the
    index where a change began, :meth:`describe` picks the newest block that ended before
    it (pooled with up to three older ones), so the baseline is not polluted by the
    changed values that arrived while the detector was gathering evidence.
    """

    __slots__ = ("_block", "_block_start", "_fill", "_recent", "_summaries", "n_blocks", "quantile")

    def __init__(
        self,
        *,
        quantile: float = 0.9,
        block_size: int = 128,
        n_blocks: int = 16,
        recent_size: int = 32,
    ) -> None:
        check_in_range("quantile", quantile, 0.0, 1.0)
        check_positive_int("block_size", block_size, minimum=2)
        check_positive_int("n_blocks", n_blocks)
        check_positive_int("recent_size", recent_size)
        self.quantile = quantile
        self.n_blocks = n_blocks
        self._block = array("f", bytes(4 * block_size))
        self._block_start = 1
        self._fill = 0
        self._recent = array("f", bytes(4 * recent_size))
        self._summaries: list[tuple[int, float, float, float]] = []

    @property
    def block_size(self) -> int:
        return len(self._block)

    @property
    def recent_size(self) -> int:
        return len(self._recent)

    def push(self, x: float, index: int) -> None:
        """Record ``x``, the ``index``-th value of the stream (1-based)."""
        # Called for every value of every signal: attributes are read once.
        recent, block, fill = self._recent, self._block, self._fill
        recent[index % len(recent)] = x
        if fill == 0:
            self._block_start = index
        block[fill] = x
        fill += 1
        if fill == len(block):
            self._summaries.append((index, *_describe(block, self.quantile)))
            del self._summaries[: -self.n_blocks]
            fill = 0
        self._fill = fill

    def restart(self) -> None:
        """Forget the baseline (a new regime starts); keep the recent values."""
        self._summaries.clear()
        self._fill = 0

    def describe(self, change_index: int, index: int) -> tuple[float, float, float, float]:
        """Return ``(before_mean, before_quantile, before_std, after_level)``.

        ``change_index`` is the first index believed to belong to the new regime, ``index``
        the current one.
        """
        n_after = max(1, min(index - change_index + 1, len(self._recent), index))
        after = sum(
            self._recent[i % len(self._recent)] for i in range(index - n_after + 1, index + 1)
        )
        after /= n_after
        before = [s for s in self._summaries if s[0] < change_index][-_POOLED_BLOCKS:]
        if before or self._summaries:
            mean, std, quantile = _pool(before or self._summaries[:1])
        elif (n_before := min(self._fill, change_index - self._block_start)) > 0:
            mean, std, quantile = _describe(self._block[:n_before], self.quantile)
        else:
            return math.nan, math.nan, math.nan, after
        return mean, quantile, std, after

    def __getstate__(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)


def _pool(summaries: list[tuple[int, float, float, float]]) -> tuple[float, float, float]:
    """Mean, std and (averaged) quantile of equally sized blocks taken together."""
    n = len(summaries)
    mean = sum(s[1] for s in summaries) / n
    var = sum(s[2] ** 2 + (s[1] - mean) ** 2 for s in summaries) / n
    return mean, math.sqrt(var), sum(s[3] for s in summaries) / n


def _describe(values: array[float], q: float) -> tuple[float, float, float]:
    """Mean, population std and ``q``-quantile of a non-empty array."""
    # Python floats made once (not on each pass over the float32 array); the same sums, in
    # the same order, as `sum(values)` and `sum(v * v for v in values)`.
    floats = values.tolist()
    n = len(floats)
    mean = sum(floats) / n
    std = math.sqrt(max(0.0, sum(map(operator.mul, floats, floats)) / n - mean * mean))
    floats.sort()
    return mean, std, floats[min(n - 1, int(q * n))]


class SignalDetector(ABC):
    """What every detector of one signal shares: its name, counters, params, clone and repr.

    Subclasses validate their own arguments (``warm_up >= 0`` is checked here) and
    describe themselves with :attr:`params`: everything needed to rebuild them except
    ``signal``.
    """

    name: ClassVar[str]

    def __init__(self, *, signal: str, warm_up: int) -> None:
        check_positive_int("warm_up", warm_up, minimum=0)
        self.signal = signal
        self._warm_up = warm_up
        self._n_seen = 0

    @property
    def n_seen(self) -> int:
        """Number of (valid) values seen since creation."""
        return self._n_seen

    @property
    def warm_up(self) -> int:
        """Updates after creation (and, for change detectors, after each change) with no report."""
        return self._warm_up

    @property
    @abstractmethod
    def params(self) -> dict[str, ParamValue]: ...

    def clone(self) -> Self:
        """A fresh detector with the same parameters and nothing learned."""
        kwargs: dict[str, Any] = dict(self.params)
        return type(self)(signal=self.signal, **kwargs)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in {"signal": self.signal, **self.params}.items())
        return f"{type(self).__name__}({args})"


class UnivariateDetector(SignalDetector):
    """Warm-up, direction filtering and before/after statistics around a river detector.

    Subclasses implement :meth:`_learn` (feed one value, return whether the underlying
    detector fired), :meth:`_restart` (start learning a new regime) and may refine
    :meth:`_change_index` (where the change began), and list in ``_param_names`` the
    attributes that hold their own constructor arguments. After each change, reported or
    not, the detector warms up again on the new regime, so one incident is reported once
    and a restart never floods.
    """

    _param_names: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        *,
        signal: str,
        warm_up: int,
        direction: str,
        quantile: float,
        block_size: int,
        n_blocks: int,
        recent_size: int,
    ) -> None:
        super().__init__(signal=signal, warm_up=warm_up)
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self.direction = direction
        self._baseline = BaselineStats(
            quantile=quantile, block_size=block_size, n_blocks=n_blocks, recent_size=recent_size
        )
        self._regime_start = 0

    @property
    def warming_up(self) -> bool:
        """Whether the detector is still in its (initial or post-change) warm-up."""
        return self._n_seen - self._regime_start <= self._warm_up

    def update(self, x: float) -> Detection | None:
        """Learn one value; return a :class:`Detection` if a change is found.

        Non-finite values (NaN, inf) are ignored and not counted.
        """
        if not _isfinite(x):
            return None
        n_seen = self._n_seen = self._n_seen + 1
        self._baseline.push(x, n_seen)
        if not self._learn(x):
            return None
        warming_up = self.warming_up
        change_index = max(self._regime_start + 1, self._change_index())
        mean, quantile, std, after = self._baseline.describe(change_index, self._n_seen)
        self._restart()
        self._baseline.restart()
        self._regime_start = self._n_seen
        if warming_up or not self._wanted(after - mean):
            return None
        return Detection(
            signal=self.signal,
            detector=self.name,
            score=_effect_size(after - mean, std),
            params=self.params,
            before_mean=mean,
            before_quantile=quantile,
            after_level=after,
            index=self._n_seen,
        )

    @abstractmethod
    def _learn(self, x: float) -> bool: ...

    @abstractmethod
    def _restart(self) -> None: ...

    def _change_index(self) -> int:
        """Best guess of the first index of the new regime, called when the detector fires.

        Without a better estimate, assume the change may be up to two blocks old: older
        baseline blocks describe a stable regime just as well, and are not polluted.
        """
        return self._n_seen - 2 * self._baseline.block_size + 1

    @property
    def params(self) -> dict[str, ParamValue]:
        """Everything needed to rebuild this detector, except ``signal``."""
        return {
            **{name: getattr(self, name) for name in self._param_names},
            "warm_up": self._warm_up,
            "direction": self.direction,
            "quantile": self._baseline.quantile,
            "block_size": self._baseline.block_size,
            "n_blocks": self._baseline.n_blocks,
            "recent_size": self._baseline.recent_size,
        }

    def _wanted(self, change: float) -> bool:
        if self.direction == "up":
            return change > 0
        if self.direction == "down":
            return change < 0
        return not math.isnan(change)


def _effect_size(change: float, std: float) -> float:
    if std > 0:
        return change / std
    return math.copysign(math.inf, change) if change else 0.0
