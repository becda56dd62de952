"""Worker logs: JSON lines or readable text, with secrets and prompt/response text masked.

`configure_logging` applies one ``logging.config.dictConfig`` and returns it, so that
``faust.Worker(logging_config=...)``, which configures logging again when it starts, gives
faust's, mode's and aiokafka's records the same handler, format and `RedactionFilter`.
"""

from __future__ import annotations

import logging
import logging.config
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

import orjson
from pydantic import SecretStr

if TYPE_CHECKING:
    from alerting.rules_file import RulesFile
    from streams.config import Settings

LogFormat = Literal["auto", "json", "text"]
MASK = "***"
TEXT_MASK = "[text omitted]"
# Shorter values would mask ordinary words in every line; they are not secrets anyway.
MIN_SECRET_CHARS = 4
TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"

# Prompt and response text: a quoted value after an ``input_text``/``output_text`` key, as in
# JSON, a Python dict or a pydantic repr; and ClickHouse's dump of a refused row, which
# prints each column's parsed text on its own line.
_TEXT_FIELD = re.compile(
    r"""(?P<key>\b(?:input|output)_text\b['"]?\s*[:=]\s*)"""
    r"""(?P<q>['"])(?:(?!(?P=q))[^\\]|\\.)*(?P=q)?"""
)
_ROW_DUMP = re.compile(r"(name: (?:input|output)_text,[^\n]*?parsed text: )[^\n]*")


class RedactionFilter(logging.Filter):
    """Masks secret values and prompt/response text in a record's message, args and traceback.

    Attached to the handler, so it sees every record that is written, whichever logger made
    it. Secrets can be added after start (receiver tokens are known once the rules are read).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        self._secrets.update(s for s in secrets if len(s) >= MIN_SECRET_CHARS)
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def redact(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        if "_text" in text:
            text = _TEXT_FIELD.sub(rf"\g<key>\g<q>{TEXT_MASK}\g<q>", text)
            text = _ROW_DUMP.sub(rf"\g<1>{TEXT_MASK}", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: let the handler report it as logging does
            return True
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and exc_info
    or stack_info when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def resolve_format(log_format: LogFormat, stream: IO[str]) -> Literal["json", "text"]:
    """``auto``: JSON unless ``stream`` is a terminal."""
    if log_format != "auto":
        return log_format
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def _handler(
    log_format: Literal["json", "text"], redaction: RedactionFilter, stream: IO[str]
) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler.addFilter(redaction)
    return handler


def logging_config(
    log_format: LogFormat,
    level: int,
    redaction: RedactionFilter,
    stream: IO[str] | None = None,
) -> dict[str, Any]:
    """A ``dictConfig`` with one handler on the root logger (``stream`` defaults to stderr)."""
    out = sys.stderr if stream is None else stream
    factory = partial(_handler, resolve_format(log_format, out), redaction, out)
    return {
        "version": 1,
        # Module loggers made at import time (streams.*, faust, aiokafka) must keep logging.
        "disable_existing_loggers": False,
        "handlers": {"default": {"()": factory, "level": level}},
        "root": {"level": level, "handlers": ["default"]},
    }


def configure_logging(
    log_format: LogFormat,
    level: int | str,
    redaction: RedactionFilter,
    stream: IO[str] | None = None,
) -> dict[str, Any]:
    """Apply `logging_config` now and return it for ``faust.Worker(logging_config=...)``."""
    config = logging_config(log_format, level_number(level), redaction, stream)
    logging.config.dictConfig(config)
    logging.captureWarnings(True)
    return config


def level_number(level: int | str) -> int:
    """``warn``, ``crit``, ``INFO``... (the worker's ``--loglevel``) as a logging level."""
    if isinstance(level, int):
        return level
    name = level.upper()
    name = {"WARN": "WARNING", "CRIT": "CRITICAL"}.get(name, name)
    number = logging.getLevelName(name)
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number


def settings_secrets(settings: Settings) -> list[str]:
    """Every ``SecretStr`` setting, and the password of the ClickHouse DSN on its own."""
    values = [
        value.get_secret_value()
        for name in type(settings).model_fields
        if isinstance(value := getattr(settings, name), SecretStr)
    ]
    password = urlsplit(settings.clickhouse_dsn).password
    if password:
        values += [password, unquote(password)]
    return values


def receiver_secrets(rules: RulesFile, env: Mapping[str, str]) -> list[str]:
    """Values of the environment variables the rules file's receivers read (tokens, URLs)."""
    names = {name for receiver in rules.receivers for name in receiver.env_names()}
    return [env[name] for name in sorted(names) if env.get(name)]
