"""What a change of a row is once decoded: the types the engine, its state and anonymisation share.

A `ChangeEvent` is one change (create, update, delete or snapshot read, `Op`) of one row of
a source table, with its primary `Key` and its row images of decoded `Value`s; a `Tombstone`
is the null-valued record Debezium sends after a delete. They hold no decoding logic: the
envelope checks are in `policy.envelope`, the typed decoding in `policy.decoding`, so the
engine's state (`policy.state`) and anonymisation (`policy.anonymise`) depend on these
types alone. A `SourcePosition` is where Debezium read the change in the database's log: how
the assign stage tells a replayed event (a connector restarted before it flushed its
offsets sends its events again, with their old positions) from a new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final

from policy.instants import Instant

Value = (
    str | int | float | bool | None | datetime | date | Decimal | list[object] | dict[str, object]
)
"""A decoded column value."""
KeyValue = str | int | float | bool | None
Key = tuple[tuple[str, KeyValue], ...]
"""A primary key as ((column, value), ...) in the source's primary-key order."""


class Op(StrEnum):
    """Debezium's `op` codes that change a row."""

    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"
    """Read by a snapshot: a first sighting."""


TOMBSTONE: Final = "tombstone"
"""How a tombstone is named where an op code would stand (logs, metric labels)."""


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where Debezium PostgreSQL read a change: its `source.sequence`, [last commit LSN, LSN].

    In the order Debezium emits the changes of one connector, `order` never decreases: a
    transaction's changes are sent at its commit, after every transaction committed
    before it, so the commit LSN comes first and the change's own LSN (which alone goes
    back and forth between concurrent transactions) orders the changes of one transaction.
    `commit` is None for the first transaction after the connector started from a snapshot
    (measured: `[null, "26932208"]`); None sorts before every LSN. `snapshot` marks a read
    of a snapshot (`op` r, or `source.snapshot` other than false): every read of one
    snapshot has the snapshot's one position, so reads are never told apart by it.
    """

    commit: int | None
    lsn: int
    snapshot: bool = False

    @property
    def order(self) -> tuple[int, int]:
        """The position as a sortable pair: (commit LSN, or -1 when None; LSN)."""
        return (-1 if self.commit is None else self.commit, self.lsn)


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One change of one row of a source table of the policy.

    `table` is the source's schema-qualified table (`public.orders`); `before` and
    `after` are the row images with decoded values (None where Debezium sent none);
    `ts` is the time of the change as an instant (µs): the envelope's `ts_ms`, else `source.ts_ms`;
    `position` is where Debezium read it (None when the record does not say, e.g. another
    connector or a hand-written record).
    """

    table: str
    key: Key
    op: Op
    before: Mapping[str, Value] | None
    after: Mapping[str, Value] | None
    ts: Instant
    position: SourcePosition | None = None

    def at(self, ts: Instant) -> ChangeEvent:
        """The same event at another time (`dataclasses.replace(self, ts=ts)`, without its
        field lookups: the driver moves most events to its clock, one call per event)."""
        return ChangeEvent(
            self.table, self.key, self.op, self.before, self.after, ts, self.position
        )


@dataclass(frozen=True, slots=True)
class Tombstone:
    """The null-valued record Debezium sends after a delete (for log compaction)."""

    table: str
    key: Key
