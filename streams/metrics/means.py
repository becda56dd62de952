"""Means kept as (sum, count) pairs per name, for scores and feedback."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import reduce
from operator import add, itemgetter
from typing import Any


def add_means(sums: dict[str, float], counts: dict[str, int], values: Mapping[str, float]) -> None:
    for name, value in values.items():
        sums[name] = sums.get(name, 0.0) + value
        counts[name] = counts.get(name, 0) + 1


def add_all_means(
    sums: dict[str, float], counts: dict[str, int], batch: Iterable[Mapping[str, float] | None]
) -> None:
    """`add_means` of each mapping in turn (None or empty ones count nothing)."""
    present = [values for values in batch if values]
    names = list(present[0]) if present else ()
    if len(set(map(len, present))) == 1:
        # The usual case, every mapping with the same names: sum each name's values in
        # order, at C speed (a missing name raises KeyError before anything changes).
        try:
            totals = [
                reduce(add, map(itemgetter(name), present), sums.get(name, 0.0)) for name in names
            ]
        except KeyError:
            pass
        else:
            for name, total in zip(names, totals, strict=True):
                sums[name] = total
                counts[name] = counts.get(name, 0) + len(present)
            return
    total_of, count_of = sums.get, counts.get
    for values in present:
        for name, value in values.items():
            sums[name] = total_of(name, 0.0) + value
            counts[name] = count_of(name, 0) + 1


def merge_means(
    sums: dict[str, float] | None,
    counts: dict[str, int] | None,
    other_sums: dict[str, float],
    other_counts: dict[str, int],
) -> tuple[dict[str, float], dict[str, int]]:
    sums, counts = sums or {}, counts or {}
    for name, total in other_sums.items():
        sums[name] = sums.get(name, 0.0) + total
        counts[name] = counts.get(name, 0) + other_counts[name]
    return sums, counts


def means(sums: dict[str, float] | None, counts: dict[str, int] | None) -> dict[str, float]:
    if not sums or not counts:
        return {}
    return {name: total / counts[name] for name, total in sums.items()}


def pairs(
    sums: dict[str, float] | None, counts: dict[str, int] | None
) -> dict[str, dict[str, float | int]]:
    if not sums or not counts:
        return {}
    return {name: {"sum": total, "count": counts[name]} for name, total in sums.items()}


def unpair(
    by_name: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, float] | None, dict[str, int] | None]:
    """``(sums, counts)`` back from `pairs` output; (None, None) when it is empty."""
    if not by_name:
        return None, None
    sums = {name: pair["sum"] for name, pair in by_name.items()}
    return sums, {name: pair["count"] for name, pair in by_name.items()}
