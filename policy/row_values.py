"""A row's values from a change event's image, and what of its earlier state they keep.

`policy.engine.apply` reads the columns the rules need from the image (`read_values`,
`instant_of`), then decides what carries over: the issued stages the new values still
schedule (`still_scheduled`), the anonymise stages a row first seen has already undergone
(`anonymous_already`), and since when each at-once condition holds (`keep_at_once`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from types import MappingProxyType
from typing import Final

from policy.clock_closures import ConditionFn, Values
from policy.confirmation import shows_anonymised, state_value
from policy.events import ChangeEvent, Value
from policy.instants import EPOCH, EPOCH_ORDINAL, US_PER_DAY, Instant, from_datetime
from policy.model import Action
from policy.plans import ANONYMISE_RANK, Engine, SourcePlan
from policy.state import Command, RowState, StateValue, SubjectState

_NO_ACTIVITY: Final[Mapping[str, Instant]] = MappingProxyType({})
_NOTHING_ISSUED: Final[frozenset[str]] = frozenset()
_NOTHING_KEPT: Final[Mapping[str, StateValue]] = MappingProxyType({})
_ONE_US: Final = datetime.resolution
_TEXT_OR_INT: Final = (str, int)


def read_values(reads: tuple[str, ...], image: Mapping[str, Value]) -> dict[str, StateValue]:
    """The columns the rules read, as state values; nulls are left out (absent = null)."""
    values: dict[str, StateValue] = {}
    for column in reads:
        value = image.get(column)
        if value is None:
            continue
        if type(value) is datetime and value.tzinfo is not None:
            values[column] = (value - EPOCH) // _ONE_US
        elif isinstance(value, _TEXT_OR_INT):
            values[column] = value
        else:
            values[column] = state_value(value)
    return values


def instant_of(value: Value) -> Instant | None:
    if isinstance(value, datetime):
        return (value - EPOCH) // _ONE_US if value.tzinfo is not None else from_datetime(value)
    if isinstance(value, date):
        return (value.toordinal() - EPOCH_ORDINAL) * US_PER_DAY
    return None


def still_scheduled(
    plan: SourcePlan, values: Values, subject: SubjectState | None, issued: frozenset[str]
) -> frozenset[str]:
    """The issued stages the row's new values still schedule. One whose clock stopped (an
    account reopened: `closed_at` back to null) is forgotten, so that it is issued anew
    once its clock runs again (the account closed again)."""
    activity = subject.activity if subject is not None and plan.reads_activity else _NO_ACTIVITY
    scheduled, _ = plan.stages(values, activity, _NOTHING_ISSUED)
    return issued.intersection(stage[2] for stage in scheduled)


def anonymous_already(
    engine: Engine,
    plan: SourcePlan,
    values: Values,
    subject: SubjectState | None,
    event: ChangeEvent,
    image: Mapping[str, Value],
) -> frozenset[str]:
    """The anonymise stages of a row first seen that are due by the event and whose every
    column already holds what the stage writes: done (issued and confirmed, no command).

    A row that moves to another subject arrives at the worker's other partition as new,
    often because its own anonymise emptied the subject's column (a survey's customer id),
    and sometimes with that stage's clock column coarsened, so the stage would be issued
    again with another due, as a no-op: `lethe simulate` moves the row with its issued
    stages and never does. Only anonymises: what is already anonymous is not anonymised
    again; a delete or an archive is never taken as done."""
    activity = subject.activity if subject is not None and plan.reads_activity else _NO_ACTIVITY
    stages, _ = plan.stages(values, activity, _NOTHING_ISSUED)
    done = [
        stage_id
        for at, rank, stage_id, purposes, fields in stages
        if rank == ANONYMISE_RANK
        and at <= event.ts
        and shows_anonymised(
            engine,
            Command(
                at,
                at,
                Action.ANONYMISE,
                stage_id,
                plan.table,
                event.key,
                None,
                purposes,
                fields,
            ),
            _NOTHING_KEPT,
            image,
        )
    ]
    return frozenset(done) if done else _NOTHING_ISSUED


def keep_at_once(
    at_once: tuple[tuple[str, ConditionFn], ...],
    values: dict[str, StateValue],
    row: RowState | None,
    now: Instant,
) -> None:
    """Since when each `at_once` condition holds: kept from the row state, else `now`."""
    for slot, holds in at_once:
        if holds(values):
            since = row.values.get(slot) if row is not None else None
            values[slot] = since if type(since) is int else now
