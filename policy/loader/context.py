"""What the loader's checks share: the document, the errors found, the names declared.

`LoadContext` reports an error at a path (at that path's line), parses periods, and
knows the names the policy declares (purposes, parameters, activities some source feeds)
and whether each of those sections could be read at all: where the schema found the
section itself damaged, names that refer to it are not reported a second time.
`Builder` (`policy.loader.build`) extends it; the column and clock checks
(`policy.loader.columns`, `policy.loader.clocks`) take it. It also holds the small
helpers that read parsed YAML leniently (what the schema reported is skipped here) and word
the list of known names.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from policy.loader.errors import PolicyError
from policy.loader.yaml_positions import Document, Path
from policy.periods import Period, PeriodSyntaxError


class LoadContext:
    """The document being loaded, the errors found so far, and the names the policy declares."""

    def __init__(self, document: Document, errors: list[PolicyError]) -> None:
        self.doc = document
        self.errors = errors
        self.purpose_ids: set[str] = set()
        self.parameter_names: set[str] = set()
        self.activities_fed: set[str] = set()
        # False when the section itself is damaged (the schema said so): names cannot be checked
        self.purposes_known = True
        self.parameters_known = True
        self.activities_known = True

    def error(self, path: Path, message: str, hint: str = "", key: bool = False) -> None:
        self.errors.append(PolicyError(self.doc.filename, self.doc.line(path, key), message, hint))

    def period(self, path: Path, text: Any) -> Period | None:
        if not isinstance(text, str):
            return None
        try:
            return Period.parse(text)
        except PeriodSyntaxError:
            self.error(
                path,
                f"{self.doc.where(path)}: {text!r} is not an ISO-8601 duration",
                "write it like P1Y, P15M, P180D, P2W or PT12H",
            )
            return None

    def unknown_purpose(self, purpose: str) -> bool:
        """True when `purpose` is not declared (and the purposes could be read)."""
        return self.purposes_known and purpose not in self.purpose_ids


def choices(names: Iterable[str]) -> str:
    """The known names for a hint, sorted, or that none is declared."""
    return ", ".join(sorted(names)) or "(none declared)"


def unknown_hint(name: str, known: Iterable[str], declare: str) -> str:
    """The hint for an unknown name: a guess at the one meant, and where names are declared."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f"{guess}declare it under {declare} or use one of: {choices(known)}"


def mapping(value: Any) -> Mapping[Any, Any]:
    """`value` if it is a mapping, else an empty one (the schema has reported it)."""
    return value if isinstance(value, dict) else {}


def sequence(value: Any) -> list[Any]:
    """`value` if it is a list, else an empty one (the schema has reported it)."""
    return value if isinstance(value, list) else []
