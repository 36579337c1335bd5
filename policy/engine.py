"""The retention engine: pure steps over row and subject states.

A driver (the stream processor, or `lethe simulate`) keeps a row state per
(subject, table, key), a subject state per subject, and a timer per row:
- `apply(policy, row, subject, event)` folds one change event in and returns a
  `Step`: the new row state (None once the row is gone or not tracked), the new
  subject state, the row's next due instant, and whether the subject's other rows
  must be re-evaluated (its activity or its holds changed);
- `due(policy, row, subject, now)` issues every stage due at or before `now` that
  was not issued yet (nothing while the subject is held) and returns the commands,
  the new row state and the next due instant;
- `next_due(policy, row, subject)` re-arms a row's timer after its subject changed.

How a row's stages are combined from its rules (one rule per purpose):
- delete at the latest of the rules' delete dues, once every rule has a running
  delete; archive when every rule is past its active phase (its archive due, or
  its delete due without an archive stage), if that is before the delete;
- a rule's own anonymise stages at their dues, if before the delete;
- when a rule's delete falls before the row's delete, the columns only ended
  rules `needs` (and no clock reads) are anonymised then, naming the ended purposes;
- once a stage is issued it is never issued again for that row; when the delete
  is issued together with earlier stages (an overdue row), those are dropped.
`issued_at` is the due time, or the later time the engine learnt the stage was
due: the row's last change (first sighting of an overdue row, an update that moved
the clock into the past) or the subject's last change (release of its last hold).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Final

from policy.debezium import ChangeEvent, Key, Op, Value
from policy.instants import EPOCH, Instant, add_months, from_datetime
from policy.model import (
    Action,
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
    Source,
    SubjectActivity,
    When,
)
from policy.state import EMPTY_SUBJECT, Command, RowState, StateValue, SubjectState

__all__ = [
    "Step",
    "apply",
    "due",
    "event_subject",
    "hold_id",
    "next_due",
    "reads_activity",
    "subject_of",
]

Values = Mapping[str, StateValue]
Activity = Mapping[str, Instant]
ClockFn = Callable[[Values, Activity, Instant], Instant | None]
ConditionFn = Callable[[Values], bool]

_NO_ACTIVITY: Final[Mapping[str, Instant]] = {}
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_US_PER_DAY: Final = 86_400_000_000
_NEVER: Final = -(2**62)
_ONE_US: Final = datetime.resolution
_ANONYMISE_RANK: Final = 0
_ARCHIVE_RANK: Final = 1
_DELETE_RANK: Final = 2

ARCHIVE_STAGE: Final = "archive"
DELETE_STAGE: Final = "delete"


@dataclass(frozen=True, slots=True)
class Step:
    """The result of applying one change event."""

    row: RowState | None
    """The new row state; None when the row is gone (op d) or its table keeps no state."""
    subject: SubjectState | None
    """The new subject state; None for a row without subject."""
    next_due: Instant | None
    """When the row's next stage falls due; None: nothing pending (or the subject is held)."""
    reevaluate_subject: bool
    """The subject's activity or holds changed: re-arm its other rows with `next_due`."""
    subject_key: str | None
    """The subject the row belongs to now (`customer:42`), or None."""


# --- compiled policy -----------------------------------------------------------------------

Pending = tuple[Instant, int, str, Action, tuple[str, ...], tuple[str, ...]]
"""(due, rank, stage id, action, purposes, fields): one stage not issued yet."""


@dataclass(frozen=True, slots=True)
class _RuleClocks:
    purpose: str
    archive: ClockFn | None
    delete: ClockFn | None
    anonymise: tuple[tuple[str, ClockFn, tuple[str, ...]], ...]
    needs: frozenset[str]


@dataclass(frozen=True, slots=True)
class _SourcePlan:
    source: Source
    rules: tuple[_RuleClocks, ...]
    purposes: tuple[str, ...]
    reads: tuple[str, ...]
    tracked: bool
    has_archive: bool
    anonymisable: tuple[str, ...]
    """Columns early anonymisation may touch: not the key, not read by any clock."""
    reads_activity: bool
    """Some clock of this source reads the subject's activity."""


class _Compiled:
    __slots__ = ("plans", "policy")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.plans = {table: _plan_source(policy, s) for table, s in policy.sources.items()}


_cache: dict[int, _Compiled] = {}
_last: _Compiled | None = None


def _compiled(policy: Policy) -> _Compiled:
    global _last
    last = _last
    if last is not None and last.policy is policy:
        return last
    found = _cache.get(id(policy))
    if found is None or found.policy is not policy:
        found = _Compiled(policy)
        if len(_cache) > 16:
            _cache.clear()
        _cache[id(policy)] = found
    _last = found
    return found


def _plan(policy: Policy, table: str) -> _SourcePlan:
    return _compiled(policy).plans[table]


def _plan_source(policy: Policy, source: Source) -> _SourcePlan:
    reads: dict[str, None] = {}
    rules: list[_RuleClocks] = []
    for rule in source.rules:
        archive = delete = None
        anonymise: list[tuple[str, ClockFn, tuple[str, ...]]] = []
        for index, stage in enumerate(rule.stages):
            _collect_reads(stage.due, reads)
            fn = _compile_clock(policy, stage.due)
            if stage.action is Action.ARCHIVE and archive is None:
                archive = fn
            elif stage.action is Action.DELETE and delete is None:
                delete = fn
            elif stage.action is Action.ANONYMISE:
                stage_id = f"anonymise:{rule.purpose}:{index}"
                anonymise.append((stage_id, fn, tuple(f.column for f in stage.fields)))
        rules.append(
            _RuleClocks(rule.purpose, archive, delete, tuple(anonymise), frozenset(rule.needs))
        )
    anonymisable = tuple(
        c for c in source.columns if c not in source.primary_key and c not in reads
    )
    return _SourcePlan(
        source=source,
        rules=tuple(rules),
        purposes=tuple(r.purpose for r in source.rules),
        reads=tuple(reads),
        tracked=bool(source.rules) or source.hold is not None,
        has_archive=any(r.archive is not None for r in rules),
        anonymisable=anonymisable,
        reads_activity=any(
            _uses_activity(stage.due) for rule in source.rules for stage in rule.stages
        ),
    )


def _uses_activity(clock: Clock | None) -> bool:
    if isinstance(clock, SubjectActivity):
        return True
    if isinstance(clock, After):
        return _uses_activity(clock.start)
    if isinstance(clock, Earliest | Latest):
        return any(_uses_activity(operand) for operand in clock.operands)
    if isinstance(clock, When):
        return _uses_activity(clock.then) or _uses_activity(clock.otherwise)
    return False


def _collect_reads(clock: Clock | Condition | None, reads: dict[str, None]) -> None:
    if isinstance(clock, ColumnInstant | IsSet | Equals):
        reads[clock.column] = None
    elif isinstance(clock, After):
        _collect_reads(clock.start, reads)
    elif isinstance(clock, Earliest | Latest):
        for operand in clock.operands:
            _collect_reads(operand, reads)
    elif isinstance(clock, When):
        _collect_reads(clock.condition, reads)
        _collect_reads(clock.then, reads)
        _collect_reads(clock.otherwise, reads)
    elif isinstance(clock, Not):
        _collect_reads(clock.condition, reads)
    elif isinstance(clock, AllOf | AnyOf):
        for condition in clock.conditions:
            _collect_reads(condition, reads)


def _not_running(values: Values, activity: Activity, changed: Instant) -> Instant | None:
    return None


def _compile_clock(policy: Policy, clock: Clock | None) -> ClockFn:
    """Turn a clock expression into a closure over (values, activity, change time)."""
    if clock is None:
        return _not_running
    if isinstance(clock, ColumnInstant):
        column = clock.column

        def column_instant(values: Values, activity: Activity, changed: Instant) -> Instant | None:
            value = values.get(column)
            return value if type(value) is int else None

        return column_instant
    if isinstance(clock, SubjectActivity):
        name = clock.activity

        def subject_activity(
            values: Values, activity: Activity, changed: Instant
        ) -> Instant | None:
            return activity.get(name)

        return subject_activity
    if isinstance(clock, ChangeTime):

        def change_time(values: Values, activity: Activity, changed: Instant) -> Instant | None:
            return changed

        return change_time
    if isinstance(clock, After):
        return _compile_after(policy, clock)
    if isinstance(clock, Earliest | Latest):
        operands = tuple(_compile_clock(policy, operand) for operand in clock.operands)
        pick = min if isinstance(clock, Earliest) else max

        def combined(values: Values, activity: Activity, changed: Instant) -> Instant | None:
            running = [
                t for t in (fn(values, activity, changed) for fn in operands) if t is not None
            ]
            return pick(running) if running else None

        return combined
    condition = _compile_condition(clock.condition)
    then = _compile_clock(policy, clock.then)
    otherwise = _compile_clock(policy, clock.otherwise)

    def when(values: Values, activity: Activity, changed: Instant) -> Instant | None:
        if condition(values):
            return then(values, activity, changed)
        return otherwise(values, activity, changed)

    return when


def _compile_after(policy: Policy, clock: After) -> ClockFn:
    period = policy.period(clock.period)
    months = period.months
    exact = period.days * _US_PER_DAY + period.seconds * 1_000_000
    if isinstance(clock.start, ColumnInstant):
        return _after_column(clock.start.column, months, exact)
    start = _compile_clock(policy, clock.start)
    if not months:

        def after_exact(values: Values, activity: Activity, changed: Instant) -> Instant | None:
            begin = start(values, activity, changed)
            return None if begin is None else begin + exact

        return after_exact

    def after_calendar(values: Values, activity: Activity, changed: Instant) -> Instant | None:
        begin = start(values, activity, changed)
        return None if begin is None else add_months(begin, months) + exact

    return after_calendar


def _after_column(column: str, months: int, exact: int) -> ClockFn:
    """`After(ColumnInstant(column), period)`, the most common clock, in one closure."""
    if not months:

        def after_column_exact(
            values: Values, activity: Activity, changed: Instant
        ) -> Instant | None:
            begin = values.get(column)
            return begin + exact if type(begin) is int else None

        return after_column_exact

    def after_column(values: Values, activity: Activity, changed: Instant) -> Instant | None:
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


# --- subjects ------------------------------------------------------------------------------


def subject_of(source: Source, image: Mapping[str, Value]) -> str | None:
    """The subject a row image is about (`customer:42`, `email:a@b.example`), or None."""
    for way in source.subject:
        value = image.get(way.column)
        if value is None or value == "":
            continue
        text = str(value)
        return f"{way.kind}:{text.lower() if way.lower else text}"
    return None


def event_subject(policy: Policy, row: RowState | None, event: ChangeEvent) -> str | None:
    """The subject whose state `apply` needs for this event (a delete keeps the row's)."""
    source = policy.sources[event.table]
    if event.op is Op.DELETE:
        if row is not None:
            return row.subject
        return subject_of(source, event.before or {})
    return subject_of(source, event.after or {})


def reads_activity(policy: Policy, table: str) -> bool:
    """Whether the rows of `table` must be re-armed when their subject's activity changes."""
    return _plan(policy, table).reads_activity


def hold_id(table: str, key: Key) -> str:
    """How a hold row is named in its subject's state: `public.legal_holds:7`."""
    return table + ":" + ",".join(str(value) for _, value in key)


# --- apply ---------------------------------------------------------------------------------


def _state_value(value: Value) -> StateValue:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime):
        return from_datetime(value)
    if isinstance(value, date):
        return (value.toordinal() - _EPOCH_ORDINAL) * _US_PER_DAY
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return None


def _read_values(reads: tuple[str, ...], image: Mapping[str, Value]) -> dict[str, StateValue]:
    """The columns the rules read, as state values; nulls are left out (absent = null)."""
    values: dict[str, StateValue] = {}
    for column in reads:
        value = image.get(column)
        if value is None:
            continue
        if isinstance(value, datetime) and value.tzinfo is not None:
            values[column] = (value - EPOCH) // _ONE_US
        elif isinstance(value, str | int):
            values[column] = value
        else:
            values[column] = _state_value(value)
    return values


def _instant(value: Value) -> Instant | None:
    if isinstance(value, datetime):
        return (value - EPOCH) // _ONE_US if value.tzinfo is not None else from_datetime(value)
    if isinstance(value, date):
        return (value.toordinal() - _EPOCH_ORDINAL) * _US_PER_DAY
    return None


def apply(
    policy: Policy, row: RowState | None, subject: SubjectState | None, event: ChangeEvent
) -> Step:
    """Fold one change event into the row's and its subject's state."""
    plan = _plan(policy, event.table)
    source = plan.source
    deleting = event.op is Op.DELETE
    if deleting:
        image = event.before or {}
        subject_key = row.subject if row is not None else subject_of(source, image)
    else:
        image = event.after or {}
        subject_key = subject_of(source, image)

    new_subject = None
    reevaluate = False
    if subject_key is not None:
        new_subject = subject if subject is not None else EMPTY_SUBJECT
        if source.activity and not deleting:
            known = new_subject.activity
            activity: dict[str, Instant] | None = None
            for feed in source.activity:
                moment = _instant(image.get(feed.column))
                if moment is not None and moment > known.get(feed.activity, _NEVER):
                    if activity is None:
                        activity = dict(known)
                    activity[feed.activity] = moment
            if activity is not None:
                reevaluate = True
                new_subject = SubjectState(
                    activity, new_subject.holds, new_subject.released_at, event.ts
                )
        if source.hold is not None:
            hold = hold_id(source.table, event.key)
            is_open = not deleting and image.get(source.hold.released_column) is None
            if is_open and hold not in new_subject.holds:
                new_subject = SubjectState(
                    new_subject.activity,
                    new_subject.holds | {hold},
                    new_subject.released_at,
                    event.ts,
                )
                reevaluate = True
            elif not is_open and hold in new_subject.holds:
                holds = new_subject.holds - {hold}
                new_subject = SubjectState(
                    new_subject.activity,
                    holds,
                    event.ts if not holds else new_subject.released_at,
                    event.ts,
                )
                reevaluate = True

    if deleting or not plan.tracked:
        return Step(None, new_subject, None, reevaluate, subject_key)
    new_row = RowState(
        source.table,
        event.key,
        subject_key,
        _read_values(plan.reads, image),
        event.ts,
        row.first_seen if row is not None else event.ts,
        row.issued if row is not None else frozenset(),
    )
    return Step(
        new_row, new_subject, _next_due(plan, new_row, new_subject), reevaluate, subject_key
    )


# --- due -----------------------------------------------------------------------------------


_memo: tuple[_SourcePlan | None, RowState | None, SubjectState | None, list[Pending]] = (
    None,
    None,
    None,
    [],
)


def _stages(plan: _SourcePlan, row: RowState, subject: SubjectState | None) -> list[Pending]:
    """The row's stages not issued yet, each with its due instant.

    States are immutable, so the last answer is reused when `due` follows `apply` on the
    very same row and subject objects (the common path of a driver).
    """
    global _memo
    last_plan, last_row, last_subject, last = _memo
    if row is last_row and subject is last_subject and plan is last_plan:
        return last
    pending = _compute_stages(plan, row, subject)
    _memo = (plan, row, subject, pending)
    return pending


def _compute_stages(
    plan: _SourcePlan, row: RowState, subject: SubjectState | None
) -> list[Pending]:
    issued = row.issued
    if DELETE_STAGE in issued or not plan.rules:
        return []
    values = row.values
    activity = subject.activity if subject is not None else _NO_ACTIVITY
    changed = row.changed_at
    rules = plan.rules
    pending: list[Pending] = []

    if len(rules) == 1:
        rule = rules[0]
        delete = rule.delete(values, activity, changed) if rule.delete is not None else None
        archive = (
            rule.archive(values, activity, changed)
            if rule.archive is not None and ARCHIVE_STAGE not in issued
            else None
        )
    else:
        dues = [
            (
                r,
                r.archive(values, activity, changed) if r.archive is not None else None,
                r.delete(values, activity, changed) if r.delete is not None else None,
            )
            for r in rules
        ]
        delete = _latest_of_all([d for _, _, d in dues])
        archive = None
        if plan.has_archive and ARCHIVE_STAGE not in issued:
            archive = _latest_of_all([a if r.archive is not None else d for r, a, d in dues])
        _early_anonymisation(plan, dues, delete, issued, pending)

    if delete is not None:
        pending.append((delete, _DELETE_RANK, DELETE_STAGE, Action.DELETE, plan.purposes, ()))
    if archive is not None and (delete is None or archive < delete):
        pending.append((archive, _ARCHIVE_RANK, ARCHIVE_STAGE, Action.ARCHIVE, plan.purposes, ()))
    for rule in rules:
        for stage_id, clock, fields in rule.anonymise:
            if stage_id in issued:
                continue
            at = clock(values, activity, changed)
            if at is not None and (delete is None or at < delete):
                pending.append(
                    (at, _ANONYMISE_RANK, stage_id, Action.ANONYMISE, (rule.purpose,), fields)
                )
    return pending


def _latest_of_all(instants: list[Instant | None]) -> Instant | None:
    """The latest instant, or None when any of them is not running."""
    latest = _NEVER
    for instant in instants:
        if instant is None:
            return None
        if instant > latest:
            latest = instant
    return latest


def _early_anonymisation(
    plan: _SourcePlan,
    dues: list[tuple[_RuleClocks, Instant | None, Instant | None]],
    delete: Instant | None,
    issued: frozenset[str],
    pending: list[Pending],
) -> None:
    """Columns only ended rules need are anonymised when those rules end before the row."""
    ends = sorted({d for _, _, d in dues if d is not None and (delete is None or d < delete)})
    done: set[str] = set()
    for at in ends:
        ended = [r for r, _, d in dues if d is not None and d <= at]
        still = [r for r, _, d in dues if d is None or d > at]
        if any(not r.needs for r in still):
            return
        kept = set().union(*(r.needs for r in still))
        wanted = set().union(*(r.needs or plan.anonymisable for r in ended))
        fields = tuple(
            c for c in plan.anonymisable if c in wanted and c not in kept and c not in done
        )
        done.update(fields)
        now_ended = tuple(r.purpose for r, _, d in dues if d == at)
        stage_id = "ended:" + ",".join(sorted(now_ended))
        if fields and stage_id not in issued:
            pending.append((at, _ANONYMISE_RANK, stage_id, Action.ANONYMISE, now_ended, fields))


def _next_due(plan: _SourcePlan, row: RowState, subject: SubjectState | None) -> Instant | None:
    if subject is not None and subject.holds:
        return None
    stages = _stages(plan, row, subject)
    return min(stage[0] for stage in stages) if stages else None


def next_due(policy: Policy, row: RowState, subject: SubjectState | None) -> Instant | None:
    """When the row's next stage falls due; None when nothing is pending or it is held."""
    return _next_due(_plan(policy, row.table), row, subject)


def due(
    policy: Policy, row: RowState, subject: SubjectState | None, now: Instant
) -> tuple[list[Command], RowState, Instant | None]:
    """Issue the row's stages due at or before `now`; nothing while its subject is held."""
    if subject is not None and subject.holds:
        return [], row, None
    stages = _stages(_plan(policy, row.table), row, subject)
    firing = sorted(stage for stage in stages if stage[0] <= now)
    if not firing:
        return [], row, min(stage[0] for stage in stages) if stages else None
    learnt = row.changed_at
    if subject is not None and subject.changed_at is not None and subject.changed_at > learnt:
        learnt = subject.changed_at
    deleting = any(stage[3] is Action.DELETE for stage in firing)
    commands = [
        Command(
            at if at > learnt else learnt,
            at,
            action,
            row.table,
            row.key,
            row.subject,
            purposes,
            fields,
        )
        for at, _, _, action, purposes, fields in firing
        if not deleting or action is Action.DELETE
    ]
    new_row = RowState(
        row.table,
        row.key,
        row.subject,
        row.values,
        row.changed_at,
        row.first_seen,
        row.issued | {stage[2] for stage in firing},
    )
    if deleting:
        return commands, new_row, None
    later = [stage[0] for stage in stages if stage[0] > now]
    return commands, new_row, min(later) if later else None
