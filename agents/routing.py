"""Where a change of a row goes: the subject it is keyed by, and what `locations` must remember.

`route(engine, located, event)` is the assign agent's decision as a pure function: no Kafka,
no table, no clock. `located` is what the `locations` table holds for the row (None: never
seen; `NO_SUBJECT`: seen without subject; else its subject); the result says what to write
there and which records to send to `<app id>-subject-events`:
- the row's subject is read from its image (after for c, u and r; before for d) with the
  policy's subject ways, in order, exactly as the engine reads it; when the image lacks a
  column the ways need before one names a subject (a delete whose before image holds only
  the primary key, REPLICA IDENTITY DEFAULT; an image without the subject columns), the
  subject is the located one. A delete whose before image names no subject also takes the
  located one: Debezium sends the columns outside the key as null under REPLICA IDENTITY
  DEFAULT;
- the event is keyed by the subject, or by the row (`<table>:<key JSON>`) when it has none;
- `locations` is written when the row is first seen or its key changes, and the row is
  removed from it on a delete: no write on an ordinary update. Tables whose policy names no
  subject are never written (their rows are always keyed by the row). It is not read for
  them, nor for an update whose before image names the row's subject (REPLICA IDENTITY
  FULL), which tells where the row was (`located_by_event`);
- when the key changes (the row moved to another subject, or from or to none), a `depart`
  keyed by the old key goes with the event, so the enforcing stage releases the row's state
  there. See "Wire format of lethe-subject-events" in docs/design/enforcer.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import orjson

from lethe import topics
from policy.engine import Engine
from policy.events import ChangeEvent, Key, Op, Value

NO_SUBJECT: Final = "-"
"""The `locations` value of a row seen without subject (a subject always holds a colon)."""

_EMPTY: Final[Mapping[str, Value]] = {}


class Kind(StrEnum):
    EVENT = "event"
    DEPART = "depart"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record for `<app id>-subject-events` (value: the change record's, on a depart too)."""

    kind: Kind
    key: str
    """The subject, or `<table>:<key JSON>` for a row without subject."""
    subject: str | None
    """The subject the record is keyed by; None when keyed by the row."""
    moved: str | None = None
    """An event: the key the row's earlier records went under (it moved); a depart: the key
    of the event that moved it."""


@dataclass(frozen=True, slots=True)
class Routing:
    """What one change event does: `locations` writes (None: remove) and records to send."""

    writes: tuple[tuple[str, str | None], ...]
    records: tuple[Outgoing, ...]


def key_json(key: Key) -> str:
    """The primary key as a compact JSON object in primary-key order: `{"id":42}`."""
    return orjson.dumps(dict(key)).decode()


def row_id(table: str, key: Key) -> str:
    """`<table>:<key JSON>`: the row's `locations` key, and its record key without subject."""
    return f"{table}:{key_json(key)}"


class Unknown:
    pass


UNKNOWN: Final = Unknown()
"""The image cannot tell the subject: it lacks a column the subject ways need."""


def image_subject(
    ways: tuple[tuple[str, str, bool], ...], image: Mapping[str, Value]
) -> str | Unknown | None:
    """The subject the image names (as the engine reads it), None for none, or UNKNOWN."""
    for column, prefix, lower in ways:
        if column not in image:
            return UNKNOWN
        value = image[column]
        if value is None or value == "":
            continue
        text = str(value)
        return prefix + (text.lower() if lower else text)
    return None


def located_by_event(engine: Engine, event: ChangeEvent) -> str | Unknown | None:
    """What `route` may take as the row's `located` without reading `locations`: None for a
    table whose policy names no subject (`route` does not look); for an update whose before
    image names the row's subject (REPLICA IDENTITY FULL: every column), that subject, or
    `NO_SUBJECT` when it names none: the row's location before this change. UNKNOWN
    otherwise (no before image, REPLICA IDENTITY DEFAULT; a snapshot read, a create, a
    delete): `locations` must be read.

    Such an update writes `locations` only when its subject changes; a row first seen by such
    an update is not written there, which its later changes do not need: under REPLICA IDENTITY
    FULL they carry their before image too."""
    ways = engine.plans[event.table].subject_ways
    if not ways:
        return None
    if event.op is not Op.UPDATE or not event.before:
        return UNKNOWN
    found = image_subject(ways, event.before)
    if isinstance(found, Unknown):
        return UNKNOWN
    return NO_SUBJECT if found is None else found


def route(
    engine: Engine, located: str | None, event: ChangeEvent, row: str | None = None
) -> Routing:
    """Decide the `locations` writes and the records for one change event (see the module);
    `row`: its `row_id`, when the caller has it already."""
    ways = engine.plans[event.table].subject_ways
    if row is None:
        row = row_id(event.table, event.key)
    if not ways:
        return Routing((), (Outgoing(Kind.EVENT, row, None),))
    deleted = event.op is Op.DELETE
    image = (event.before if deleted else event.after) or _EMPTY
    known = None if located is None or located == NO_SUBJECT else located
    found = image_subject(ways, image)
    if deleted and found is None:  # REPLICA IDENTITY DEFAULT: the key, other columns null
        found = UNKNOWN
    subject = known if isinstance(found, Unknown) else found
    target = row if subject is None else subject
    stored = NO_SUBJECT if subject is None else subject
    writes: tuple[tuple[str, str | None], ...] = ()
    if deleted:
        if located is not None:
            writes = ((row, None),)
    elif located != stored:
        writes = ((row, stored),)
    if located is None:
        return Routing(writes, (Outgoing(Kind.EVENT, target, subject),))
    previous = row if known is None else known
    if previous == target:
        return Routing(writes, (Outgoing(Kind.EVENT, target, subject),))
    return Routing(
        writes,
        (
            Outgoing(Kind.EVENT, target, subject, moved=previous),
            Outgoing(Kind.DEPART, previous, known, moved=target),
        ),
    )


CHANGE_HEADERS: Final = ((topics.KIND_HEADER, topics.CHANGE_KIND),)
"""The headers of a `change` record (an event as A decoded it, `policy.event_wire`)."""


def wire_headers(
    record: Outgoing, event: ChangeEvent, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """The Kafka headers of `record` (docs/design/enforcer.md, "Wire format of
    lethe-subject-events"), in a fixed order."""
    headers = [
        (topics.KIND_HEADER, record.kind.value.encode()),
        (topics.TABLE_HEADER, event.table.encode()),
        (topics.KEY_HEADER, key_json(event.key).encode()),
    ]
    if record.kind is Kind.EVENT:
        headers.append((topics.OP_HEADER, event.op.value.encode()))
    headers += [
        (topics.TS_HEADER, str(event.ts).encode()),
        (topics.SOURCE_TOPIC_HEADER, topic.encode()),
        (topics.SOURCE_PARTITION_HEADER, str(partition).encode()),
        (topics.SOURCE_OFFSET_HEADER, str(offset).encode()),
    ]
    if record.subject is not None:
        headers.append((topics.SUBJECT_HEADER, record.subject.encode()))
    if record.moved is not None:
        name = topics.MOVED_FROM_HEADER if record.kind is Kind.EVENT else topics.MOVED_TO_HEADER
        headers.append((name, record.moved.encode()))
    return headers
