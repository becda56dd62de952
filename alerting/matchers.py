"""Alertmanager-style label matchers: ``a="v"``, ``a!="v"``, ``a=~"re"``, ``a!~"re"``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

MatchOp = Literal["=", "!=", "=~", "!~"]

_MATCHER = re.compile(
    r"""^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"""
    r"""(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^"\s]*))\s*$"""
)


@dataclass(frozen=True)
class Matcher:
    """One label matcher; regexes are anchored at both ends, as in Alertmanager."""

    name: str
    op: MatchOp
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None
        found = self._regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher.

    Examples
    --------
    >>> m = parse_matcher('model=~"gpt-4.*"')
    >>> m.matches({"model": "gpt-4o"}), m.matches({"model": "claude"})
    (True, False)
    >>> parse_matcher("severity critical")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: invalid matcher 'severity critical': expected name="value", ...
    """
    found = _MATCHER.match(text)
    if found is None:
        raise ValueError(
            f'invalid matcher {text!r}: expected name="value", name!="value", '
            'name=~"regex" or name!~"regex"'
        )
    quoted = found.group("quoted")
    value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else found.group("bare") or ""
    op: MatchOp = found.group("op")  # type: ignore[assignment]
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex in matcher {text!r}: {exc}") from None
    return Matcher(found.group("name"), op, value, regex)


def parse_matchers(texts: Iterable[str]) -> tuple[Matcher, ...]:
    return tuple(parse_matcher(text) for text in texts)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(matcher.matches(labels) for matcher in matchers)
