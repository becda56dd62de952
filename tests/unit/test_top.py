"""``llmpulse top``: rendering the ``/live`` body, and the command against a real local server."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import typer
from aiohttp import web
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text
from typer.testing import CliRunner

from streams.metrics import MetricsAggregator, MetricsConfig, PricingTable
from streams.top import default_url, live_url, register, run_top
from streams.top_view import (
    MISSING,
    SORT_COLUMNS,
    LivePayloadError,
    TopTable,
    UnknownSortColumnError,
    render_live,
)
from tests.unit.metrics_fakes import Call, at
from tests.unit.top_fakes import KEY_SET, START, payload, realistic, record


def tables(renderable: RenderableType) -> list[Table]:
    assert isinstance(renderable, Group)
    return [part.build() for part in renderable.renderables if isinstance(part, TopTable)]


def column(table: Table, header: str) -> list[str | Text]:
    for col in table.columns:
        if col.header == header:
            return list(col.cells)  # type: ignore[arg-type]
    raise AssertionError(f"no column {header!r} in {[c.header for c in table.columns]}")


def text_of(renderable: RenderableType, width: int = 200) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_rows_sorted_by_requests_descending_by_default() -> None:
    [table] = tables(render_live(realistic()))
    assert table.title == KEY_SET
    assert column(table, "model") == ["gpt-4o-mini", "gpt-4o", "gpt-4.1", "o1", "acme-unpriced"]
    assert column(table, "requests") == ["3,400", "1,200", "450", "90", "15"]
    assert [c.header for c in table.columns][:4] == ["app", "environment", "provider", "model"]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        # a null sorts last; ties go by dimensions, ascending
        ("latency_p95_ms", ["o1", "gpt-4.1", "gpt-4o", "gpt-4o-mini", "acme-unpriced"]),
        ("error_rate", ["o1", "gpt-4.1", "acme-unpriced", "gpt-4o", "gpt-4o-mini"]),
        ("cost_usd_sum", ["gpt-4o", "gpt-4.1", "gpt-4o-mini", "o1", "acme-unpriced"]),
    ],
)
def test_sort_by_any_numeric_column(sort: str, expected: list[str]) -> None:
    [table] = tables(render_live(realistic(), sort=sort))
    assert column(table, "model") == expected
    assert table.caption == f"top 5 of 5 by {sort}"


def test_none_is_shown_as_a_dash() -> None:
    [table] = tables(render_live(realistic()))
    last = -1  # acme-unpriced, the fewest requests
    assert MISSING == "\u2013"
    for header in ("p95 ms", "TTFT p95", "tok/s", "cost/1k"):
        assert column(table, header)[last] == MISSING
    assert column(table, "p50 ms")[last] == "420"
    assert column(table, "cost $") == ["1.02", "3.72", "1.40", "0.2790", "0.0465"]
    rendered = text_of(render_live(realistic())).splitlines()
    assert next(line for line in rendered if "acme-unpriced" in line).count(MISSING) == 4


def test_error_rate_above_five_percent_is_red() -> None:
    [table] = tables(render_live(realistic()))
    errors = dict(zip(column(table, "model"), column(table, "error %"), strict=True))
    assert isinstance(errors["o1"], Text)
    assert errors["o1"].plain == "10.0"
    assert "red" in str(errors["o1"].style)
    assert errors["gpt-4.1"] == "2.0"  # plain str: not highlighted
    assert errors["gpt-4o"] == "0.0"
    [table] = tables(render_live(payload([record("gpt-4o", 100, errors=5, error_rate=0.05)])))
    assert column(table, "error %") == ["5.0"]  # exactly 5 % is not above it


def test_limit_keeps_the_top_rows() -> None:
    [table] = tables(render_live(realistic(), limit=2))
    assert column(table, "model") == ["gpt-4o-mini", "gpt-4o"]
    assert table.caption == "top 2 of 5 by requests"


def test_a_narrow_terminal_hides_minor_columns_not_the_keys() -> None:
    wide = text_of(render_live(realistic()), width=200)
    assert "hidden" not in wide and "\u2026" not in wide
    narrow = text_of(render_live(realistic(), sort="ttft_p95_ms"), width=100)
    assert all(len(line) <= 100 for line in narrow.splitlines())
    assert "columns hidden, widen the terminal" in narrow
    assert "\u2026" not in narrow  # nothing cut short
    for kept in ("acme-unpriced", "production", "requests", "error %", "p95 ms", "TTFT p95"):
        assert kept in narrow  # TTFT p95 is hidden early, but it is the sort column here
    assert "filter %" not in narrow and "cost/1k" not in narrow


def test_unknown_sort_column_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownSortColumnError) as info:
        render_live(realistic(), sort="p95")
    message = str(info.value)
    assert "unknown sort column 'p95'" in message
    for name in ("requests", "requests_per_second", "latency_p95_ms", "error_rate", "cost_usd_sum"):
        assert name in message
    assert "closed_by" not in SORT_COLUMNS and "dimensions" not in SORT_COLUMNS


def test_req_per_second_divides_by_the_elapsed_part_of_the_window() -> None:
    previous = START - timedelta(seconds=60)
    older = record("gpt-4o", 600, window_start=previous, window_end=START)
    older["dimensions"]["model"] = "gpt-3.5"
    body = payload([record("gpt-4o", 1_200), older], watermark_s=30.0)
    [table] = tables(render_live(body))
    # 1,200 calls in the 30 s elapsed at the watermark; a window behind it counts whole
    assert column(table, "req/s") == ["40.0", "10.0"]


def test_only_the_newest_window_of_a_key_is_shown() -> None:
    previous = START - timedelta(seconds=60)
    body = payload(
        [record("gpt-4o", 900, window_start=previous, window_end=START), record("gpt-4o", 7)]
    )
    [table] = tables(render_live(body))
    assert column(table, "requests") == ["7"]


def test_header_line_and_one_table_per_key_set() -> None:
    frame = render_live(realistic(), key_sets=[KEY_SET, "provider_model"])
    assert [t.title for t in tables(frame)] == [KEY_SET, "provider_model"]
    text = text_of(frame)
    header = text.splitlines()[0]
    assert "412.5 events/s" in header
    assert "watermark 12:00:30 UTC (1.0 s behind)" in header
    assert "window 60 s" in header
    assert "6 keys" in header
    assert "gpt-4o-mini" in text and "5,000" in text


def test_missing_key_set_says_which_ones_exist() -> None:
    text = text_of(render_live(realistic(), key_sets=["app_prompt_id_prompt_version"]))
    assert "no open windows for this key set" in text
    assert f"{KEY_SET}, provider_model" in text
    empty = text_of(render_live(payload([], watermark_s=None)))
    assert "watermark \u2013" in empty and "0 keys" in empty
    assert "no open windows yet" in empty


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"generated_at": "2025-03-01T12:00:00+00:00", "records": "nope"},
        {"generated_at": "yesterday", "records": []},
        payload([{**record("gpt-4o", 3), "requests": "three"}]),
    ],
)
def test_a_malformed_body_is_reported(body: Any) -> None:
    with pytest.raises(LivePayloadError):
        render_live(body)


def test_renders_what_the_aggregator_reports_as_open() -> None:
    agg = MetricsAggregator(MetricsConfig(), PricingTable.load())
    for i in range(40):
        status = "error" if i % 4 == 0 else "ok"
        model = "gpt-4o-mini" if i % 2 else "gpt-4o"
        agg.add_call(Call(f"e{i}", at(i * 0.5), model=model, status=status, ttft_ms=90.0))
    watermark = datetime.fromtimestamp(agg.watermark or 0, UTC)
    body = orjson.loads(
        orjson.dumps(
            {
                "generated_at": (watermark + timedelta(seconds=1)).isoformat(),
                "watermark": watermark.isoformat(),
                "events_per_second": 2.0,
                "window_seconds": 60.0,
                "records": [r.to_json_dict() for r in agg.open_windows()],
            }
        )
    )
    [table] = tables(render_live(body, sort="error_rate"))
    assert column(table, "model") == ["gpt-4o", "gpt-4o-mini"]
    assert column(table, "requests") == ["20", "20"]
    assert isinstance(column(table, "error %")[0], Text)  # 10 of 20 failed


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:6066", "http://127.0.0.1:6066/live"),
        ("http://127.0.0.1:6066/", "http://127.0.0.1:6066/live"),
        ("127.0.0.1:6066", "http://127.0.0.1:6066/live"),
        ("http://127.0.0.1:6066/live", "http://127.0.0.1:6066/live"),
        ("http://proxy:80/llmpulse/live?x=1", "http://proxy:80/llmpulse/live?x=1"),
    ],
)
def test_live_url(given: str, expected: str) -> None:
    assert live_url(given) == expected


def test_default_url() -> None:
    assert default_url("127.0.0.1", 6066) == "http://127.0.0.1:6066"
    assert default_url("0.0.0.0", 7000) == "http://127.0.0.1:7000"
    assert default_url("::", 7000) == "http://[::1]:7000"


# --- against a real aiohttp server on 127.0.0.1 ---------------------------------------------


@dataclass
class LiveServer:
    url: str
    body: dict[str, Any] | None
    status: int = 200
    hits: list[str] = field(default_factory=list)


@pytest.fixture
def live_server() -> Iterator[LiveServer]:
    """Serves ``server.body`` at ``GET /live`` from its own event loop in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = LiveServer(url=f"http://127.0.0.1:{sock.getsockname()[1]}", body=realistic())

    async def live(request: web.Request) -> web.Response:
        server.hits.append(request.path)
        return web.Response(
            body=orjson.dumps(server.body), status=server.status, content_type="application/json"
        )

    app = web.Application()
    app.router.add_get("/live", live)
    runner = web.AppRunner(app)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(runner.setup(), loop).result(5)
    asyncio.run_coroutine_threadsafe(web.SockSite(runner, sock).start(), loop).result(5)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("version")(lambda: None)  # a second command, so "top" stays a subcommand
    register(app)
    return app


def record_console() -> Console:
    return Console(record=True, width=200, file=io.StringIO())


def test_cli_once_renders_one_frame(live_server: LiveServer) -> None:
    result = CliRunner().invoke(
        cli(),
        ["top", "--once", "--url", live_server.url, "--sort", "latency_p95_ms", "--limit", "3"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert live_server.hits == ["/live"]
    lines = result.output.splitlines()
    assert "412.5 events/s" in lines[0]
    models = [m for line in lines for m in ("o1 ", "gpt-4o ", "gpt-4.1 ") if f" {m}" in line]
    assert models == ["o1 ", "gpt-4.1 ", "gpt-4o "]
    assert "top 3 of 5 by latency_p95_ms" in result.output
    assert "9,800" in result.output and "gpt-4o-mini" not in result.output


def test_run_top_once_into_a_recording_console(live_server: LiveServer) -> None:
    console = record_console()
    code = run_top(
        live_server.url + "/live", "provider_model", "requests", 5, 1.0, console, once=True
    )
    assert code == 0
    text = console.export_text()
    assert "provider_model" in text and "5,000" in text and "gpt-4o-mini" not in text


def test_cli_once_when_no_worker_listens(closed_port_url: str) -> None:
    result = CliRunner().invoke(
        cli(), ["top", "--once", "--url", closed_port_url], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1
    assert f"worker not reachable at {closed_port_url}/live" in result.output
    assert "retrying" not in result.output


def test_cli_rejects_an_unknown_sort_column(live_server: LiveServer) -> None:
    result = CliRunner().invoke(
        cli(), ["top", "--once", "--url", live_server.url, "--sort", "speed"]
    )
    assert result.exit_code == 2
    assert "unknown sort column" in result.output and "latency_p95_ms" in result.output
    assert live_server.hits == []


def test_cli_old_worker_without_live_page(live_server: LiveServer) -> None:
    live_server.status = 404
    result = CliRunner().invoke(
        cli(), ["top", "--once", "--url", live_server.url], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1
    assert "no live page (HTTP 404)" in result.output


def ctrl_c_after(n: int, on_sleep: Callable[[], None] = lambda: None) -> Callable[[float], None]:
    """A stand-in for ``time.sleep`` that presses Ctrl-C on its ``n``-th call."""
    calls: list[float] = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        on_sleep()
        if len(calls) >= n:
            raise KeyboardInterrupt

    return sleep


def test_live_view_polls_until_ctrl_c(live_server: LiveServer) -> None:
    console = record_console()
    code = run_top(live_server.url, KEY_SET, "requests", 2, 0.01, console, sleep=ctrl_c_after(3))
    assert code == 0
    assert live_server.hits == ["/live"] * 3
    text = console.export_text()
    assert "top 2 of 5 by requests" in text  # the last frame stays on screen


def test_live_view_keeps_retrying_a_worker_that_went_away(live_server: LiveServer) -> None:
    def worker_fails() -> None:
        live_server.status = 500

    console = record_console()
    run_top(
        live_server.url, KEY_SET, "requests", 5, 0.01, console, sleep=ctrl_c_after(2, worker_fails)
    )
    text = console.export_text()
    assert f"worker at {live_server.url}/live answered HTTP 500" in text
    assert "(retrying)" in text
    assert "gpt-4o-mini" in text  # the last good frame, dimmed, under the error


def test_live_view_when_no_worker_listens(closed_port_url: str) -> None:
    console = record_console()
    code = run_top(closed_port_url, KEY_SET, "requests", 5, 0.01, console, sleep=ctrl_c_after(2))
    assert code == 0
    assert f"worker not reachable at {closed_port_url}/live (retrying)" in console.export_text()
