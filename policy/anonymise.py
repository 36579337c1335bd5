"""The anonymised values an anonymise command asks a sink to write.

Each method replaces a value by something that cannot link two records of one
person: null (`Empty`), the start of its day, month or year (`Coarsen`), the lower
bound of its bucket (`Bucket`), or a fixed constant (`Constant`). Never a hash or a
token. A value a method cannot handle (coarsening a text, bucketing a date) is
emptied rather than kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal

from policy.events import Value
from policy.model import (
    Action,
    Anonymiser,
    Coarsen,
    Constant,
    Empty,
    Policy,
    TimeUnit,
)
from policy.state import Command


def anonymise_value(method: Anonymiser, value: Value) -> Value:
    """The value `method` turns `value` into."""
    if isinstance(method, Empty) or value is None:
        return None
    if isinstance(method, Constant):
        return method.value
    if isinstance(method, Coarsen):
        if isinstance(value, datetime):
            value = value.replace(hour=0, minute=0, second=0, microsecond=0)
        elif not isinstance(value, date):
            return None
        if method.unit is TimeUnit.MONTH:
            value = value.replace(day=1)
        elif method.unit is TimeUnit.YEAR:
            value = value.replace(month=1, day=1)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    width = method.width
    if isinstance(value, int):
        return value - value % width
    if isinstance(value, float):
        return float(math.floor(value / width) * width)
    return (value / width).to_integral_value(rounding="ROUND_FLOOR") * width


def method_for(policy: Policy, command: Command, column: str) -> Anonymiser:
    """How `column` is anonymised for `command`: the stage's own method, the source's, or Empty."""
    source = policy.sources[command.table]
    for rule in source.rules:
        if rule.purpose not in command.purposes:
            continue
        for stage in rule.stages:
            if stage.action is Action.ANONYMISE:
                for field in stage.fields:
                    if field.column == column:
                        return field.method
    for field in source.anonymise:
        if field.column == column:
            return field.method
    return Empty()


def anonymised_fields(
    policy: Policy, command: Command, row: Mapping[str, Value]
) -> dict[str, Value]:
    """The new values of the command's fields, given the row's current values."""
    return {
        column: anonymise_value(method_for(policy, command, column), row.get(column))
        for column in command.fields
    }
