"""Clock expressions and conditions of a policy file, checked and built into the model.

`ClockBuilder.clock` turns a stage's `due:` (a column, `at_once`, `after:` with `from:`,
`earliest:`, `latest:`, `activity:`, `when:` with `then:` and `else:`) into a `Clock`, and
`condition` a `when:` into a `Condition`, checking the columns, parameters and activities
they name against the source and the policy. Where something is wrong the error is
reported and None comes back, so the stage is left out.
"""

from __future__ import annotations

from typing import Any

from policy.loader.columns import SourceColumns, fits
from policy.loader.context import LoadContext, choices, mapping, sequence, unknown_hint
from policy.loader.yaml_positions import Path, show
from policy.model import (
    After,
    AllOf,
    AnyOf,
    ChangeTime,
    Clock,
    ColumnInstant,
    ColumnType,
    Condition,
    Earliest,
    Equals,
    IsSet,
    Latest,
    Not,
    PeriodRef,
    SubjectActivity,
    When,
)
from policy.periods import Period

CLOCK_KINDS = ("after", "earliest", "latest", "activity", "when")
AT_ONCE = "at_once"


class ClockBuilder:
    """Builds clock expressions and conditions of one source, reporting what is wrong."""

    def __init__(self, context: LoadContext, ctx: SourceColumns) -> None:
        self.context = context
        self.ctx = ctx

    def clock(self, path: Path, raw: Any) -> Clock | None:
        if isinstance(raw, str):
            if raw == AT_ONCE:
                return ChangeTime()
            if self.ctx.instant_column(path, raw, "clock"):
                return ColumnInstant(raw)
            return None
        if not isinstance(raw, dict):
            return None
        kinds = [k for k in CLOCK_KINDS if k in raw]
        if len(kinds) != 1:
            return None  # the schema has reported it
        kind = kinds[0]
        sub: Path = (*path, kind)
        if kind == "after":
            period = self.period(sub, raw["after"])
            start = self.clock((*path, "from"), raw.get("from"))
            return After(start, period) if start is not None and period is not None else None
        if kind in ("earliest", "latest"):
            operands = [self.clock((*sub, i), item) for i, item in enumerate(sequence(raw[kind]))]
            if not operands or any(o is None for o in operands):
                return None
            built = tuple(o for o in operands if o is not None)
            return Earliest(built) if kind == "earliest" else Latest(built)
        if kind == "activity":
            name = raw["activity"]
            if not isinstance(name, str):
                return None
            if self.context.activities_known and name not in self.context.activities_fed:
                self.ctx.fail(
                    sub,
                    f"clock of {self.ctx.table} reads activity {name!r}, which no source feeds",
                    "add activity: [{activity: "
                    f"{name}, column: <timestamptz column>}}] to the tables that record it; "
                    f"fed activities: {choices(self.context.activities_fed)}",
                )
                return None
            return SubjectActivity(name)
        condition = self.condition(sub, raw["when"])
        then = self.clock((*path, "then"), raw.get("then"))
        otherwise = None
        if "else" in raw:
            otherwise = self.clock((*path, "else"), raw["else"])
            if otherwise is None:
                return None
        if condition is None or then is None:
            return None
        return When(condition, then, otherwise)

    def period(self, path: Path, raw: Any) -> Period | PeriodRef | None:
        if isinstance(raw, str):
            return self.context.period(path, raw)
        name = mapping(raw).get("parameter")
        if not isinstance(name, str):
            return None
        if self.context.parameters_known and name not in self.context.parameter_names:
            self.ctx.fail(
                (*path, "parameter"),
                f"clock of {self.ctx.table} refers to unknown parameter {name!r}",
                unknown_hint(name, self.context.parameter_names, "parameters:"),
            )
            return None
        return PeriodRef(name)

    def condition(self, path: Path, raw: Any) -> Condition | None:
        if not isinstance(raw, dict) or len(raw) != 1:
            return None  # the schema has reported it
        ((kind, arg),) = raw.items()
        sub: Path = (*path, kind)
        if kind == "set":
            if isinstance(arg, str) and self.ctx.column(sub, arg, "condition"):
                return IsSet(arg)
            return None
        if kind == "equals":
            if not isinstance(arg, dict) or len(arg) != 1:
                return None
            ((column, value),) = arg.items()
            cpath: Path = (*sub, column)
            if not isinstance(column, str) or not self.ctx.column(cpath, column, "condition"):
                return None
            if not isinstance(value, bool | str | int):
                return None
            kind_of = self.ctx.columns[column]
            if not fits(value, kind_of):
                self.ctx.fail(
                    cpath,
                    f"condition of {self.ctx.table} compares {column!r} ({kind_of}) "
                    f"with {show(value)}",
                    f"compare with a value of type {kind_of}"
                    + (" (true or false)" if kind_of is ColumnType.BOOLEAN else ""),
                )
                return None
            return Equals(column, value)
        if kind == "not":
            inner = self.condition(sub, arg)
            return Not(inner) if inner is not None else None
        if kind in ("all", "any"):
            parts = [self.condition((*sub, i), c) for i, c in enumerate(sequence(arg))]
            if not parts or any(p is None for p in parts):
                return None
            built = tuple(p for p in parts if p is not None)
            return AllOf(built) if kind == "all" else AnyOf(built)
        return None
