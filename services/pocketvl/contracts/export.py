"""JSON Schemas of every message, generated from the pydantic models into ``schemas/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from pocketvl.contracts.messages import DlqHeaders, answer_model, request_adapter
from pocketvl.domains.registry import REGISTRY, Registry

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _with_header(schema: dict[str, Any], name: str, description: str) -> dict[str, Any]:
    return {"$schema": SCHEMA_DIALECT, "$id": name, "description": description, **schema}


def schemas(registry: Registry = REGISTRY) -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for the tasks of ``registry``."""
    return {
        "request.schema.json": _with_header(
            request_adapter(registry).json_schema(),
            "request.schema.json",
            "Value of a record on {prefix}.{domain}.requests (discriminated on domain, task.type).",
        ),
        "answer.schema.json": _with_header(
            TypeAdapter(answer_model(registry)).json_schema(),
            "answer.schema.json",
            "Value of a record on {prefix}.{domain}.answers; key = the request's key.",
        ),
        "dlq-headers.schema.json": _with_header(
            TypeAdapter(DlqHeaders).json_schema(by_alias=True),
            "dlq-headers.schema.json",
            "Headers of a record on {prefix}.{domain}.dlq (UTF-8 strings); its key and value "
            "are the original request's bytes, unchanged.",
        ),
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = directory / name
        path.write_text(render(schema))
        written.append(path)
    return written


def drifted(directory: Path) -> list[str]:
    """Schema files that are missing or differ from what the models generate."""
    return [
        name
        for name, schema in schemas().items()
        if not (directory / name).is_file() or (directory / name).read_text() != render(schema)
    ]
