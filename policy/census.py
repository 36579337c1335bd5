"""A census of a driver's state: what the worker's gauges of rows, backlog and forecast show.

`take_census(engine, rows, subjects, now)` goes once over the row states (each with its
subject's state) and the subject states of one partition and counts:
- `tracked`: rows per (table, purpose): a row counts once under each purpose its table's
  rules name;
- `backlog`: rows with a stage due at or before `now` and not issued yet, per (table,
  action), and the earliest such due per table (`oldest_overdue`): what the enforcer owes.
  A row whose delete is due counts under delete only (the earlier stages are dropped with
  it). A row whose subject is under a legal hold owes nothing and is not counted;
- `forecast`: rows with a stage falling due after `now` and at most `horizon` later, per
  (table, action, horizon), for each of `horizons` (cumulative: a row due tomorrow is in
  every horizon of a day or more); held subjects' rows are left out;
- `unconfirmed`: anonymise and delete commands sent and not seen applied yet, per (table,
  action), and the earliest first send per table (`oldest_unconfirmed`);
- `holds`: open legal holds, per table of the hold rows.

Pure and linear in the rows; the worker takes it every LETHE_CENSUS_INTERVAL seconds per
partition, never per event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, TypeVar

from policy.engine import Engine
from policy.instants import US_PER_DAY, Instant
from policy.model import Action
from policy.plans import ACTION_OF_RANK, DELETE_RANK, DELETE_STAGE
from policy.state import RowState, SubjectState

FORECAST_DAYS: Final = (1, 7, 30)
"""The forecast's horizons, in days."""

_NO_ACTIVITY: Final[Mapping[str, Instant]] = MappingProxyType({})
K = TypeVar("K")


@dataclass(slots=True)
class Census:
    """The counts of one census (see the module docstring); add two with `merge`."""

    tracked: dict[tuple[str, str], int] = field(default_factory=dict)
    """(table, purpose) -> rows."""
    backlog: dict[tuple[str, str], int] = field(default_factory=dict)
    """(table, action) -> rows with a stage due and not issued."""
    oldest_overdue: dict[str, Instant] = field(default_factory=dict)
    """table -> the earliest due of a stage not issued (tables with a backlog only)."""
    forecast: dict[tuple[str, str, int], int] = field(default_factory=dict)
    """(table, action, horizon in days) -> rows with a stage due within the horizon."""
    unconfirmed: dict[tuple[str, str], int] = field(default_factory=dict)
    """(table, action) -> commands sent and not seen applied."""
    oldest_unconfirmed: dict[str, Instant] = field(default_factory=dict)
    """table -> the earliest first send of an unconfirmed command."""
    holds: dict[str, int] = field(default_factory=dict)
    """hold table -> open legal holds."""

    def merge(self, other: Census) -> Census:
        """The census of both parts (e.g. two partitions)."""
        return Census(
            _sum(self.tracked, other.tracked),
            _sum(self.backlog, other.backlog),
            _earliest(self.oldest_overdue, other.oldest_overdue),
            _sum(self.forecast, other.forecast),
            _sum(self.unconfirmed, other.unconfirmed),
            _earliest(self.oldest_unconfirmed, other.oldest_unconfirmed),
            _sum(self.holds, other.holds),
        )


def take_census(
    engine: Engine,
    rows: Iterable[tuple[RowState, SubjectState | None]],
    subjects: Iterable[SubjectState],
    now: Instant,
    horizons: tuple[int, ...] = FORECAST_DAYS,
) -> Census:
    """Count `rows` (each with its subject's state) and `subjects` as of `now`; `horizons`
    in days."""
    census = Census()
    tracked = census.tracked
    backlog = census.backlog
    forecast = census.forecast
    unconfirmed = census.unconfirmed
    oldest_overdue = census.oldest_overdue
    oldest_unconfirmed = census.oldest_unconfirmed
    spans = [(days, now + days * US_PER_DAY) for days in horizons]
    last = max((end for _, end in spans), default=now)
    plans = engine.plans
    for row, subject in rows:
        table = row.table
        plan = plans.get(table)
        if plan is None:
            continue
        for purpose in plan.purposes:
            tracked[table, purpose] = tracked.get((table, purpose), 0) + 1
        for entry in row.unconfirmed:
            action = (Action.DELETE if entry.stage == DELETE_STAGE else Action.ANONYMISE).value
            unconfirmed[table, action] = unconfirmed.get((table, action), 0) + 1
            if entry.issued_at < oldest_unconfirmed.get(table, entry.issued_at + 1):
                oldest_unconfirmed[table] = entry.issued_at
        if subject is not None and subject.holds:
            continue
        activity = _NO_ACTIVITY
        if plan.reads_activity and subject is not None:
            activity = subject.activity
        stages, earliest = plan.stages(row.values, activity, row.issued)
        if earliest is None or earliest > last:
            continue
        overdue = [stage for stage in stages if stage[0] <= now]
        if overdue:
            if any(stage[1] == DELETE_RANK for stage in overdue):
                overdue = [stage for stage in overdue if stage[1] == DELETE_RANK]
            for action in {ACTION_OF_RANK[stage[1]].value for stage in overdue}:
                backlog[table, action] = backlog.get((table, action), 0) + 1
            first = min(stage[0] for stage in overdue)
            if first < oldest_overdue.get(table, first + 1):
                oldest_overdue[table] = first
        for days, end in spans:
            coming = {ACTION_OF_RANK[rank].value for due, rank, *_ in stages if now < due <= end}
            for action in coming:
                forecast[table, action, days] = forecast.get((table, action, days), 0) + 1
    holds = census.holds
    for state in subjects:
        for hold in state.holds:
            table = hold.split(":", 1)[0]
            holds[table] = holds.get(table, 0) + 1
    return census


def _sum(first: dict[K, int], second: dict[K, int]) -> dict[K, int]:
    total = dict(first)
    for key, count in second.items():
        total[key] = total.get(key, 0) + count
    return total


def _earliest(first: dict[str, Instant], second: dict[str, Instant]) -> dict[str, Instant]:
    found = dict(first)
    for key, instant in second.items():
        if key not in found or instant < found[key]:
            found[key] = instant
    return found
