"""`lethe.audit`'s record values: schemaless Avro of `policy.audit.AUDIT_SCHEMA`.

`audit_avro(record)` is the value the worker sends; `fastavro_audit_avro(record)` the same
through fastavro's generic writer, the reference the tests compare it with (and what readers
use: `schemas/audit_record.avsc`).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

from fastavro import parse_schema, schemaless_writer

from policy.audit import AUDIT_SCHEMA, AuditRecord, audit_datum
from policy.events import Key
from policy.model import Action

T = TypeVar("T")
_PARSED: Final = parse_schema(AUDIT_SCHEMA)


def audit_avro(record: AuditRecord) -> bytes:
    """The record's value on `lethe.audit`: schemaless Avro of `AUDIT_SCHEMA` (no header, no
    registry; read it with `schemas/audit_record.avsc`).

    Written by hand for this one schema, byte for byte what fastavro's `schemaless_writer`
    writes (`fastavro_audit_avro`; tests/unit/test_audit.py compares the two on random
    records): fastavro's generic writer took 16-21 µs a record here (resolving eleven unions
    and two logical types each time), this one 7, of a worker's ~230 µs per change event."""
    out = bytearray()
    _long(out, _DECISIONS[record.decision.value])
    _long(out, record.at)
    _optional_string(out, record.table)
    _optional(out, record.key, _key_map)
    _optional_string(out, record.subject)
    _block(out, record.purposes, _string)
    _optional_string(out, record.stage)
    _optional(out, record.action, _action)
    _optional_string(out, record.command_id)
    _optional_long(out, record.due_at)
    _optional_long(out, record.previous_due_at)
    _optional_long(out, record.issued_at)
    _optional_string(out, record.topic)
    partition = record.partition
    if partition is not None and not _INT_MIN <= partition <= _INT_MAX:
        raise ValueError(f"partition {partition} is not an Avro int")
    _optional_long(out, partition)
    _optional_long(out, record.offset)
    _optional_string(out, record.reason)
    return bytes(out)


def fastavro_audit_avro(record: AuditRecord) -> bytes:
    """`audit_avro` through fastavro's generic writer (the reference its tests compare to)."""
    buffer = io.BytesIO()
    schemaless_writer(buffer, _PARSED, audit_datum(record))
    return buffer.getvalue()


def _enum_symbols(name: str) -> dict[str, int]:
    for field in AUDIT_SCHEMA["fields"]:
        if field["name"] == name:
            kind = field["type"]
            enum = kind[1] if isinstance(kind, list) else kind
            return {symbol: index for index, symbol in enumerate(enum["symbols"])}
    raise KeyError(name)


_DECISIONS: Final = _enum_symbols("decision")
_ACTIONS: Final = _enum_symbols("action")
_LONG_MIN: Final = -(2**63)
_LONG_MAX: Final = 2**63 - 1
_INT_MIN: Final = -(2**31)
_INT_MAX: Final = 2**31 - 1
_DOUBLE: Final = struct.Struct("<d")


def _long(out: bytearray, value: int) -> None:
    """Avro's long: zig-zag, then 7 bits a byte, low first."""
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise ValueError(f"{value} is not an Avro long")
    encoded = (value << 1) ^ (value >> 63)
    while encoded > 0x7F:
        out.append((encoded & 0x7F) | 0x80)
        encoded >>= 7
    out.append(encoded)


def _block(out: bytearray, items: Sequence[T], write: Callable[[bytearray, T], None]) -> None:
    """An Avro array or map: one block of `items` (none for an empty one), then its end."""
    if items:
        _long(out, len(items))
        for item in items:
            write(out, item)
    out.append(0)


def _optional(out: bytearray, value: T | None, write: Callable[[bytearray, T], None]) -> None:
    """A union [null, X]: branch 0 for None, else branch 1 and the value as `write` writes X."""
    if value is None:
        out.append(0)
    else:
        out.append(2)
        write(out, value)


def _key_map(out: bytearray, key: Key) -> None:
    _block(out, list(dict(key).items()), _key_column)


def _action(out: bytearray, action: Action) -> None:
    _long(out, _ACTIONS[action.value])


def _key_column(out: bytearray, column: tuple[str, object]) -> None:
    _string(out, column[0])
    _key_value(out, column[1])


def _string(out: bytearray, text: str) -> None:
    data = text.encode()
    _long(out, len(data))
    out += data


def _optional_string(out: bytearray, text: str | None) -> None:
    _optional(out, text, _string)


def _optional_long(out: bytearray, value: int | None) -> None:
    _optional(out, value, _long)


def _key_value(out: bytearray, value: object) -> None:
    """A key column's value in the union [null, boolean, long, double, string], the first
    branch that takes it, as fastavro picks."""
    if value is None:
        out.append(0)
    elif value is True or value is False:
        out.append(2)
        out.append(1 if value else 0)
    elif type(value) is int and _LONG_MIN <= value <= _LONG_MAX:
        out.append(4)
        _long(out, value)
    elif type(value) is int or type(value) is float:
        out.append(6)
        out += _DOUBLE.pack(value)
    elif type(value) is str:
        out.append(8)
        _string(out, value)
    else:
        raise ValueError(f"a key value of type {type(value).__name__} is not in the audit schema")
