"""Decode Debezium JsonConverter records: one envelope parser for the worker and the engine.

Two levels, one parser:
- `parse_record(topic, key, value)` (`parse_raw` for bytes) checks the structure of a
  record without a policy and returns a `Record` or a `DecodeError`. The walking-skeleton
  agent uses it to count every table under the CDC prefix, also tables the policy lacks.
- `decode_record(decoding, topic, key, value)` (`decode_raw` for bytes) runs
  `parse_record` first, so it accepts and rejects exactly the same structures, then
  decodes the typed column values of a table of the policy into a `ChangeEvent` (or a
  `Tombstone`). `decoding` is `Decoding.compile(policy)` (or `Engine.compile(policy).decoding`).

Nothing here raises on bad input. A `DecodeError` carries a `DecodeReason` (a short fixed
code: the `reason` label of `lethe_dead_letters_total` and the dead letter's `reason`) and a
`detail` in words that names fields and JSON types only, never a value of the record
(values may be personal data).

What the structure must be (a record that fails is rejected with the reason in brackets):
- the topic is `<prefix>.<schema>.<table>` (the prefix may hold dots) [bad_topic];
- key and value are JSON [not_json], with or without JsonConverter's `{"schema": ...,
  "payload": ...}` wrapper; the key is null or an object of key columns [bad_key];
- a null value (or null payload) is a tombstone, and needs a key [bad_key];
- otherwise the value is an envelope object [not_an_object] with an `op` [no_op] that
  is c, u, d or r [unknown_op]; t (truncate) is refused [truncate]: it removes rows
  without a change per row, which retention cannot follow;
- `before` and `after` are null or objects; c, u and r carry `after`; d carries
  `before` or a key [bad_shape];
- the change has a time [no_ts] within the years 0001-9999 [ts_out_of_range].
With a policy, additionally: the topic is a source of the policy [unknown_table], the key
(or, without one, the row image) holds the policy's primary key [bad_key], and each column
value decodes by its type [bad_value] to an instant within the years 0001-9999
[value_out_of_range].

The time of a change, its `ts`, is the envelope's `ts_ms`, as `lethe simulate`'s fixed
interface states: the time the enforcer learns of the change, which is its clock. Only
when the envelope has none is `source.ts_ms` (the commit in the database) used. Retention
periods themselves run from the row's own columns (closed_at, last_message_at, ...), never
from `ts`, so a connector lagging behind a backlog delays commands but moves no due time.

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
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, NamedTuple, TypeGuard

import orjson

from policy.instants import (
    EPOCH,
    EPOCH_ORDINAL,
    MAX_INSTANT,
    MIN_INSTANT,
    Instant,
    to_datetime,
)
from policy.model import ColumnType, Policy, Source

Value = (
    str | int | float | bool | None | datetime | date | Decimal | list[object] | dict[str, object]
)
"""A decoded column value."""
KeyValue = str | int | float | bool | None
Key = tuple[tuple[str, KeyValue], ...]
"""A primary key as ((column, value), ...) in the source's primary-key order."""
Image = Mapping[str, Any]
"""A row image or a key as Debezium sent it: parsed JSON, values not decoded."""


class Op(StrEnum):
    """Debezium's `op` codes that change a row."""

    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"
    """Read by a snapshot: a first sighting."""


TOMBSTONE: Final = "tombstone"
"""How a tombstone is named where an op code would stand (logs, metric labels)."""


class DecodeReason(StrEnum):
    """Why a record cannot be used: a small fixed set (metric label, dead letter `reason`)."""

    BAD_TOPIC = "bad_topic"
    NOT_JSON = "not_json"
    BAD_KEY = "bad_key"
    NOT_AN_OBJECT = "not_an_object"
    NO_OP = "no_op"
    UNKNOWN_OP = "unknown_op"
    TRUNCATE = "truncate"
    BAD_SHAPE = "bad_shape"
    NO_TS = "no_ts"
    TS_OUT_OF_RANGE = "ts_out_of_range"
    UNKNOWN_TABLE = "unknown_table"
    BAD_VALUE = "bad_value"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    BAD_RECORD = "bad_record"
    """A record its caller framed badly (e.g. a `lethe simulate` line that is not JSON)."""
    INTERNAL_ERROR = "internal_error"
    """The decoder itself failed: a bug to report, with the dead letter to replay."""


@dataclass(frozen=True, slots=True)
class DecodeError:
    """Why a record cannot be used: `code` for machines, `detail` in words.

    `detail` names fields and JSON types, never a value of the record.
    """

    detail: str
    code: DecodeReason = DecodeReason.BAD_RECORD

    @property
    def reason(self) -> str:
        """The words of `detail` (the name `policy.simulation` reads for its line errors)."""
        return self.detail


class Record(NamedTuple):
    """A record whose structure `parse_record` checked; column values not decoded yet.

    `table` is `<schema>.<table>` of the topic (`public.orders`); `op` is None for a
    tombstone (then `ts`, `before` and `after` are None too); `key` is the key object,
    None when the record has none; `ts` is the time of the change (see the module).
    A named tuple: one is made per record on the engine's path, and tuples are cheap.
    """

    table: str
    op: Op | None
    key: Image | None
    before: Image | None
    after: Image | None
    ts: Instant | None
    key_schema: Mapping[str, object] | None = None
    value_schema: Mapping[str, object] | None = None

    @property
    def op_label(self) -> str:
        """`c`, `u`, `d`, `r` or `tombstone`: for logs and metric labels."""
        return TOMBSTONE if self.op is None else self.op.value

    @property
    def key_label(self) -> str:
        """The key for logs, e.g. `id=42`: primary-key columns only, never row values."""
        if not self.key:
            return "-"
        return ",".join(
            f"{column}={value}" if _is_scalar(value) else f"{column}=<{_json_type(value)}>"
            for column, value in self.key.items()
        )


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

    @property
    def row(self) -> Mapping[str, Value]:
        """The row image that describes the row: `after`, or `before` for a delete."""
        image = self.before if self.op is Op.DELETE else self.after
        return image if image is not None else {}

    @property
    def ts_datetime(self) -> datetime:
        return to_datetime(self.ts)


@dataclass(frozen=True, slots=True)
class Tombstone:
    """The null-valued record Debezium sends after a delete (for log compaction)."""

    table: str
    key: Key


_ZONED_TIMESTAMP: Final = "io.debezium.time.ZonedTimestamp"
_MS_TIMESTAMPS: Final = frozenset(
    {"io.debezium.time.Timestamp", "org.apache.kafka.connect.data.Timestamp"}
)
_MICRO_TIMESTAMP: Final = "io.debezium.time.MicroTimestamp"
_NANO_TIMESTAMP: Final = "io.debezium.time.NanoTimestamp"
_DATES: Final = frozenset({"io.debezium.time.Date", "org.apache.kafka.connect.data.Date"})
_DECIMAL: Final = "org.apache.kafka.connect.data.Decimal"
_VARIABLE_DECIMAL: Final = "io.debezium.data.VariableScaleDecimal"
_OPS: Final = MappingProxyType({op.value: op for op in Op})
_MIN_TS_MS: Final = -(-MIN_INSTANT // 1000)
_MAX_TS_MS: Final = MAX_INSTANT // 1000
_TOPIC_SHAPE: Final = "the topic is not <prefix>.<schema>.<table> such as hosting.public.orders"


class _Bad(Exception):
    """Internal: a record that does not decode; turned into a DecodeError at the boundary."""

    def __init__(self, code: DecodeReason, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def unwrap(document: object) -> tuple[object, Mapping[str, object] | None]:
    """Split JsonConverter's `{"schema": ..., "payload": ...}` wrapper: (payload, schema)."""
    if isinstance(document, dict) and "payload" in document and "schema" in document:
        schema = document["schema"]
        return document["payload"], schema if isinstance(schema, dict) else None
    return document, None


# --- structure (no policy) -----------------------------------------------------------------


def parse_raw(topic: object, key: bytes | None, value: bytes | None) -> Record | DecodeError:
    """`parse_record` for a record whose key and value are JSON bytes (as read from Kafka)."""
    parsed = _parse_json(key, value)
    if isinstance(parsed, DecodeError):
        return parsed
    return parse_record(topic, *parsed)


def parse_record(topic: object, key: object, value: object) -> Record | DecodeError:
    """Check the structure of one record (key and value as parsed JSON); never raises."""
    return _parse(topic, None, key, value)


def _parse(topic: object, table: str | None, key: object, value: object) -> Record | DecodeError:
    """`parse_record`; `table` is the topic's table when the caller knows it already."""
    try:
        return _structure(_table_of_topic(topic) if table is None else table, key, value)
    except _Bad as bad:
        return DecodeError(bad.detail, bad.code)
    except Exception as exc:  # errors as data: a decoder bug must not stop the stream
        return DecodeError(
            f"cannot decode the record ({type(exc).__name__})", DecodeReason.INTERNAL_ERROR
        )


def _parse_json(key: bytes | None, value: bytes | None) -> tuple[object, object] | DecodeError:
    try:
        parsed_key = orjson.loads(key) if key is not None else None
    except orjson.JSONDecodeError as exc:
        return _not_json("key", exc, DecodeReason.BAD_KEY)
    try:
        parsed_value = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError as exc:
        return _not_json("value", exc, DecodeReason.NOT_JSON)
    return parsed_key, parsed_value


def _not_json(which: str, exc: orjson.JSONDecodeError, code: DecodeReason) -> DecodeError:
    return DecodeError(
        f"the record {which} is not JSON (at byte {exc.pos}); is the topic written by "
        "JsonConverter?",
        code,
    )


def _structure(table: str, key: object, value: object) -> Record:
    key_payload, key_schema = unwrap(key)
    if key_payload is not None:
        if not isinstance(key_payload, dict):
            raise _Bad(
                DecodeReason.BAD_KEY,
                f"the key is a JSON {_json_type(key_payload)}, not an object of key columns",
            )
        if not key_payload:
            raise _Bad(DecodeReason.BAD_KEY, "the key is an object without columns")
    payload, schema = unwrap(value)
    if payload is None:
        if key_payload is None:
            raise _Bad(DecodeReason.BAD_KEY, "a tombstone (null value) without a key")
        return Record(table, None, key_payload, None, None, None, key_schema)
    if not isinstance(payload, dict):
        raise _Bad(
            DecodeReason.NOT_AN_OBJECT,
            f"the value is a JSON {_json_type(payload)}, not a Debezium change envelope",
        )
    raw_op = payload.get("op")
    op = _OPS.get(raw_op) if type(raw_op) is str else None
    if op is None:
        raise _bad_op(raw_op)
    before = payload.get("before")
    if before is not None and type(before) is not dict:
        raise _bad_image("before", before)
    after = payload.get("after")
    if after is not None and type(after) is not dict:
        raise _bad_image("after", after)
    if op is Op.DELETE:
        if before is None and key_payload is None:
            raise _Bad(DecodeReason.BAD_SHAPE, "op d without a key and without a 'before' row")
    elif after is None:
        raise _Bad(DecodeReason.BAD_SHAPE, f"op {op.value} without an 'after' row")
    return Record(table, op, key_payload, before, after, _change_ts(payload), key_schema, schema)


def _table_of_topic(topic: object) -> str:
    if not isinstance(topic, str):
        raise _Bad(DecodeReason.BAD_TOPIC, "the record has no topic string")
    parts = topic.rsplit(".", 2)  # Debezium's topic.prefix may itself hold dots
    if len(parts) != 3 or not all(parts):
        raise _Bad(DecodeReason.BAD_TOPIC, _TOPIC_SHAPE)
    return parts[1] + "." + parts[2]


def _bad_op(raw: object) -> _Bad:
    if raw is None:
        return _Bad(DecodeReason.NO_OP, "the envelope has no 'op'; expected c, u, d or r")
    if raw == "t":
        return _Bad(
            DecodeReason.TRUNCATE,
            "op t (truncate) removes rows without a change per row, which retention cannot "
            "follow; keep t in the source connector's skipped.operations (its default)",
        )
    return _Bad(
        DecodeReason.UNKNOWN_OP,
        f"the envelope's 'op' is a JSON {_json_type(raw)} that is not c, u, d or r",
    )


def _bad_image(which: str, image: object) -> _Bad:
    return _Bad(
        DecodeReason.BAD_SHAPE, f"'{which}' is a JSON {_json_type(image)}, not a row object"
    )


def _change_ts(payload: Mapping[str, object]) -> Instant:
    """The envelope's `ts_ms`, else `source.ts_ms`, as an instant (see the module docstring)."""
    ts = payload.get("ts_ms")
    if type(ts) is int and _MIN_TS_MS <= ts <= _MAX_TS_MS:
        return ts * 1000
    field = "ts_ms"
    if ts is None:
        field = "source.ts_ms"
        source = payload.get("source")
        ts = source.get("ts_ms") if type(source) is dict else None
        if ts is None:
            raise _Bad(
                DecodeReason.NO_TS,
                "the envelope has neither 'ts_ms' nor 'source.ts_ms'; the clock needs the "
                "time of the change",
            )
    if not _is_int(ts):
        raise _Bad(
            DecodeReason.NO_TS, f"'{field}' is a JSON {_json_type(ts)}, not integer milliseconds"
        )
    if not _MIN_TS_MS <= ts <= _MAX_TS_MS:
        raise _Bad(
            DecodeReason.TS_OUT_OF_RANGE,
            f"'{field}' is out of range: not an instant of the years 0001-9999 in milliseconds",
        )
    return ts * 1000


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _is_int(raw: object) -> TypeGuard[int]:
    return isinstance(raw, int) and not isinstance(raw, bool)


# --- typed values (with the policy) --------------------------------------------------------


def decode_raw(
    decoding: Decoding, topic: str, key: bytes | None, value: bytes | None
) -> ChangeEvent | Tombstone | DecodeError:
    """`decode_record` for a record whose key and value are JSON bytes (as read from Kafka)."""
    parsed = _parse_json(key, value)
    if isinstance(parsed, DecodeError):
        return parsed
    return decode_record(decoding, topic, *parsed)


def decode_record(
    decoding: Decoding, topic: object, key: object, value: object
) -> ChangeEvent | Tombstone | DecodeError:
    """Check the structure (`parse_record`), then decode the values by the policy; never raises."""
    decoder = decoding.topics.get(topic) if type(topic) is str else None
    record = _parse(topic, None if decoder is None else decoder.table, key, value)
    if isinstance(record, DecodeError):
        return record
    if decoder is None:
        return DecodeError(
            f"the topic's table is not a source of policy {decoding.policy_name!r}; declare "
            "it under `sources` or leave the topic out of the stream",
            DecodeReason.UNKNOWN_TABLE,
        )
    try:
        return _typed(decoder, record)
    except _Bad as bad:
        return DecodeError(f"{decoder.table}: {bad.detail}", bad.code)
    except Exception as exc:  # errors as data: a decoder bug must not stop the stream
        return DecodeError(
            f"{decoder.table}: cannot decode the record ({type(exc).__name__})",
            DecodeReason.INTERNAL_ERROR,
        )


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
        raise _Bad(DecodeReason.INTERNAL_ERROR, "a change without a time")
    return ChangeEvent(source.table, key, op, before, after, ts)


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
"""How one column decodes: (column name, raw JSON value) -> value; raises _Bad."""


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
            raise _Bad(DecodeReason.BAD_KEY, "no key and no row image to take the key from")
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
            raise _Bad(
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
            raise _Bad(
                DecodeReason.BAD_KEY,
                f"key column {column!r} is a JSON {_json_type(raw)}, not a scalar",
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
        if not _is_int(raw):
            raise _expected(column, "an integer (milliseconds)", name, raw)
        return _from_us(column, raw * 1000)
    if name == _MICRO_TIMESTAMP:
        if not _is_int(raw):
            raise _expected(column, "an integer (microseconds)", name, raw)
        return _from_us(column, raw)
    if name == _NANO_TIMESTAMP:
        if not _is_int(raw):
            raise _expected(column, "an integer (nanoseconds)", name, raw)
        return _from_us(column, raw // 1000)
    if name in _DATES:
        if not _is_int(raw):
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
    if _is_int(raw):
        return _from_us(column, raw)
    raise _expected(column, "an ISO-8601 string or integer microseconds", None, raw)


def _date(column: str, raw: object) -> Value:
    if _is_int(raw):
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
    if type(raw) is int or _is_int(raw):
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


def _expected(column: str, what: str, logical: object, raw: object) -> _Bad:
    encoding = f" ({logical})" if logical else ""
    return _Bad(
        DecodeReason.BAD_VALUE,
        f"column {column!r}{encoding} should be {what}, got a JSON {_json_type(raw)}; "
        "check the connector's converter settings or the column type in the policy",
    )


def _out_of_range(column: str) -> _Bad:
    return _Bad(
        DecodeReason.VALUE_OUT_OF_RANGE,
        f"column {column!r} is out of range: not an instant of the years 0001-9999",
    )


def _iso_instant(column: str, raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _Bad(
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
    if not isinstance(raw, str) or not _is_int(scale):
        raise _expected(column, "base64 bytes with an integer scale", _DECIMAL, raw)
    try:
        unscaled = int.from_bytes(base64.b64decode(raw, validate=True), "big", signed=True)
    except (binascii.Error, ValueError):
        raise _Bad(
            DecodeReason.BAD_VALUE, f"column {column!r} is not base64-encoded decimal bytes"
        ) from None
    return Decimal(unscaled).scaleb(-scale)
