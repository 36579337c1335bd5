"""The dry run behind `lethe simulate`: the engine driven by a captured stream.

`simulate(engine, lines, until)` reads JSON lines, one Kafka record each as
Debezium's JsonConverter writes it (`{"topic": ..., "key": ..., "value": ...}`),
and drives the same `apply`/`due`/`next_due` interface the live enforcer uses,
with the same state layout: row states keyed by (subject, table, key), subject
states keyed by subject, and a heap of row timers.

The simulated clock is each envelope's `ts_ms`: before an event at time T is
applied, every stage due at or before T is issued; a tombstone keeps the clock;
an event older than the clock is applied at the clock's time. `due` is called when
a row's timer fires, at that time, or at the clock's time when the timer was armed
in the past (by an event that made a stage due, or the release of a hold), so each
command's `issued_at` is when the enforcer would send it. After the last line the
clock advances to `until` (default: the last event's time; an earlier `until`
raises `UntilBeforeLastEvent`). A bad line is returned as a `LineError` with its
line number and skipped; the rest goes on.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import orjson

from policy.decoding import decode_record
from policy.engine import Engine, apply, due, event_subject, next_due, reads_activity
from policy.envelope import DecodeReason, Rejection
from policy.events import ChangeEvent, Key, Tombstone
from policy.instants import Instant, format_instant
from policy.state import Command, RowState, SubjectState

RowId = tuple[str | None, str, Key]
"""(subject, table, key): how row states are keyed, so a subject's rows live together."""


@dataclass(frozen=True, slots=True)
class LineError:
    """A line that was skipped: its 1-based number and what is wrong with it."""

    line: int
    message: str


class UntilBeforeLastEvent(ValueError):
    """`until` is earlier than the last event: the clock never runs backwards."""

    def __init__(self, until: Instant, last_event: Instant) -> None:
        self.until = until
        self.last_event = last_event
        super().__init__(
            f"--until {format_instant(until)} is before the last event "
            f"({format_instant(last_event)}); pass --until {format_instant(last_event)} "
            "or later, or leave it out to stop at the last event"
        )


@dataclass(frozen=True, slots=True)
class SimulationResult:
    commands: tuple[Command, ...]
    """Ordered by issued_at, then table, then key."""
    errors: tuple[LineError, ...]
    events: int
    """Change events applied (tombstones not counted)."""
    clock: Instant | None
    """Where the simulated clock stopped; None when no event had a time."""


@dataclass(slots=True)
class Simulator:
    """A driver over the engine with in-memory tables; feed events, then `advance`."""

    engine: Engine
    rows: dict[RowId, RowState] = field(default_factory=dict)
    subjects: dict[str, SubjectState] = field(default_factory=dict)
    row_subject: dict[tuple[str, Key], str | None] = field(default_factory=dict)
    subject_rows: dict[str | None, set[tuple[str, Key]]] = field(default_factory=dict)
    timers: list[tuple[Instant, int, RowId]] = field(default_factory=list)
    armed: dict[RowId, Instant] = field(default_factory=dict)
    commands: list[Command] = field(default_factory=list)
    clock: Instant | None = None
    _sequence: int = 0

    def _arm(self, row_id: RowId, at: Instant | None) -> None:
        if at is None:
            self.armed.pop(row_id, None)
            return
        if self.armed.get(row_id) == at:
            return
        self.armed[row_id] = at
        self._sequence += 1
        heapq.heappush(self.timers, (at, self._sequence, row_id))

    def advance(self, to: Instant) -> None:
        """Issue every stage due at or before `to`, in due order; the clock moves to `to`."""
        clock = self.clock if self.clock is not None else to
        timers = self.timers
        while timers and timers[0][0] <= to:
            at, _, row_id = heapq.heappop(timers)
            if self.armed.get(row_id) != at:
                continue
            del self.armed[row_id]
            row = self.rows[row_id]
            subject = self.subjects.get(row.subject) if row.subject is not None else None
            commands, new_row, later = due(self.engine, row, subject, max(at, clock))
            self.commands.extend(commands)
            self.rows[row_id] = new_row
            self._arm(row_id, later)
        if self.clock is None or to > self.clock:
            self.clock = to

    def feed(self, event: ChangeEvent) -> None:
        """Apply one change event at its time (or the clock's, if it is older)."""
        if self.clock is not None and event.ts < self.clock:
            event = replace(event, ts=self.clock)
        self.advance(event.ts)
        where = (event.table, event.key)
        old_subject = self.row_subject.get(where)
        old_id: RowId | None = (old_subject, *where) if where in self.row_subject else None
        row = self.rows.get(old_id) if old_id is not None else None
        subject_key = event_subject(self.engine, row, event)
        subject = self.subjects.get(subject_key) if subject_key is not None else None
        left = None
        if old_subject is not None and old_subject != subject_key:
            left = self.subjects.get(old_subject)
        step = apply(self.engine, row, subject, event, left)
        holds_changed = step.subject is not None and (
            subject is None or step.subject.holds != subject.holds
        )
        if old_id is not None and (step.row is None or step.moved):
            self._forget(old_id)
        if step.left_subject is not None and step.left_state is not None:
            self.subjects[step.left_subject] = step.left_state
            if step.reevaluate_left:
                self._rearm_subject(step.left_subject, step.left_state, True)
        if step.subject is not None and step.subject_key is not None:
            self.subjects[step.subject_key] = step.subject
        if step.row is not None:
            row_id: RowId = (step.subject_key, *where)
            self.rows[row_id] = step.row
            self.row_subject[where] = step.subject_key
            self.subject_rows.setdefault(step.subject_key, set()).add(where)
            self._arm(row_id, step.next_due)
        if step.reevaluate_subject and step.subject is not None:
            self._rearm_subject(step.subject_key, step.subject, holds_changed)

    def _rearm_subject(self, key: str | None, subject: SubjectState, holds_changed: bool) -> None:
        """Re-arm the subject's rows (only those reading its activity if no hold changed)."""
        for table, row_key in self.subject_rows.get(key, ()):
            if holds_changed or reads_activity(self.engine, table):
                other: RowId = (key, table, row_key)
                self._arm(other, next_due(self.engine, self.rows[other], subject))

    def _forget(self, row_id: RowId) -> None:
        subject, table, key = row_id
        self.rows.pop(row_id, None)
        self.armed.pop(row_id, None)
        self.row_subject.pop((table, key), None)
        members = self.subject_rows.get(subject)
        if members is not None:
            members.discard((table, key))
            if not members:
                del self.subject_rows[subject]


def simulate(
    engine: Engine, lines: Iterable[str | bytes], until: Instant | None = None
) -> SimulationResult:
    """Run the engine (`Engine.compile(policy)`) over JSON lines of Debezium records.

    Raises `UntilBeforeLastEvent` when `until` is earlier than the last event.
    """
    simulator = Simulator(engine)
    errors: list[LineError] = []
    events = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        decoded = decode_line(engine, line)
        if isinstance(decoded, Rejection):
            errors.append(LineError(number, decoded.detail))
            continue
        if isinstance(decoded, Tombstone):
            continue
        simulator.feed(decoded)
        events += 1
    if until is not None and simulator.clock is not None and until < simulator.clock:
        raise UntilBeforeLastEvent(until, simulator.clock)
    end = simulator.clock if until is None else until
    if end is not None:
        simulator.advance(end)
    commands = sorted(simulator.commands, key=Command.sort_key)
    return SimulationResult(tuple(commands), tuple(errors), events, simulator.clock)


def decode_line(engine: Engine, line: str | bytes) -> ChangeEvent | Tombstone | Rejection:
    """Decode one JSON line `{"topic": ..., "key": ..., "value": ...}`; never raises."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return Rejection(
            DecodeReason.BAD_RECORD, f"not JSON ({exc.msg}); each line must be one JSON object"
        )
    if not isinstance(record, dict):
        return Rejection(
            DecodeReason.BAD_RECORD,
            'not a JSON object; write {"topic": ..., "key": ..., "value": ...}',
        )
    if "value" not in record:
        return Rejection(DecodeReason.BAD_RECORD, 'no "value"; write null for a tombstone')
    return decode_record(engine.decoding, record.get("topic"), record.get("key"), record["value"])
