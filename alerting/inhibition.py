"""Inhibition: a firing source alert mutes target alerts that share the ``equal`` labels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from alerting.matchers import Matcher, matches_all, parse_matchers
from alerting.notify_config import InhibitRule


@dataclass(frozen=True)
class Inhibition:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]

    @classmethod
    def build(cls, rule: InhibitRule) -> Inhibition:
        return cls(
            parse_matchers(rule.source_matchers), parse_matchers(rule.target_matchers), rule.equal
        )


class Inhibitor:
    """Decides whether an alert is muted by another firing alert."""

    def __init__(self, rules: Iterable[InhibitRule]) -> None:
        self._rules = [Inhibition.build(rule) for rule in rules]

    def inhibited(
        self,
        fingerprint: str,
        labels: Mapping[str, str],
        firing: Iterable[tuple[str, Mapping[str, str]]],
    ) -> bool:
        """``firing`` holds every firing alert as (fingerprint, labels); none mutes itself."""
        rules = [rule for rule in self._rules if matches_all(rule.target, labels)]
        if not rules:
            return False
        for source_fp, source_labels in firing:
            if source_fp == fingerprint:
                continue
            for rule in rules:
                if matches_all(rule.source, source_labels) and all(
                    source_labels.get(name, "") == labels.get(name, "") for name in rule.equal
                ):
                    return True
        return False
