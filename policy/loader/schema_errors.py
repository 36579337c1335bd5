"""JSON Schema errors in the operator's words.

`relevant` drops the errors jsonschema reports beside their cause (what is "missing"
where a key is misspelt, or "matches no form" where a value has the wrong type);
`explain` turns one error into (path, at-key, message, hint) items: an unknown key with a
guess at the one meant, what is lacking, the type or value expected, with the schema's own
`x-hint` (and `x-expected`) where it has one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema.exceptions import ValidationError

from policy.loader.yaml_positions import Document, Path, show


def relevant(errors: Iterable[ValidationError]) -> list[ValidationError]:
    """Drop echoes: where a key is unknown (misspelt) or a value has the wrong type, what is
    "missing" or "matches no form" there is the same mistake."""
    errors = list(errors)
    causes = {"additionalProperties", "type"}
    explained = {tuple(e.absolute_path) for e in errors if e.validator in causes}
    echoes = {"required", "dependentRequired", "oneOf", "anyOf"}
    return [
        e for e in errors if not (e.validator in echoes and tuple(e.absolute_path) in explained)
    ]


def _type_name(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_JSON_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
}


_COMPARE = "compare it with config/policy.yaml, which shows every form"


def _hint(error: ValidationError, fallback: str) -> str:
    schema = error.schema
    if isinstance(schema, Mapping):
        hint = schema.get("x-hint")
        if isinstance(hint, str):
            return hint
    return fallback


def explain(error: ValidationError, doc: Document) -> list[tuple[Path, bool, str, str]]:
    """Turn one jsonschema error into (path, at-key, message, hint) items."""
    path: Path = tuple(error.absolute_path)
    where = doc.where(path)
    validator = error.validator
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    instance: Any = error.instance
    expected_value: Any = error.validator_value
    if "propertyNames" in error.schema_path:
        return [
            (
                (*path, instance),
                True,
                f"{where}: {show(instance)} is not a valid name here",
                _hint(error, "use letters, digits and underscores, starting with a letter"),
            )
        ]
    if validator == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema.get("properties", {}))
        items = []
        for key in instance:
            if key in allowed:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            items.append(
                (
                    (*path, key),
                    True,
                    f"unknown key {show(key)} in {where}",
                    f"{guess}allowed keys: {', '.join(allowed)}",
                )
            )
        return items
    if validator == "required" and isinstance(instance, dict):
        properties = schema.get("properties", {})
        missing = [key for key in expected_value if key not in instance]
        hints = []
        for key in missing:
            sub = properties.get(key, {})
            hint = sub.get("x-hint") if isinstance(sub, Mapping) else None
            hints.append(f"add {key}:" + (f" - {hint}" if isinstance(hint, str) else " to it"))
        lacking = ", ".join(repr(key) for key in missing)
        return [(path, True, f"{where} lacks {lacking}", "; ".join(hints))] if missing else []
    if validator == "dependentRequired" and isinstance(instance, dict):
        items = []
        for key, needed in expected_value.items():
            if key not in instance:
                continue
            for other in needed:
                if other not in instance:
                    items.append(
                        (
                            (*path, key),
                            True,
                            f"{where}: {key!r} needs {other!r} beside it",
                            _hint(error, f"add {other}: beside {key}:"),
                        )
                    )
        return items
    if validator == "type":
        wanted = expected_value
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        expected = schema.get("x-expected") or " or ".join(_JSON_TYPES.get(n, n) for n in names)
        return [
            (
                path,
                False,
                f"{where} must be {expected}, not {_type_name(instance)}",
                _hint(error, f"write {expected} here"),
            )
        ]
    if validator in ("enum", "const"):
        options = expected_value if validator == "enum" else [expected_value]
        return [
            (
                path,
                False,
                f"{where}: {show(instance)} is not allowed",
                _hint(error, "use one of: " + ", ".join(str(o) for o in options)),
            )
        ]
    if validator == "pattern":
        return [
            (
                path,
                False,
                f"{where}: {show(instance)} is not a valid name",
                _hint(error, "use letters, digits and underscores, starting with a letter"),
            )
        ]
    if validator in ("minItems", "minProperties", "minLength"):
        return [
            (path, False, f"{where} must not be empty", _hint(error, "fill it in, or remove it"))
        ]
    if validator == "maxProperties":
        return [(path, False, f"{where} has more than one key", _hint(error, "keep one key"))]
    if validator == "uniqueItems":
        return [(path, False, f"{where} lists an item twice", "remove the repeated item")]
    if validator in ("minimum", "exclusiveMinimum"):
        return [
            (
                path,
                False,
                f"{where} must be at least {expected_value}",
                _hint(error, f"use {expected_value} or more"),
            )
        ]
    if validator in ("oneOf", "anyOf"):
        title = schema.get("title", "value")
        return [(path, False, f"{where} is not a valid {title}", _hint(error, _COMPARE))]
    return [(path, False, f"{where}: {error.message}", _hint(error, _COMPARE))]
