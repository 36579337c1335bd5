"""The policy compiled for the hot path: `Engine.compile(policy)` and its source plans.

Each source's rules become closures over a row's values (the columns its clocks and
conditions read) and its subject's activity: a clock is a function returning an instant
or None (not running), a condition a function returning a bool. A source plan holds:
- `stages(values, activity, issued)`: the row's stages not issued yet, with their dues;
- `upcoming(values, activity, issued)`: only the earliest of those dues, worked out
  without building them (`apply` needs only that; a property test checks it equals
  the earliest stage);
- what a row state keeps (`reads`), whether the clocks read the subject's activity,
  how the row names its subject, and the `at_once` conditions.

How a row's stages combine from its rules (one rule per purpose) is described in
`policy.engine`, which runs these plans (`apply`, `due`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from policy.clock_closures import (
    Activity,
    ClockFn,
    ConditionFn,
    Guard,
    Values,
    activities_read,
    collect_reads,
    compile_clock,
    compile_guard,
    not_running,
    uses_activity,
)
from policy.decoding import Decoding
from policy.instants import Instant
from policy.model import (
    Action,
    Policy,
    Source,
)
from policy.state import PendingStage

NEVER: Final = -(2**62)
"""Earlier than any instant."""
ANONYMISE_RANK: Final = 0
ARCHIVE_RANK: Final = 1
DELETE_RANK: Final = 2
ACTION_OF_RANK: Final = (Action.ANONYMISE, Action.ARCHIVE, Action.DELETE)
"""A pending stage's rank (its second item) says its action; it orders stages of one instant."""

ARCHIVE_STAGE: Final = "archive"
DELETE_STAGE: Final = "delete"


Pending = PendingStage
StagesFn = Callable[[Values, Activity, frozenset[str]], tuple[tuple[Pending, ...], Instant | None]]
"""(values, activity, issued) -> (stages not issued yet, the earliest due)."""
UpcomingFn = Callable[[Values, Activity, frozenset[str]], Instant | None]


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
    anonymises: bool
    """Some stage of this source anonymises: an anonymise stage of a rule, or the early
    anonymisation of columns only ended rules need (several rules)."""
    table: str
    changes_subject: bool
    """Its rows feed the subject's activity or are legal holds."""
    fate_inputs: tuple[str, ...]
    """The tables whose changes can change the fate of this table's rows, sorted: the table
    itself (its values, consent and objection columns), the hold tables and the tables feeding
    an activity its clocks read, of the subject kinds its rows can have. A row's stage due at
    T is issued live only once all of them are processed up to T (`policy.driver`)."""
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
    `confirm_after` (µs of the enforcement clock; None: never) is how long an anonymise or
    delete command may stay unconfirmed before it is re-issued (see `policy.engine`).
    """

    policy: Policy
    plans: Mapping[str, SourcePlan]
    """Per source table (`public.orders`), its compiled rules."""
    decoding: Decoding
    confirm_after: int | None = None
    """µs of the enforcement clock before an unconfirmed command is re-issued; None: never."""

    @classmethod
    def compile(cls, policy: Policy, *, confirm_after: int | None = None) -> Engine:
        if confirm_after is not None and confirm_after <= 0:
            raise ValueError(f"confirm_after must be more than 0 µs, not {confirm_after}")
        plans = {table: _plan_source(policy, s) for table, s in policy.sources.items()}
        return cls(policy, MappingProxyType(plans), Decoding.compile(policy), confirm_after)


def _plan_source(policy: Policy, source: Source) -> SourcePlan:
    reads: dict[str, None] = {}
    rules: list[_RuleClocks] = []
    slots: dict[Guard, str] = {}
    for rule in source.rules:
        archive = delete = None
        anonymise: list[tuple[str, ClockFn, tuple[str, ...]]] = []
        for index, stage in enumerate(rule.stages):
            collect_reads(stage.due, reads)
            fn = compile_clock(policy, stage.due, (), slots)
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
            uses_activity(stage.due) for rule in source.rules for stage in rule.stages
        ),
        anonymises=any(r.anonymise for r in rules) or (len(rules) > 1 and bool(anonymisable)),
        table=source.table,
        changes_subject=bool(source.activity) or source.hold is not None,
        fate_inputs=fate_inputs(policy, source),
        token=object(),
        subject_ways=tuple((way.column, way.kind + ":", way.lower) for way in source.subject),
        stages=stages,
        upcoming=_compile_upcoming(compiled, stages, has_archive, anonymisable),
        at_once=tuple((key, compile_guard(guard)) for guard, key in slots.items()),
    )


def fate_inputs(policy: Policy, source: Source) -> tuple[str, ...]:
    """The tables whose changes can change the fate of `source`'s rows (see `SourcePlan`).

    A row's subject is of one of its source's subject kinds; a hold or an activity of
    another kind never reaches it, and a row without subject depends on its own table only.
    """
    kinds = {way.kind for way in source.subject}
    read: frozenset[str] = frozenset().union(
        *(activities_read(stage.due) for rule in source.rules for stage in rule.stages)
    )
    inputs = {source.table}
    for other in policy.sources.values():
        if not kinds.intersection(way.kind for way in other.subject):
            continue
        if other.hold is not None or any(feed.activity in read for feed in other.activity):
            inputs.add(other.table)
    return tuple(sorted(inputs))


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
            pending.append((delete, DELETE_RANK, DELETE_STAGE, purposes, ()))
        if archive is not None and (delete is None or archive < delete):
            pending.append((archive, ARCHIVE_RANK, ARCHIVE_STAGE, purposes, ()))
        for rule in rules:
            for stage_id, clock, fields in rule.anonymise:
                if stage_id in issued:
                    continue
                at = clock(values, activity)
                if at is not None and (delete is None or at < delete):
                    pending.append((at, ANONYMISE_RANK, stage_id, (rule.purpose,), fields))
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
    delete_fn = rule.delete if rule.delete is not None else not_running
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
    delete_fn = rule.delete if rule.delete is not None else not_running
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
            return ((archive, ARCHIVE_RANK, ARCHIVE_STAGE, purposes, ()),), archive
        deleting = (delete, DELETE_RANK, DELETE_STAGE, purposes, ())
        if archive is not None and archive < delete:
            return (
                (deleting, (archive, ARCHIVE_RANK, ARCHIVE_STAGE, purposes, ())),
                archive,
            )
        return (deleting,), delete

    return single_rule


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
    latest = NEVER
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
            pending.append((at, ANONYMISE_RANK, stage_id, now_ended, fields))
