"""Routing tree, inhibition rules and receiver models of the rules file (Alertmanager-like)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from alerting.rules import NAME, Duration, check_matchers, fail

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_LITERAL_SECRET_FIELDS = {
    "token": "token_env",
    "bot_token": "token_env",
    "api_token": "token_env",
    "webhook_url": "webhook_url_env",
    "api_url": "webhook_url_env",
    "url": "url_env",
}


class MissingSecretError(LookupError):
    """A receiver's secret names an environment variable that is not set."""


def _env_name(value: str | None) -> str | None:
    if value is not None and not ENV_NAME.match(value):
        raise ValueError(
            f"{value!r} is not an environment variable name (use UPPER_CASE, e.g. "
            "SLACK_BOT_TOKEN); secrets are never written in the rules file"
        )
    return value


class ReceiverBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    send_resolved: bool = True
    optional: bool = Field(
        default=False,
        description="Skip this receiver (with a warning) when its environment variables are unset.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_literal_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, env_key in _LITERAL_SECRET_FIELDS.items():
                if key in data and env_key in cls.model_fields:
                    fail(
                        key,
                        f"literal secrets are not allowed; put the value in an environment "
                        f"variable and name it in {env_key}",
                    )
        return data

    def env_names(self) -> tuple[str, ...]:
        return ()

    def resolve_secret(self, env_name: str, env: Mapping[str, str] | None = None) -> SecretStr:
        value = (os.environ if env is None else env).get(env_name)
        if not value:
            raise MissingSecretError(
                f"receiver {self.name!r}: environment variable {env_name} is not set"
            )
        return SecretStr(value)


class SlackReceiverConfig(ReceiverBase):
    """Slack through a bot token and channel, or through an incoming webhook."""

    type: Literal["slack"]
    token_env: str | None = None
    webhook_url_env: str | None = None
    channel: str | None = None
    base_url: str | None = Field(default=None, pattern=r"^https?://")

    _env = field_validator("token_env", "webhook_url_env")(_env_name)

    @model_validator(mode="after")
    def _one_transport(self) -> SlackReceiverConfig:
        if (self.token_env is None) == (self.webhook_url_env is None):
            raise ValueError("a slack receiver needs exactly one of token_env or webhook_url_env")
        if self.token_env is not None and not self.channel:
            fail("channel", "required with token_env (the bot posts to this channel)")
        if self.webhook_url_env is not None and self.channel:
            fail("channel", "not used with webhook_url_env (a webhook posts to its own channel)")
        return self

    def env_names(self) -> tuple[str, ...]:
        return tuple(name for name in (self.token_env, self.webhook_url_env) if name)


class ConsoleReceiverConfig(ReceiverBase):
    """Log lines on the ``llmpulse.alerts`` logger."""

    type: Literal["console"]


class WebhookReceiverConfig(ReceiverBase):
    """A generic JSON POST; the URL comes from the environment."""

    type: Literal["webhook"]
    url_env: str
    timeout: Duration = timedelta(seconds=10)
    max_retries: int = Field(default=3, ge=0, le=10)

    _env = field_validator("url_env")(_env_name)

    def env_names(self) -> tuple[str, ...]:
        return (self.url_env,)


ReceiverConfig = Annotated[
    SlackReceiverConfig | ConsoleReceiverConfig | WebhookReceiverConfig,
    Field(discriminator="type"),
]


class Route(BaseModel):
    """A node of the routing tree; unset timing and grouping fields inherit from the parent."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    receiver: str | None = None
    matchers: tuple[str, ...] = ()
    group_by: tuple[str, ...] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    continue_: bool = Field(default=False, alias="continue")
    routes: list[Route] = Field(default_factory=list)

    _check_matchers = field_validator("matchers")(check_matchers)

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in value or ():
            if name != "..." and not NAME.match(name):
                raise ValueError(f"{name!r} is not a label name (or '...' for all labels)")
        return value

    @field_validator("group_interval", "repeat_interval")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be greater than 0s")
        return value


class InhibitRule(BaseModel):
    """Mute alerts matching target_matchers while one matching source_matchers fires."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_matchers: tuple[str, ...] = Field(min_length=1)
    target_matchers: tuple[str, ...] = Field(min_length=1)
    equal: tuple[str, ...] = ()

    _check_matchers = field_validator("source_matchers", "target_matchers")(check_matchers)
