"""The routing tree with inherited settings resolved: which routes (receivers) take an alert."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from alerting.matchers import Matcher, matches_all, parse_matchers
from alerting.notify_config import Route

T = TypeVar("T")

# Alertmanager's defaults for the root route.
GROUP_WAIT = timedelta(seconds=30)
GROUP_INTERVAL = timedelta(minutes=5)
REPEAT_INTERVAL = timedelta(hours=4)


@dataclass(frozen=True)
class ResolvedRoute:
    """A route node with every inherited field filled in; ``route_id`` is its tree path."""

    route_id: str
    receiver: str
    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    continue_: bool
    children: tuple[ResolvedRoute, ...]

    @classmethod
    def build(
        cls, route: Route, parent: ResolvedRoute | None = None, route_id: str = "0"
    ) -> ResolvedRoute:
        receiver = route.receiver or (parent.receiver if parent else "")
        node = cls(
            route_id=route_id,
            receiver=receiver,
            matchers=parse_matchers(route.matchers),
            group_by=_pick(route.group_by, parent.group_by if parent else ()),
            group_wait=_pick(route.group_wait, parent.group_wait if parent else GROUP_WAIT),
            group_interval=_pick(
                route.group_interval, parent.group_interval if parent else GROUP_INTERVAL
            ),
            repeat_interval=_pick(
                route.repeat_interval, parent.repeat_interval if parent else REPEAT_INTERVAL
            ),
            continue_=route.continue_,
            children=(),
        )
        children = tuple(
            cls.build(child, node, f"{route_id}.{index}")
            for index, child in enumerate(route.routes)
        )
        return cls(**{**vars(node), "children": children})

    def match(self, labels: Mapping[str, str]) -> list[ResolvedRoute]:
        """Routes that take the alert: the deepest matching ones, as in Alertmanager."""
        if not matches_all(self.matchers, labels):
            return []
        found: list[ResolvedRoute] = []
        for child in self.children:
            matched = child.match(labels)
            found.extend(matched)
            if matched and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        if "..." in self.group_by:
            return dict(labels)
        return {name: labels.get(name, "") for name in self.group_by}


def _pick(value: T | None, inherited: T) -> T:
    return inherited if value is None else value
