"""Render an evaluation: a rich table for the terminal, Markdown for the README, and JSON."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from streams.simulation.evaluate import TypeRow
from streams.simulation.runner import EvalReport
from streams.simulation.scenario_file import to_plain

__all__ = ["print_report", "to_json", "to_markdown"]

COLUMNS = ("found", "delay events p50 / p90", "delay s p50 / p90", "FA /100k", "NAB")


def _number(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _or_none(value: float) -> float | None:
    """NaN (a NAB score with no window) as JSON null."""
    return None if math.isnan(value) else value


def _pair(low: float | None, high: float | None, digits: int) -> str:
    if low is None:
        return "-"
    return f"{_number(low, digits)} / {_number(high, digits)}"


def cells(row: TypeRow) -> list[str]:
    """The report's cells for one row, in `COLUMNS` order."""
    found = f"{row.detected}/{row.incidents}" if row.incidents else "-"
    return [
        found,
        _pair(row.median_delay_events, row.p90_delay_events, 0),
        _pair(row.median_delay_s, row.p90_delay_s, 1),
        f"{row.false_per_100k:.2f}",
        _number(row.nab, 1),
    ]


def _side_by_side(report: EvalReport) -> tuple[list[str], list[list[str]]]:
    header = ["incident type"]
    for method in report.methods:
        header += [f"{method.method}: {column}" for column in COLUMNS]
    types = [row.type for row in report.methods[0].rows] if report.methods else []
    body = []
    for position, kind in enumerate(types):
        line = [kind]
        for method in report.methods:
            line += cells(method.rows[position])
        body.append(line)
    return header, body


def to_markdown(report: EvalReport, command: str | None = None) -> str:
    """A Markdown table of every method side by side, then each method's targets."""
    header, body = _side_by_side(report)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
        *("| " + " | ".join(line) + " |" for line in body),
        "",
        f"{report.events:,} events in {len(report.suite)} scenarios, "
        f"evaluated in {report.seconds:.0f} s. NAB with every detection an alarm (no alert "
        "grouping): "
        + ", ".join(
            f"{m.method} {_number(m.rows[-1].nab_every_detection, 1)}" for m in report.methods
        )
        + ".",
    ]
    if command:
        lines.insert(0, f"`{command}`\n")
    for method in report.methods:
        lines.append("")
        lines.append(f"Targets, {method.method}:")
        lines.append("")
        for target in method.targets:
            mark = "met" if target.met else "**missed**"
            lines.append(f"- {target.name}: {mark} ({target.detail})")
    return "\n".join(lines) + "\n"


def print_report(report: EvalReport, console: Console) -> None:
    """One table per method, then the targets, for a terminal."""
    console.print(
        f"{len(report.suite)} scenarios, {report.events:,} events, evaluated in "
        f"{report.seconds:.0f} s"
    )
    for method in report.methods:
        table = Table("incident type", *COLUMNS, title=method.method)
        for row in method.rows:
            table.add_row(row.type, *cells(row))
        console.print(table)
        for target in method.targets:
            mark = "[green]met[/green]" if target.met else "[red]missed[/red]"
            console.print(f"  {target.name}: {mark} ({target.detail})")
        every = _number(method.rows[-1].nab_every_detection, 1)
        console.print(f"  NAB with every detection an alarm (no alert grouping): {every}")


def to_json(report: EvalReport) -> dict[str, Any]:
    """Plain data: rows (with rates), per-scenario outcomes, targets and labels."""
    methods = []
    for method in report.methods:
        rows = [
            {
                **to_plain(row),
                "detection_rate": row.detection_rate,
                "false_per_100k": row.false_per_100k,
                "nab": _or_none(row.nab),
                "nab_every_detection": _or_none(row.nab_every_detection),
            }
            for row in method.rows
        ]
        scenarios = []
        for score in method.scenarios:
            plain = to_plain(score)
            for name in ("nab", "nab_every_detection"):
                plain[name]["normalised"] = _or_none(getattr(score, name).normalised)
            scenarios.append(plain)
        methods.append(
            {
                "method": method.method,
                "rows": rows,
                "scenarios": scenarios,
                "targets": to_plain(method.targets),
            }
        )
    return {
        "suite": list(report.suite),
        "events": report.events,
        "seconds": report.seconds,
        "methods": methods,
        "labels": [label.to_json() for label in report.labels],
    }
