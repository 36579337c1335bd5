"""The driver: turns the engine's steps into stored state and timers, and timers into commands.

One driver serves `lethe simulate` (over a `MemoryStore`) and the worker's agents (over
Faust tables), so the two cannot disagree on the bookkeeping. Each call returns an
`Outcome`: the commands to send (first sends and re-issues of unconfirmed ones), the
confirmations the event brought, the legal holds it opened or released, and the rows whose
next due it first set or moved (`DueChange`, the audit's `tracked` and `scheduled`).
- `feed(event)` first issues what fell due before the event (`advance(event.ts)`), then
  applies it: finds the row's state by (table, key) whatever its subject, passes the state
  of the subject the row leaves when it moves, deletes the old key, stores the new row and
  arms its timer, and re-arms the subject's other rows when its activity or holds changed;
- `advance(to)` pops every timer due at or before `to`, in due order, and asks the engine
  what to issue (or re-issue: a row's timer is the earlier of its next stage and the next
  re-issue of a command it has unconfirmed, see `policy.engine`). A timer armed in the
  past (an overdue row first seen, a hold released) fires at the driver's clock: the time
  of the event that armed it.
- `depart(table, key, subject, at)` is the half of a move that a driver does when the row's
  new subject lives elsewhere (the worker: the row's new subject is in another partition):
  forget the row (and the commands it had unconfirmed: the other driver knows nothing of
  them), release its hold. The other driver tells the row `first` (`DueChange`) as the
  feed of a moved row does: either way a moved row's story starts again at its new subject.
- A subject's state is kept only while it has an open hold, or activity and a row: a person
  whose last row is gone leaves no identifier behind (`email:` subjects included).

Never early because an input lags: the worker reads many change topics that advance
unevenly, so each call also takes `bounds` (`Bounds`, from `row_bounds`): per table, the
instant up to which every input that can change its rows' fate (`SourcePlan.fate_inputs`)
has been processed. A row's stage due at T is then issued only once T <= its table's bound,
and at most at that bound (a stage due later waits); a stage that an event at E made due in
the past (a row first seen overdue, a clock moved into the past, a hold released) only once
E <= the bound: it is decided at E, as `lethe simulate` decides it, with every input up to E
(a marketing contact first seen after its due is not deleted before its customer's orders
written with it are read). A timer popped before that is held
back in the driver (per table, in due order) and fires as soon as the bound passes it,
unless the row was re-armed (a hold placed meanwhile) or deleted first. The clock itself
still moves to `to`. `lethe simulate` has one clock and passes no bounds.

The clock is the latest instant the driver was advanced to; an event older than it is
applied at the clock's time. The driver reads no clock of its own.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from policy.due_changes import due_change, next_purposes, stage_due
from policy.engine import (
    Engine,
    apply,
    confirmed_by,
    due,
    event_subject,
    hold_id,
    leave,
    next_due,
    reads_activity,
)
from policy.events import ChangeEvent, Key, Op
from policy.instants import Instant
from policy.state import Command, Confirmation, RowState, SubjectState
from policy.store import RowId, Store


@dataclass(frozen=True, slots=True)
class HoldChange:
    """The legal hold row (table, key) opened (`opened`) or released a hold on `subject` at
    `at`: while a subject has an open hold, none of its commands is issued."""

    table: str
    key: Key
    subject: str
    opened: bool
    at: Instant


@dataclass(frozen=True, slots=True)
class DueChange:
    """A row's next due (`policy.due_changes.stage_due`: its next stage, re-issues aside; None:
    nothing pending, or its subject held), set or moved at `at`, for the audit.

    `first` (`tracked`): the row was stored, first seen or seen under another subject (it
    moved: a contact that gained a customer id); `purposes` are its rules', `previous` None.
    Otherwise (`scheduled`) its next due moved from `previous` to `due`: a column its
    clocks read changed, its subject's activity did, a hold was placed or released, a stage
    was issued; `purposes` are those of the stage now next (none when `due` is None).
    A row deleted or departed is no change: the `confirmed` record tells its end. Rows of a
    table without rules (legal hold rows) have none."""

    table: str
    key: Key
    subject: str | None
    due: Instant | None
    at: Instant
    purposes: tuple[str, ...] = ()
    previous: Instant | None = None
    first: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one call of the driver decided."""

    commands: tuple[Command, ...] = ()
    """To send, in due order: first sends, and re-issues (`Command.attempt` > 1, same id)."""
    confirmations: tuple[Confirmation, ...] = ()
    """Commands the change event showed applied."""
    holds: tuple[HoldChange, ...] = ()
    """Legal holds the change event opened or released (on its subject, or the one it left)."""
    dues: tuple[DueChange, ...] = ()
    """Rows whose next due was set or moved, in the order it happened (a row's in order)."""


NOTHING: Final = Outcome()

_new = object.__new__
(
    _set_table,
    _set_key,
    _set_subject,
    _set_due,
    _set_at,
    _set_purposes,
    _set_previous,
    _set_first,
) = (
    DueChange.__dict__[name].__set__
    for name in ("table", "key", "subject", "due", "at", "purposes", "previous", "first")
)


def _due_change(
    row: RowState,
    due_at: Instant | None,
    at: Instant,
    purposes: tuple[str, ...],
    previous: Instant | None,
    first: bool,
) -> DueChange:
    """`DueChange(...)` of the row without the frozen dataclass's per-field cost (one per
    row stored)."""
    change: DueChange = _new(DueChange)
    _set_table(change, row.table)
    _set_key(change, row.key)
    _set_subject(change, row.subject)
    _set_due(change, due_at)
    _set_at(change, at)
    _set_purposes(change, purposes)
    _set_previous(change, previous)
    _set_first(change, first)
    return change


Bounds = Mapping[str, Instant]
"""Per table, the instant (on the enforcement clock) up to which every input that can change
the fate of its rows has been processed; a table left out: not yet known, nothing of it is
issued."""

NOTHING_PROCESSED: Final = -(2**62)
"""The bound of a table whose inputs have not all been reported: earlier than any due."""


def row_bounds(engine: Engine, processed: Mapping[str, Instant]) -> dict[str, Instant]:
    """The `Bounds` of every table of the policy, from how far each table's own change topic
    has been processed (`processed`; a table left out: not yet): the earliest over the
    table's `fate_inputs`. A table with an input left out is left out."""
    bounds: dict[str, Instant] = {}
    for table, plan in engine.plans.items():
        bound: Instant | None = None
        for source in plan.fate_inputs:
            instant = processed.get(source)
            if instant is None:
                bound = None
                break
            if bound is None or instant < bound:
                bound = instant
        if bound is not None:
            bounds[table] = bound
    return bounds


class Driver:
    """The engine over a store; see the module docstring."""

    __slots__ = ("_held", "_sequence", "_waiting", "clock", "continuous", "engine", "store")

    def __init__(
        self,
        engine: Engine,
        store: Store,
        clock: Instant | None = None,
        *,
        continuous: bool = False,
    ) -> None:
        """`continuous`: the driver stands for a worker that sweeps at every instant
        (`lethe simulate` between its events, under a wall or accelerated clock), so what
        falls due is sent at its timer's instant; by default (the worker) it is sent at the
        instant the driver is advanced to, which is when the next re-issue counts from."""
        self.engine = engine
        self.store = store
        self.clock = clock
        self.continuous = continuous
        self._held: dict[RowId, Instant] = {}
        """Rows whose timer fired before their inputs were processed up to it, by due."""
        self._waiting: dict[str, list[tuple[Instant, int, RowId]]] = {}
        """Per table, a heap of the held rows (entries no longer in `_held` are stale)."""
        self._sequence = 0

    def advance(self, to: Instant, bounds: Bounds | None = None) -> Outcome:
        """Issue every stage (and re-issue every unconfirmed command) due at or before `to`
        (and, given `bounds`, at or before its table's bound), in due order per table; the
        clock moves to `to`."""
        clock = self.clock if self.clock is not None else to
        sweep = None if self.continuous else max(to, clock)
        commands: list[Command] = []
        dues: list[DueChange] = []
        if self._waiting:
            self._release(to, clock, bounds, sweep, commands, dues)
        store = self.store
        while (timer := store.pop_due(to)) is not None:
            at, row_id = timer
            if bounds is None:
                self._fire(row_id, max(at, clock), sweep, commands, dues)
                continue
            bound = bounds.get(row_id[1], NOTHING_PROCESSED)
            if at > bound:
                self._hold_back(at, row_id)
            else:
                self._fire(row_id, max(at, min(clock, bound)), sweep, commands, dues)
        if self.clock is None or to > self.clock:
            self.clock = to
        if commands or dues:
            return Outcome(tuple(commands), dues=tuple(dues))
        return NOTHING

    def held(self) -> int:
        """How many rows have a stage due that waits for a lagging input."""
        return len(self._held)

    def _fire(
        self,
        row_id: RowId,
        now: Instant,
        sweep: Instant | None,
        commands: list[Command],
        dues: list[DueChange],
    ) -> None:
        store = self.store
        row = store.row(row_id)
        if row is None:
            return
        subject = store.subject(row.subject) if row.subject is not None else None
        issued, new_row, later = due(self.engine, row, subject, now, sweep)
        if issued:
            commands.extend(issued)
        if new_row is not row:
            store.put_row(row_id, new_row)
            self._rescheduled(dues, row, subject, new_row, subject, now)
        store.arm(row_id, later)

    def _hold_back(self, at: Instant, row_id: RowId) -> None:
        if self._held.get(row_id) == at:
            return
        self._held[row_id] = at
        self._sequence += 1
        heapq.heappush(self._waiting.setdefault(row_id[1], []), (at, self._sequence, row_id))

    def _release(
        self,
        to: Instant,
        clock: Instant,
        bounds: Bounds | None,
        sweep: Instant | None,
        commands: list[Command],
        dues: list[DueChange],
    ) -> None:
        """Fire the held rows whose table's bound (and `to`) passed their due."""
        held = self._held
        for table, waiting in list(self._waiting.items()):
            bound = None if bounds is None else bounds.get(table, NOTHING_PROCESSED)
            limit = to if bound is None else min(to, bound)
            while waiting and waiting[0][0] <= limit:
                at, _, row_id = heapq.heappop(waiting)
                if held.get(row_id) != at:
                    continue
                del held[row_id]
                now = max(at, clock) if bound is None else max(at, min(clock, bound))
                self._fire(row_id, now, sweep, commands, dues)
            if not waiting:
                del self._waiting[table]

    def _arm(self, row_id: RowId, at: Instant | None, decided: Instant | None = None) -> None:
        """Set the row's timer; a stage of it held back is forgotten (worked out anew).

        `decided` (with bounds only): the time of the event that armed it. A stage that this
        event made due in the past is decided at that time, with what the inputs hold up to it
        (a contact first seen after its due, whose customer's orders, written at the same
        time, are still to be read): its timer is set at the event's time, so that it waits
        until the row's bound reaches it; the command keeps its due."""
        self._held.pop(row_id, None)
        if decided is not None and at is not None and at < decided:
            at = decided
        self.store.arm(row_id, at)

    def _delete(self, row_id: RowId) -> None:
        self._held.pop(row_id, None)
        self.store.delete_row(row_id)

    def feed(self, event: ChangeEvent, bounds: Bounds | None = None) -> Outcome:
        """Apply one change event at its time (or the clock's, if it is older); returns the
        commands that fell due up to that time (within `bounds`, see `advance`), and what
        the event confirmed and held."""
        if self.clock is not None and event.ts < self.clock:
            event = event.at(self.clock)
        outcome = self.advance(event.ts, bounds)
        decided = None if bounds is None else event.ts
        engine = self.engine
        store = self.store
        if event.op is Op.DELETE:
            old_id = store.locate(event.table, event.key)
            row = store.row(old_id) if old_id is not None else None
            subject_key = event_subject(engine, row, event)
        else:  # the subject is the after image's, where the row most likely is already
            subject_key = event_subject(engine, None, event)
            old_id = store.locate(event.table, event.key, subject_key)
            row = store.row(old_id) if old_id is not None else None
        subject = store.subject(subject_key) if subject_key is not None else None
        old_subject = old_id[0] if old_id is not None else None
        left = None
        if old_subject is not None and old_subject != subject_key:
            left = store.subject(old_subject)
        step = apply(engine, row, subject, event, left)
        at = event.ts
        dues: list[DueChange] = []

        if old_id is not None and (step.row is None or step.moved):
            self._delete(old_id)
        row_id: RowId | None = None
        if step.row is not None:
            row_id = (step.subject_key, event.table, event.key)
            store.put_row(row_id, step.row)
            self._arm(row_id, step.next_due, decided)
            if row is None or step.moved:
                self._tracked(dues, step.row, step.subject, at)
            else:
                self._rescheduled(dues, row, subject, step.row, step.subject, at)
        if step.left_subject is not None and step.left_state is not None:
            self._settle(step.left_subject, left, step.left_state)
            if step.reevaluate_left:
                self._rearm(step.left_subject, step.left_state, True, decided, left, at, dues)
        elif old_subject is not None and old_subject != subject_key:
            self._settle(old_subject, left, left)
        if step.subject_key is not None and step.subject is not None:
            self._settle(step.subject_key, subject, step.subject)
            if step.reevaluate_subject:
                self._rearm(
                    step.subject_key, step.subject, step.holds_changed, decided, subject, at,
                    dues, row_id,
                )  # fmt: skip
        holds: list[HoldChange] = []
        if step.holds_changed or step.reevaluate_left:
            hold = hold_id(event.table, event.key)
            if step.reevaluate_left and step.left_subject is not None:
                holds.append(HoldChange(event.table, event.key, step.left_subject, False, event.ts))
            if step.holds_changed and step.subject_key is not None and step.subject is not None:
                was_open = subject is not None and hold in subject.holds
                if was_open != (hold in step.subject.holds):
                    holds.append(
                        HoldChange(event.table, event.key, step.subject_key, not was_open, event.ts)
                    )
        if step.confirmed or holds or dues:
            told = outcome.dues + tuple(dues) if outcome.dues else tuple(dues)
            outcome = Outcome(outcome.commands, step.confirmed, tuple(holds), told)
        return outcome

    def depart(
        self,
        table: str,
        key: Key,
        subject: str | None,
        at: Instant,
        moved_by: ChangeEvent | None = None,
        bounds: Bounds | None = None,
    ) -> Outcome:
        """The row (table, key) moved from `subject` to another one whose state this driver's
        store does not hold (the worker: another partition): issue what fell due up to `at`
        (within `bounds`, see `advance`), then forget the row here and release a hold it was.
        Its events then arrive at the other subject's driver as those of a new row.
        `moved_by`, the change event that moved it, confirms the row's unconfirmed commands
        it shows applied (an anonymise that emptied the subject's column moves the row); the
        others are forgotten with the row."""
        if self.clock is not None and at < self.clock:
            at = self.clock
        outcome = self.advance(at, bounds)
        store = self.store
        row_id: RowId = (subject, table, key)
        row = store.row(row_id)
        if row is None:
            return outcome
        if moved_by is not None and row.unconfirmed:
            confirmed = confirmed_by(self.engine, row, moved_by.at(at))
            if confirmed:
                outcome = Outcome(outcome.commands, confirmed, outcome.holds, outcome.dues)
        self._delete(row_id)
        if subject is None:
            return outcome
        stored = store.subject(subject)
        released = leave(self.engine, table, key, stored) if stored is not None else None
        self._settle(subject, stored, released if released is not None else stored)
        if released is not None:
            dues = list(outcome.dues)
            decided = None if bounds is None else at
            self._rearm(subject, released, True, decided, stored, at, dues)
            released_hold = HoldChange(table, key, subject, False, at)
            return Outcome(outcome.commands, outcome.confirmations, (released_hold,), tuple(dues))
        return outcome

    def _settle(self, key: str, stored: SubjectState | None, state: SubjectState | None) -> None:
        """Keep the subject's state while it has an open hold, or activity and a row."""
        if state is not None and (state.holds or (state.activity and self.store.has_rows(key))):
            if state is not stored:
                self.store.put_subject(key, state)
        elif stored is not None:
            self.store.delete_subject(key)

    def _rearm(
        self,
        key: str | None,
        subject: SubjectState,
        holds_changed: bool,
        decided: Instant | None,
        before: SubjectState | None,
        at: Instant,
        dues: list[DueChange],
        audited: RowId | None = None,
    ) -> None:
        """Re-arm the subject's rows (only those reading its activity if no hold changed),
        whose subject state was `before`; a moved next due is told in `dues`, but for the row
        `audited` (the event's own, told already)."""
        engine = self.engine
        store = self.store
        for row_id in store.rows_of(key):
            if holds_changed or reads_activity(engine, row_id[1]):
                row = store.row(row_id)
                if row is not None:
                    self._arm(row_id, next_due(engine, row, subject), decided)
                    if row_id != audited:
                        self._rescheduled(dues, row, before, row, subject, at)

    def _tracked(
        self, dues: list[DueChange], row: RowState, subject: SubjectState | None, at: Instant
    ) -> None:
        """Tell a row stored at `at` (first seen, or under another subject) and its next due."""
        purposes = self.engine.plans[row.table].purposes
        if purposes:
            due_at = stage_due(self.engine, row, subject)
            dues.append(_due_change(row, due_at, at, purposes, None, True))

    def _rescheduled(
        self,
        dues: list[DueChange],
        before: RowState,
        before_subject: SubjectState | None,
        after: RowState,
        after_subject: SubjectState | None,
        at: Instant,
    ) -> None:
        """Tell the row's next due if it moved at `at` (its state or its subject's changed)."""
        engine = self.engine
        change = due_change(engine, before, before_subject, after, after_subject)
        if change is None:
            return
        previous, due_at = change
        purposes = () if due_at is None else next_purposes(engine, after, after_subject, due_at)
        dues.append(_due_change(after, due_at, at, purposes, previous, False))
