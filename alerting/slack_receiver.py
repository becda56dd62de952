"""Slack delivery through slack-sdk's async clients: a bot token (threads, edits) or a webhook."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from pydantic import SecretStr
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from alerting.blocks import build_message
from alerting.notification import (
    BaseReceiver,
    MessageRef,
    Notification,
    PermanentDeliveryError,
    RetryableDeliveryError,
)

log = logging.getLogger("llmpulse.alerting.slack")
RETRYABLE_API_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "service_unavailable",
        "fatal_error",
        "internal_error",
        "request_timeout",
    }
)
STALE_MESSAGE_ERRORS = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
DEFAULT_BASE_URL = "https://slack.com/api/"


class CappedBackoff(RetryIntervalCalculator):
    """Exponential backoff with full jitter, never longer than ``cap`` seconds."""

    def __init__(self, factor: float = 0.5, cap: float = 10.0) -> None:
        self.factor, self.cap = factor, cap

    def calculate_sleep_duration(self, current_attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.factor * 2**current_attempt))


def retry_handlers(
    rate_limit_retries: int = 1,
    server_error_retries: int = 2,
    connection_retries: int = 2,
    backoff_cap: float = 10.0,
) -> list[AsyncRetryHandler]:
    """slack-sdk's async handlers; failures left after them go back to the outbox."""
    backoff = CappedBackoff(cap=backoff_cap)
    return [
        AsyncConnectionErrorRetryHandler(
            max_retry_count=connection_retries, interval_calculator=backoff
        ),
        AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
        AsyncServerErrorRetryHandler(
            max_retry_count=server_error_retries, interval_calculator=backoff
        ),
    ]


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    for key, value in (headers or {}).items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                return float(raw)
            except (TypeError, ValueError):
                return None
    return None


def _classify(exc: SlackApiError) -> RetryableDeliveryError | PermanentDeliveryError:
    response = exc.response
    error = response.get("error") if isinstance(response.data, dict) else None
    status = response.status_code
    message = f"slack {status} {error or response.data!r}"
    if status == 429 or error in ("ratelimited", "rate_limited"):
        return RetryableDeliveryError(message, _retry_after(response.headers) or 1.0)
    if status >= 500 or error in RETRYABLE_API_ERRORS:
        return RetryableDeliveryError(message)
    return PermanentDeliveryError(message)


class SlackReceiver(BaseReceiver):
    """Posts alert groups to Slack; with a bot token, follow-ups go to the group's thread."""

    def __init__(
        self,
        name: str,
        *,
        token: SecretStr | None = None,
        webhook_url: SecretStr | None = None,
        channel: str | None = None,
        send_resolved: bool = True,
        base_url: str | None = None,
        timeout: int = 10,
        handlers: list[AsyncRetryHandler] | None = None,
        min_interval: float = 1.0,
    ) -> None:
        if (token is None) == (webhook_url is None):
            raise ValueError("SlackReceiver needs exactly one of token or webhook_url")
        if token is not None and not channel:
            raise ValueError("SlackReceiver with a bot token needs a channel")
        super().__init__(name, send_resolved=send_resolved, min_interval=min_interval)
        self.channel = channel
        handlers = handlers if handlers is not None else retry_handlers()
        self._web: AsyncWebClient | None = None
        self._webhook: AsyncWebhookClient | None = None
        if token is not None:
            base = (base_url or DEFAULT_BASE_URL).rstrip("/") + "/"
            self._web = AsyncWebClient(
                token=token.get_secret_value(),
                base_url=base,
                timeout=timeout,
                retry_handlers=handlers,
            )
        else:
            assert webhook_url is not None
            self._webhook = AsyncWebhookClient(
                url=webhook_url.get_secret_value(), timeout=timeout, retry_handlers=handlers
            )

    def __repr__(self) -> str:
        mode = "bot" if self._web is not None else "webhook"
        return f"SlackReceiver(name={self._name!r}, mode={mode}, channel={self.channel!r})"

    def pace_key(self, notification: Notification) -> str:
        return f"slack:{self.channel or self._name}"

    async def send(self, notification: Notification, ref: MessageRef | None) -> MessageRef | None:
        now = datetime.now(UTC)
        try:
            if self._web is None:
                await self._send_webhook(notification, now)
                return None
            return await self._send_bot(self._web, notification, ref, now)
        except SlackApiError as exc:
            raise _classify(exc) from exc
        except SlackRequestError as exc:
            raise PermanentDeliveryError(f"slack rejected the request: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RetryableDeliveryError(f"slack unreachable: {exc!r}") from exc

    async def _send_bot(
        self,
        client: AsyncWebClient,
        notification: Notification,
        ref: MessageRef | None,
        now: datetime,
    ) -> MessageRef:
        text, blocks = build_message(notification, now)
        if ref is None:
            response = await client.chat_postMessage(
                channel=self.channel or "",
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
            return MessageRef(str(response["channel"]), str(response["ts"]))
        # Edit the original first: an edit is idempotent, so retrying after a failed thread
        # reply never posts that reply twice.
        try:
            await client.chat_update(channel=ref.channel, ts=ref.ts, text=text, blocks=blocks)
        except SlackApiError as exc:
            if exc.response.get("error") not in STALE_MESSAGE_ERRORS:
                raise
            log.warning(
                "original message %s in %s cannot be edited: %s",
                ref.ts,
                ref.channel,
                exc.response.get("error"),
            )
        reply_text, reply_blocks = build_message(notification, now, reply=True)
        await client.chat_postMessage(
            channel=ref.channel,
            thread_ts=ref.ts,
            text=reply_text,
            blocks=reply_blocks,
            unfurl_links=False,
        )
        return ref

    async def _send_webhook(self, notification: Notification, now: datetime) -> None:
        assert self._webhook is not None
        text, blocks = build_message(notification, now, reply=notification.kind != "new")
        response = await self._webhook.send(text=text, blocks=blocks, unfurl_links=False)
        if response.status_code == 200:
            return
        message = f"slack webhook {response.status_code} {response.body!r}"
        if response.status_code == 429:
            raise RetryableDeliveryError(message, _retry_after(response.headers) or 1.0)
        if response.status_code >= 500:
            raise RetryableDeliveryError(message)
        raise PermanentDeliveryError(message)
