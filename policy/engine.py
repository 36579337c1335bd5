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
- `stage_due(engine, row, subject)` is a row's next stage due, re-issues aside, and
  `due_change(engine, before, ..., after, ...)` says whether and how it moved (`tracked` and
  `scheduled` on the audit, `policy.driver.DueChange`);
- `reissue_due(confirm_after, unconfirmed)` says when an unconfirmed command is sent again;
- `confirmed_by(engine, row, event)`: the row's unconfirmed commands a change event shows
  applied (`apply` does it for the events it folds in; a driver calls it for the event that
  moved a row away, before it forgets the row); both live in `policy.confirmation`;
- `decode_record(engine.decoding, topic, key, value)` (in `policy.decoding`) turns a
  Debezium record into the `ChangeEvent` that `apply` takes.

The policy itself is compiled in `policy.plans`; this module runs the plans.

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
  with earlier stages (an overdue row), those are dropped;
- a row first seen (no row state) whose anonymise stage is due by then and whose every
  column of it already holds what the stage writes counts that stage as done (issued and
  confirmed, no command): a row that moved to another subject arrives so at the worker's
  other partition (a survey whose anonymise emptied its customer id and coarsened its own
  clock column), and `lethe simulate`, which moves it with its issued stages, issues
  nothing again either. Never an archive or a delete.
Confirmation: every anonymise and delete command `due` issues is kept in the row state as
`Unconfirmed` until the change stream shows it applied; `apply` returns the confirmations
(`Step.confirmed`): the row's delete event (op d) confirms every unconfirmed command of the
row; a change event (c, u, r) whose image holds, in every column an anonymise command
empties, coarsens, buckets or sets to a constant, exactly the value the command writes
(`policy.anonymise`) confirms that command. Archive is never kept: the business's archive
job applies it and the stream shows nothing. With `engine.confirm_after` = T set, a command
still unconfirmed is issued again by `due`, with the same id (`Command.attempt` counts the
sends), T after it was sent, then 2T, 4T, 8T after the send before, and every 16T after
that, counted from when the sweep that sent it ran (`Unconfirmed.sent_at`), so a sweep
over a long stretch of time re-issues a command once. A row's next due is the earlier of
its next stage and its next re-issue, so the due index fires both. Nothing is re-issued
while the subject is held. An unconfirmed command is forgotten when its stage is (an
update stopped its clock) and when the row moves to another driver (`Driver.depart`).
"At once" (`at_once`) is the instant its condition (the `when` around it) first
became true for the row, kept in the row state while the condition holds: later
updates do not move it. A command's `issued_at` is max(its due, `now`): the time the
enforcer sends it. A driver calls `due` when a row's timer fires (now = the due
time), right after the event that made a stage due (first sight of an overdue row,
an update that moved a clock into the past) and after the release of a subject's
last hold (now = that event's time).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Final

from policy.confirmation import (
    NO_CONFIRMATIONS,
    awaiting,
    confirm,
    confirmed_by,
    earliest,
    next_reissue,
    reissue,
    reissue_due,
)
from policy.events import ChangeEvent, Key, Op, Value
from policy.instants import Instant
from policy.model import Source
from policy.plans import (
    ACTION_OF_RANK,
    DELETE_RANK,
    NEVER,
    Engine,
    SourcePlan,
)
from policy.row_values import (
    anonymous_already,
    instant_of,
    keep_at_once,
    read_values,
    still_scheduled,
)
from policy.state import (
    EMPTY_SUBJECT,
    Command,
    RowState,
    Schedule,
    StateValue,
    SubjectState,
    Unconfirmed,
    build_row_state,
)
from policy.steps import Step, make_step

__all__ = [
    "Engine",
    "Step",
    "apply",
    "confirmed_by",
    "due",
    "event_subject",
    "hold_id",
    "leave",
    "next_due",
    "reads_activity",
    "reissue_due",
]

_NO_ACTIVITY: Final[Mapping[str, Instant]] = MappingProxyType({})
_NO_IMAGE: Final[Mapping[str, Value]] = MappingProxyType({})
_NOTHING_ISSUED: Final[frozenset[str]] = frozenset()
_NOTHING_KEPT: Final[Mapping[str, StateValue]] = MappingProxyType({})
_ONE_US: Final = datetime.resolution
_DELETE_OP: Final = Op.DELETE
_PLAIN_TYPES: Final = (str, bool, int, float)
_TEXT_OR_INT: Final = (str, int)
_NO_UNCONFIRMED: Final[tuple[Unconfirmed, ...]] = ()
_ENDED_PREFIX: Final = "ended:"
_ANONYMISE_PREFIX: Final = "anonymise:"


# --- subjects ------------------------------------------------------------------------------


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
            moment = instant_of(image.get(feed.column))
            if moment is not None and moment > known.get(feed.activity, NEVER):
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


def leave(engine: Engine, table: str, key: Key, subject: SubjectState) -> SubjectState | None:
    """The new state of a subject that the row (table, key) moved away from; None when it
    does not change. For a driver that learns of the move apart from the event itself (the
    worker: the row's old subject lives in another partition)."""
    return _leave(engine.plans[table].source, subject, key)


def _leave(source: Source, subject: SubjectState, key: Key) -> SubjectState | None:
    """The new state of the subject a row moves away from; None when it does not change.

    A hold the row was is released there, as if the row were deleted. The latest
    activity the row fed stays: that contact happened, and the subject state keeps
    only the latest instant per activity, not which row brought it.
    """
    if source.hold is None:
        return None
    hold = hold_id(source.table, key)
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
            released = _leave(plan.source, left_state, event.key)
            if released is not None:
                left_state, reevaluate_left = released, True

    unconfirmed = _NO_UNCONFIRMED
    confirmed = NO_CONFIRMATIONS
    if row is not None and row.unconfirmed:
        unconfirmed, confirmed = confirm(engine, plan, row, None if deleting else image, event.ts)
    if deleting or not plan.tracked:  # neither moves: a delete keeps row.subject
        return make_step(
            None, new_subject, None, reevaluate, subject_key, holds_changed, confirmed=confirmed
        )
    values = read_values(plan.reads, image)
    if plan.at_once:
        keep_at_once(plan.at_once, values, row, event.ts)
    issued = row.issued if row is not None else _NOTHING_ISSUED
    if issued:
        issued = still_scheduled(plan, values, new_subject, issued)
        if unconfirmed:
            unconfirmed = tuple(entry for entry in unconfirmed if entry.stage in issued)
    elif row is None and plan.anonymises:
        issued = anonymous_already(engine, plan, values, new_subject, event, image)
    schedule: Schedule
    if plan.reads_activity:
        activity_now = new_subject.activity if new_subject is not None else _NO_ACTIVITY
        upcoming = plan.upcoming(values, activity_now, issued)
        schedule = (plan.token, upcoming, activity_now)
    else:
        upcoming = plan.upcoming(values, _NO_ACTIVITY, issued)
        schedule = (plan.token, upcoming, None)
    new_row = build_row_state(
        plan.table, event.key, subject_key, values, issued, unconfirmed, schedule
    )
    if unconfirmed:
        upcoming = earliest(upcoming, next_reissue(engine, unconfirmed))
    if new_subject is not None and new_subject.holds:
        upcoming = None
    return make_step(
        new_row, new_subject, upcoming, reevaluate, subject_key, holds_changed, moved, left_key,
        left_state, reevaluate_left, confirmed,
    )  # fmt: skip


# --- due -----------------------------------------------------------------------------------


def upcoming_due(plan: SourcePlan, row: RowState, subject: SubjectState | None) -> Instant | None:
    """The row's next stage due, holds and re-issues aside: the one it carries if that still
    matches it, else worked out."""
    schedule = row.schedule
    if plan.reads_activity:
        activity = subject.activity if subject is not None else _NO_ACTIVITY
        if schedule is not None and schedule[0] is plan.token and schedule[2] is activity:
            return schedule[1]
        return plan.upcoming(row.values, activity, row.issued)
    if schedule is not None and schedule[0] is plan.token:
        return schedule[1]
    return plan.upcoming(row.values, _NO_ACTIVITY, row.issued)


def next_due(engine: Engine, row: RowState, subject: SubjectState | None) -> Instant | None:
    """When the row's next stage falls due; None when nothing is pending or it is held."""
    if subject is not None and subject.holds:
        return None
    upcoming = upcoming_due(engine.plans[row.table], row, subject)
    if row.unconfirmed:
        return earliest(upcoming, next_reissue(engine, row.unconfirmed))
    return upcoming


def subject_activity(subject: SubjectState | None) -> Mapping[str, Instant]:
    """The subject's activity instants (none without a subject state)."""
    return subject.activity if subject is not None else _NO_ACTIVITY


def due(
    engine: Engine,
    row: RowState,
    subject: SubjectState | None,
    now: Instant,
    sending_at: Instant | None = None,
) -> tuple[list[Command], RowState, Instant | None]:
    """Issue the row's stages due at or before `now`, stamped `issued_at = max(due, now)`,
    and re-issue its unconfirmed commands whose re-issue falls due by then (`reissued_at =
    sending_at`, same id); returns the commands, the new row state and its next due.

    `sending_at` (default `now`) is when the caller sends them: the instant of the sweep
    that found the row due (later than `now` when it catches up on a stretch of time at
    once). The next re-issue is worked out from it, so a long stretch re-issues a command
    once, not once per backoff step it spans.

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
        upcoming = upcoming_due(plan, row, subject)
    unconfirmed = row.unconfirmed
    reissue_at = next_reissue(engine, unconfirmed) if unconfirmed else None
    if (upcoming is None or upcoming > now) and (reissue_at is None or reissue_at > now):
        return [], row, earliest(upcoming, reissue_at)
    commands: list[Command] = []
    sent_at = now if sending_at is None or sending_at < now else sending_at
    if reissue_at is not None and reissue_at <= now:
        unconfirmed = reissue(engine, plan, row, now, sent_at, commands)
    issued = row.issued
    later = upcoming
    new_schedule = schedule
    if upcoming is not None and upcoming <= now:
        activity = None
        if plan.reads_activity:
            activity = subject.activity if subject is not None else _NO_ACTIVITY
        stages, _ = plan.stages(
            row.values, _NO_ACTIVITY if activity is None else activity, row.issued
        )
        firing = sorted(stage for stage in stages if stage[0] <= now)
        deleting = any(stage[1] == DELETE_RANK for stage in firing)
        fresh = [
            Command(
                now,
                at,
                ACTION_OF_RANK[rank],
                stage_id,
                row.table,
                row.key,
                row.subject,
                purposes,
                fields,
            )
            for at, rank, stage_id, purposes, fields in firing
            if not deleting or rank == DELETE_RANK
        ]
        commands.extend(fresh)
        issued = row.issued | {stage[2] for stage in firing}
        later = None
        if not deleting:
            later = min((stage[0] for stage in stages if stage[0] > now), default=None)
        unconfirmed = awaiting(unconfirmed, fresh, sent_at)
        new_schedule = (plan.token, later, activity)
    new_row = build_row_state(
        row.table, row.key, row.subject, row.values, issued, unconfirmed, new_schedule
    )
    if unconfirmed:
        return commands, new_row, earliest(later, next_reissue(engine, unconfirmed))
    return commands, new_row, later
