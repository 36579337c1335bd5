"""How the loader reports problems: `PolicyError` for one, `PolicyInvalid` for all of them.

A `PolicyError` says where (file and line), what is wrong and how to fix it;
`load_policy_text` raises `PolicyInvalid` with every error of the file, sorted by line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PolicyError:
    """One problem in a policy file: where it is, what is wrong, how to fix it."""

    file: str
    line: int
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class PolicyInvalid(ValueError):
    """The policy file has errors; `errors` lists every one of them."""

    def __init__(self, errors: Sequence[PolicyError]) -> None:
        self.errors: tuple[PolicyError, ...] = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))
