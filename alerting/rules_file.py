"""The rules file as a whole: load and validate it, with precise ``file:line: path`` errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alerting.notify_config import InhibitRule, ReceiverConfig, Route
from alerting.rules import RuleGroup, fail

_SECRET_LOOKING = re.compile(r"xox[abposre]-[A-Za-z0-9-]{6,}|hooks\.slack\.com/services/\S+")
DEFAULT_RULES = "default_rules.yaml"


class RulesError(ValueError):
    """The rules file is invalid; ``errors`` holds one precise message per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid rules file:\n" + "\n".join(errors))
        self.errors = errors


class RulesFile(BaseModel):
    """The top-level document: rule groups, routing tree, inhibition rules and receivers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    groups: list[RuleGroup] = Field(min_length=1)
    route: Route
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    receivers: list[ReceiverConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_references(self) -> RulesFile:
        names = [receiver.name for receiver in self.receivers]
        for index, name in enumerate(names):
            if name in names[:index]:
                fail(f"receivers[{index}].name", f"receiver {name!r} is defined twice")
        if self.route.receiver is None:
            fail("route.receiver", "the root route needs a receiver (the fallback)")
        if self.route.matchers:
            fail("route.matchers", "the root route matches every alert; it takes no matchers")
        for path, route in _walk_routes(self.route, "route"):
            if route.receiver is not None and route.receiver not in names:
                fail(
                    f"{path}.receiver",
                    f"unknown receiver {route.receiver!r} (defined: {', '.join(names)})",
                )
        seen: set[str] = set()
        for group_index, group in enumerate(self.groups):
            if group.name in seen:
                fail(f"groups[{group_index}].name", f"group {group.name!r} is defined twice")
            seen.add(group.name)
        return self


def _walk_routes(route: Route, path: str) -> Iterator[tuple[str, Route]]:
    yield path, route
    for index, child in enumerate(route.routes):
        yield from _walk_routes(child, f"{path}.routes[{index}]")


def _format_loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def _line_index(
    node: yaml.Node, loc: tuple[int | str, ...], lines: dict[tuple[int | str, ...], int]
) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*loc, str(key.value))
            _line_index(value, child, lines)
            lines[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_index(item, (*loc, index), lines)


def _parse_path(path: str) -> tuple[int | str, ...]:
    parts: list[int | str] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        parts.append(int(index) if index else name)
    return tuple(parts)


def _scan_literal_secrets(
    data: Any, loc: tuple[int | str, ...] = ()
) -> Iterator[tuple[tuple[int | str, ...], str]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _scan_literal_secrets(value, (*loc, str(key)))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _scan_literal_secrets(value, (*loc, index))
    elif isinstance(data, str) and _SECRET_LOOKING.search(data):
        yield (
            loc,
            (
                "looks like a literal Slack secret; put it in an environment variable and name "
                "that variable in the file (token_env / webhook_url_env)"
            ),
        )


def _messages(error: ValidationError) -> Iterator[tuple[tuple[int | str, ...], str]]:
    for item in error.errors():
        loc = tuple(part for part in item["loc"] if part not in ("slack", "console", "webhook"))
        kind, message = item["type"], item["msg"]
        if kind == "value_error":
            message = message.removeprefix("Value error, ")
            if message.startswith("@"):
                field, message = message[1:].split(": ", 1)
                loc = (*loc, *_parse_path(field))
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}"
        elif kind == "union_tag_invalid":
            loc = (*loc, "type")
            message = "type must be one of 'slack', 'console', 'webhook'"
        elif kind == "union_tag_not_found":
            message = "required field 'type' is missing (one of 'slack', 'console', 'webhook')"
        yield loc, message


def _validate(text: str, source: str) -> tuple[RulesFile | None, list[str]]:
    loader = yaml.SafeLoader(text)
    try:  # one parse: the node tree gives line numbers, the data is built from it
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        return None, [f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}"]
    finally:
        loader.dispose()
    if not isinstance(data, dict) or root is None:
        return None, [f"{source}:1: the rules file must be a mapping with groups, route, receivers"]
    lines: dict[tuple[int | str, ...], int] = {}
    _line_index(root, (), lines)
    found: list[tuple[tuple[int | str, ...], str]] = []
    model = None
    try:
        model = RulesFile.model_validate(data)
    except ValidationError as exc:
        found.extend(_messages(exc))
    reported = {loc for loc, _ in found}
    found = [item for item in _scan_literal_secrets(data) if item[0] not in reported] + found
    errors = []
    for loc, message in found:
        line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), 1)
        path = _format_loc(loc)
        errors.append(
            f"{source}:{line}: {path}: {message}" if path else f"{source}:{line}: {message}"
        )
    return (model if not errors else None), errors


def check_rules_text(text: str, source: str = "<rules>") -> list[str]:
    """Validate rules given as YAML text; an empty list means the rules are valid."""
    return _validate(text, source)[1]


def _validate_file(path: str | Path) -> tuple[RulesFile | None, list[str]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return None, [f"{path}: cannot read: {exc.strerror or exc}"]
    return _validate(text, str(path))


def check_rules_file(path: str | Path) -> list[str]:
    """Validate a rules file; each error reads ``FILE:LINE: path.to.field: message``."""
    return _validate_file(path)[1]


def load_rules_text(text: str, source: str = "<rules>") -> RulesFile:
    model, errors = _validate(text, source)
    if model is None:
        raise RulesError(errors)
    return model


def load_rules_file(path: str | Path) -> RulesFile:
    """Load and validate a rules file, raising :class:`RulesError` with every problem found."""
    model, errors = _validate_file(path)
    if model is None:
        raise RulesError(errors)
    return model


def default_rules_text() -> str:
    """The shipped default rules (``alerting/default_rules.yaml``)."""
    return resources.files("alerting").joinpath(DEFAULT_RULES).read_text(encoding="utf-8")


def load_default_rules() -> RulesFile:
    return load_rules_text(default_rules_text(), DEFAULT_RULES)
