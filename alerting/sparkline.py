"""Text sparklines for the last windows of a metric."""

from __future__ import annotations

import math
from collections.abc import Sequence

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None], width: int = 30) -> str:
    """Draw the last ``width`` values; missing values are blanks.

    Examples
    --------
    >>> sparkline([1, 2, 3, 4, 5, 6, 7, 8])
    '▁▂▃▄▅▆▇█'
    >>> sparkline([5, None, 5])
    '▄ ▄'
    """
    recent = list(values)[-width:]
    present = [v for v in recent if v is not None and math.isfinite(v)]
    if not present:
        return ""
    low, high = min(present), max(present)
    span = high - low
    chars = []
    for value in recent:
        if value is None or not math.isfinite(value):
            chars.append(" ")
        elif span == 0:
            chars.append(BARS[len(BARS) // 2 - 1])
        else:
            chars.append(BARS[round((value - low) / span * (len(BARS) - 1))])
    return "".join(chars)
