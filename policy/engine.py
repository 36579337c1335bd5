"""The retention engine: pure steps over row and subject states.

The policy is compiled once into an immutable `Engine` (`engine = Engine.compile(policy)`,
at worker start or per `lethe simulate` run); nothing is cached at module level.
A driver (the stream processor, or `lethe simulate`) keeps a row state per
(subject, table, key), a subject state per subject, and a timer per row:
- `apply(engine, row, subject, event, left)` folds one change event in and returns a
  `Step`: the new row state (None once the row is gone or not tracked), the new
  subject state, the row's next due instant, and whether the subject's other rows
  must be re-evaluated (its activity or its holds changed). When the event moves the
  row to another subject (a hold moved to another customer, a contact that gained a
  customer id, a survey whose customer id was emptied), `left` is the state of the
  subject the row leaves: the Step says so (`moved`, so the driver deletes the row's
  old key), names it (`left_subject`), gives its new state (a hold the row was is
  released there at the event's time) and says whether its rows must be re-evaluated
  (`reevaluate_left`);
- `due(engine, row, subject, now)` issues every stage due at or before `now` that
  was not issued yet (nothing while the subject is held) and returns the commands,
  the new row state and the next due instant (at once, without working the stages
  out again, when the row state `apply` returned says its next due is later);
- `next_due(engine, row, subject)` re-arms a row's timer after its subject changed;
- `decode_record(engine.decoding, topic, key, value)` (in `policy.decoding`) turns a
  Debezium record into the `ChangeEvent` that `apply` takes.

How a row's stages are combined from its rules (one rule per purpose):
- delete at the latest of the rules' delete dues, once every rule has a running
  delete; archive when every rule is past its active phase (its archive due, or
  its delete due without an archive stage), if that is before the delete;
- a rule's own anonymise stages at their dues, if before the delete;
- when a rule's delete falls before the row's delete, the columns only ended
  rules `needs` (and no clock reads) are anonymised then, naming the ended purposes;
- once a stage is issued it is never issued again for that row while the row's values
  keep scheduling it (a clock that moves does not repeat it); an update that stops its
  clock forgets it, so it is issued anew when the clock runs again (an account closed,
  reopened and closed again is archived twice); when the delete is issued together
  with earlier stages (an overdue row), those are dropped.
"At once" (`at_once`) is the instant its condition (the `when` around it) first
became true for the row, kept in the row state while the condition holds: later
updates do not move it. A command's `issued_at` is max(its due, `now`): the time the
enforcer sends it. A driver calls `due` when a row's timer fires (now = the due
time), right after the event that made a stage due (first sight of an overdue row,
an update that moved a clock into the past) and after the release of a subject's
last hold (now = that event's time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from policy.decoding import Decoding
from policy.events import ChangeEvent, Key, Op, Value
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
from policy.state import (
    EMPTY_SUBJECT,
    Command,
    PendingStage,
    RowState,
    Schedule,
    StateValue,
    SubjectState,
    build_row_state,
)

__all__ = [
    "Engine",
    "SourcePlan",
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
ClockFn = Callable[[Values, Activity], Instant | None]
ConditionFn = Callable[[Values], bool]

_NO_ACTIVITY: Final[Mapping[str, Instant]] = MappingProxyType({})
_NO_IMAGE: Final[Mapping[str, Value]] = MappingProxyType({})
_NOTHING_ISSUED: Final[frozenset[str]] = frozenset()
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_US_PER_DAY: Final = 86_400_000_000
_NEVER: Final = -(2**62)
_ONE_US: Final = datetime.resolution
_ANONYMISE_RANK: Final = 0
_ARCHIVE_RANK: Final = 1
_DELETE_RANK: Final = 2
_ACTION_OF_RANK: Final = (Action.ANONYMISE, Action.ARCHIVE, Action.DELETE)
_DELETE_OP: Final = Op.DELETE
_PLAIN_TYPES: Final = (str, bool, int, float)
_TEXT_OR_INT: Final = (str, int)

ARCHIVE_STAGE: Final = "archive"
AT_ONCE_PREFIX: Final = "@"
"""Row values under `@<n>` (never a column name) keep since when an `at_once` condition holds."""
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
    holds_changed: bool = False
    """The subject's open holds changed (a hold placed or released): re-arm every row of
    the subject, not only those reading its activity."""
    moved: bool = False
    """The event moved the row to another subject (from or to none included): the driver
    deletes the row's state under its old key, (`left_subject`, table, key)."""
    left_subject: str | None = None
    """The subject the row belonged to before it moved (None: it had none, or did not move)."""
    left_state: SubjectState | None = None
    """The new state of `left_subject` (a hold the row was is released there)."""
    reevaluate_left: bool = False
    """`left_subject`'s holds changed: re-arm its rows with `next_due`."""


# --- compiled policy -----------------------------------------------------------------------

Pending = PendingStage
StagesFn = Callable[[Values, Activity, frozenset[str]], tuple[tuple[Pending, ...], Instant | None]]
"""(values, activity, issued) -> (stages not issued yet, the earliest due)."""
UpcomingFn = Callable[[Values, Activity, frozenset[str]], Instant | None]
Guard = tuple[tuple[Condition, bool], ...]
"""The conditions (and whether each must hold or not) of the `when`s around an `at_once`."""


@dataclass(frozen=True, slots=True)
class _RuleClocks:
    purpose: str
    archive: ClockFn | None
    delete: ClockFn | None
    anonymise: tuple[tuple[str, ClockFn, tuple[str, ...]], ...]
    needs: frozenset[str]


@dataclass(frozen=True, slots=True)
class SourcePlan:
    """One source's rules compiled to closures over the row's values."""

    source: Source
    rules: tuple[_RuleClocks, ...]
    purposes: tuple[str, ...]
    reads: tuple[str, ...]
    """The columns the clocks and conditions read: what a row state keeps."""
    tracked: bool
    has_archive: bool
    anonymisable: tuple[str, ...]
    """Columns early anonymisation may touch: not the key, not read by any clock."""
    reads_activity: bool
    """Some clock of this source reads the subject's activity."""
    table: str
    changes_subject: bool
    """Its rows feed the subject's activity or are legal holds."""
    token: object
    """This plan's mark on the row schedules it works out (an object the GC does not track)."""
    subject_ways: tuple[tuple[str, str, bool], ...]
    """(column, `kind:` prefix, lower-case it) per way of naming the subject, in order."""
    stages: StagesFn
    """The row's stages not issued yet, and the earliest of their dues."""
    upcoming: UpcomingFn
    """Only the earliest due of those stages (what `apply` needs), without building them."""
    at_once: tuple[tuple[str, ConditionFn], ...]
    """Per `at_once` condition: the values key (`@0`) that keeps since when it holds."""


@dataclass(frozen=True, slots=True)
class Engine:
    """The policy compiled once for the hot path: `engine = Engine.compile(policy)`.

    Immutable and free of caches: build it at worker start (or per `lethe simulate`
    run) and pass it to `apply`, `due`, `next_due`; `engine.decoding` decodes the
    Debezium records of the policy's topics (`decode_record`, `decode_raw`).
    """

    policy: Policy
    plans: Mapping[str, SourcePlan]
    """Per source table (`public.orders`), its compiled rules."""
    decoding: Decoding

    @classmethod
    def compile(cls, policy: Policy) -> Engine:
        plans = {table: _plan_source(policy, s) for table, s in policy.sources.items()}
        return cls(policy, MappingProxyType(plans), Decoding.compile(policy))


def _plan_source(policy: Policy, source: Source) -> SourcePlan:
    reads: dict[str, None] = {}
    rules: list[_RuleClocks] = []
    slots: dict[Guard, str] = {}
    for rule in source.rules:
        archive = delete = None
        anonymise: list[tuple[str, ClockFn, tuple[str, ...]]] = []
        for index, stage in enumerate(rule.stages):
            _collect_reads(stage.due, reads)
            fn = _compile_clock(policy, stage.due, (), slots)
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
    compiled = tuple(rules)
    purposes = tuple(r.purpose for r in source.rules)
    has_archive = any(r.archive is not None for r in rules)
    stages = _compile_stages(compiled, purposes, has_archive, anonymisable)
    return SourcePlan(
        source=source,
        rules=compiled,
        purposes=purposes,
        reads=tuple(reads),
        tracked=bool(source.rules) or source.hold is not None,
        has_archive=has_archive,
        anonymisable=anonymisable,
        reads_activity=any(
            _uses_activity(stage.due) for rule in source.rules for stage in rule.stages
        ),
        table=source.table,
        changes_subject=bool(source.activity) or source.hold is not None,
        token=object(),
        subject_ways=tuple((way.column, way.kind + ":", way.lower) for way in source.subject),
        stages=stages,
        upcoming=_compile_upcoming(compiled, stages, has_archive, anonymisable),
        at_once=tuple((key, _compile_guard(guard)) for guard, key in slots.items()),
    )


def _compile_guard(guard: Guard) -> ConditionFn:
    if not guard:
        return _always
    return _compile_condition(
        AllOf(tuple(condition if holds else Not(condition) for condition, holds in guard))
    )


def _always(values: Values) -> bool:
    return True


def _no_stages(
    values: Values, activity: Activity, issued: frozenset[str]
) -> tuple[tuple[Pending, ...], Instant | None]:
    return (), None


def _compile_stages(
    rules: tuple[_RuleClocks, ...],
    purposes: tuple[str, ...],
    has_archive: bool,
    anonymisable: tuple[str, ...],
) -> StagesFn:
    """How a source's rules combine into a row's pending stages (see the module docstring)."""
    if not rules:
        return _no_stages
    if len(rules) == 1 and not rules[0].anonymise:
        return _single_rule_stages(rules[0], purposes)

    def stages(
        values: Values, activity: Activity, issued: frozenset[str]
    ) -> tuple[tuple[Pending, ...], Instant | None]:
        if DELETE_STAGE in issued:
            return (), None
        pending: list[Pending] = []
        if len(rules) == 1:
            rule = rules[0]
            delete = rule.delete(values, activity) if rule.delete is not None else None
            archive = (
                rule.archive(values, activity)
                if rule.archive is not None and ARCHIVE_STAGE not in issued
                else None
            )
        else:
            dues, delete, archive = _combined_dues(rules, has_archive, values, activity, issued)
            _early_anonymisation(anonymisable, dues, delete, issued, pending)

        if delete is not None:
            pending.append((delete, _DELETE_RANK, DELETE_STAGE, purposes, ()))
        if archive is not None and (delete is None or archive < delete):
            pending.append((archive, _ARCHIVE_RANK, ARCHIVE_STAGE, purposes, ()))
        for rule in rules:
            for stage_id, clock, fields in rule.anonymise:
                if stage_id in issued:
                    continue
                at = clock(values, activity)
                if at is not None and (delete is None or at < delete):
                    pending.append((at, _ANONYMISE_RANK, stage_id, (rule.purpose,), fields))
        if not pending:
            return (), None
        return tuple(pending), min(stage[0] for stage in pending)

    return stages


def _compile_upcoming(
    rules: tuple[_RuleClocks, ...],
    stages: StagesFn,
    has_archive: bool,
    anonymisable: tuple[str, ...],
) -> UpcomingFn:
    if len(rules) > 1:
        return _several_rules_upcoming(rules, has_archive, anonymisable)
    if not rules or rules[0].anonymise:

        def earliest(values: Values, activity: Activity, issued: frozenset[str]) -> Instant | None:
            return stages(values, activity, issued)[1]

        return earliest
    rule = rules[0]
    delete_fn = rule.delete if rule.delete is not None else _not_running
    archive_fn = rule.archive

    def single_rule_upcoming(
        values: Values, activity: Activity, issued: frozenset[str]
    ) -> Instant | None:
        if DELETE_STAGE in issued:
            return None
        delete = delete_fn(values, activity)
        if archive_fn is None or ARCHIVE_STAGE in issued:
            return delete
        archive = archive_fn(values, activity)
        if delete is None or (archive is not None and archive < delete):
            return archive
        return delete

    return single_rule_upcoming


def _several_rules_upcoming(
    rules: tuple[_RuleClocks, ...], has_archive: bool, anonymisable: tuple[str, ...]
) -> UpcomingFn:
    """The earliest due `_compile_stages` would give, working out early anonymisation only
    when a rule ends before every other pending stage (it can only be due at such an end)."""

    def several_rules_upcoming(
        values: Values, activity: Activity, issued: frozenset[str]
    ) -> Instant | None:
        if DELETE_STAGE in issued:
            return None
        dues, delete, archive = _combined_dues(rules, has_archive, values, activity, issued)
        earliest = delete
        if archive is not None and (delete is None or archive < delete):
            earliest = archive
        for rule in rules:
            for stage_id, clock, _ in rule.anonymise:
                if stage_id in issued:
                    continue
                at = clock(values, activity)
                if (
                    at is not None
                    and (delete is None or at < delete)
                    and (earliest is None or at < earliest)
                ):
                    earliest = at
        ends = [d for _, _, d in dues if d is not None and (earliest is None or d < earliest)]
        if ends:
            early: list[Pending] = []
            _early_anonymisation(anonymisable, dues, delete, issued, early)
            for stage in early:
                if earliest is None or stage[0] < earliest:
                    earliest = stage[0]
        return earliest

    return several_rules_upcoming


def _single_rule_stages(rule: _RuleClocks, purposes: tuple[str, ...]) -> StagesFn:
    """The common case: one rule, an optional archive before an optional delete."""
    delete_fn = rule.delete if rule.delete is not None else _not_running
    archive_fn = rule.archive

    def single_rule(
        values: Values, activity: Activity, issued: frozenset[str]
    ) -> tuple[tuple[Pending, ...], Instant | None]:
        if DELETE_STAGE in issued:
            return (), None
        delete = delete_fn(values, activity)
        archive = (
            archive_fn(values, activity)
            if archive_fn is not None and ARCHIVE_STAGE not in issued
            else None
        )
        if delete is None:
            if archive is None:
                return (), None
            return ((archive, _ARCHIVE_RANK, ARCHIVE_STAGE, purposes, ()),), archive
        deleting = (delete, _DELETE_RANK, DELETE_STAGE, purposes, ())
        if archive is not None and archive < delete:
            return (
                (deleting, (archive, _ARCHIVE_RANK, ARCHIVE_STAGE, purposes, ())),
                archive,
            )
        return (deleting,), delete

    return single_rule


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


def _not_running(values: Values, activity: Activity) -> Instant | None:
    return None


def _compile_clock(
    policy: Policy, clock: Clock | None, guard: Guard, slots: dict[Guard, str]
) -> ClockFn:
    """Turn a clock expression into a closure over (values, activity).

    `guard` is the conditions of the `when`s around `clock`; an `at_once` inside reads
    the values key `slots` gives its guard (since when that guard has held).
    """
    if clock is None:
        return _not_running
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
        operands = tuple(
            _compile_clock(policy, operand, guard, slots) for operand in clock.operands
        )
        pick = min if isinstance(clock, Earliest) else max

        def combined(values: Values, activity: Activity) -> Instant | None:
            running = [t for t in (fn(values, activity) for fn in operands) if t is not None]
            return pick(running) if running else None

        return combined
    condition = _compile_condition(clock.condition)
    then = _compile_clock(policy, clock.then, (*guard, (clock.condition, True)), slots)
    otherwise = _compile_clock(policy, clock.otherwise, (*guard, (clock.condition, False)), slots)

    def when(values: Values, activity: Activity) -> Instant | None:
        if condition(values):
            return then(values, activity)
        return otherwise(values, activity)

    return when


def _compile_after(policy: Policy, clock: After, guard: Guard, slots: dict[Guard, str]) -> ClockFn:
    period = policy.period(clock.period)
    months = period.months
    exact = period.days * _US_PER_DAY + period.seconds * 1_000_000
    if isinstance(clock.start, ColumnInstant):
        return _after_column(clock.start.column, months, exact)
    start = _compile_clock(policy, clock.start, guard, slots)
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


def _subject_in(ways: tuple[tuple[str, str, bool], ...], image: Mapping[str, Value]) -> str | None:
    for column, prefix, lower in ways:
        value = image.get(column)
        if value is None or value == "":
            continue
        text = str(value)
        return prefix + (text.lower() if lower else text)
    return None


def event_subject(engine: Engine, row: RowState | None, event: ChangeEvent) -> str | None:
    """The subject whose state `apply` needs for this event (a delete keeps the row's)."""
    ways = engine.plans[event.table].subject_ways
    if event.op is _DELETE_OP:
        if row is not None:
            return row.subject
        return _subject_in(ways, event.before or _NO_IMAGE)
    return _subject_in(ways, event.after or _NO_IMAGE)


def reads_activity(engine: Engine, table: str) -> bool:
    """Whether the rows of `table` must be re-armed when their subject's activity changes."""
    return engine.plans[table].reads_activity


def hold_id(table: str, key: Key) -> str:
    """How a hold row is named in its subject's state: `public.legal_holds:7`."""
    return table + ":" + ",".join(str(value) for _, value in key)


# --- apply ---------------------------------------------------------------------------------


def _state_value(value: Value) -> StateValue:
    if value is None or isinstance(value, _PLAIN_TYPES):
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
        if type(value) is datetime and value.tzinfo is not None:
            values[column] = (value - EPOCH) // _ONE_US
        elif isinstance(value, _TEXT_OR_INT):
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


_new = object.__new__
(
    _set_step_row,
    _set_step_subject,
    _set_step_due,
    _set_step_reevaluate,
    _set_step_key,
    _set_step_holds_changed,
    _set_step_moved,
    _set_step_left,
    _set_step_left_state,
    _set_step_reevaluate_left,
) = (
    Step.__dict__[name].__set__
    for name in (
        "row",
        "subject",
        "next_due",
        "reevaluate_subject",
        "subject_key",
        "holds_changed",
        "moved",
        "left_subject",
        "left_state",
        "reevaluate_left",
    )
)


def _step(
    row: RowState | None,
    subject: SubjectState | None,
    upcoming: Instant | None,
    reevaluate: bool,
    subject_key: str | None,
    holds_changed: bool = False,
    moved: bool = False,
    left_subject: str | None = None,
    left_state: SubjectState | None = None,
    reevaluate_left: bool = False,
) -> Step:
    """`Step(...)` without the frozen dataclass's per-field `object.__setattr__` cost."""
    step: Step = _new(Step)
    _set_step_row(step, row)
    _set_step_subject(step, subject)
    _set_step_due(step, upcoming)
    _set_step_reevaluate(step, reevaluate)
    _set_step_key(step, subject_key)
    _set_step_holds_changed(step, holds_changed)
    _set_step_moved(step, moved)
    _set_step_left(step, left_subject)
    _set_step_left_state(step, left_state)
    _set_step_reevaluate_left(step, reevaluate_left)
    return step


def _subject_change(
    source: Source, subject: SubjectState, image: Mapping[str, Value], event: ChangeEvent
) -> SubjectState | None:
    """The subject's new state when this event feeds its activity or opens/closes a hold."""
    deleting = event.op is _DELETE_OP
    changed: SubjectState | None = None
    if source.activity and not deleting:
        known = subject.activity
        activity: dict[str, Instant] | None = None
        for feed in source.activity:
            moment = _instant(image.get(feed.column))
            if moment is not None and moment > known.get(feed.activity, _NEVER):
                if activity is None:
                    activity = dict(known)
                activity[feed.activity] = moment
        if activity is not None:
            subject = changed = SubjectState(activity, subject.holds)
    if source.hold is not None:
        hold = hold_id(source.table, event.key)
        is_open = not deleting and image.get(source.hold.released_column) is None
        if is_open and hold not in subject.holds:
            changed = SubjectState(subject.activity, subject.holds | {hold})
        elif not is_open and hold in subject.holds:
            changed = SubjectState(subject.activity, subject.holds - {hold})
    return changed


def _leave(source: Source, subject: SubjectState, event: ChangeEvent) -> SubjectState | None:
    """The new state of the subject a row moves away from; None when it does not change.

    A hold the row was is released there, as if the row were deleted. The latest
    activity the row fed stays: that contact happened, and the subject state keeps
    only the latest instant per activity, not which row brought it.
    """
    if source.hold is None:
        return None
    hold = hold_id(source.table, event.key)
    if hold not in subject.holds:
        return None
    return SubjectState(subject.activity, subject.holds - {hold})


def apply(
    engine: Engine,
    row: RowState | None,
    subject: SubjectState | None,
    event: ChangeEvent,
    left: SubjectState | None = None,
) -> Step:
    """Fold one change event into the row's and its subject's state.

    `subject` is the state of `event_subject(engine, row, event)`; `left` that of
    `row.subject` when the event moves the row away from it (None: no state yet).
    """
    plan = engine.plans[event.table]
    deleting = event.op is _DELETE_OP
    if deleting:
        image = event.before or _NO_IMAGE
        subject_key = row.subject if row is not None else _subject_in(plan.subject_ways, image)
    else:
        image = event.after or _NO_IMAGE
        subject_key = _subject_in(plan.subject_ways, image)

    new_subject = None
    reevaluate = holds_changed = False
    if subject_key is not None:
        new_subject = subject if subject is not None else EMPTY_SUBJECT
        if plan.changes_subject:
            changed_subject = _subject_change(plan.source, new_subject, image, event)
            if changed_subject is not None:
                holds_changed = changed_subject.holds != new_subject.holds
                new_subject = changed_subject
                reevaluate = True

    left_key = left_state = None
    moved = reevaluate_left = False
    if row is not None and row.subject != subject_key:
        moved = True
        left_key = row.subject
        if left_key is not None:
            left_state = left if left is not None else EMPTY_SUBJECT
            released = _leave(plan.source, left_state, event)
            if released is not None:
                left_state, reevaluate_left = released, True

    if deleting or not plan.tracked:  # neither moves: a delete keeps row.subject
        return _step(None, new_subject, None, reevaluate, subject_key, holds_changed)
    values = _read_values(plan.reads, image)
    if plan.at_once:
        _keep_at_once(plan.at_once, values, row, event.ts)
    issued = row.issued if row is not None else _NOTHING_ISSUED
    if issued:
        issued = _still_scheduled(plan, values, new_subject, issued)
    schedule: Schedule
    if plan.reads_activity:
        activity_now = new_subject.activity if new_subject is not None else _NO_ACTIVITY
        upcoming = plan.upcoming(values, activity_now, issued)
        schedule = (plan.token, upcoming, activity_now)
    else:
        upcoming = plan.upcoming(values, _NO_ACTIVITY, issued)
        schedule = (plan.token, upcoming, None)
    new_row = build_row_state(plan.table, event.key, subject_key, values, issued, schedule)
    if new_subject is not None and new_subject.holds:
        upcoming = None
    return _step(
        new_row, new_subject, upcoming, reevaluate, subject_key, holds_changed, moved, left_key,
        left_state, reevaluate_left,
    )  # fmt: skip


def _still_scheduled(
    plan: SourcePlan, values: Values, subject: SubjectState | None, issued: frozenset[str]
) -> frozenset[str]:
    """The issued stages the row's new values still schedule. One whose clock stopped (an
    account reopened: `closed_at` back to null) is forgotten, so that it is issued anew
    once its clock runs again (the account closed again)."""
    activity = subject.activity if subject is not None and plan.reads_activity else _NO_ACTIVITY
    scheduled, _ = plan.stages(values, activity, _NOTHING_ISSUED)
    return issued.intersection(stage[2] for stage in scheduled)


def _keep_at_once(
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


# --- due -----------------------------------------------------------------------------------


def _upcoming(plan: SourcePlan, row: RowState, subject: SubjectState | None) -> Instant | None:
    """The row's next due: the one it carries if that still matches it, else worked out."""
    schedule = row.schedule
    if plan.reads_activity:
        activity = subject.activity if subject is not None else _NO_ACTIVITY
        if schedule is not None and schedule[0] is plan.token and schedule[2] is activity:
            return schedule[1]
        return plan.upcoming(row.values, activity, row.issued)
    if schedule is not None and schedule[0] is plan.token:
        return schedule[1]
    return plan.upcoming(row.values, _NO_ACTIVITY, row.issued)


def _combined_dues(
    rules: tuple[_RuleClocks, ...],
    has_archive: bool,
    values: Values,
    activity: Activity,
    issued: frozenset[str],
) -> tuple[
    list[tuple[_RuleClocks, Instant | None, Instant | None]], Instant | None, Instant | None
]:
    """Each rule's (archive, delete) dues, and the row's delete and archive from them: delete
    at the latest delete once every rule has one; archive once every rule is past its active
    phase (its archive, else its delete), unless archive was issued."""
    dues = [
        (
            r,
            r.archive(values, activity) if r.archive is not None else None,
            r.delete(values, activity) if r.delete is not None else None,
        )
        for r in rules
    ]
    delete = _latest_of_all([d for _, _, d in dues])
    archive = None
    if has_archive and ARCHIVE_STAGE not in issued:
        archive = _latest_of_all([a if r.archive is not None else d for r, a, d in dues])
    return dues, delete, archive


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
    anonymisable: tuple[str, ...],
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
        wanted = set().union(*(r.needs or anonymisable for r in ended))
        fields = tuple(c for c in anonymisable if c in wanted and c not in kept and c not in done)
        done.update(fields)
        now_ended = tuple(r.purpose for r, _, d in dues if d == at)
        stage_id = "ended:" + ",".join(sorted(now_ended))
        if fields and stage_id not in issued:
            pending.append((at, _ANONYMISE_RANK, stage_id, now_ended, fields))


def next_due(engine: Engine, row: RowState, subject: SubjectState | None) -> Instant | None:
    """When the row's next stage falls due; None when nothing is pending or it is held."""
    if subject is not None and subject.holds:
        return None
    return _upcoming(engine.plans[row.table], row, subject)


def due(
    engine: Engine, row: RowState, subject: SubjectState | None, now: Instant
) -> tuple[list[Command], RowState, Instant | None]:
    """Issue the row's stages due at or before `now`, stamped `issued_at = max(due, now)`.

    Nothing while its subject is held. Call it when the row's timer fires, and at the
    time of an event that made a stage due (first sight, a clock moved into the past,
    the release of the subject's last hold).
    """
    if subject is not None and subject.holds:
        return [], row, None
    plan = engine.plans[row.table]
    schedule = row.schedule
    if schedule is not None and schedule[0] is plan.token and not plan.reads_activity:
        upcoming = schedule[1]
    else:
        upcoming = _upcoming(plan, row, subject)
    if upcoming is None or upcoming > now:
        return [], row, upcoming
    activity = None
    if plan.reads_activity:
        activity = subject.activity if subject is not None else _NO_ACTIVITY
    stages, _ = plan.stages(row.values, _NO_ACTIVITY if activity is None else activity, row.issued)
    firing = sorted(stage for stage in stages if stage[0] <= now)
    deleting = any(stage[1] == _DELETE_RANK for stage in firing)
    commands = [
        Command(
            now,
            at,
            _ACTION_OF_RANK[rank],
            stage_id,
            row.table,
            row.key,
            row.subject,
            purposes,
            fields,
        )
        for at, rank, stage_id, purposes, fields in firing
        if not deleting or rank == _DELETE_RANK
    ]
    issued = row.issued | {stage[2] for stage in firing}
    later = None
    if not deleting:
        later = min((stage[0] for stage in stages if stage[0] > now), default=None)
    new_row = build_row_state(
        row.table,
        row.key,
        row.subject,
        row.values,
        issued,
        (plan.token, later, activity),
    )
    return commands, new_row, later
