"""The column checks of one source: declared, of a fitting type, allowed to be anonymised.

`SourceColumns` answers, for one source, whether a column that a primary key, subject,
rule, clock, condition or anonymisation names is declared under `columns:` (with a guess
at the one meant), and whether its type fits the use: an instant must be a timestamptz or
date column, a bucket a number, a constant of the column's type, and a primary key column
is never anonymised. Each problem is reported once where it is written, and `failed`
then keeps the source out of the model.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from policy.loader.context import LoadContext, choices, mapping, sequence
from policy.loader.yaml_positions import Path, show
from policy.model import (
    Anonymiser,
    Bucket,
    Coarsen,
    ColumnType,
    Constant,
    Empty,
    FieldAnonymisation,
    TimeUnit,
)

TEMPORAL = frozenset({ColumnType.TIMESTAMPTZ, ColumnType.DATE})
NUMERIC = frozenset({ColumnType.BIGINT, ColumnType.INTEGER, ColumnType.NUMERIC})


class SourceColumns:
    """Column checks for one source; `failed` once any of them reported an error."""

    def __init__(
        self, context: LoadContext, table: str, path: Path, columns: Mapping[str, ColumnType]
    ) -> None:
        self.context = context
        self.table = table
        self.path = path
        self.columns = columns
        self.primary_key = {
            str(c) for c in sequence(mapping(context.doc.get(path)).get("primary_key"))
        }
        self.failed = False
        # columns declared with a broken type still exist; a broken columns: section names none
        self.untyped: set[str] = set()
        self.columns_known = True

    def fail(self, path: Path, message: str, hint: str) -> bool:
        self.context.error(path, message, hint)
        self.failed = True
        return False

    def column(self, path: Path, column: str, role: str) -> bool:
        """True when the column exists with a type; else False (reported once, where it is)."""
        if column in self.columns:
            return True
        if column in self.untyped or not self.columns_known:
            self.failed = True  # the schema has reported the columns: entry
            return False
        close = difflib.get_close_matches(column, list(self.columns), n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        return self.fail(
            path,
            f"{role} of {self.table} names column {column!r}, which {self.table} lacks",
            f"{guess}declare it under columns: or use one of: {choices(self.columns)}",
        )

    def instant_column(self, path: Path, column: str, role: str) -> bool:
        if not self.column(path, column, role):
            return False
        kind = self.columns[column]
        if kind in TEMPORAL:
            return True
        instants = [c for c, t in self.columns.items() if t in TEMPORAL]
        return self.fail(
            path,
            f"{role} of {self.table} uses column {column!r} ({kind}) as an instant",
            f"use a timestamptz or date column: {choices(instants)}",
        )

    def field(self, path: Path, column: str, raw_method: Any) -> FieldAnonymisation | None:
        if not self.column(path, column, "anonymisation"):
            return None
        if column in self.primary_key:
            self.fail(
                path,
                f"anonymisation of {self.table} names primary key column {column!r}",
                "a primary key cannot be anonymised; delete the row instead, "
                "or anonymise the other columns",
            )
            return None
        method = raw_method if isinstance(raw_method, Anonymiser) else anonymiser(raw_method)
        if method is None:
            self.failed = True
            return None
        kind = self.columns[column]
        problem = ""
        if isinstance(method, Coarsen) and kind not in TEMPORAL:
            problem = f"coarsens column {column!r} ({kind}), which is not a timestamptz or date"
            hint = "coarsen only timestamptz or date columns; use empty or constant here"
        elif isinstance(method, Bucket) and kind not in NUMERIC:
            problem = f"buckets column {column!r} ({kind}), which is not a number"
            hint = "bucket only bigint, integer or numeric columns; use empty or constant here"
        elif isinstance(method, Constant) and not fits(method.value, kind):
            problem = f"replaces column {column!r} ({kind}) by {show(method.value)}"
            hint = f"give a constant of type {kind}, or use empty"
        if problem:
            self.fail(path, f"anonymisation of {self.table} {problem}", hint)
            return None
        return FieldAnonymisation(column=column, method=method)


def fits(value: bool | str | int, kind: ColumnType) -> bool:
    if isinstance(value, bool):
        return kind is ColumnType.BOOLEAN
    if isinstance(value, int):
        return kind in NUMERIC
    return kind is ColumnType.TEXT


def anonymiser(raw: Any) -> Anonymiser | None:
    if raw == "empty":
        return Empty()
    if isinstance(raw, dict) and len(raw) == 1:
        ((kind, arg),) = raw.items()
        if kind == "coarsen" and isinstance(arg, str) and arg in {u.value for u in TimeUnit}:
            return Coarsen(TimeUnit(arg))
        if kind == "bucket" and isinstance(arg, int) and not isinstance(arg, bool) and arg >= 1:
            return Bucket(arg)
        if kind == "constant" and isinstance(arg, str | int | bool):
            return Constant(arg)
    return None  # the schema has reported it
