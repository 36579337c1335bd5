"""A decoded change event as compact bytes, and back: how stage A hands its decoding to stage E.

The assign stage decodes every change record with the policy (`policy.decoding`); the
enforce stage, in another partition of `<app id>-subject-events`, needs the same
`ChangeEvent`. Sending it decoded spares E a second parse, structure check and typed
decoding of the Debezium value (about 15 µs an event, docs/benchmarks.md (a)).

`encode_event(event, where)` is compact JSON (orjson), an array:
`[1, table, [[key column, value], ...], op, ts µs, position, before, after, where]`, with
`position` `[commit LSN or null, LSN, snapshot]` or null, `where` the change record's
`[topic, partition, offset]` or null, and each row image null, an
object of the column values when all are JSON values, or `[object, typed]`, where `typed`
maps each column holding a decoded instant, date or decimal to `["t", µs since the epoch]`,
`["d", days since 1970-01-01]` or `["n", decimal text]` (its entry in `object` is null).
`decode_event(data)` gives back an equal `ChangeEvent` and `where`, or raises
`EventWireError` when the bytes do not follow this format. `encode_event` raises
`EventWireError` for a value it cannot carry (the caller then sends the change record's own
value).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Final, cast

import orjson

from policy.events import ChangeEvent, Key, KeyValue, Op, SourcePosition, Value
from policy.instants import EPOCH, EPOCH_ORDINAL
from policy.outcome_audit import Where

WIRE_VERSION: Final = 1
_US: Final = timedelta(microseconds=1)
_OPS: Final = {op.value: op for op in Op}


class EventWireError(ValueError):
    """The bytes are not an encoded change event, or the event holds a value the format
    cannot carry."""


def encode_event(event: ChangeEvent, where: Where | None = None) -> bytes:
    """The event, read from `where`, as compact bytes (see module); `EventWireError` for a
    value it cannot carry."""
    position = event.position
    try:
        return orjson.dumps(
            [
                WIRE_VERSION,
                event.table,
                event.key,
                event.op.value,
                event.ts,
                None if position is None else [position.commit, position.lsn, position.snapshot],
                _image(event.before),
                _image(event.after),
                where,
            ]
        )
    except TypeError as exc:
        raise EventWireError(f"a value of {event.table} the format cannot carry: {exc}") from None


def _image(image: Mapping[str, Value] | None) -> object:
    if image is None:
        return None
    typed: dict[str, list[object]] | None = None
    for column, value in image.items():
        kind = type(value)
        if kind is datetime:
            moment = cast(datetime, value)
            if moment.tzinfo is None:
                raise TypeError(f"column {column!r} is a datetime without zone")
            entry: list[object] = ["t", (moment - EPOCH) // _US]
        elif kind is date:
            entry = ["d", cast(date, value).toordinal() - EPOCH_ORDINAL]
        elif kind is Decimal:
            entry = ["n", str(value)]
        else:
            continue
        if typed is None:
            typed = {}
        typed[column] = entry
    if typed is None:
        return image
    return [{column: None if column in typed else value for column, value in image.items()}, typed]


def decode_event(data: bytes) -> tuple[ChangeEvent, Where | None]:
    """The event and where it was read, as `encode_event` wrote them; `EventWireError` when
    `data` does not follow the format."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise EventWireError("an encoded change event that is not JSON") from None
    if not isinstance(document, list) or len(document) != 9 or document[0] != WIRE_VERSION:
        raise EventWireError(f"an encoded change event that is not version {WIRE_VERSION}")
    _, table, key, op, ts, position, before, after, where = document
    if type(table) is not str or type(op) is not str or op not in _OPS or type(ts) is not int:
        raise EventWireError("an encoded change event without table, op or time")
    try:
        event = ChangeEvent(
            table,
            _key(key),
            _OPS[op],
            _decoded(before),
            _decoded(after),
            ts,
            None if position is None else _position(position),
        )
        return event, None if where is None else _where(where)
    except (TypeError, ValueError, OverflowError, InvalidOperation):
        raise EventWireError(f"an encoded change event of {table} that does not decode") from None


def _key(pairs: object) -> Key:
    if not isinstance(pairs, list):
        raise TypeError("key")
    key: list[tuple[str, KeyValue]] = []
    for pair in pairs:
        column, value = pair
        if type(column) is not str or isinstance(value, list | dict):
            raise TypeError("key")
        key.append((column, value))
    return tuple(key)


def _where(where: object) -> Where:
    if not isinstance(where, list):
        raise TypeError("where")
    topic, partition, offset = where
    if type(topic) is not str or type(partition) is not int or type(offset) is not int:
        raise TypeError("where")
    return topic, partition, offset


def _position(position: object) -> SourcePosition:
    if not isinstance(position, list):
        raise TypeError("position")
    commit, lsn, snapshot = position
    if (commit is not None and type(commit) is not int) or type(lsn) is not int:
        raise TypeError("position")
    if type(snapshot) is not bool:
        raise TypeError("position")
    return SourcePosition(commit, lsn, snapshot)


def _decoded(image: object) -> dict[str, Value] | None:
    if image is None:
        return None
    if isinstance(image, dict):
        return image
    if not isinstance(image, list):
        raise TypeError("image")
    values, typed = image
    if not isinstance(values, dict) or not isinstance(typed, dict):
        raise TypeError("image")
    for column, (tag, payload) in typed.items():
        if column not in values:
            raise ValueError("image")
        if tag == "t" and type(payload) is int:
            values[column] = EPOCH + timedelta(microseconds=payload)
        elif tag == "d" and type(payload) is int:
            values[column] = date.fromordinal(EPOCH_ORDINAL + payload)
        elif tag == "n" and type(payload) is str:
            values[column] = Decimal(payload)
        else:
            raise ValueError("image")
    return values
