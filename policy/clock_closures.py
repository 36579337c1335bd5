"""Clock and condition expressions of the policy, compiled into closures.

A clock (`closed_at`, `{after: P1Y, from: ...}`, `earliest`, `latest`, `when`, `at_once`,
the subject's activity) becomes a function of (row values, subject activity) that returns
an instant in µs, or None while the clock is not running; a condition becomes a function
of the row values. `policy.plans` builds each source's stages from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from policy.instants import US_PER_DAY, US_PER_SECOND, Instant, add_months
from policy.model import (
    After,
    AllOf,
    AnyOf,
    ChangeTime,
    Clock,
    ColumnInstant,
    Condition,
    Earliest,
    Equals,
    IsSet,
    Latest,
    Not,
    Policy,
    SubjectActivity,
    When,
)
from policy.state import StateValue

Values = Mapping[str, StateValue]
Activity = Mapping[str, Instant]
ClockFn = Callable[[Values, Activity], Instant | None]
ConditionFn = Callable[[Values], bool]
Guard = tuple[tuple[Condition, bool], ...]
"""The conditions (and whether each must hold or not) of the `when`s around an `at_once`."""

AT_ONCE_PREFIX: Final = "@"
"""Row values under `@<n>` (never a column name) keep since when an `at_once` condition holds."""


def compile_guard(guard: Guard) -> ConditionFn:
    if not guard:
        return _always
    return _compile_condition(
        AllOf(tuple(condition if holds else Not(condition) for condition, holds in guard))
    )


def _always(values: Values) -> bool:
    return True


def uses_activity(clock: Clock | None) -> bool:
    if isinstance(clock, SubjectActivity):
        return True
    if isinstance(clock, After):
        return uses_activity(clock.start)
    if isinstance(clock, Earliest | Latest):
        return any(uses_activity(operand) for operand in clock.operands)
    if isinstance(clock, When):
        return uses_activity(clock.then) or uses_activity(clock.otherwise)
    return False


def activities_read(clock: Clock | None) -> frozenset[str]:
    """The subject activities (`contact`) the clock reads."""
    if isinstance(clock, SubjectActivity):
        return frozenset((clock.activity,))
    if isinstance(clock, After):
        return activities_read(clock.start)
    if isinstance(clock, Earliest | Latest):
        return frozenset().union(*(activities_read(operand) for operand in clock.operands))
    if isinstance(clock, When):
        return activities_read(clock.then) | activities_read(clock.otherwise)
    return frozenset()


def collect_reads(clock: Clock | Condition | None, reads: dict[str, None]) -> None:
    if isinstance(clock, ColumnInstant | IsSet | Equals):
        reads[clock.column] = None
    elif isinstance(clock, After):
        collect_reads(clock.start, reads)
    elif isinstance(clock, Earliest | Latest):
        for operand in clock.operands:
            collect_reads(operand, reads)
    elif isinstance(clock, When):
        collect_reads(clock.condition, reads)
        collect_reads(clock.then, reads)
        collect_reads(clock.otherwise, reads)
    elif isinstance(clock, Not):
        collect_reads(clock.condition, reads)
    elif isinstance(clock, AllOf | AnyOf):
        for condition in clock.conditions:
            collect_reads(condition, reads)


def not_running(values: Values, activity: Activity) -> Instant | None:
    return None


def compile_clock(
    policy: Policy, clock: Clock | None, guard: Guard, slots: dict[Guard, str]
) -> ClockFn:
    """Turn a clock expression into a closure over (values, activity).

    `guard` is the conditions of the `when`s around `clock`; an `at_once` inside reads
    the values key `slots` gives its guard (since when that guard has held).
    """
    if clock is None:
        return not_running
    if isinstance(clock, ColumnInstant):
        column = clock.column

        def column_instant(values: Values, activity: Activity) -> Instant | None:
            value = values.get(column)
            return value if type(value) is int else None

        return column_instant
    if isinstance(clock, SubjectActivity):
        name = clock.activity

        def subject_activity(values: Values, activity: Activity) -> Instant | None:
            return activity.get(name)

        return subject_activity
    if isinstance(clock, ChangeTime):
        slot = slots.setdefault(guard, f"{AT_ONCE_PREFIX}{len(slots)}")

        def at_once(values: Values, activity: Activity) -> Instant | None:
            since = values.get(slot)
            return since if type(since) is int else None

        return at_once
    if isinstance(clock, After):
        return _compile_after(policy, clock, guard, slots)
    if isinstance(clock, Earliest | Latest):
        operands = tuple(compile_clock(policy, operand, guard, slots) for operand in clock.operands)
        pick = min if isinstance(clock, Earliest) else max

        def combined(values: Values, activity: Activity) -> Instant | None:
            running = [t for t in (fn(values, activity) for fn in operands) if t is not None]
            return pick(running) if running else None

        return combined
    condition = _compile_condition(clock.condition)
    then = compile_clock(policy, clock.then, (*guard, (clock.condition, True)), slots)
    otherwise = compile_clock(policy, clock.otherwise, (*guard, (clock.condition, False)), slots)

    def when(values: Values, activity: Activity) -> Instant | None:
        if condition(values):
            return then(values, activity)
        return otherwise(values, activity)

    return when


def _compile_after(policy: Policy, clock: After, guard: Guard, slots: dict[Guard, str]) -> ClockFn:
    period = policy.period(clock.period)
    months = period.months
    exact = period.days * US_PER_DAY + period.seconds * US_PER_SECOND
    if isinstance(clock.start, ColumnInstant):
        return _after_column(clock.start.column, months, exact)
    start = compile_clock(policy, clock.start, guard, slots)
    if not months:

        def after_exact(values: Values, activity: Activity) -> Instant | None:
            begin = start(values, activity)
            return None if begin is None else begin + exact

        return after_exact

    def after_calendar(values: Values, activity: Activity) -> Instant | None:
        begin = start(values, activity)
        return None if begin is None else add_months(begin, months) + exact

    return after_calendar


def _after_column(column: str, months: int, exact: int) -> ClockFn:
    """`After(ColumnInstant(column), period)`, the most common clock, in one closure."""
    if not months:

        def after_column_exact(values: Values, activity: Activity) -> Instant | None:
            begin = values.get(column)
            return begin + exact if type(begin) is int else None

        return after_column_exact

    def after_column(values: Values, activity: Activity) -> Instant | None:
        begin = values.get(column)
        return add_months(begin, months) + exact if type(begin) is int else None

    return after_column


def _compile_condition(condition: Condition) -> ConditionFn:
    if isinstance(condition, IsSet):
        column = condition.column
        return lambda values: values.get(column) is not None
    if isinstance(condition, Equals):
        column, expected = condition.column, condition.value
        expected_bool = isinstance(expected, bool)

        def equals(values: Values) -> bool:
            value = values.get(column)
            return value == expected and isinstance(value, bool) == expected_bool

        return equals
    if isinstance(condition, Not):
        inner = _compile_condition(condition.condition)
        return lambda values: not inner(values)
    parts = tuple(_compile_condition(c) for c in condition.conditions)
    if isinstance(condition, AllOf):
        return lambda values: all(part(values) for part in parts)
    return lambda values: any(part(values) for part in parts)
