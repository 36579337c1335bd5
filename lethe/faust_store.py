"""The driver's state in Faust tables: `FaustStore`, a `policy.store.Store` for the worker.

Three tables on the RocksDB store, bytes in and out, one changelog topic each
(`<app id>-<table>-changelog`), co-partitioned with the subject-keyed stream that writes them:
- `subject-rows` (`ROWS`): row states (`RowState.to_bytes`), keyed by the row id encoded so
  that a subject's rows are one contiguous key range (`row_key`): `rows_of` and `has_rows`
  are a prefix scan of the current partition's RocksDB, never a scan of every row;
- `subject-states` (`SUBJECTS`): subject states (`SubjectState.to_bytes`), keyed by subject;
- `subject-row-locations` (`LOCATIONS`): (table, key) -> subject, for `locate`. It costs one
  more changelog record when a row is first stored, deleted or moved to another subject.

The due index is not a table: it is derived from the rows, so it lives in memory, one heap
per partition, rebuilt on the first use of a partition after it was assigned (a scan of the
partition's rows asking `next_due` for each) and dropped when the partition is revoked.
Re-arming a timer therefore writes nothing to Kafka or RocksDB (no tombstones). Faust's
rebalances revoke every partition, so after each rebalance the first event of a partition
pays one scan of its rows (and of the subjects they name) before it is processed.

Every read, write and delete works on the partition of the event being processed
(`faust.current_event()`): its own RocksDB and its own changelog partition, never another's.
Faust's own `del table[key]` removes the key from the partition where this process last
wrote it, while its tombstone goes to the current event's changelog partition; a row that
moves to another partition (its subject changed) has its `locations` entry written there
first and deleted here after, so the store writes and deletes through the partition's
database itself, with the same changelog records Faust sends. Call the methods from an
agent's stream, never from a timer or task. Keep one `Driver` per partition over the store:
the driver's clock is per stream partition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

import faust
import orjson
from faust.types import TP

from lethe.changelog import PartitionTable
from policy.events import Key
from policy.instants import Instant
from policy.state import RowState, SubjectState
from policy.store import NO_HINT, DueIndex, NoHint, RowId

log = logging.getLogger(__name__)

NextDue = Callable[[RowState, SubjectState | None], Instant | None]
"""When a stored row falls due next given its subject's state (`policy.engine.next_due`
with the engine bound): how the due index is rebuilt from the rows."""

ROWS: Final = "subject-rows"
SUBJECTS: Final = "subject-states"
LOCATIONS: Final = "subject-row-locations"
"""Not `locations`: the assign agent's table of the same app has that name."""

_NO_SUBJECT: Final = b"\x00"
_SUBJECT: Final = b"\x01"
_END: Final = b"\x00\x01"
_NUL: Final = b"\x00"
_ESCAPED_NUL: Final = b"\x00\xff"
_FAUST_OFFSET_KEY: Final = b"__faust\x00offset__"
"""Faust's own key in each RocksDB partition: the changelog offset it persisted."""


class _Serving:
    """Stands for the event being processed while the store serves a given partition."""

    __slots__ = ("partition",)

    def __init__(self, partition: int) -> None:
        self.partition = partition


_SERVING: ContextVar[_Serving | None] = ContextVar("lethe_faust_store_serving", default=None)


def _after(key: bytes | None) -> bytes | None:
    """The first key a scan that resumes after `key` reads (RocksDB orders keys bytewise)."""
    return None if key is None else key + b"\x00"


@dataclass(frozen=True, slots=True)
class StateTables:
    """The three tables of a `FaustStore` (declare them with `declare_state_tables`)."""

    rows: Any
    subjects: Any
    locations: Any


def declare_state_tables(
    app: faust.App, partitions: int, options: dict[str, Any] | None = None
) -> StateTables:
    """Declare the store's tables on `app` with `partitions` changelog partitions: as many
    as the subject-keyed topic the agent reads (Faust refuses a mismatch at the first write)."""

    def table(name: str) -> Any:
        return app.Table(
            name,
            key_type=bytes,
            value_type=bytes,
            partitions=partitions,
            options=None if options is None else dict(options),
        )

    return StateTables(table(ROWS), table(SUBJECTS), table(LOCATIONS))


def subject_prefix(subject: str | None) -> bytes:
    """The first bytes of the key of every row of the subject, and of no other row.

    None is one byte; a subject is a tag byte, its UTF-8 with NUL escaped, and a terminator
    that cannot occur inside: no subject's prefix starts another's."""
    if subject is None:
        return _NO_SUBJECT
    return _SUBJECT + subject.encode().replace(_NUL, _ESCAPED_NUL) + _END


def where_key(table: str, key: Key) -> bytes:
    """The (table, key) part of a row's key, and the key of its `locations` entry."""
    return orjson.dumps([table, [list(pair) for pair in key]])


def row_key(row_id: RowId) -> bytes:
    """The `rows` key of a row id: the subject's prefix, then table and key."""
    subject, table, key = row_id
    return subject_prefix(subject) + where_key(table, key)


def _where(data: bytes) -> tuple[str, Key]:
    table, pairs = orjson.loads(data)
    return table, tuple((str(column), value) for column, value in pairs)


def decode_row_key(data: bytes) -> RowId:
    """The row id of a `rows` key (inverse of `row_key`)."""
    if data[:1] == _NO_SUBJECT:
        subject = None
        rest = data[1:]
    else:
        end = data.index(_END, 1)
        subject = data[1:end].replace(_ESCAPED_NUL, _NUL).decode()
        rest = data[end + len(_END) :]
    table, key = _where(rest)
    return subject, table, key


def _shared_row_id(row_id: RowId, names: dict[str, str]) -> RowId:
    """The same row id, its strings replaced by the equal ones already in `names`."""
    subject, table, key = row_id
    if subject is not None:
        subject = names.setdefault(subject, subject)
    columns = tuple((names.setdefault(column, column), value) for column, value in key)
    return subject, names.setdefault(table, table), columns


class FaustStore:
    """A `policy.store.Store` over `StateTables`, for the partition of the current event.

    `next_due(row, subject)` rebuilds a partition's due index from its rows; pass
    `lambda row, subject: policy.engine.next_due(engine, row, subject)`.
    With `app`, the due index of every revoked partition is dropped, to be rebuilt from the
    recovered rows at its next use."""

    __slots__ = ("_due", "_last_read", "_locations", "_next_due", "_rows", "_subjects", "tables")

    def __init__(
        self, tables: StateTables, next_due: NextDue, app: faust.App | None = None
    ) -> None:
        self.tables = tables
        self._rows = PartitionTable(tables.rows)
        self._subjects = PartitionTable(tables.subjects)
        self._locations = PartitionTable(tables.locations)
        self._next_due = next_due
        self._due: dict[int, DueIndex] = {}
        self._last_read: tuple[object, RowId, bytes, bytes | None] | None = None
        """The last row read: (the event it was read for, row id, key, stored bytes). The
        driver locates a row, reads it, then writes it back: each step after the first takes
        these bytes instead of reading RocksDB again (any write or delete of the rows, or a
        revocation, forgets them; another event does not use them)."""
        if app is not None:

            def forget_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
                revoked: set[TP] = args[0] if args else kwargs.get("revoked", set())
                self.forget({tp.partition for tp in revoked})

            app.on_partitions_revoked.connect(forget_revoked)

    # --- rows ----------------------------------------------------------------------------

    def row(self, row_id: RowId) -> RowState | None:
        data = self._read(row_id)[1]
        return None if data is None else RowState.from_bytes(data)

    def put_row(self, row_id: RowId, state: RowState) -> None:
        self._index()
        partition = self._partition()
        key, stored = self._read(row_id)
        self._last_read = None
        data = state.to_bytes()
        if stored == data:
            return
        if stored is None:
            subject, table, row_key_values = row_id
            self._put(self._locations, where_key(table, row_key_values), orjson.dumps(subject))
        self._rows.put(partition, key, data, _SERVING.get() is not None)

    def delete_row(self, row_id: RowId) -> None:
        self._last_read = None
        due = self._index()
        key = row_key(row_id)
        if self._get(self._rows, key) is None:
            return
        due.arm(row_id, None)
        _, table, row_key_values = row_id
        self._delete(self._rows, key)
        self._delete(self._locations, where_key(table, row_key_values))

    def locate(self, table: str, key: Key, likely: str | NoHint | None = NO_HINT) -> RowId | None:
        if not isinstance(likely, NoHint):
            row_id: RowId = (likely, table, key)
            if self._read(row_id)[1] is not None:
                return row_id
        data = self._get(self._locations, where_key(table, key))
        if data is None:
            return None
        subject: str | None = orjson.loads(data)
        return subject, table, key

    def rows_of(self, subject: str | None) -> list[RowId]:
        self._index()
        prefix = subject_prefix(subject)
        return [(subject, *_where(key[len(prefix) :])) for key in self._keys_from(prefix)]

    def has_rows(self, subject: str | None) -> bool:
        self._index()
        return next(self._keys_from(subject_prefix(subject)), None) is not None

    # --- subjects ------------------------------------------------------------------------

    def subject(self, subject: str) -> SubjectState | None:
        data = self._get(self._subjects, subject.encode())
        return None if data is None else SubjectState.from_bytes(data)

    def put_subject(self, subject: str, state: SubjectState) -> None:
        self._put(self._subjects, subject.encode(), state.to_bytes())

    def delete_subject(self, subject: str) -> None:
        key = subject.encode()
        if self._get(self._subjects, key) is not None:
            self._delete(self._subjects, key)

    # --- due index -----------------------------------------------------------------------

    def arm(self, row_id: RowId, at: Instant | None) -> None:
        self._index().arm(row_id, at)

    def pop_due(self, until: Instant) -> tuple[Instant, RowId] | None:
        return self._index().pop(until)

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the due index of these partitions: it is rebuilt from their rows at next use."""
        self._last_read = None
        for partition in partitions:
            self._due.pop(partition, None)

    @contextmanager
    def serving(self, partition: int) -> Iterator[None]:
        """Work on `partition` instead of the current event's, in this task only (the
        in-process hand-off, `lethe.agents.handoff`: the assign agent's event is from a change
        topic). Writes send their changelog records through the app's forwarder, which
        must have one."""
        token = _SERVING.set(_Serving(partition))
        try:
            yield
        finally:
            _SERVING.reset(token)

    # --- census (metrics) ---------------------------------------------------------------

    def states_after(
        self, after: bytes | None
    ) -> Iterator[tuple[bytes, RowState, SubjectState | None]]:
        """The current partition's rows whose key comes after `after` (every row: None), in
        key order, each with its key and its subject's state: a scan that can stop and be
        taken up again from the last key it gave."""
        return self._scan(self._partition(), {}, after)

    def subject_states_after(self, after: bytes | None) -> Iterator[tuple[bytes, SubjectState]]:
        """The current partition's subject states whose key comes after `after` (all: None),
        in key order, each with its key."""
        db = self.tables.subjects.data._db_for_partition(self._partition())
        for key, data in db.items(from_key=_after(after)):
            if key == _FAUST_OFFSET_KEY:
                continue
            yield key, SubjectState.from_bytes(data)

    # --- internals -----------------------------------------------------------------------

    def _event(self) -> tuple[object, int]:
        """The event being processed and the partition the store works on: its own, or the
        one it is `serving`."""
        serving = _SERVING.get()
        if serving is not None:
            return serving, serving.partition
        event = faust.current_event()
        if event is None:
            raise RuntimeError("the Faust store is used outside an agent's stream")
        return event, event.message.partition

    def _partition(self) -> int:
        return self._event()[1]

    def _read(self, row_id: RowId) -> tuple[bytes, bytes | None]:
        """The row's key and stored bytes (None: absent), read once per event: a read of the
        same row while the same event is processed, with no write or delete of a row since,
        takes them from `_last_read`."""
        event, partition = self._event()
        last = self._last_read
        if last is not None and last[0] is event and last[1] == row_id:
            return last[2], last[3]
        key = row_key(row_id)
        data = self._rows.get(partition, key)
        self._last_read = (event, row_id, key, data)
        return key, data

    def _index(self) -> DueIndex:
        """The current partition's due index, rebuilt from its rows on first use."""
        partition = self._partition()
        due = self._due.get(partition)
        if due is None:
            due = self._due[partition] = self._rebuild(partition)
        return due

    def _scan(
        self,
        partition: int,
        subjects: dict[str, SubjectState | None],
        after: bytes | None = None,
    ) -> Iterator[tuple[bytes, RowState, SubjectState | None]]:
        """Every row of `partition` (its key, state and subject's state) whose key comes
        after `after` (all: None), Faust's own keys (the persisted changelog offset) left
        out; each subject read once, into `subjects`."""
        for key, data in self._rows_db(partition).items(from_key=_after(after)):
            if key[:1] not in (_NO_SUBJECT, _SUBJECT):
                continue
            row = RowState.from_bytes(data)
            subject = None
            if row.subject is not None:
                if row.subject not in subjects:
                    subjects[row.subject] = self.subject(row.subject)
                subject = subjects[row.subject]
            yield key, row, subject

    def _rebuild(self, partition: int) -> DueIndex:
        started = time.monotonic()
        due = DueIndex()
        subjects: dict[str, SubjectState | None] = {}
        names: dict[str, str] = {}  # the index's row ids share their strings
        for key, row, subject in self._scan(partition, subjects):
            due.arm(_shared_row_id(decode_row_key(key), names), self._next_due(row, subject))
        log.info(
            "Rebuilt the due index of partition %d: %d timers over %d subjects in %.2fs",
            partition,
            len(due),
            len(subjects),
            time.monotonic() - started,
        )
        return due

    def _rows_db(self, partition: int) -> Any:
        return self.tables.rows.data._db_for_partition(partition)

    def _get(self, table: PartitionTable, key: bytes) -> bytes | None:
        """The key's value in the current partition's database (None: absent)."""
        return table.get(self._partition(), key)

    def _put(self, table: PartitionTable, key: bytes, value: bytes) -> None:
        """Write the key in the current partition: its changelog record, then its database."""
        table.put(self._partition(), key, value, _SERVING.get() is not None)

    def _delete(self, table: PartitionTable, key: bytes) -> None:
        """Delete the key in the current partition: its changelog tombstone, then its
        database. Not `del table[key]`: that deletes wherever this process last wrote the key."""
        table.delete(self._partition(), key, _SERVING.get() is not None)

    def _keys_from(self, prefix: bytes) -> Iterator[bytes]:
        for key in self._rows_db(self._partition()).keys(from_key=prefix):
            if not key.startswith(prefix):
                return
            yield key
