"""Worker logs are JSON lines off a terminal, and never carry secrets or prompt text."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from mode.utils.logging import setup_logging

from alerting.rules_file import load_default_rules
from streams.config import Settings
from streams.logging_setup import (
    MASK,
    TEXT_MASK,
    RedactionFilter,
    configure_logging,
    level_number,
    receiver_secrets,
    resolve_format,
    settings_secrets,
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def made_up_secret() -> str:
    return "s-" + secrets.token_urlsafe(12)


def test_json_lines_carry_time_level_logger_and_message() -> None:
    out = io.StringIO()
    configure_logging("json", "info", RedactionFilter(), out)
    logging.getLogger("streams.test").info("stored %d rows in %s", 12, "llm_calls")
    logging.getLogger("streams.test").debug("below the level")
    (entry,) = json_lines(out)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "streams.test"
    assert entry["message"] == "stored 12 rows in llm_calls"
    assert entry["time"].endswith("+00:00")
    assert set(entry) == {"time", "level", "logger", "message"}


def test_exceptions_are_one_json_line_with_the_traceback() -> None:
    out = io.StringIO()
    configure_logging("json", "warn", RedactionFilter(), out)
    try:
        raise RuntimeError("store down")
    except RuntimeError:
        logging.getLogger("streams.app").exception("tick failed")
    (entry,) = json_lines(out)
    assert entry["level"] == "ERROR"
    assert entry["message"] == "tick failed"
    assert entry["exc_info"].startswith("Traceback")
    assert "RuntimeError: store down" in entry["exc_info"]


def test_auto_is_text_on_a_terminal_and_json_elsewhere() -> None:
    assert resolve_format("auto", Terminal()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", Terminal()) == "json"
    assert resolve_format("text", io.StringIO()) == "text"
    tty = Terminal()
    configure_logging("auto", "info", RedactionFilter(), tty)
    logging.getLogger("streams.test").warning("sink backpressure on %s", "llm_calls")
    line = tty.getvalue().strip()
    assert line.endswith("[WARNING] streams.test: sink backpressure on llm_calls")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(line)


def test_secrets_are_masked_in_message_args_and_traceback() -> None:
    token, password = made_up_secret(), made_up_secret()
    redaction = RedactionFilter([token])
    out = io.StringIO()
    configure_logging("json", "info", redaction, out)
    redaction.add(password)  # added after start, as the worker does for receiver tokens
    log = logging.getLogger("alerting.test")
    log.info(f"header Authorization: Bearer {token}")
    log.info("connecting to %s as %s", f"https://ana:{password}@ch.example:8443", "ana")
    log.info("options %s", {"sasl_plain_password": password})
    try:
        raise ValueError(f"bad token {token}")
    except ValueError:
        log.exception("send failed")
    entries = json_lines(out)
    text = out.getvalue()
    assert token not in text and password not in text
    assert entries[0]["message"] == f"header Authorization: Bearer {MASK}"
    assert entries[1]["message"] == f"connecting to https://ana:{MASK}@ch.example:8443 as ana"
    assert entries[2]["message"] == f"options {{'sasl_plain_password': '{MASK}'}}"
    assert f"ValueError: bad token {MASK}" in entries[3]["exc_info"]


def test_short_values_are_not_treated_as_secrets() -> None:
    redaction = RedactionFilter(["ab", ""])
    assert redaction.redact("table ab is fine") == "table ab is fine"


def test_prompt_and_response_text_never_reach_the_log() -> None:
    prompt, answer = "mail jane about card 4111", 'say "howdy" then stop'
    out = io.StringIO()
    configure_logging("json", "info", RedactionFilter(), out)
    log = logging.getLogger("streams.ingest")
    log.error("payload %s", orjson.dumps({"input_text": prompt, "output_text": answer}).decode())
    log.error("event %r", {"app": "a", "input_text": prompt})
    log.error("call LLMCall(app='a', input_text=%r, output_text=%r)", prompt, answer)
    log.error(
        "refused: Row 1:\nColumn 27,   name: input_text, type: Nullable(String), "
        'parsed text: "<DOUBLE QUOTE>%s<DOUBLE QUOTE>"\nColumn 28, name: status',
        prompt,
    )
    text = out.getvalue()
    assert "jane" not in text and "howdy" not in text
    messages = [entry["message"] for entry in json_lines(out)]
    assert messages[0] == f'payload {{"input_text":"{TEXT_MASK}","output_text":"{TEXT_MASK}"}}'
    assert messages[1] == f"event {{'app': 'a', 'input_text': '{TEXT_MASK}'}}"
    assert (
        messages[2] == f"call LLMCall(app='a', input_text='{TEXT_MASK}', output_text='{TEXT_MASK}')"
    )
    assert messages[3].endswith(f"parsed text: {TEXT_MASK}\nColumn 28, name: status")


def test_faust_reconfiguring_with_the_returned_config_keeps_json_and_masking() -> None:
    secret = made_up_secret()
    redaction = RedactionFilter([secret])
    out = io.StringIO()
    config = configure_logging("json", "info", redaction, out)
    # What faust.Worker does when it starts: mode's setup_logging with our logging_config.
    setup_logging(loglevel="info", logging_config=config)
    logging.getLogger("faust.worker").info("Ready, secret is %s", secret)
    logging.getLogger("aiokafka.consumer").warning("Heartbeat failed")
    entries = json_lines(out)
    assert [(e["logger"], e["message"]) for e in entries] == [
        ("faust.worker", f"Ready, secret is {MASK}"),
        ("aiokafka.consumer", "Heartbeat failed"),
    ]
    assert len(logging.getLogger().handlers) == 1


def test_level_names_of_the_worker_option() -> None:
    assert [level_number(n) for n in ("crit", "error", "warn", "info", "debug")] == [
        50,
        40,
        30,
        20,
        10,
    ]
    with pytest.raises(ValueError, match="unknown log level"):
        level_number("loud")


def test_secrets_come_from_settings_and_receiver_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    password, sasl, key = made_up_secret(), made_up_secret(), made_up_secret()
    quoted = "p%40ss" + made_up_secret()
    monkeypatch.setenv("LLMPULSE_CLICKHOUSE_URL", f"https://ana:{password}@ch.example:8443/x")
    monkeypatch.setenv("LLMPULSE_KAFKA_SASL_PASSWORD", sasl)
    monkeypatch.setenv("LLMPULSE_STATE_KEY", key)
    found = settings_secrets(Settings())
    assert {password, sasl, key} <= set(found)
    monkeypatch.setenv("LLMPULSE_CLICKHOUSE_URL", f"https://ana:{quoted}@ch.example:8443/x")
    assert {quoted, quoted.replace("%40", "@")} <= set(settings_secrets(Settings()))

    token, hook = made_up_secret(), "https://hooks.example/" + made_up_secret()
    env = {"LLMPULSE_SLACK_BOT_TOKEN": token, "LLMPULSE_SLACK_WEBHOOK_URL": hook, "HOME": "/h"}
    assert receiver_secrets(load_default_rules(), env) == [token, hook]
