"""Generate the committed JSON Schema files for the event models.

Run ``python -m schemas.json_schema`` to rewrite them, or with ``--check`` to
exit non-zero when they are out of date.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.feedback import Feedback
from schemas.llm_call import OTEL_ALIASES, LLMCall

SCHEMA_DIR = Path(__file__).resolve().parent
SCHEMA_FILES: dict[str, type[BaseModel]] = {
    "llm_call.schema.json": LLMCall,
    "feedback.schema.json": Feedback,
}
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def build_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Return the input (validation) JSON Schema of ``model``.

    OpenTelemetry alias names are recorded as ``x-otel-alias`` on the
    canonical property, since JSON Schema cannot express "either key".
    """
    schema = {"$schema": _DIALECT, **model.model_json_schema(mode="validation")}
    properties = schema["properties"]
    for otel_name, field in OTEL_ALIASES.items():
        if field in properties and field in model.model_fields:
            properties[field]["x-otel-alias"] = otel_name
    return schema


def render_schemas() -> dict[str, str]:
    """Return file name -> file content for every schema file, as they should be on disk."""
    return {
        name: json.dumps(build_schema(model), indent=2, ensure_ascii=False) + "\n"
        for name, model in SCHEMA_FILES.items()
    }


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file into ``directory`` and return their paths."""
    written = []
    for name, content in render_schemas().items():
        path = directory / name
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def stale_schemas(directory: Path = SCHEMA_DIR) -> list[str]:
    """Return the names of schema files that are missing or differ from the models."""
    stale = []
    for name, content in render_schemas().items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            stale.append(name)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m schemas.json_schema", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_schemas()
        for name in stale:
            print(f"stale: {SCHEMA_DIR / name} (run python -m schemas.json_schema)")
        return 1 if stale else 0
    for path in write_schemas():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
