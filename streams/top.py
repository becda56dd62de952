"""``llmpulse top``: poll a worker's ``GET /live`` and redraw the busiest keys in place.

`streams.top_view` draws a frame; this module fetches, refreshes and wires the command.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.styled import Styled
from rich.text import Text

from streams.top_view import (
    DEFAULT_KEY_SET,
    DEFAULT_LIMIT,
    DEFAULT_SORT,
    LivePayloadError,
    UnknownSortColumnError,
    check_sort_column,
    render_live,
)

LIVE_PATH = "/live"


class LiveFetchError(Exception):
    """No usable ``/live`` body this time; ``str()`` says why, for the status line."""


class WorkerUnreachableError(LiveFetchError):
    """Nothing answered at the URL (refused, timed out, unknown host)."""

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(f"worker not reachable at {url}")
        self.url = url
        self.reason = str(reason)


def live_url(url: str) -> str:
    """``url`` itself if it has a path, else ``url`` + ``/live``."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.path in ("", "/"):
        parts = parts._replace(path=LIVE_PATH)
    return urlunsplit(parts)


def default_url(host: str, port: int) -> str:
    """The worker's base URL for the configured web host and port."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def fetch_live(url: str, timeout: float = 5.0) -> Any:
    """The decoded JSON body of ``GET url``; raise `LiveFetchError` when there is none."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            message = f"worker at {url} has no live page (HTTP 404); is it older than this CLI?"
        else:
            detail = exc.read()[:200].decode("utf-8", errors="replace")
            message = f"worker at {url} answered HTTP {exc.code}: {detail}"
        raise LiveFetchError(message) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise WorkerUnreachableError(url, getattr(exc, "reason", exc)) from exc
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise LiveFetchError(f"worker at {url} sent a body that is not JSON: {exc}") from exc


def _status_line(exc: Exception, retrying: bool) -> Text:
    line = Text(str(exc), style="bold red")
    if retrying:
        line.append(" (retrying)", style="bold red")
    if isinstance(exc, WorkerUnreachableError):
        line.append(f"  {exc.reason}", style="dim")
    return line


class _Frames:
    """Fetches and draws one frame at a time, keeping the last good one under an error line."""

    def __init__(
        self, url: str, key_sets: Sequence[str], sort: str, limit: int, timeout: float
    ) -> None:
        self.url = url
        self.key_sets = key_sets
        self.sort = sort
        self.limit = limit
        self.timeout = timeout
        self.last_good: RenderableType | None = None

    def draw(self, retrying: bool) -> tuple[RenderableType, bool]:
        """The frame to show, and whether it is fresh."""
        try:
            payload = fetch_live(self.url, self.timeout)
            frame = render_live(payload, self.key_sets, self.sort, self.limit)
        except LivePayloadError as exc:
            error: Exception = LiveFetchError(f"unexpected body from {self.url}: {exc}")
        except LiveFetchError as exc:
            error = exc
        else:
            self.last_good = frame
            return frame, True
        status = _status_line(error, retrying)
        if self.last_good is None:
            return status, False
        return Group(status, Styled(self.last_good, "dim")), False


def run_top(
    url: str,
    key_set: str,
    sort: str,
    limit: int,
    interval: float,
    console: Console,
    *,
    once: bool = False,
    timeout: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Show the top keys of ``key_set`` (comma-separated for several tables) until Ctrl-C.

    ``url`` is the worker's base URL or its ``/live`` URL. With ``once``, draw one frame
    and return; the result is 0 if it showed data, 1 if the worker could not be read.
    Without, keep polling every ``interval`` seconds, retrying through errors, and
    return 0 on Ctrl-C (130 if Ctrl-C cuts ``once`` short). Raises
    `UnknownSortColumnError` before any request.
    """
    check_sort_column(sort)
    if limit < 1 or interval <= 0:
        raise ValueError(f"limit and interval must be positive, got {limit} and {interval}")
    key_sets = [name.strip() for name in key_set.split(",") if name.strip()] or [DEFAULT_KEY_SET]
    frames = _Frames(live_url(url), key_sets, sort, limit, timeout)
    try:
        if once:
            frame, fresh = frames.draw(retrying=False)
            console.print(frame)
            return 0 if fresh else 1
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while True:
                started = time.monotonic()
                frame, _ = frames.draw(retrying=True)
                live.update(frame, refresh=True)
                sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return 130 if once else 0  # the live view's normal way out; a cut-short frame is not
    return 0


def top(
    key_set: Annotated[
        str, typer.Option(help="Key set to show; comma-separated for one table each.")
    ] = DEFAULT_KEY_SET,
    sort: Annotated[
        str, typer.Option(help="Numeric column to sort by, descending, e.g. latency_p95_ms.")
    ] = DEFAULT_SORT,
    limit: Annotated[int, typer.Option(min=1, help="Rows per table.")] = DEFAULT_LIMIT,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Draw one frame and exit.")] = False,
    url: Annotated[
        str | None,
        typer.Option(help="Worker URL; default http://LLMPULSE_WEB_HOST:LLMPULSE_WEB_PORT."),
    ] = None,
) -> None:
    """Live view of LLM traffic per key: requests, errors, latency, cost; like top."""
    try:
        check_sort_column(sort)
    except UnknownSortColumnError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sort") from exc
    if url is None:
        from streams.config import Settings

        settings = Settings()
        url = default_url(settings.web_host, settings.web_port)
    code = run_top(url, key_set, sort, limit, interval, Console(), once=once)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add the ``top`` command to ``app``."""
    app.command("top")(top)
