"""Load a policy file: YAML text in, a frozen `Policy` or every error found out.

The loader is pure: the caller reads the file and passes its text and name.
It parses the YAML keeping the line of every node (`yaml_positions`), checks the
structure against the JSON Schema the caller passes in (the one shipped as
`policy/policy.schema.json`, read by `lethe.policy_file.policy_schema()`;
`config/policy.schema.json` links to it) and words its errors for the operator
(`schema_errors`), then checks what a schema cannot say while building the model
(`build`, with `columns` and `clocks`): purposes, columns and their types, periods, caps,
parameters, activities. Nothing is half-loaded: either every check passes and a `Policy`
comes out, or the caller gets the whole list of `PolicyError`s, sorted by line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator

from policy.loader.build import Builder
from policy.loader.errors import PolicyError, PolicyInvalid
from policy.loader.schema_errors import explain, relevant
from policy.loader.yaml_positions import Document
from policy.model import Policy

__all__ = [
    "PolicyError",
    "PolicyInvalid",
    "load_policy_text",
    "parse_policy",
]


def load_policy_text(text: str, filename: str, schema: Mapping[str, Any]) -> Policy:
    """Build the policy from the text of a policy file; raise PolicyInvalid listing every error.

    `schema` is the policy JSON Schema (`lethe.policy_file.policy_schema()` reads the shipped
    one; the core reads no file).
    """
    result = parse_policy(text, filename, schema)
    if isinstance(result, Policy):
        return result
    raise PolicyInvalid(result)


def parse_policy(text: str, filename: str, schema: Mapping[str, Any]) -> Policy | list[PolicyError]:
    """Build the policy, or return every error found (sorted by line); never a partial policy.

    `schema` is the policy JSON Schema (`lethe.policy_file.policy_schema()` reads the shipped one).
    """
    errors: list[PolicyError] = []
    document = Document.parse(text, filename, errors)
    if document is None:
        return errors
    validator = Draft202012Validator(schema)
    for error in relevant(validator.iter_errors(document.data)):
        for path, key, message, hint in explain(error, document):
            errors.append(PolicyError(filename, document.line(path, key), message, hint))
    policy = Builder(document, errors).build()
    if errors or policy is None:
        return _sorted_unique(errors)
    return policy


def _sorted_unique(errors: Iterable[PolicyError]) -> list[PolicyError]:
    seen: set[PolicyError] = set()
    unique = []
    for error in errors:
        if error not in seen:
            seen.add(error)
            unique.append(error)
    return sorted(unique, key=lambda e: e.line)
