"""Silences: matchers that mute alerts for a time span, and where they are kept."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from alerting.matchers import Matcher, matches_all, parse_matchers


@dataclass(frozen=True)
class Silence:
    """Mutes alerts whose labels match all ``matchers`` from ``starts_at`` to ``ends_at``."""

    matchers: tuple[str, ...]
    starts_at: datetime
    ends_at: datetime
    author: str
    comment: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    _parsed: tuple[Matcher, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.matchers:
            raise ValueError("a silence needs at least one matcher")
        if self.ends_at <= self.starts_at:
            raise ValueError("a silence must end after it starts")
        if not self.author.strip() or not self.comment.strip():
            raise ValueError("a silence needs an author and a comment")
        object.__setattr__(self, "_parsed", parse_matchers(self.matchers))

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def mutes(self, labels: Mapping[str, str], now: datetime) -> bool:
        return self.active(now) and matches_all(self._parsed, labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": list(self.matchers),
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "author": self.author,
            "comment": self.comment,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Silence:
        return cls(
            matchers=tuple(data["matchers"]),
            starts_at=datetime.fromisoformat(data["starts_at"]),
            ends_at=datetime.fromisoformat(data["ends_at"]),
            author=data["author"],
            comment=data["comment"],
            id=data["id"],
        )


def expired(silence: Silence, now: datetime) -> Silence | None:
    """The silence ended at ``now``, or None if it had not started (it is then deleted)."""
    if silence.ends_at <= now:
        return silence
    if silence.starts_at >= now:
        return None
    return replace(silence, ends_at=now)


class SilenceStore(Protocol):
    """Where silences live; the worker's durable store implements the same three calls."""

    def silences(self) -> Sequence[Silence]: ...

    def add(self, silence: Silence) -> None: ...

    def expire(self, silence_id: str, now: datetime) -> None: ...


class InMemorySilenceStore:
    """A :class:`SilenceStore` for tests and single-process use."""

    def __init__(self, silences: Sequence[Silence] = ()) -> None:
        self._silences = {silence.id: silence for silence in silences}

    def silences(self) -> Sequence[Silence]:
        return list(self._silences.values())

    def add(self, silence: Silence) -> None:
        self._silences[silence.id] = silence

    def expire(self, silence_id: str, now: datetime) -> None:
        ended = expired(self._silences[silence_id], now)
        if ended is None:
            del self._silences[silence_id]
        else:
            self._silences[silence_id] = ended


def silenced_by(store: SilenceStore, labels: Mapping[str, str], now: datetime) -> str | None:
    """The id of an active silence muting these labels, if any."""
    for silence in store.silences():
        if silence.mutes(labels, now):
            return silence.id
    return None
