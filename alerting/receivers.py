"""Build the receivers a rules file names, with secrets read from the environment."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from alerting.console_receiver import ConsoleReceiver
from alerting.notification import Receiver
from alerting.notify_config import (
    ConsoleReceiverConfig,
    MissingSecretError,
    SlackReceiverConfig,
    WebhookReceiverConfig,
)
from alerting.rules_file import RulesFile
from alerting.slack_receiver import SlackReceiver
from alerting.webhook_receiver import WebhookReceiver

log = logging.getLogger("llmpulse.alerting")


def build_receivers(
    rules: RulesFile, env: Mapping[str, str] | None = None, slack_base_url: str | None = None
) -> dict[str, Receiver]:
    """Receivers by name; an ``optional`` receiver whose variables are unset is left out.

    ``env`` defaults to ``os.environ``; ``slack_base_url`` overrides every Slack receiver's
    API address (tests point it at the local stand-in).
    """
    built: dict[str, Receiver] = {}
    for config in rules.receivers:
        try:
            built[config.name] = _build(config, env, slack_base_url)
        except MissingSecretError as exc:
            if not config.optional:
                raise
            log.warning("receiver %r is disabled: %s", config.name, exc)
    return built


def _build(
    config: SlackReceiverConfig | ConsoleReceiverConfig | WebhookReceiverConfig,
    env: Mapping[str, str] | None,
    slack_base_url: str | None,
) -> Receiver:
    if isinstance(config, ConsoleReceiverConfig):
        return ConsoleReceiver(config.name, send_resolved=config.send_resolved)
    if isinstance(config, WebhookReceiverConfig):
        return WebhookReceiver(
            config.name,
            config.resolve_secret(config.url_env, env),
            send_resolved=config.send_resolved,
            timeout=config.timeout.total_seconds(),
            max_retries=config.max_retries,
        )
    if config.token_env is not None:
        return SlackReceiver(
            config.name,
            token=config.resolve_secret(config.token_env, env),
            channel=config.channel,
            send_resolved=config.send_resolved,
            base_url=slack_base_url or config.base_url,
        )
    assert config.webhook_url_env is not None
    return SlackReceiver(
        config.name,
        webhook_url=config.resolve_secret(config.webhook_url_env, env),
        send_resolved=config.send_resolved,
    )
