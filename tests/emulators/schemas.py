"""Tool-call arguments an emulator makes up: a value that fits a JSON schema."""

from __future__ import annotations

from typing import Any

__all__ = ["sample"]


def sample(schema: Any) -> Any:
    """A value that fits ``schema``: objects get their required properties,
    strings "example", numbers their minimum (at least 1), enums their first."""
    if not isinstance(schema, dict):
        return "example"
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: sample(props.get(name)) for name in schema.get("required") or ()}
    if kind == "array":
        return [sample(schema.get("items"))]
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    return "example"
