"""Per-window quantile estimation: exact for small windows, a Greenwald-Khanna summary beyond.

Error statement
---------------
While an estimator holds at most ``exact_capacity`` values (default 1,024) it is
exact: `QuantileEstimator.quantile` equals ``numpy.quantile(values, q)`` (linear
interpolation, numpy's default and ClickHouse's ``quantile`` for small inputs) up to
floating-point rounding.

Beyond that it keeps a Greenwald-Khanna summary: sorted tuples ``(v_i, g_i, d_i)``
where ``rmin_i = g_1 + ... + g_i`` and ``rmax_i = rmin_i + d_i`` bound the true
rank of the observed value ``v_i``. Two invariants are kept:

1. ``rmin_i <= rank(v_i) <= rmax_i`` for every tuple; the first and last tuples
   hold the exact minimum and maximum (``d = 0``).
2. ``g_i + d_i <= e`` for every tuple, where ``e = max(1, floor(2 * eps * n))``.

For a target rank ``r = 1 + q * (n - 1)`` let ``i`` be the first tuple with
``rmax_i > r + e/2``. Then ``rmax_{i-1} <= r + e/2`` and
``rmin_{i-1} = rmax_i - d_i - g_i > r - e/2``, so ``v_{i-1}`` (an observed
value) has a rank within ``e/2 <= eps * n`` of ``r``. If no such ``i`` exists the
maximum qualifies (``i = 0`` cannot happen: the first tuple is the minimum,
``rmax_0 = 1 <= r``). The summary is only used past ``exact_capacity`` values,
where ``eps * n >= 1/2`` for the defaults, so ``e/2 <= eps * n`` holds; for tiny
configurations the bound is ``max(eps * n, 1/2)``. With the default
``eps = 0.005`` the rank error is at most 0.5% of ``n``, inside the project's 1%
requirement.

`QuantileEstimator.merge` keeps the same guarantee for the merged count.

Values arrive into a flat ``array('d')`` buffer and are merged into the summary a
batch at a time, so the hot path is one C-level append.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import pairwise, repeat
from typing import Any

DEFAULT_RANK_ERROR = 0.005
"""Guaranteed rank error of the summary, as a fraction of the number of values."""

DEFAULT_EXACT_CAPACITY = 1024
"""Values held exactly before switching to the summary; also the merge batch size."""

Summary = tuple[Sequence[float], Sequence[int], Sequence[int]]
"""A summary's ``(values, g, delta)``."""


class QuantileEstimator:
    """Quantiles of a stream of floats, exact up to a capacity, then within ``eps`` rank.

    Parameters
    ----------
    eps
        Guaranteed rank error once the summary is in use, a fraction in (0, 0.5).
    exact_capacity
        Number of values held exactly; also the size of the merge batches afterwards.

    Examples
    --------
    >>> est = QuantileEstimator()
    >>> for x in range(1, 101):
    ...     est.add(float(x))
    >>> est.count, est.is_exact, est.quantiles((0.5, 0.99))
    (100, True, [50.5, 99.01])
    >>> est = QuantileEstimator(eps=0.01, exact_capacity=64)
    >>> for x in range(10_000):
    ...     est.add(float(x))
    >>> est.is_exact, abs(est.quantile(0.5) - 4999.5) <= 0.01 * 10_000
    (False, True)
    """

    __slots__ = ("_buffer", "_delta", "_eps", "_exact_capacity", "_g", "_summary_n", "_values")

    def __init__(
        self, eps: float = DEFAULT_RANK_ERROR, exact_capacity: int = DEFAULT_EXACT_CAPACITY
    ) -> None:
        if not 0.0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps!r}")
        if exact_capacity < 1:
            raise ValueError(f"exact_capacity must be at least 1, got {exact_capacity!r}")
        self._eps = eps
        self._exact_capacity = exact_capacity
        self._buffer = array("d")
        # The summary; None while exact. _summary_n is the number of values it represents.
        self._values: array[float] | None = None
        self._g: array[int] | None = None
        self._delta: array[int] | None = None
        self._summary_n = 0

    @property
    def eps(self) -> float:
        """Guaranteed rank error of the summary, as a fraction of `count`."""
        return self._eps

    @property
    def exact_capacity(self) -> int:
        """Values held exactly before the summary takes over."""
        return self._exact_capacity

    @property
    def count(self) -> int:
        """Number of values added."""
        return self._summary_n + len(self._buffer)

    @property
    def is_exact(self) -> bool:
        """True while every value is held, so quantiles are exact."""
        return self._values is None

    @property
    def summary_size(self) -> int:
        """Number of summary tuples (0 while exact)."""
        return 0 if self._values is None else len(self._values)

    def add(self, x: float) -> None:
        """Add one value; callers pass finite floats."""
        buffer = self._buffer
        buffer.append(x)
        if len(buffer) > self._exact_capacity:
            self._flush()

    def extend(self, values: Iterable[float]) -> None:
        """Add many values at once: exactly `add` of each in turn, but cheaper.

        The buffer is merged into the summary at the same counts as `add` would merge
        it (each time it grows past the exact capacity), so the summary is the same.
        """
        new = values if isinstance(values, array) else array("d", values)
        start, end = 0, len(new)
        while True:
            buffer = self._buffer
            stop = start + max(1, self._exact_capacity + 1 - len(buffer))
            if stop > end:
                buffer.extend(new[start:] if start else new)
                return
            buffer.extend(new[start:stop])
            self._flush()
            start = stop

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile, or None when no value was added."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """Several quantiles at once; None for each when no value was added."""
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"quantile must be in [0, 1], got {q!r}")
        if self._values is None:
            return exact_quantiles(self._buffer, qs)  # leaves the buffer as it is
        if self._buffer:
            self._flush()
        return [self._summary_quantile(q) for q in qs]

    def _summary_quantile(self, q: float) -> float:
        values, g, delta = self._values, self._g, self._delta
        assert values is not None and g is not None and delta is not None
        n = self._summary_n
        target = 1.0 + q * (n - 1)
        bound = target + _limit(self._eps, n) / 2
        rmin = 0
        for i in range(len(values)):
            rmin += g[i]
            if rmin + delta[i] > bound:
                return values[i - 1] if i else values[0]
        return values[-1]

    def _flush(self) -> None:
        """Merge the buffer into the summary, creating the summary on first use."""
        batch = sorted(self._buffer)
        self._buffer = array("d")
        self._summary_n += len(batch)
        limit = _limit(self._eps, self._summary_n)
        if self._values is None:
            values, g, delta = batch, [1] * len(batch), [0] * len(batch)
        else:
            assert self._g is not None and self._delta is not None
            values, g, delta = _merge(self._values, self._g, self._delta, batch, limit)
        values, g, delta = _compress(values, g, delta, limit)
        self._values, self._g, self._delta = array("d", values), array("q", g), array("q", delta)

    def merge(self, other: QuantileEstimator) -> None:
        """Fold ``other`` (same ``eps``) into this estimator; ``other`` is not changed.

        Exact values are concatenated (spilling into the summary past the capacity);
        summaries are combined by `_combine`, which keeps both invariants for the
        merged count ``n``. So a merged estimator, in whatever tree its parts were
        merged, has the guarantee of one that saw every value: rank error at most
        ``max(eps * n, 1/2)``, not ``2 * eps``. Its summary can be as large as the
        parts' together until later values let compression fold it.

        >>> a, b = QuantileEstimator(), QuantileEstimator()
        >>> a.extend([1.0, 2.0]); b.extend([3.0, 4.0]); a.merge(b)
        >>> a.count, a.quantile(0.5)
        (4, 2.5)
        """
        if other is self:
            raise ValueError("cannot merge an estimator into itself")
        if other._eps != self._eps:
            raise ValueError(f"cannot merge estimators with eps {self._eps} and {other._eps}")
        if other._values is not None:
            assert other._g is not None and other._delta is not None
            merged: Summary = (other._values, other._g, other._delta)
            if self._values is not None:
                assert self._g is not None and self._delta is not None
                values, g, delta = _combine((self._values, self._g, self._delta), merged)
                limit = _limit(self._eps, self._summary_n + other._summary_n)
                merged = _compress(values, g, delta, limit)
            # Without a summary of our own, our values stay pending, added after the other's.
            self._values, self._g = array("d", merged[0]), array("q", merged[1])
            self._delta = array("q", merged[2])
            self._summary_n += other._summary_n
        buffer = self._buffer
        buffer.extend(other._buffer)  # the exact values join as one batch
        if len(buffer) > self._exact_capacity:
            self._flush()

    def to_state(self) -> dict[str, Any]:
        """A JSON-compatible snapshot; see `from_state`."""
        summary = None
        if self._values is not None:
            assert self._g is not None and self._delta is not None
            summary = {
                "values": self._values.tolist(),
                "g": self._g.tolist(),
                "delta": self._delta.tolist(),
            }
        return {
            "eps": self._eps,
            "exact_capacity": self._exact_capacity,
            "buffer": self._buffer.tolist(),
            "summary": summary,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> QuantileEstimator:
        """Rebuild from `to_state` output; raises ValueError when it breaks an invariant.

        The structure (keys and types) is validated by `streams.metrics.state`; this
        checks what makes the error bound hold.
        """
        est = cls(eps=state["eps"], exact_capacity=state["exact_capacity"])
        buffer = state["buffer"]
        est._buffer = array("d", buffer)
        summary = state["summary"]
        if summary is None:
            if len(buffer) > est._exact_capacity:
                raise ValueError("exact quantile buffer is larger than its capacity")
            return est
        values, g, delta = summary["values"], summary["g"], summary["delta"]
        _check_summary(values, g, delta, est._eps)
        est._values, est._g, est._delta = array("d", values), array("q", g), array("q", delta)
        est._summary_n = sum(g)
        return est


def _limit(eps: float, n: int) -> int:
    """Largest ``g + d`` a tuple may have: ``2 * eps * n``, but at least 1."""
    return max(1, math.floor(2.0 * eps * n))


def exact_quantiles(values: Sequence[float], qs: Sequence[float]) -> list[float | None]:
    """``numpy.quantile(values, qs)`` (linear interpolation); None for each if empty.

    >>> exact_quantiles([4.0, 1.0, 3.0, 2.0], (0.0, 0.5, 0.9))
    [1.0, 2.5, 3.7]
    """
    if not len(values):
        return [None for _ in qs]
    ordered = sorted(values)
    last = len(ordered) - 1
    out: list[float | None] = []
    for q in qs:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q!r}")
        pos = q * last
        lo = math.floor(pos)
        hi = min(lo + 1, last)
        frac = pos - lo
        a, b = ordered[lo], ordered[hi]
        out.append(a + (b - a) * frac if frac else a)
    return out


def _merge(
    values: Sequence[float], g: Sequence[int], delta: Sequence[int], batch: list[float], limit: int
) -> tuple[list[float], list[int], list[int]]:
    """Insert a sorted batch, folding it as it goes in.

    A new value placed before old tuple i gets ``d = g_i + d_i - 1`` (its rank
    can be at most that far above its rmin); below the minimum or above the
    maximum ``d = 0``, since the rank is then exact. Ties go after the stored
    equal values. Inserting a run of new values one by one and then folding
    each into the next kept one while ``g + d <= limit`` gives exactly the
    tuples built here, so both invariants hold; doing it in bulk keeps the
    per-value cost to the sort.
    """
    out_v: list[float] = []
    out_g: list[int] = []
    out_d: list[int] = []
    add_v, add_g, add_d = out_v.append, out_g.append, out_d.append
    more_v, more_g, more_d = out_v.extend, out_g.extend, out_d.extend
    size, end = len(values), len(batch)
    # Where each stored value goes in the batch (ties after it); non-decreasing.
    stops = list(map(bisect_left, repeat(batch, size), values))
    start = 1 if size and stops[0] else 0
    if start:  # the new minimum stays a tuple of its own, exact
        add_v(batch[0]), add_g(1), add_d(0)
    for i, (value, gi, di, stop) in enumerate(zip(values, g, delta, stops, strict=True)):
        if stop > start:
            d = gi + di - 1 if i else 0
            step = max(1, limit - d)
            kept = batch[start + step - 1 : stop - 1 : step]
            if kept:
                more_v(kept)
                more_g([step] * len(kept))
                more_d([d] * len(kept))
            add_v(batch[stop - 1]), add_g(stop - start - step * len(kept)), add_d(d)
        add_v(value), add_g(gi), add_d(di)
        start = stop
    if end > start:
        step = max(1, limit)
        kept = batch[start + step - 1 : end - 1 : step]
        more_v(kept)
        more_g([step] * len(kept))
        more_v([batch[end - 1]])
        add_g(end - start - step * len(kept))
        more_d([0] * (len(kept) + 1))
    return out_v, out_g, out_d


def _combine(a: Summary, b: Summary) -> tuple[list[float], list[int], list[int]]:
    """The union of two summaries' tuples, with their ranks among all values bounded.

    Ties order ``a``'s values first. Tuple ``x`` of ``a`` follows the values of ``b``
    below ``v_x``: at least ``rmin_b(y)`` for ``b``'s last tuple ``y`` below ``v_x``
    (0 if none), at most ``rmax_b(z) - 1`` for its next tuple ``z`` (``n_b`` if none).
    So ``rmin_x = rmin_a(x) + rmin_b(y)``, ``rmax_x = rmax_a(x) + rmax_b(z) - 1``, and
    likewise with "at or below" for ``b``'s tuples: invariant 1, with exact extremes.
    For neighbours ``p, x`` of the union, ``rmax_x - rmin_p`` (the new ``g + d`` of
    ``x``) is one tuple's ``g + d`` from each side minus 1, or one side's alone, so it
    is at most ``e_a + e_b - 1 <= e`` for the merged count: invariant 2.
    """
    (av, ag, ad), (bv, bg, bd) = a, b
    na, nb, la, lb = sum(ag), sum(bg), len(av), len(bv)
    values: list[float] = []
    g: list[int] = []
    delta: list[int] = []
    i = j = rmin_a = rmin_b = previous = 0
    while i < la or j < lb:
        if j == lb or (i < la and av[i] <= bv[j]):
            rmin_a += ag[i]
            above = rmin_b + bg[j] + bd[j] - 1 if j < lb else nb
            value, rmax = av[i], rmin_a + ad[i] + above
            i += 1
        else:
            rmin_b += bg[j]
            above = rmin_a + ag[i] + ad[i] - 1 if i < la else na
            value, rmax = bv[j], rmin_b + bd[j] + above
            j += 1
        rmin = rmin_a + rmin_b
        values.append(value)
        g.append(rmin - previous)
        delta.append(rmax - rmin)
        previous = rmin
    return values, g, delta


def _compress(
    values: list[float], g: list[int], delta: list[int], limit: int
) -> tuple[list[float], list[int], list[int]]:
    """Fold tuples into their right neighbour while ``g + g_next + d_next <= limit``.

    The first (minimum) tuple is never folded; folding keeps every rmin and rmax
    of the surviving tuples, so invariant 1 holds and the check keeps invariant 2.
    """
    size = len(values)
    if size <= 2:
        return values, g, delta
    cg, cd = g[-1], delta[-1]
    rv, rg, rd = [values[-1]], [], [cd]
    for gi, di, vi in zip(g[-2:0:-1], delta[-2:0:-1], values[-2:0:-1], strict=True):
        if gi + cg + cd <= limit:
            cg += gi
        else:
            rg.append(cg)
            rv.append(vi)
            rd.append(di)
            cg, cd = gi, di
    rg.append(cg)
    rv.append(values[0])
    rg.append(g[0])
    rd.append(delta[0])
    rv.reverse()
    rg.reverse()
    rd.reverse()
    return rv, rg, rd


def _check_summary(values: list[float], g: list[int], delta: list[int], eps: float) -> None:
    if not values or not len(values) == len(g) == len(delta):
        raise ValueError("quantile summary needs equally long, non-empty values, g and delta")
    if any(b < a for a, b in pairwise(values)):
        raise ValueError("quantile summary values are not sorted")
    if min(g) < 1 or min(delta) < 0:
        raise ValueError("quantile summary needs g >= 1 and delta >= 0")
    if delta[0] != 0 or delta[-1] != 0:
        raise ValueError("quantile summary must hold the exact minimum and maximum")
    limit = _limit(eps, sum(g))
    if any(gi + di > limit for gi, di in zip(g, delta, strict=True)):
        raise ValueError("quantile summary breaks its error invariant g + delta <= 2*eps*n")
