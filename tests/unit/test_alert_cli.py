"""``llmpulse rules check``: a summary and exit 0, or precise errors and exit 1 (no broker)."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from alerting.rules_file import default_rules_text
from streams.alert_cli import register


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_rules_check_summarises_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(default_rules_text())
    env = {"LLMPULSE_SLACK_BOT_TOKEN": "xoxb-test", "LLMPULSE_SLACK_WEBHOOK_URL": ""}
    result = CliRunner().invoke(cli(), ["rules", "check", str(path)], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{path}: OK: 2 groups, 7 rules, 3 receivers, 1 inhibit rules"
    assert "  HighLatencyP95 [warning]: latency_p95_ms > 2000 (recovers at 1500) for 5m" in lines
    assert "  NoTraffic [warning]: absent for 10m by app, environment" in lines
    assert "  ScoreDrift [info]: detection score.*" in lines
    assert "  slack-bot: slack, #llm-alerts, LLMPULSE_SLACK_BOT_TOKEN set" in lines
    assert "  slack-webhook: slack, LLMPULSE_SLACK_WEBHOOK_URL unset: skipped, optional" in lines


def test_rules_check_prints_every_error_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    literal = "xox" + "b-" + "123456789"  # assembled: no secret-shaped text in the repository
    path.write_text(
        """groups:
  - name: g
    rules:
      - alert: Slow
        metric: latency_p95_ms
        by: [model]
        op: ">"
        threshold: 2000
        recovery_threshold: 2500
        labels: {severity: warning}
route: {receiver: slack}
receivers:
  - {name: slack, type: slack, token: LITERAL}
""".replace("LITERAL", literal)
    )
    result = CliRunner().invoke(cli(), ["rules", "check", str(path)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{path}:9: groups[0].rules[0].recovery_threshold: 2500 must be <= threshold 2000: "
        "an alert raised when the value is > 2000 recovers at or below the recovery threshold",
        f"{path}:13: receivers[0].token: literal secrets are not allowed; put the value in an "
        "environment variable and name it in token_env",
        "2 errors",
    ]


def test_rules_check_of_a_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli(), ["rules", "check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "nope.yaml: cannot read: No such file or directory" in result.output
    assert result.output.splitlines()[-1] == "1 error"
