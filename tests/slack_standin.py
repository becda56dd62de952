"""A local stand-in for the Slack Web API, Slack incoming webhooks and a generic JSON webhook.

It records every request and can be told to answer 429 (with Retry-After) or 5xx, or to be
slow. Use it as an async context manager in tests, or run it:
``python -m tests.slack_standin --port 8099``. Control endpoints for end-to-end tests:
``GET /_standin/requests``, ``POST /_standin/fail`` (JSON: status, count or seconds,
retry_after; or delay) and ``POST /_standin/reset``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web


def _wall_clock() -> float:  # in RecordedRequest, `time` names a field, not the module
    return time.time()


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    time: float
    status: int = 200
    wall: float = field(default_factory=_wall_clock)
    response: Any = None  # the JSON a Web API call answered (e.g. the new message's ts)

    @property
    def api_method(self) -> str:
        return self.path.removeprefix("/api/") if self.path.startswith("/api/") else ""


@dataclass
class FailurePlan:
    status: int
    remaining: int | None
    until: float | None
    retry_after: int | None


@dataclass
class SlackStandIn:
    host: str = "127.0.0.1"
    port: int = 0
    token_prefix: str = "xoxb-"
    requests: list[RecordedRequest] = field(default_factory=list)
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    in_flight: int = 0
    _failure: FailurePlan | None = None
    _delay: float = 0.0
    _runner: web.AppRunner | None = None
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- control -----------------------------------------------------------------------------
    def fail_next(self, count: int, status: int = 429, retry_after: int | None = 1) -> None:
        """Answer the next ``count`` requests with ``status``."""
        self._failure = FailurePlan(status, count, None, retry_after)

    def fail_for(self, seconds: float, status: int = 503, retry_after: int | None = None) -> None:
        """Answer every request with ``status`` for ``seconds``."""
        self._failure = FailurePlan(status, None, time.monotonic() + seconds, retry_after)

    def slow(self, delay: float) -> None:
        """Hold every request ``delay`` seconds before Slack sees it, until `heal`.

        A request whose client went away meanwhile never reaches Slack: it is recorded with
        status 499 and has no effect, as a request lost on a slow network.
        """
        self._delay = delay

    def heal(self) -> None:
        self._failure = None
        self._delay = 0.0

    def reset(self) -> None:
        self.requests.clear()
        self.messages.clear()
        self.heal()

    def calls(self, api_method: str) -> list[RecordedRequest]:
        """Accepted Web API calls of one method, e.g. ``chat.postMessage``."""
        return [r for r in self.requests if r.api_method == api_method and r.status == 200]

    def webhook_posts(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith("/services/") and r.status == 200]

    def generic_posts(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith("/hooks/") and r.status == 200]

    # -- addresses ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/services/T000/B000/standin"

    @property
    def generic_url(self) -> str:
        return f"{self.url}/hooks/generic"

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> SlackStandIn:
        app = web.Application()
        app.router.add_get("/_standin/requests", self._list_requests)
        app.router.add_post("/_standin/fail", self._configure_failure)
        app.router.add_post("/_standin/reset", self._reset)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/services/{path:.*}", self._webhook)
        app.router.add_post("/hooks/{path:.*}", self._generic)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SlackStandIn:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- handlers ----------------------------------------------------------------------------
    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        body: Any
        if request.content_type == "application/json":
            body = json.loads(raw or b"null")
        elif request.content_type == "application/x-www-form-urlencoded":
            body = dict(parse_qsl(raw.decode()))
            for key in ("blocks", "attachments"):
                if isinstance(body.get(key), str):
                    body[key] = json.loads(body[key])
        else:
            body = raw.decode(errors="replace")
        recorded = RecordedRequest(
            request.method, request.path, dict(request.headers), body, time.monotonic()
        )
        self.requests.append(recorded)
        return recorded

    def _injected_failure(self, recorded: RecordedRequest, api: bool) -> web.Response | None:
        plan = self._failure
        if plan is None:
            return None
        if plan.until is not None and time.monotonic() >= plan.until:
            self._failure = None
            return None
        if plan.remaining is not None:
            if plan.remaining <= 0:
                self._failure = None
                return None
            plan.remaining -= 1
        recorded.status = plan.status
        headers = {"Retry-After": str(plan.retry_after)} if plan.retry_after is not None else {}
        error = "ratelimited" if plan.status == 429 else "fatal_error"
        if api:
            return web.json_response(
                {"ok": False, "error": error}, status=plan.status, headers=headers
            )
        return web.Response(
            text="rate_limited" if plan.status == 429 else "internal_error",
            status=plan.status,
            headers=headers,
        )

    def _channel_id(self, channel: str) -> str:
        if channel.startswith(("C", "G", "D")) and channel.isupper():
            return channel
        return "C" + hashlib.sha1(channel.encode()).hexdigest()[:8].upper()

    async def _arrived(self, request: web.Request, recorded: RecordedRequest) -> bool:
        """Wait out the configured delay; False if the client is gone by then."""
        if self._delay <= 0:
            return True
        self.in_flight += 1
        try:
            await asyncio.sleep(self._delay)
        finally:
            self.in_flight -= 1
        if request.transport is None or request.transport.is_closing():
            recorded.status = 499
            return False
        return True

    async def _api(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        if not await self._arrived(request, recorded):
            return web.Response(status=499)
        failure = self._injected_failure(recorded, api=True)
        if failure is not None:
            return failure
        response = await self._answer(request, recorded)
        recorded.response = json.loads(response.body) if isinstance(response.body, bytes) else None
        return response

    async def _answer(self, request: web.Request, recorded: RecordedRequest) -> web.Response:
        if not request.headers.get("Authorization", "").startswith(f"Bearer {self.token_prefix}"):
            recorded.status = 401
            return web.json_response({"ok": False, "error": "not_authed"})
        body = recorded.body if isinstance(recorded.body, dict) else {}
        method = request.match_info["method"]
        if method == "auth.test":
            return web.json_response(
                {"ok": True, "team": "standin", "user": "llmpulse", "bot_id": "B1"}
            )
        if method == "chat.postMessage":
            channel = self._channel_id(str(body.get("channel", "")))
            ts = f"{1700000000 + next(self._ts)}.000100"
            message = {
                "type": "message",
                "ts": ts,
                "text": body.get("text", ""),
                "blocks": body.get("blocks", []),
            }
            if body.get("thread_ts"):
                message["thread_ts"] = body["thread_ts"]
            self.messages[(channel, ts)] = message
            return web.json_response({"ok": True, "channel": channel, "ts": ts, "message": message})
        if method == "chat.update":
            key = (str(body.get("channel")), str(body.get("ts")))
            if key not in self.messages:
                recorded.status = 400
                return web.json_response({"ok": False, "error": "message_not_found"})
            self.messages[key].update(text=body.get("text", ""), blocks=body.get("blocks", []))
            return web.json_response(
                {"ok": True, "channel": key[0], "ts": key[1], "text": body.get("text", "")}
            )
        if method == "conversations.history":
            channel = str(body.get("channel") or request.query.get("channel", ""))
            found = [m for (c, _), m in self.messages.items() if c == channel]
            return web.json_response({"ok": True, "messages": found[::-1], "has_more": False})
        recorded.status = 404
        return web.json_response({"ok": False, "error": "unknown_method"}, status=200)

    async def _webhook(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        if not await self._arrived(request, recorded):
            return web.Response(status=499)
        failure = self._injected_failure(recorded, api=False)
        if failure is not None:
            return failure
        if not isinstance(recorded.body, dict) or not (
            recorded.body.get("text") or recorded.body.get("blocks")
        ):
            recorded.status = 400
            return web.Response(text="no_text", status=400)
        return web.Response(text="ok")

    async def _generic(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        if not await self._arrived(request, recorded):
            return web.Response(status=499)
        failure = self._injected_failure(recorded, api=False)
        return failure or web.json_response({"status": "accepted"})

    async def _list_requests(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(r) for r in self.requests])

    async def _configure_failure(self, request: web.Request) -> web.Response:
        spec = await request.json()
        if "delay" in spec:
            self.slow(float(spec["delay"]))
            return web.json_response({"ok": True})
        status, retry_after = int(spec.get("status", 429)), spec.get("retry_after")
        if "seconds" in spec:
            self.fail_for(float(spec["seconds"]), status, retry_after)
        else:
            self.fail_next(int(spec.get("count", 1)), status, retry_after)
        return web.json_response({"ok": True})

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})


async def _serve(port: int) -> None:
    async with SlackStandIn(port=port) as standin:
        print(
            f"slack stand-in on {standin.url} "
            f"(api {standin.base_url}, webhook {standin.webhook_url})",
            flush=True,
        )
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port))


if __name__ == "__main__":
    main()
