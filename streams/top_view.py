"""What ``llmpulse top`` draws: the worker's ``/live`` body turned into a rich renderable.

Pure: no I/O and no clock. `streams.top` fetches the body and refreshes the screen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_type_hints

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from streams.metrics.config import DEFAULT_KEY_SETS, key_set_name
from streams.metrics.record import MetricRecord

DEFAULT_KEY_SET = key_set_name(DEFAULT_KEY_SETS[0])
DEFAULT_SORT = "requests"
DEFAULT_LIMIT = 20
ERROR_RATE_HIGHLIGHT = 0.05
"""Error rates above this (5 %) are shown in red."""
MISSING = "\u2013"  # an en dash, written as an escape so no linter takes it for a minus sign

_NUMERIC_HINTS: tuple[object, ...] = (int, float, int | None, float | None)
RECORD_NUMERIC_FIELDS: tuple[str, ...] = tuple(
    name for name, hint in get_type_hints(MetricRecord).items() if hint in _NUMERIC_HINTS
)
SORT_COLUMNS: tuple[str, ...] = ("requests_per_second", *RECORD_NUMERIC_FIELDS)
"""Every name ``--sort`` accepts: the numeric fields of `MetricRecord` plus the derived req/s."""


class LivePayloadError(ValueError):
    """The ``/live`` body does not have the expected shape."""


class UnknownSortColumnError(ValueError):
    """``sort`` names no numeric column; the message lists the valid ones."""

    def __init__(self, sort: str) -> None:
        super().__init__(f"unknown sort column {sort!r}; choose one of: {', '.join(SORT_COLUMNS)}")
        self.sort = sort


def check_sort_column(sort: str) -> str:
    """Return ``sort`` if rows can be sorted by it, else raise `UnknownSortColumnError`."""
    if sort not in SORT_COLUMNS:
        raise UnknownSortColumnError(sort)
    return sort


@dataclass(frozen=True, slots=True)
class TopRow:
    """One key's current window: its dimensions and every sortable value (None if unknown)."""

    key_set: str
    dimensions: dict[str, str]
    window_start: datetime
    values: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    """The parsed ``/live`` body."""

    generated_at: datetime
    watermark: datetime | None
    events_per_second: float | None
    window_seconds: float | None
    records: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_json(cls, payload: Any) -> LiveSnapshot:
        if not isinstance(payload, Mapping):
            raise LivePayloadError(f"expected a JSON object, got {type(payload).__name__}")
        records = payload.get("records")
        if not isinstance(records, list) or not all(isinstance(r, Mapping) for r in records):
            raise LivePayloadError("'records' must be a list of objects")
        watermark = payload.get("watermark")
        return cls(
            generated_at=_timestamp(payload.get("generated_at"), "generated_at"),
            watermark=None if watermark is None else _timestamp(watermark, "watermark"),
            events_per_second=_number(payload.get("events_per_second"), "events_per_second"),
            window_seconds=_number(payload.get("window_seconds"), "window_seconds"),
            records=tuple(records),
        )

    def key_sets(self) -> list[str]:
        """Key set names present, in order of first appearance."""
        return list(dict.fromkeys(str(r.get("key_set")) for r in self.records))

    def rows(self, key_set: str) -> list[TopRow]:
        """The newest window of every key of ``key_set``, with req/s worked out.

        req/s divides by the part of the window that has elapsed at the watermark (event
        time), or at ``generated_at`` before the first call; at least one second, at most
        the whole window.
        """
        reference = self.watermark or self.generated_at
        newest: dict[tuple[tuple[str, str], ...], TopRow] = {}
        for record in self.records:
            if record.get("key_set") != key_set:
                continue
            row = _row(record, reference)
            ident = tuple(row.dimensions.items())
            if ident not in newest or newest[ident].window_start < row.window_start:
                newest[ident] = row
        return list(newest.values())


def render_live(
    payload: Any,
    key_sets: Sequence[str] = (DEFAULT_KEY_SET,),
    sort: str = DEFAULT_SORT,
    limit: int = DEFAULT_LIMIT,
) -> RenderableType:
    """A header line, then one table per key set: the top ``limit`` keys by ``sort``, descending.

    Raises `UnknownSortColumnError` for a bad ``sort`` and `LivePayloadError` for a body
    that is not what ``GET /live`` returns.
    """
    check_sort_column(sort)
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    snapshot = LiveSnapshot.from_json(payload)
    rows = {name: snapshot.rows(name) for name in key_sets}
    parts: list[RenderableType] = [header_line(snapshot, sum(len(r) for r in rows.values()))]
    for name, key_rows in rows.items():
        if key_rows:
            parts.append(TopTable(name, key_rows, sort, limit))
        else:
            parts.append(_no_rows_line(name, snapshot))
    return Group(*parts)


def header_line(snapshot: LiveSnapshot, keys: int) -> Text:
    """One line: time, events/s, watermark and how far behind it is, window length, key count."""
    line = Text()
    line.append("llmpulse top", style="bold")
    line.append(f"  {_clock(snapshot.generated_at)}  ")
    line.append(_rate(snapshot.events_per_second), style="bold cyan")
    line.append(" events/s  watermark ")
    if snapshot.watermark is None:
        line.append(MISSING)
    else:
        behind = (snapshot.generated_at - snapshot.watermark).total_seconds()
        line.append(f"{_clock(snapshot.watermark)} ({behind:.1f} s behind)")
    window = snapshot.window_seconds
    line.append(f"  window {MISSING if window is None else f'{window:g} s'}")
    line.append(f"  {keys} key{'' if keys == 1 else 's'}")
    return line


@dataclass(frozen=True, slots=True)
class TopColumn:
    """A metric column: its header, the `TopRow` value it shows, and how it is written."""

    header: str
    field: str
    render: Callable[[float | None], str]


def _count(value: float | None) -> str:
    return MISSING if value is None else f"{value:,.0f}"


def _percent(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.1f}"


def _ms(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _money(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:,.2f}" if value >= 1 else f"{value:.4f}"  # cents hide small windows


def _rate(value: float | None) -> str:
    return MISSING if value is None else f"{value:,.1f}"


COLUMNS: tuple[TopColumn, ...] = (
    TopColumn("requests", "requests", _count),
    TopColumn("req/s", "requests_per_second", _rate),
    TopColumn("error %", "error_rate", _percent),
    TopColumn("p50 ms", "latency_p50_ms", _ms),
    TopColumn("p95 ms", "latency_p95_ms", _ms),
    TopColumn("p99 ms", "latency_p99_ms", _ms),
    TopColumn("TTFT p95", "ttft_p95_ms", _ms),
    TopColumn("tok/s", "output_tokens_per_second_mean", _rate),
    TopColumn("cost $", "cost_usd_sum", _money),
    TopColumn("cost/1k", "cost_per_1k_requests", _money),
    TopColumn("length %", "finish_length_rate", _percent),
    TopColumn("filter %", "finish_content_filter_rate", _percent),
)


def sort_rows(rows: Iterable[TopRow], sort: str, limit: int) -> list[TopRow]:
    """Descending by ``sort``, None last, ties by dimensions; the first ``limit`` of them."""
    check_sort_column(sort)

    def key(row: TopRow) -> tuple[bool, float, tuple[str, ...]]:
        value = row.values.get(sort)
        return (value is None, -(value or 0.0), tuple(row.dimensions.values()))

    return sorted(rows, key=key)[:limit]


HIDE_FIRST: tuple[str, ...] = (
    "finish_content_filter_rate",
    "finish_length_rate",
    "cost_per_1k_requests",
    "latency_p50_ms",
    "ttft_p95_ms",
    "output_tokens_per_second_mean",
    "latency_p99_ms",
    "requests_per_second",
    "cost_usd_sum",
)
"""Columns a narrow terminal loses, first to last; the sort column is always kept."""


@dataclass(frozen=True, slots=True)
class TopTable:
    """One key set's table, drawn with as many columns as the console width allows."""

    key_set: str
    rows: Sequence[TopRow]
    sort: str
    limit: int

    def build(self, columns: Sequence[TopColumn] = COLUMNS) -> Table:
        """The table with ``columns``; the column sorted by is underlined when it is shown."""
        shown = sort_rows(self.rows, self.sort, self.limit)
        dimensions = list(dict.fromkeys(name for row in self.rows for name in row.dimensions))
        caption = f"top {len(shown)} of {len(self.rows)} by {self.sort}"
        hidden = len(COLUMNS) - len(columns)
        if hidden:
            caption += f"; {hidden} column{'s' if hidden > 1 else ''} hidden, widen the terminal"
        table = Table(
            title=self.key_set,
            title_justify="left",
            caption=caption,
            caption_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
        )
        for name in dimensions:
            table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=40)
        for column in columns:
            style = "bold underline" if column.field == self.sort else "bold"
            table.add_column(column.header, justify="right", no_wrap=True, header_style=style)
        for row in shown:
            cells: list[str | Text] = [row.dimensions.get(name, MISSING) for name in dimensions]
            cells.extend(_cell(column, row) for column in columns)
            table.add_row(*cells)
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        droppable = [name for name in HIDE_FIRST if name != self.sort]
        columns = list(COLUMNS)
        unbounded = options.update_width(10_000)  # a measurement never exceeds the width given
        while True:
            table = self.build(columns)
            fits = Measurement.get(console, unbounded, table).maximum <= options.max_width
            if fits or not droppable:
                yield table
                return
            dropped = droppable.pop(0)
            columns = [c for c in columns if c.field != dropped]


def _cell(column: TopColumn, row: TopRow) -> str | Text:
    value = row.values.get(column.field)
    text = column.render(value)
    if column.field == "error_rate" and value is not None and value > ERROR_RATE_HIGHLIGHT:
        return Text(text, style="bold red")
    return text


def _no_rows_line(key_set: str, snapshot: LiveSnapshot) -> Text:
    present = snapshot.key_sets()
    if not present:
        return Text(f"{key_set}: no open windows yet (no calls in the current window)")
    return Text(
        f"{key_set}: no open windows for this key set; the worker has: {', '.join(present)}",
        style="yellow",
    )


def _row(record: Mapping[str, Any], reference: datetime) -> TopRow:
    dimensions = record.get("dimensions")
    if not isinstance(dimensions, Mapping):
        raise LivePayloadError("a record's 'dimensions' must be an object")
    start = _timestamp(record.get("window_start"), "window_start")
    end = _timestamp(record.get("window_end"), "window_end")
    values = {name: _number(record.get(name), name) for name in RECORD_NUMERIC_FIELDS}
    elapsed = (min(reference, end) - start).total_seconds()
    requests = values.get("requests")
    per_second = None if requests is None else requests / max(elapsed, 1.0)
    values["requests_per_second"] = per_second
    return TopRow(
        key_set=str(record.get("key_set")),
        dimensions={str(k): str(v) for k, v in dimensions.items()},
        window_start=start,
        values=values,
    )


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LivePayloadError(f"{name!r} must be a number or null, got {value!r}")
    return float(value)


def _timestamp(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise LivePayloadError(f"{name!r} must be an ISO 8601 string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise LivePayloadError(f"{name!r} is not ISO 8601: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S UTC")
