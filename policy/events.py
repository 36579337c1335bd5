"""What a change of a row is once decoded: the types the engine, its state and anonymisation share.

A `ChangeEvent` is one change (create, update, delete or snapshot read, `Op`) of one row of
a source table, with its primary `Key` and its row images of decoded `Value`s; a `Tombstone`
is the null-valued record Debezium sends after a delete. They hold no decoding logic: the
envelope checks are in `policy.envelope`, the typed decoding in `policy.decoding`, so the
engine's state (`policy.state`) and anonymisation (`policy.anonymise`) depend on these
types alone.
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
class ChangeEvent:
    """One change of one row of a source table of the policy.

    `table` is the source's schema-qualified table (`public.orders`); `before` and
    `after` are the row images with decoded values (None where Debezium sent none);
    `ts` is the time of the change as an instant (µs): the envelope's `ts_ms`, else `source.ts_ms`.
    """

    table: str
    key: Key
    op: Op
    before: Mapping[str, Value] | None
    after: Mapping[str, Value] | None
    ts: Instant


@dataclass(frozen=True, slots=True)
class Tombstone:
    """The null-valued record Debezium sends after a delete (for log compaction)."""

    table: str
    key: Key
