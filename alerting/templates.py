"""Prometheus-like annotation templates, rendered by regex substitution (no code runs).

Supported: ``{{ $labels.name }}``, ``{{ $value }}``, ``{{ $threshold }}``, optionally piped
through ``humanize``, ``humanizePercentage`` or ``printf "%.2f"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

_EXPR = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_BODY = re.compile(
    r"""^\s*(?P<var>\$labels\.(?P<label>[A-Za-z_][A-Za-z0-9_]*)|\$value|\$threshold)\s*"""
    r"""(?:\|\s*(?P<func>humanize|humanizePercentage|"""
    r"""printf\s+"(?P<fmt>%[-+ 0#]?\d*(?:\.\d+)?[dfeEgGs])"))?\s*$"""
)
HELP = (
    "use {{ $labels.<name> }}, {{ $value }} or {{ $threshold }}, optionally piped through "
    'humanize, humanizePercentage or printf "%.2f"'
)


def template_errors(text: str) -> list[str]:
    """Return one message per expression the renderer does not understand.

    Examples
    --------
    >>> template_errors("p95 is {{ $value | humanize }} on {{ $labels.model }}")
    []
    >>> template_errors("{{ .Labels.model }}")[0][:45]
    "unknown template expression '{{ .Labels.model"
    """
    errors = []
    for found in _EXPR.finditer(text):
        if _BODY.match(found.group(1)) is None:
            errors.append(f"unknown template expression {found.group(0)!r}: {HELP}")
    if "{{" in _EXPR.sub("", text):
        errors.append("unclosed '{{' in template")
    return errors


def template_labels(text: str) -> set[str]:
    """Label names a template refers to."""
    names = set()
    for found in _EXPR.finditer(text):
        body = _BODY.match(found.group(1))
        if body is not None and body.group("label"):
            names.add(body.group("label"))
    return names


def humanize(value: float) -> str:
    """Format a number with an SI suffix, like Prometheus ``humanize``.

    Examples
    --------
    >>> humanize(1234.5), humanize(0.25), humanize(2_500_000)
    ('1.234k', '0.25', '2.5M')
    """
    if math.isnan(value) or math.isinf(value):
        return str(value)
    magnitude = abs(value)
    for size, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= size:
            return f"{value / size:.4g}{suffix}"
    return f"{value:.4g}"


def render(
    text: str,
    labels: Mapping[str, str],
    value: float | None,
    threshold: float | None = None,
) -> str:
    """Render a template; unknown expressions are left as they are (rules check reports them).

    Examples
    --------
    >>> text = "{{ $labels.model }} p95 {{ $value | printf \\"%.0f\\" }}ms"
    >>> render(text, {"model": "gpt-4o"}, 2345.6)
    'gpt-4o p95 2346ms'
    >>> render("{{ $labels.missing }}|{{ $value }}", {}, None)
    '|n/a'
    """

    def substitute(found: re.Match[str]) -> str:
        body = _BODY.match(found.group(1))
        if body is None:
            return found.group(0)
        if body.group("label"):
            return labels.get(body.group("label"), "")
        number = value if body.group("var") == "$value" else threshold
        if number is None:
            return "n/a"
        func = body.group("func") or ""
        if func == "humanize":
            return humanize(number)
        if func == "humanizePercentage":
            return f"{number * 100:.2f}".rstrip("0").rstrip(".") + "%"
        if body.group("fmt"):
            fmt = body.group("fmt")
            return fmt % (int(number) if fmt.endswith("d") else number)
        return f"{number:.6g}"

    return _EXPR.sub(substitute, text)
