"""Decode the typed column values of a Debezium record for a table of the policy.

`decode_record(decoding, topic, key, value)` (`decode_raw` for bytes) first checks the
record's structure exactly as the policy-free parser does (`policy.envelope`), then decodes
the row images and the key of a source of the policy into a `ChangeEvent` (or a
`Tombstone`), or returns a `Rejection`; it never raises. `decoding` is
`Decoding.compile(policy)` (or `Engine.compile(policy).decoding`), built once.

With the policy, beyond the envelope's checks: the topic is a source of the policy
[unknown_table], the key (or, without one, the row image) holds the policy's primary key
[bad_key], and each column value decodes by its type [bad_value] to an instant within the
years 0001-9999 [value_out_of_range]. As in the envelope, a detail names columns and JSON
types, never a value.

Temporal columns are decoded to `datetime` (aware, UTC) or `date`:
- with a schema, from each field's logical type `name`: `io.debezium.time.ZonedTimestamp`
  (ISO string with zone), `io.debezium.time.Timestamp` and Kafka Connect `Timestamp`
  (ms), `io.debezium.time.MicroTimestamp` (µs), `io.debezium.time.NanoTimestamp` (ns),
  `io.debezium.time.Date` and Kafka Connect `Date` (days since 1970-01-01); Kafka
  Connect `Decimal` (base64 bytes) to `Decimal`;
- without a schema, from the column types of the policy's source: `timestamptz` is
  an ISO string with zone (a string without zone is read as UTC) or an integer
  taken as microseconds since the epoch (Debezium's MicroTimestamp, the encoding of
  `time.precision.mode=adaptive_time_microseconds`); `date` is an integer count of
  days (or an ISO `YYYY-MM-DD` string).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

from policy.envelope import (
    DecodeReason,
    Image,
    Malformed,
    Record,
    Rejection,
    check_structure,
    is_int,
    json_type,
    parse_json,
    rejection_of_bug,
)
from policy.events import ChangeEvent, Key, KeyValue, Op, Tombstone, Value
from policy.instants import EPOCH, EPOCH_ORDINAL
from policy.model import ColumnType, Policy, Source

_ZONED_TIMESTAMP: Final = "io.debezium.time.ZonedTimestamp"
_MS_TIMESTAMPS: Final = frozenset(
    {"io.debezium.time.Timestamp", "org.apache.kafka.connect.data.Timestamp"}
)
_MICRO_TIMESTAMP: Final = "io.debezium.time.MicroTimestamp"
_NANO_TIMESTAMP: Final = "io.debezium.time.NanoTimestamp"
_DATES: Final = frozenset({"io.debezium.time.Date", "org.apache.kafka.connect.data.Date"})
_DECIMAL: Final = "org.apache.kafka.connect.data.Decimal"
_VARIABLE_DECIMAL: Final = "io.debezium.data.VariableScaleDecimal"


def decode_raw(
    decoding: Decoding, topic: str, key: bytes | None, value: bytes | None
) -> ChangeEvent | Tombstone | Rejection:
    """`decode_record` for a record whose key and value are JSON bytes (as read from Kafka)."""
    parsed = parse_json(key, value)
    if isinstance(parsed, Rejection):
        return parsed
    return decode_record(decoding, topic, *parsed)


def decode_record(
    decoding: Decoding, topic: object, key: object, value: object
) -> ChangeEvent | Tombstone | Rejection:
    """Check the structure (as `parse_record` does), then decode the values by the policy; never
    raises."""
    decoder = decoding.topics.get(topic) if type(topic) is str else None
    record = check_structure(topic, None if decoder is None else decoder.table, key, value)
    if isinstance(record, Rejection):
        return record
    if decoder is None:
        return Rejection(
            DecodeReason.UNKNOWN_TABLE,
            f"the topic's table is not a source of policy {decoding.policy_name!r}; declare "
            "it under `sources` or leave the topic out of the stream",
        )
    try:
        return _typed(decoder, record)
    except Malformed as bad:
        return Rejection(bad.reason, f"{decoder.table}: {bad.detail}")
    except Exception as exc:  # errors as data: a decoder bug must not stop the stream
        return rejection_of_bug(exc, decoder.table)


def _typed(source: SourceDecoder, record: Record) -> ChangeEvent | Tombstone:
    op = record.op
    if op is None:
        return Tombstone(source.table, _key(source, record.key, record.key_schema, None))
    before_schema = after_schema = None
    if record.value_schema is not None:
        before_schema, after_schema = _image_schemas(record.value_schema)
    raw_before = record.before
    before = None if raw_before is None else _values(source, raw_before, before_schema)
    raw_after = record.after
    after = None if raw_after is None else _values(source, raw_after, after_schema)
    image = after if op is not Op.DELETE else before
    key = _key(source, record.key, record.key_schema, image)
    ts = record.ts
    if ts is None:  # parse_record gives every change (not a tombstone) a time
        raise Malformed(DecodeReason.INTERNAL_ERROR, "a change without a time")
    return ChangeEvent(source.table, key, op, before, after, ts, record.position)


def _image_schemas(
    schema: Mapping[str, object],
) -> tuple[Mapping[str, object] | None, Mapping[str, object] | None]:
    """The envelope schema's `before` and `after` field schemas, in one walk."""
    before = after = None
    fields = schema.get("fields")
    if isinstance(fields, list):
        for field in fields:
            if isinstance(field, dict):
                name = field.get("field")
                if name == "before":
                    before = field
                elif name == "after":
                    after = field
    return before, after


def _columns_of(schema: Mapping[str, object] | None) -> dict[str, Mapping[str, object]]:
    """Column name -> its field schema, for the fields that carry a logical type."""
    if schema is None:
        return {}
    fields = schema.get("fields")
    if not isinstance(fields, list):
        return {}
    named: dict[str, Mapping[str, object]] = {}
    for field in fields:
        if isinstance(field, dict) and "name" in field:
            column = field.get("field")
            if isinstance(column, str):
                named[column] = field
    return named


def _values(
    source: SourceDecoder, image: Image, schema: Mapping[str, object] | None
) -> dict[str, Value]:
    """A row image with its values decoded: by the schema's logical types, else the policy's."""
    logical = _columns_of(schema) if schema is not None else None
    decoders = source.columns
    row: dict[str, Value] = {}
    if not logical:
        for column, raw in image.items():
            decoder = decoders.get(column) if raw is not None else None
            row[column] = raw if decoder is None else decoder(column, raw)
        return row
    for column, raw in image.items():
        if raw is None:
            row[column] = None
        elif column in logical:
            row[column] = _by_schema(column, logical[column], raw)
        else:
            decoder = decoders.get(column)
            row[column] = raw if decoder is None else decoder(column, raw)
    return row


Decoder = Callable[[str, Any], Value]
"""How one column decodes: (column name, raw JSON value) -> value; raises Malformed."""


@dataclass(frozen=True, slots=True)
class SourceDecoder:
    """How the records of one source's topic decode without a schema."""

    table: str
    primary_key: tuple[str, ...]
    columns: Mapping[str, Decoder]
    """Per non-text column of the source, its decoder (text and unknown columns: as is)."""
    key_columns: tuple[tuple[str, Decoder | None], ...]
    """The primary key's columns in order, each with its decoder (None: as is)."""

    @classmethod
    def compile(cls, source: Source) -> SourceDecoder:
        columns = {
            column: _TYPE_DECODERS[kind]
            for column, kind in source.columns.items()
            if kind is not ColumnType.TEXT
        }
        key_columns = tuple(
            (column, _decoder_of(source.columns.get(column))) for column in source.primary_key
        )
        return cls(source.table, source.primary_key, MappingProxyType(columns), key_columns)


@dataclass(frozen=True, slots=True)
class Decoding:
    """The decoders of every topic of a policy, built once: `Decoding.compile(policy)`."""

    policy_name: str
    topics: Mapping[str, SourceDecoder]

    @classmethod
    def compile(cls, policy: Policy) -> Decoding:
        topics = {topic: SourceDecoder.compile(s) for topic, s in policy.sources_by_topic.items()}
        return cls(policy.name, MappingProxyType(topics))


def _decoder_of(kind: ColumnType | None) -> Decoder | None:
    if kind is None:
        return None
    return _TYPE_DECODERS[kind]


def _key(
    source: SourceDecoder,
    payload: Image | None,
    schema: Mapping[str, object] | None,
    image: Mapping[str, Value] | None,
) -> Key:
    """The policy's primary key from the key object, or from the row image without one."""
    if payload is None:
        if image is None:
            raise Malformed(DecodeReason.BAD_KEY, "no key and no row image to take the key from")
        where = "row image"
        columns: Mapping[str, Any] = image
        logical = None
    else:
        where = "key"
        columns = payload
        logical = _columns_of(schema) if schema is not None else None
    key: list[tuple[str, KeyValue]] = []
    for column, decoder in source.key_columns:
        if column not in columns:
            raise Malformed(
                DecodeReason.BAD_KEY,
                f"the {where} has no column {column!r}; the policy's primary_key is "
                f"{list(source.primary_key)}",
            )
        raw = columns[column]
        field = logical.get(column) if logical else None
        if field is not None:
            value: Value = _by_schema(column, field, raw)
        elif payload is not None and decoder is not None and raw is not None:
            value = decoder(column, raw)
        else:
            value = raw
        if type(value) is int or type(value) is str:
            key.append((column, value))
            continue
        if isinstance(value, datetime | date):
            value = value.isoformat()
        elif isinstance(value, Decimal):
            value = str(value)
        if value is not None and not isinstance(value, str | int | float | bool):
            raise Malformed(
                DecodeReason.BAD_KEY,
                f"key column {column!r} is a JSON {json_type(raw)}, not a scalar",
            )
        key.append((column, value))
    return tuple(key)


def _by_schema(column: str, field: Mapping[str, object], raw: object) -> Value:
    name = field.get("name")
    if name == _ZONED_TIMESTAMP:
        if not isinstance(raw, str):
            raise _expected(column, "an ISO-8601 string", name, raw)
        return _iso_instant(column, raw)
    if name in _MS_TIMESTAMPS:
        if not is_int(raw):
            raise _expected(column, "an integer (milliseconds)", name, raw)
        return _from_us(column, raw * 1000)
    if name == _MICRO_TIMESTAMP:
        if not is_int(raw):
            raise _expected(column, "an integer (microseconds)", name, raw)
        return _from_us(column, raw)
    if name == _NANO_TIMESTAMP:
        if not is_int(raw):
            raise _expected(column, "an integer (nanoseconds)", name, raw)
        return _from_us(column, raw // 1000)
    if name in _DATES:
        if not is_int(raw):
            raise _expected(column, "an integer (days since 1970-01-01)", name, raw)
        return _from_days(column, raw)
    if name == _DECIMAL:
        parameters = field.get("parameters")
        scale = parameters.get("scale") if isinstance(parameters, dict) else None
        return _decimal(column, raw, scale)
    if name == _VARIABLE_DECIMAL and isinstance(raw, dict):
        return _decimal(column, raw.get("value"), raw.get("scale"))
    return _json_value(raw)


def _json_value(raw: object) -> Value:
    if raw is None or isinstance(raw, str | int | float | bool):
        return raw
    if isinstance(raw, list):
        return list(raw)
    if isinstance(raw, dict):
        return dict(raw)
    return str(raw)


def _timestamptz(column: str, raw: object) -> Value:
    if isinstance(raw, str):
        return _iso_instant(column, raw)
    if is_int(raw):
        return _from_us(column, raw)
    raise _expected(column, "an ISO-8601 string or integer microseconds", None, raw)


def _date(column: str, raw: object) -> Value:
    if is_int(raw):
        return _from_days(column, raw)
    if isinstance(raw, str):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise _expected(column, "days since 1970-01-01", None, raw) from None
    raise _expected(column, "an integer (days since 1970-01-01)", None, raw)


def _boolean(column: str, raw: object) -> Value:
    if isinstance(raw, bool):
        return raw
    raise _expected(column, "true or false", None, raw)


def _integer(column: str, raw: object) -> Value:
    if type(raw) is int or is_int(raw):
        return raw
    raise _expected(column, "an integer", None, raw)


def _numeric(column: str, raw: object) -> Value:
    if isinstance(raw, str):
        try:
            return Decimal(raw)
        except ArithmeticError:
            raise _expected(column, "a decimal number", None, raw) from None
    return _json_value(raw)


def _as_json(column: str, raw: object) -> Value:
    return _json_value(raw)


_TYPE_DECODERS: Final[Mapping[ColumnType, Decoder]] = MappingProxyType(
    {
        ColumnType.TIMESTAMPTZ: _timestamptz,
        ColumnType.DATE: _date,
        ColumnType.BOOLEAN: _boolean,
        ColumnType.BIGINT: _integer,
        ColumnType.INTEGER: _integer,
        ColumnType.NUMERIC: _numeric,
        ColumnType.TEXT: _as_json,
    }
)
"""How a value decodes without a schema, by the policy's column type."""


def _expected(column: str, what: str, logical: object, raw: object) -> Malformed:
    encoding = f" ({logical})" if logical else ""
    return Malformed(
        DecodeReason.BAD_VALUE,
        f"column {column!r}{encoding} should be {what}, got a JSON {json_type(raw)}; "
        "check the connector's converter settings or the column type in the policy",
    )


def _out_of_range(column: str) -> Malformed:
    return Malformed(
        DecodeReason.VALUE_OUT_OF_RANGE,
        f"column {column!r} is out of range: not an instant of the years 0001-9999",
    )


def _iso_instant(column: str, raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise Malformed(
            DecodeReason.BAD_VALUE,
            f"column {column!r} is not an ISO-8601 timestamp such as 2026-03-01T10:00:00Z",
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    if moment.tzinfo is UTC:
        return moment
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00
        raise _out_of_range(column) from None


def _from_us(column: str, micros: int) -> datetime:
    try:
        return EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise _out_of_range(column) from None


def _from_days(column: str, days: int) -> date:
    try:
        return date.fromordinal(EPOCH_ORDINAL + days)
    except (ValueError, OverflowError):
        raise _out_of_range(column) from None


def _decimal(column: str, raw: object, scale: object) -> Decimal:
    if isinstance(scale, str) and scale.isdigit():
        scale = int(scale)
    if not isinstance(raw, str) or not is_int(scale):
        raise _expected(column, "base64 bytes with an integer scale", _DECIMAL, raw)
    try:
        unscaled = int.from_bytes(base64.b64decode(raw, validate=True), "big", signed=True)
    except (binascii.Error, ValueError):
        raise Malformed(
            DecodeReason.BAD_VALUE, f"column {column!r} is not base64-encoded decimal bytes"
        ) from None
    return Decimal(unscaled).scaleb(-scale)
