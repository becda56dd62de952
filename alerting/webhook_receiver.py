"""A generic JSON webhook: POST each notification, retried with capped backoff."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp
from pydantic import SecretStr

from alerting.notification import (
    BaseReceiver,
    MessageRef,
    Notification,
    PermanentDeliveryError,
    RetryableDeliveryError,
)


class WebhookReceiver(BaseReceiver):
    """POSTs ``{"version": "1", ...notification}``; ``Idempotency-Key`` lets the far end dedupe."""

    def __init__(
        self,
        name: str,
        url: SecretStr,
        *,
        send_resolved: bool = True,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff_cap: float = 5.0,
    ) -> None:
        super().__init__(name, send_resolved=send_resolved)
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_retries, self._backoff_cap = max_retries, backoff_cap

    def __repr__(self) -> str:
        return f"WebhookReceiver(name={self._name!r}, url={self._url!r})"

    def pace_key(self, notification: Notification) -> str:
        return f"webhook:{self._name}"

    async def send(self, notification: Notification, ref: MessageRef | None) -> MessageRef | None:
        payload: dict[str, Any] = {"version": "1", **notification.to_dict()}
        headers = {"Idempotency-Key": notification.id}
        last: RetryableDeliveryError | None = None
        for attempt in range(self._max_retries + 1):
            if attempt:
                await asyncio.sleep(random.uniform(0, min(self._backoff_cap, 0.2 * 2**attempt)))
            try:
                async with (
                    aiohttp.ClientSession(timeout=self._timeout) as session,
                    session.post(
                        self._url.get_secret_value(), json=payload, headers=headers
                    ) as resp,
                ):
                    body = await resp.text()
                    if resp.status < 300:
                        return None
                    message = f"webhook {self._name}: HTTP {resp.status} {body[:200]!r}"
                    if resp.status != 429 and resp.status < 500:
                        raise PermanentDeliveryError(message)
                    retry_after = resp.headers.get("Retry-After")
                    last = RetryableDeliveryError(
                        message,
                        float(retry_after) if retry_after and retry_after.isdigit() else None,
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = RetryableDeliveryError(f"webhook {self._name} unreachable: {exc!r}")
        assert last is not None
        raise last
