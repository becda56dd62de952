"""Rules file validation messages, templates and the shipped defaults."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from alerting.rules_file import RulesError, check_rules_file, load_rules_text
from alerting.templates import render, template_errors

TAIL = """
route:
  receiver: console
receivers:
  - name: console
    type: console
"""


def check(tmp_path: Path, body: str, tail: str = TAIL) -> list[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(body).lstrip() + tail)
    return [error.replace(str(path), "rules.yaml") for error in check_rules_file(path)]


def test_recovery_threshold_on_the_wrong_side(tmp_path: Path) -> None:
    errors = check(
        tmp_path,
        """
        groups:
          - name: llm
            rules:
              - alert: Slow
                metric: latency_p95_ms
                by: [model]
                op: ">"
                threshold: 2000
                recovery_threshold: 2500
                labels: {severity: warning}
        """,
    )
    assert errors == [
        "rules.yaml:9: groups[0].rules[0].recovery_threshold: 2500 must be <= threshold 2000: "
        "an alert raised when the value is > 2000 recovers at or below the recovery threshold"
    ]


def test_several_errors_each_point_at_their_line(tmp_path: Path) -> None:
    errors = check(
        tmp_path,
        """
        groups:
          - name: llm
            rules:
              - alert: Slow
                metric: latncy_p95_ms
                by: [model]
                op: ">"
                threshold: 2000
                labels: {severity: warning}
              - alert: Bad
                metric: error_rate
                by: [model]
                op: "=>"
                threshold: 0.1
                for: 5 minutes
                labels: {severity: warning}
              - alert: Drift
                detection: {signal: latency}
                for: 1m
                labels: {severity: warning}
              - alert: Two
                metric: error_rate
                by: [model]
                op: ">"
                threshold: 1
                absent_for: 5
                labels: {severity: warning}
        """,
    )
    assert errors == [
        "rules.yaml:5: groups[0].rules[0].metric: unknown metric 'latncy_p95_ms' "
        "(did you mean 'latency_p95_ms'?)",
        "rules.yaml:13: groups[0].rules[1].op: Input should be '>', '>=', '<' or '<='",
        "rules.yaml:15: groups[0].rules[1].for: invalid duration '5 minutes': "
        "use a number and a unit, like 30s, 5m, 1h30m",
        "rules.yaml:19: groups[0].rules[2].for: a detection is a point event; "
        "use keep_firing_for instead",
        "rules.yaml:21: groups[0].rules[3]: a rule needs exactly one condition: a threshold "
        "(metric, by, op, threshold), a detection, or absent_for; found threshold and absent_for",
    ]


def test_labels_and_annotation_templates_are_checked(tmp_path: Path) -> None:
    errors = check(
        tmp_path,
        """
        groups:
          - name: llm
            rules:
              - alert: Slow
                metric: latency_p95_ms
                by: [model]
                op: ">"
                threshold: 2000
                labels: {severity: page}
              - alert: Slower
                metric: latency_p95_ms
                by: [model]
                op: ">"
                threshold: 2000
                labels: {severity: critical}
                annotations:
                  summary: "{{ $labels.region }} is slow"
        """,
    )
    assert errors == [
        "rules.yaml:9: groups[0].rules[0].labels.severity: 'page' is not allowed; "
        "use one of critical, warning, info",
        "rules.yaml:17: groups[0].rules[1].annotations.summary: refers to label 'region', "
        "which this rule's alerts never carry (they carry alertname, model, severity)",
    ]


def test_unknown_template_syntax_is_reported(tmp_path: Path) -> None:
    errors = check(
        tmp_path,
        """
        groups:
          - name: llm
            rules:
              - alert: Drift
                detection: {signal: latency}
                labels: {severity: info}
                annotations: {description: "{{ .Value }}"}
        """,
    )
    assert errors == [
        "rules.yaml:7: groups[0].rules[0].annotations.description: unknown template expression "
        "'{{ .Value }}': use {{ $labels.<name> }}, {{ $value }} or {{ $threshold }}, optionally "
        'piped through humanize, humanizePercentage or printf "%.2f"'
    ]


def test_literal_secrets_and_unknown_receivers(tmp_path: Path) -> None:
    tail = """
route:
  receiver: console
  routes:
    - receiver: pager
receivers:
  - name: console
    type: console
  - name: slack
    type: slack
    token: not-a-real-token
    channel: "#alerts"
  - name: hook
    type: webhook
    url_env: https://example.com/hook
  - name: other
    type: email
"""
    errors = check(
        tmp_path,
        """
        groups:
          - name: llm
            rules:
              - alert: Quiet
                absent_for: 10
                by: [app]
                labels: {severity: info}
        """,
        tail,
    )
    assert errors == [
        "rules.yaml:18: receivers[1].token: literal secrets are not allowed; put the value in an "
        "environment variable and name it in token_env",
        "rules.yaml:22: receivers[2].url_env: 'https://example.com/hook' is not an "
        "environment variable name (use UPPER_CASE, e.g. SLACK_BOT_TOKEN); secrets are never "
        "written in the rules file",
        "rules.yaml:24: receivers[3].type: type must be one of 'slack', 'console', 'webhook'",
    ]


def test_route_to_an_unknown_receiver(tmp_path: Path) -> None:
    tail = (
        "\nroute:\n  receiver: console\n  routes:\n    - receiver: pager\n"
        "receivers:\n  - name: console\n    type: console\n"
    )
    errors = check(
        tmp_path,
        """
        groups:
          - name: llm
            rules:
              - alert: Quiet
                absent_for: 10m
                by: [app]
                labels: {severity: info}
        """,
        tail,
    )
    assert errors == [
        "rules.yaml:12: route.routes[0].receiver: unknown receiver 'pager' (defined: console)"
    ]


def test_invalid_yaml_and_loader_raises(tmp_path: Path) -> None:
    assert check(tmp_path, "groups: [\n", tail="")[0].startswith("rules.yaml:2: invalid YAML")
    with pytest.raises(RulesError) as caught:
        load_rules_text("groups: []\nroute: {receiver: x}\nreceivers: []\n", "r.yaml")
    assert (
        caught.value.errors[0]
        == "r.yaml:1: groups: List should have at least 1 item after validation, not 0"
    )


def test_default_rules_are_valid() -> None:
    path = Path(__file__).parents[2] / "alerting" / "default_rules.yaml"
    assert check_rules_file(path) == []


def test_secrets_are_masked() -> None:
    from alerting.notify_config import SlackReceiverConfig

    config = SlackReceiverConfig(name="s", type="slack", token_env="TOKEN", channel="#a")
    secret = config.resolve_secret("TOKEN", {"TOKEN": "fake-very-secret"})
    assert "very-secret" not in repr(secret) and "very-secret" not in str(secret)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ $labels.model }} at {{ $value }}", "gpt-4o at 2345.6"),
        ("{{$value|humanize}}", "2.346k"),
        ('{{ $value | printf "%.1f" }} > {{ $threshold }}', "2345.6 > 2000"),
        ("{{ $value | humanizePercentage }}", "234560%"),
        ("{{ $labels.nope }}!", "!"),
        ("{{ .Labels.model }}", "{{ .Labels.model }}"),
        ("{{ $labels.__class__ }}", ""),
    ],
)
def test_templates_render_without_running_code(template: str, expected: str) -> None:
    assert render(template, {"model": "gpt-4o"}, 2345.6, 2000) == expected


def test_template_errors() -> None:
    assert template_errors('{{ $value | printf "%s%s" }}')
    assert template_errors("{{ $labels.model") == ["unclosed '{{' in template"]
    assert template_errors("{{ $labels.model }} {{ $value | humanize }}") == []
