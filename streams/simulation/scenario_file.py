"""Read and write scenarios as YAML, with errors that name the offending field.

The file mirrors the dataclasses of `streams.simulation.scenario` field for field; see
docs/simulation.md for an example. Unknown keys are errors, so a typo is never ignored.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from streams.simulation.scenario import Scenario

__all__ = ["ScenarioError", "load_scenario", "save_scenario", "scenario_from_dict", "to_plain"]


class ScenarioError(ValueError):
    """A scenario that cannot be built; ``path`` says where, e.g. ``traffic.apps.bot.models``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '<scenario>'}: {message}")
        self.path = path
        self.message = message


def scenario_from_dict(data: object) -> Scenario:
    """Build and validate a `Scenario` from plain data (as parsed from YAML or JSON)."""
    scenario = _convert(Scenario, data, "")
    assert isinstance(scenario, Scenario)
    return scenario


def load_scenario(path: Path) -> Scenario:
    """Read a scenario from a YAML (or JSON) file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ScenarioError(str(path), f"not valid YAML: {error}") from None
    return scenario_from_dict(data)


def save_scenario(scenario: Scenario, path: Path) -> None:
    """Write ``scenario`` as YAML; `load_scenario` reads it back equal."""
    path.write_text(yaml.safe_dump(to_plain(scenario), sort_keys=False), encoding="utf-8")


def to_plain(value: object) -> Any:
    """Dataclasses, mappings and tuples as dicts and lists, for YAML or JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _join(path: str, name: object) -> str:
    return f"{path}.{name}" if path else str(name)


def _convert(tp: Any, value: object, path: str) -> object:
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _build(tp, value, path)
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        options = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if value is None:
            return None
        return _convert(options[0], value, path)
    if origin is Mapping or origin is dict:
        if not isinstance(value, Mapping):
            raise ScenarioError(path, f"expected a mapping, got {type(value).__name__}")
        _, value_type = typing.get_args(tp)
        return {str(k): _convert(value_type, v, _join(path, k)) for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ScenarioError(path, f"expected a list, got {type(value).__name__}")
        item_type = typing.get_args(tp)[0]
        return tuple(_convert(item_type, v, _join(path, i)) for i, v in enumerate(value))
    return _scalar(tp, value, path)


def _scalar(tp: Any, value: object, path: str) -> object:
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    name = getattr(tp, "__name__", str(tp))
    raise ScenarioError(path, f"expected {name}, got {value!r}")


def _build(cls: type, value: object, path: str) -> object:
    if not isinstance(value, Mapping):
        raise ScenarioError(path, f"expected a mapping, got {type(value).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in value if k not in fields)
    if unknown:
        raise ScenarioError(path, f"unknown keys {unknown}; expected some of {sorted(fields)}")
    hints = _hints(cls)
    kwargs: dict[str, object] = {}
    for name, spec in fields.items():
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], _join(path, name))
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ScenarioError(_join(path, name), "required")
    try:
        return cls(**kwargs)
    except ValueError as error:
        if isinstance(error, ScenarioError):
            raise
        raise ScenarioError(path, str(error)) from None
