"""Read the policy file from disk and build the policy (the loader itself is pure)."""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from lethe.errors import ConfigError
from policy.loader import PolicyError, parse_policy
from policy.model import Policy


class PolicyFileInvalid(ConfigError):
    """The policy file cannot be read or has errors; `errors` lists every one (file:line)."""

    def __init__(self, errors: list[PolicyError]) -> None:
        self.errors = tuple(errors)
        count = len(self.errors)
        lines = "\n".join(str(e) for e in self.errors)
        super().__init__(
            f"the policy file has {count} error{'s' if count != 1 else ''}; "
            f"fix them and run `lethe validate`:\n{lines}"
        )


@cache
def policy_schema() -> dict[str, Any]:
    """The JSON Schema of the policy file, shipped as data of the `policy` package.

    `config/policy.schema.json` is a symbolic link to the same file, for editors.
    """
    text = resources.files("policy").joinpath("policy.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def display_name(path: Path) -> str:
    """The path as an operator would type it: relative to the working directory when inside it."""
    if not path.is_absolute():
        return str(path)
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


def read_policy(path: Path) -> Policy | list[PolicyError]:
    """The policy in the file, or every error found in it (an unreadable file is one error)."""
    name = display_name(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [
            PolicyError(
                name, 1, "no such policy file", "check the path, or set LETHE_POLICY to the file"
            )
        ]
    except IsADirectoryError:
        return [PolicyError(name, 1, "is a directory, not a policy file", "name the YAML file")]
    except OSError as exc:
        return [
            PolicyError(
                name,
                1,
                f"cannot read the policy file: {exc.strerror or exc}",
                "check the file's permissions",
            )
        ]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return [
            PolicyError(name, line, "the policy file is not UTF-8 text", "save the file as UTF-8")
        ]
    return parse_policy(text, name, policy_schema())


def load_policy(path: Path | str) -> Policy:
    """Build the policy from the file at `path`; raise PolicyFileInvalid listing every error."""
    result = read_policy(Path(path))
    if isinstance(result, Policy):
        return result
    raise PolicyFileInvalid(result)
