"""What the engine remembers per row and per subject, and the commands it issues.

`RowState` keeps only what the rules need: the row's table, key and subject, the
values of the columns its clocks and conditions read (instants as µs, never the
personal text columns), since when each "at once" condition has held (under `@<n>`
in the values), the stages already issued, and the anonymise and delete commands sent
but not yet seen applied in the change stream (`Unconfirmed`). `SubjectState` keeps the
subject's latest instant per activity and its open legal holds. Both are frozen and
serialise to compact JSON bytes (`to_bytes`/`from_bytes`) for key-value tables and
changelog topics; bytes of another format raise `StateFormatError` (row states of format
2, from before confirmation was kept, are read as having nothing unconfirmed).

A row state built by the engine also carries its `schedule`: its next due, worked
out for exactly its values and issued stages (and, for rows whose clocks read the
subject's activity, that activity). It is derived data, never serialised nor compared,
and only the engine sets it: a row read back from bytes, built by hand or copied with
`dataclasses.replace` has none (one passed in is dropped), so its stages are simply
worked out again.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import orjson

from policy.events import Key, KeyValue
from policy.instants import Instant, format_instant
from policy.model import Action

StateValue = str | int | float | bool | None
"""A column value as the row state keeps it: instants are ints (µs since the epoch)."""

PendingStage = tuple[Instant, int, str, tuple[str, ...], tuple[str, ...]]
"""(due, rank, stage id, purposes, fields): one stage of a row not issued yet; the rank
(0 anonymise, 1 archive, 2 delete) says its action."""
Schedule = tuple[object, Instant | None, Mapping[str, Instant] | None]
"""(source plan's token, next due, the subject's activity it was worked out for or None):
what the engine worked out for a row state's own values and issued stages. Only plain
values when the clocks do not read the activity, so the garbage collector stops tracking
it: such a row state then costs the collector one object, not two."""

_ROW_FORMAT: Final = 3
"""Format 3 added the unconfirmed commands (a seventh item, left out when there are none)."""
_ROW_FORMAT_WITHOUT_CONFIRMATION: Final = 2
_SUBJECT_FORMAT: Final = 2
"""Format 1 also kept change and first-seen times (and release times per subject)."""
_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


class StateFormatError(ValueError):
    """Stored state bytes are not a state of this format (a corrupt or foreign record)."""


@dataclass(frozen=True, slots=True)
class Unconfirmed:
    """An anonymise or delete command sent for the row and not yet seen applied: a delete is
    confirmed by the row's delete event, an anonymise by a change event whose image holds the
    anonymised values (or by the row's delete). Archive is never kept here: the business's
    archive job applies it and the change stream shows nothing."""

    stage: str
    due_at: Instant
    """The command's due instant: with the row and stage, its `command_id`."""
    issued_at: Instant
    """When it was first sent."""
    attempts: int
    """How often it was sent (1: not re-issued yet)."""
    sent_at: Instant
    """When it was last sent: the instant of the sweep (or event) that sent it, which is
    later than `issued_at` when the enforcer caught up on a stretch of time at once."""
    fields: tuple[str, ...] = ()
    """The columns an anonymise command empties or coarsens (none for a delete)."""

    def to_json(self) -> list[object]:
        return [
            self.stage,
            self.due_at,
            self.issued_at,
            self.attempts,
            self.sent_at,
            list(self.fields),
        ]

    @classmethod
    def from_json(cls, item: list[Any]) -> Unconfirmed:
        stage, due_at, issued_at, attempts, sent_at, fields = item
        if not all(type(value) is int for value in (due_at, issued_at, attempts, sent_at)):
            raise ValueError("unconfirmed: times and attempts must be integers")
        return cls(str(stage), due_at, issued_at, attempts, sent_at, tuple(str(f) for f in fields))


@dataclass(frozen=True, slots=True)
class RowState:
    """The engine's memory of one row."""

    table: str
    key: Key
    subject: str | None
    values: Mapping[str, StateValue]
    """The columns the rules read (instants as µs); `@<n>`: since when an at-once condition held."""
    issued: frozenset[str] = frozenset()
    """Ids of the stages already issued (`archive`, `delete`, `anonymise:<purpose>:<n>`, ...)."""
    unconfirmed: tuple[Unconfirmed, ...] = ()
    """The anonymise and delete commands sent and not yet seen applied, by stage order."""
    schedule: Schedule | None = field(default=None, compare=False, repr=False)
    """The engine's worked-out next due for this very state (derived; not serialised). Only
    the engine sets it: one passed here is dropped, as it may be another state's."""

    def __post_init__(self) -> None:
        if self.schedule is not None:
            object.__setattr__(self, "schedule", None)

    def to_bytes(self) -> bytes:
        items: list[object] = [
            _ROW_FORMAT,
            self.table,
            [list(pair) for pair in self.key],
            self.subject,
            dict(self.values),
            sorted(self.issued),
        ]
        if self.unconfirmed:
            items.append([entry.to_json() for entry in self.unconfirmed])
        return orjson.dumps(items)

    @classmethod
    def from_bytes(cls, data: bytes) -> RowState:
        try:
            fmt, table, key, subject, values, issued, *rest = orjson.loads(data)
            if fmt == _ROW_FORMAT_WITHOUT_CONFIRMATION and not rest:
                unconfirmed: tuple[Unconfirmed, ...] = ()
            elif fmt == _ROW_FORMAT and len(rest) <= 1:
                unconfirmed = tuple(Unconfirmed.from_json(item) for item in (rest or [[]])[0])
            else:
                raise ValueError(fmt)
            return cls(
                table,
                tuple((str(column), value) for column, value in key),
                subject,
                values,
                frozenset(issued),
                unconfirmed,
            )
        except (ValueError, TypeError) as exc:
            raise StateFormatError(f"not a row state of format {_ROW_FORMAT}: {exc}") from None


_new = object.__new__
(
    _set_table,
    _set_key,
    _set_subject,
    _set_values,
    _set_issued,
    _set_unconfirmed,
    _set_schedule,
) = (
    RowState.__dict__[name].__set__
    for name in ("table", "key", "subject", "values", "issued", "unconfirmed", "schedule")
)


def build_row_state(
    table: str,
    key: Key,
    subject: str | None,
    values: Mapping[str, StateValue],
    issued: frozenset[str],
    unconfirmed: tuple[Unconfirmed, ...],
    schedule: Schedule | None,
) -> RowState:
    """`RowState(...)` at about half the cost (the engine's hot path builds one per event)."""
    row: RowState = _new(RowState)
    _set_table(row, table)
    _set_key(row, key)
    _set_subject(row, subject)
    _set_values(row, values)
    _set_issued(row, issued)
    _set_unconfirmed(row, unconfirmed)
    _set_schedule(row, schedule)
    return row


@dataclass(frozen=True, slots=True)
class SubjectState:
    """The engine's memory of one subject (a person)."""

    activity: Mapping[str, Instant] = field(default_factory=lambda: _EMPTY)
    """Latest instant per activity (e.g. `contact`)."""
    holds: frozenset[str] = frozenset()
    """Open legal holds, as `<table>:<key>` ids."""

    def to_bytes(self) -> bytes:
        return orjson.dumps([_SUBJECT_FORMAT, dict(self.activity), sorted(self.holds)])

    @classmethod
    def from_bytes(cls, data: bytes) -> SubjectState:
        try:
            fmt, activity, holds = orjson.loads(data)
            if fmt != _SUBJECT_FORMAT:
                raise ValueError(fmt)
            return cls(dict(activity), frozenset(holds))
        except (ValueError, TypeError) as exc:
            raise StateFormatError(
                f"not a subject state of format {_SUBJECT_FORMAT}: {exc}"
            ) from None


EMPTY_SUBJECT: Final = SubjectState()


COMMAND_NAMESPACE: Final = uuid.UUID("6f1c1d8e-3b52-5d0e-9a57-1e7e5c0a4d21")
"""The UUID namespace of command ids (see `command_id`)."""


def command_id(table: str, key: Key, stage: str, due_at: Instant) -> str:
    """The command's id: UUID v5 in `COMMAND_NAMESPACE` of the JSON text
    `[table, [[column, value], ...], stage, due_at]` (due_at as printed, ISO-8601 UTC).

    Same row, stage and due instant: same id, in every process and on every run, so a
    consumer drops a command it has already applied; a stage due again at another instant
    (an account closed, reopened and closed again) gets a new id.
    """
    name = orjson.dumps([table, [list(pair) for pair in key], stage, format_instant(due_at)])
    return str(uuid.uuid5(COMMAND_NAMESPACE, name.decode()))


@dataclass(frozen=True, slots=True)
class Command:
    """Archive, anonymise or delete one row; `fields` (column names) only for anonymise."""

    issued_at: Instant
    due_at: Instant
    action: Action
    stage: str
    """Which stage of the row's rules this is: `archive`, `delete`, or an anonymise stage
    (`anonymise:<purpose>:<n>`, or `ended:<purposes>` for columns only ended purposes needed)."""
    table: str
    key: Key
    subject: str | None
    purposes: tuple[str, ...]
    fields: tuple[str, ...] = ()
    attempt: int = 1
    """1 when first sent; n > 1: the n-th send of a command not confirmed in time (same id)."""
    reissued_at: Instant | None = None
    """When this re-issue is sent (None on the first send, sent at `issued_at`)."""

    @property
    def sent_at(self) -> Instant:
        """When this send of the command happens: `reissued_at`, else `issued_at`."""
        return self.issued_at if self.reissued_at is None else self.reissued_at

    @property
    def command_id(self) -> str:
        """Deterministic: same row, stage and due instant, same id (see `command_id`)."""
        return command_id(self.table, self.key, self.stage, self.due_at)

    def to_json(self) -> dict[str, object]:
        """The command as `lethe simulate` prints it (and downstream topics carry it)."""
        document: dict[str, object] = {
            "command_id": self.command_id,
            "issued_at": format_instant(self.issued_at),
            "due_at": format_instant(self.due_at),
            "action": self.action.value,
            "stage": self.stage,
            "table": self.table,
            "key": dict(self.key),
            "subject": self.subject,
            "purposes": list(self.purposes),
        }
        if self.action is Action.ANONYMISE:
            document["fields"] = list(self.fields)
        if self.reissued_at is not None:
            document["attempt"] = self.attempt
            document["reissued_at"] = format_instant(self.reissued_at)
        return document

    def sort_key(self) -> tuple[Instant, str, tuple[tuple[int, KeyValue], ...], int]:
        """Order of output: when sent (`sent_at`), then table, then key (numbers before text),
        then stage."""
        return (self.sent_at, self.table, key_order(self.key), _ACTION_ORDER[self.action])


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The change stream showed `command` applied to its row."""

    command: Command
    """The command as first sent (its id, stage, due and issue times)."""
    at: Instant
    """The confirming change event's time."""
    attempts: int = 1
    """How often the command had been sent."""


_ACTION_ORDER: Final = MappingProxyType({Action.ANONYMISE: 0, Action.ARCHIVE: 1, Action.DELETE: 2})


def key_order(key: Key) -> tuple[tuple[int, KeyValue], ...]:
    """A total order on keys of mixed types: numbers by value, then text."""
    return tuple(
        (0, value)
        if isinstance(value, int | float) and not isinstance(value, bool)
        else (1, "" if value is None else str(value))
        for _, value in key
    )
