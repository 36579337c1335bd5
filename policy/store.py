"""Where the driver keeps its state: the `Store` interface and the in-memory store.

A store holds, for one driver:
- row states, keyed by `RowId` = (subject, table, key), so a subject's rows live together;
- the (table, key) -> subject index (`locate`), so a delete whose image holds only the
  primary key, or an update that moves the row to another subject, finds the row's state;
- a subject's rows (`rows_of`, `has_rows`);
- subject states, keyed by subject;
- a time-ordered due index: at most one timer per row (`arm`), popped in due order
  (`pop_due`), costing O(log n) per timer, never a scan of every row.

`MemoryStore` serves `lethe simulate`; the worker's store keeps the same in Faust tables.
Every store must pass the contract suite in `tests/unit/test_store_contract.py`.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from enum import Enum
from typing import Final, Protocol

from policy.events import Key
from policy.instants import Instant
from policy.state import RowState, SubjectState

RowId = tuple[str | None, str, Key]
"""(subject, table, key): how row states are keyed, so a subject's rows live together."""


class NoHint(Enum):
    NO_HINT = "no hint"


NO_HINT: Final = NoHint.NO_HINT
"""`Store.locate` without a likely subject."""


class Store(Protocol):
    """The state a `Driver` reads and writes; see the module docstring."""

    def row(self, row_id: RowId) -> RowState | None:
        """The row's state, or None when it is not tracked."""

    def put_row(self, row_id: RowId, state: RowState) -> None:
        """Store the row's state and index it under its subject. The same (table, key) must
        not be stored under another subject: the driver deletes the old id first."""

    def delete_row(self, row_id: RowId) -> None:
        """Forget the row: its state, its place in the indexes and its timer."""

    def locate(self, table: str, key: Key, likely: str | NoHint | None = NO_HINT) -> RowId | None:
        """The id the row with this primary key is stored under, or None. `likely`: the
        subject it is probably stored under (None: none), which a store may look up first;
        the answer must not depend on it."""

    def rows_of(self, subject: str | None) -> list[RowId]:
        """The ids of the subject's rows (a snapshot; any order)."""

    def has_rows(self, subject: str | None) -> bool:
        """Whether any row is stored under the subject."""

    def subject(self, subject: str) -> SubjectState | None:
        """The subject's state, or None when none is stored."""

    def put_subject(self, subject: str, state: SubjectState) -> None:
        """Store the subject's state."""

    def delete_subject(self, subject: str) -> None:
        """Forget the subject's state (nothing happens when none is stored)."""

    def arm(self, row_id: RowId, at: Instant | None) -> None:
        """Set the row's timer to `at`, replacing the one it had; None disarms it."""

    def pop_due(self, until: Instant) -> tuple[Instant, RowId] | None:
        """Remove and return the earliest timer due at or before `until`, or None.

        Timers due at the same instant come in no particular order."""


_SEQUENCE_BITS: Final = 40
STALE_SLACK: Final = 64
"""Stale timers a due index may hold beyond as many as its live ones before it drops them."""


class DueIndex:
    """Timers in a heap with lazy deletion: at most one live timer per row, O(log n) to arm,
    O(due + log n) to pop what is due. Derived data: a store rebuilds it from its rows.

    The heap holds plain ints, the due instant and an arming sequence in one
    (`at << 40 | sequence`), and the row ids are looked up by that int: a pop then compares
    ints, not tuples, and touches a third of the memory per heap level (at 10^6 timers, 1,000
    pops took less than half the time: docs/benchmarks.md (b)). Good for 2^40 arms per index.

    A timer replaced or disarmed stays in the heap until its instant, holding its row id: a
    row confirmed deleted keeps its re-issue timer (LETHE_CONFIRM_TIMEOUT ahead) that long. So
    once the heap holds more than 2 x live + STALE_SLACK timers, the stale ones are dropped
    (O(n), at most once per n / 2 arms): the soak (docs/benchmarks.md (f)) saw 7 stale timers
    to 1 live one, growing for the first 300 s."""

    __slots__ = ("_armed", "_ids", "_sequence", "_timers")

    def __init__(self) -> None:
        self._timers: list[int] = []
        self._ids: dict[int, RowId] = {}
        self._armed: dict[RowId, Instant] = {}
        self._sequence = 0

    def arm(self, row_id: RowId, at: Instant | None) -> None:
        """Set the row's timer to `at`, replacing the one it had; None disarms it."""
        armed = self._armed
        if at is None:
            armed.pop(row_id, None)
            return
        if armed.get(row_id) == at:
            return
        armed[row_id] = at
        self._sequence += 1
        timer = at << _SEQUENCE_BITS | self._sequence
        self._ids[timer] = row_id
        heapq.heappush(self._timers, timer)
        if len(self._timers) > 2 * len(armed) + STALE_SLACK:
            self._drop_stale()

    def _drop_stale(self) -> None:
        """Keep one timer per armed row, the one at its armed instant set last."""
        armed = self._armed
        live: dict[RowId, int] = {}
        for timer, row_id in self._ids.items():
            if armed.get(row_id) == timer >> _SEQUENCE_BITS and timer > live.get(row_id, -1):
                live[row_id] = timer
        self._ids = {timer: row_id for row_id, timer in live.items()}
        self._timers = list(self._ids)
        heapq.heapify(self._timers)

    def pop(self, until: Instant) -> tuple[Instant, RowId] | None:
        """Remove and return the earliest timer due at or before `until`, or None."""
        timers = self._timers
        armed = self._armed
        ids = self._ids
        after = (until + 1) << _SEQUENCE_BITS
        while timers and timers[0] < after:
            timer = heapq.heappop(timers)
            row_id = ids.pop(timer)
            at = timer >> _SEQUENCE_BITS
            if armed.get(row_id) == at:
                del armed[row_id]
                return at, row_id
        return None

    def __len__(self) -> int:
        return len(self._armed)

    def timers(self) -> int:
        """Timers in the heap, live and stale: at most 2 x len(self) + STALE_SLACK after an arm."""
        return len(self._timers)


class MemoryStore:
    """A `Store` in dicts and a heap: the state of one `lethe simulate` run."""

    __slots__ = ("_due", "_located", "_members", "_rows", "_subjects")

    def __init__(self) -> None:
        self._rows: dict[RowId, RowState] = {}
        self._located: dict[tuple[str, Key], str | None] = {}
        self._members: dict[str | None, dict[tuple[str, Key], None]] = {}
        self._subjects: dict[str, SubjectState] = {}
        self._due = DueIndex()

    def row(self, row_id: RowId) -> RowState | None:
        return self._rows.get(row_id)

    def put_row(self, row_id: RowId, state: RowState) -> None:
        rows = self._rows
        if row_id not in rows:
            subject, table, key = row_id
            where = (table, key)
            self._located[where] = subject
            members = self._members.get(subject)
            if members is None:
                self._members[subject] = {where: None}
            else:
                members[where] = None
        rows[row_id] = state

    def delete_row(self, row_id: RowId) -> None:
        if self._rows.pop(row_id, None) is None:
            return
        self._due.arm(row_id, None)
        subject, table, key = row_id
        where = (table, key)
        del self._located[where]
        members = self._members[subject]
        del members[where]
        if not members:
            del self._members[subject]

    def locate(self, table: str, key: Key, likely: str | NoHint | None = NO_HINT) -> RowId | None:
        where = (table, key)
        if where not in self._located:
            return None
        return (self._located[where], table, key)

    def rows_of(self, subject: str | None) -> list[RowId]:
        return [(subject, table, key) for table, key in self._members.get(subject, ())]

    def has_rows(self, subject: str | None) -> bool:
        return subject in self._members

    def subject(self, subject: str) -> SubjectState | None:
        return self._subjects.get(subject)

    def put_subject(self, subject: str, state: SubjectState) -> None:
        self._subjects[subject] = state

    def delete_subject(self, subject: str) -> None:
        self._subjects.pop(subject, None)

    def arm(self, row_id: RowId, at: Instant | None) -> None:
        self._due.arm(row_id, at)

    def pop_due(self, until: Instant) -> tuple[Instant, RowId] | None:
        return self._due.pop(until)

    # --- for inspection (tests, `lethe simulate` statistics) ---------------------------

    def subjects(self) -> Iterable[str]:
        """Every subject that has a stored state."""
        return self._subjects.keys()

    def row_ids(self) -> Iterable[RowId]:
        """Every stored row's id."""
        return self._rows.keys()
