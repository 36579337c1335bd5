"""Decode one Debezium JsonConverter record into a typed `ChangeEvent`.

`decode_record(decoding, topic, key, value)` takes a record whose key and value are
already parsed JSON (`decode_raw` parses bytes first) and returns a `ChangeEvent`,
a `Tombstone` (null value: keeps the clock, changes nothing) or a `DecodeError`
that says what is wrong and how to fix it. Nothing here raises on bad input and
no error message quotes a column value (they may be personal data). `decoding` is
`Decoding.compile(policy)` (or `Engine.compile(policy).decoding`): built once, it
holds, per topic, how each column of its source decodes.

Key and value may come with or without JsonConverter's `{"schema": ..., "payload":
...}` wrapper. Temporal columns are decoded to `datetime` (aware, UTC) or `date`:
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
The event's instant `ts` is the envelope's `ts_ms` (Debezium's processing time), in
microseconds; `source.ts_ms` is used only when the envelope has none.
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
from typing import Any, Final, TypeGuard

import orjson

from policy.instants import EPOCH, Instant, from_datetime
from policy.model import ColumnType, Policy, Source

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


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One change of one row of a source table.

    `table` is the source's schema-qualified table (`public.orders`); `before` and
    `after` are the row images with decoded values (None where Debezium sent none);
    `ts` is the envelope's `ts_ms` as an instant (µs).
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
        return EPOCH + timedelta(microseconds=self.ts)


@dataclass(frozen=True, slots=True)
class Tombstone:
    """The null-valued record Debezium sends after a delete (for log compaction)."""

    table: str
    key: Key


@dataclass(frozen=True, slots=True)
class DecodeError:
    """Why a record cannot be used, and what to do about it (never quotes row values)."""

    reason: str


_ZONED_TIMESTAMP: Final = "io.debezium.time.ZonedTimestamp"
_MS_TIMESTAMPS: Final = frozenset(
    {"io.debezium.time.Timestamp", "org.apache.kafka.connect.data.Timestamp"}
)
_MICRO_TIMESTAMP: Final = "io.debezium.time.MicroTimestamp"
_NANO_TIMESTAMP: Final = "io.debezium.time.NanoTimestamp"
_DATES: Final = frozenset({"io.debezium.time.Date", "org.apache.kafka.connect.data.Date"})
_DECIMAL: Final = "org.apache.kafka.connect.data.Decimal"
_VARIABLE_DECIMAL: Final = "io.debezium.data.VariableScaleDecimal"
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_OPS: Final = MappingProxyType({op.value: op for op in Op})


class _Bad(Exception):
    """Internal: a value that does not decode; turned into a DecodeError at the boundary."""


def unwrap(document: object) -> tuple[object, Mapping[str, object] | None]:
    """Split JsonConverter's `{"schema": ..., "payload": ...}` wrapper: (payload, schema)."""
    if isinstance(document, dict) and "payload" in document and "schema" in document:
        schema = document["schema"]
        return document["payload"], schema if isinstance(schema, dict) else None
    return document, None


def decode_raw(
    decoding: Decoding, topic: str, key: bytes | None, value: bytes | None
) -> ChangeEvent | Tombstone | DecodeError:
    """Decode a record whose key and value are JSON bytes (as read from Kafka)."""
    try:
        parsed_key = orjson.loads(key) if key is not None else None
    except orjson.JSONDecodeError:
        return DecodeError("the record key is not JSON; is the topic written by JsonConverter?")
    try:
        parsed_value = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return DecodeError("the record value is not JSON; is the topic written by JsonConverter?")
    return decode_record(decoding, topic, parsed_key, parsed_value)


def decode_record(
    decoding: Decoding, topic: object, key: object, value: object
) -> ChangeEvent | Tombstone | DecodeError:
    """Decode one record (key and value as parsed JSON); never raises on bad input."""
    if not isinstance(topic, str):
        return DecodeError('the record has no "topic" string such as "hosting.public.orders"')
    decoder = decoding.topics.get(topic)
    if decoder is None:
        return DecodeError(
            f"topic {topic!r} is not a source of policy {decoding.policy_name!r}; "
            "declare its table under `sources` or leave the topic out of the stream"
        )
    try:
        return _decode(decoder, key, value)
    except _Bad as bad:
        return DecodeError(f"{decoder.table}: {bad}")
    except Exception as exc:  # errors as data: a decoder bug must not stop the stream
        return DecodeError(f"{decoder.table}: cannot decode the record ({type(exc).__name__})")


def _decode(source: SourceDecoder, key: object, value: object) -> ChangeEvent | Tombstone:
    key_payload, key_schema = unwrap(key)
    payload, schema = unwrap(value)
    if payload is None:
        if key_payload is None:
            raise _Bad("tombstone without a key")
        return Tombstone(source.table, _key(source, key_payload, key_schema, None))
    if not isinstance(payload, dict):
        raise _Bad(f"the value is a JSON {_json_type(payload)}, not a Debezium change envelope")
    raw_op = payload.get("op")
    op = _OPS.get(raw_op) if isinstance(raw_op, str) else None
    if op is None:
        if raw_op == "t":
            raise _Bad("op 't' (truncate) is not tracked; Lethe needs row-level changes")
        raise _Bad(f"the envelope's 'op' is {_json_type(raw_op)} {raw_op!r}; expected c, u, d or r")
    ts = _event_ts(payload)
    before_schema = after_schema = None
    if schema is not None:
        before_schema, after_schema = _image_schemas(schema)
    raw_before = payload.get("before")
    before = None if raw_before is None else _image(source, raw_before, before_schema, "before")
    raw_after = payload.get("after")
    after = None if raw_after is None else _image(source, raw_after, after_schema, "after")
    if op is Op.DELETE:
        if before is None and key_payload is None:
            raise _Bad("op 'd' without a key and without a 'before' row")
    elif after is None:
        raise _Bad(f"op {op.value!r} without an 'after' row")
    image = after if op is not Op.DELETE else before
    return ChangeEvent(
        source.table, _key(source, key_payload, key_schema, image), op, before, after, ts
    )


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


def _event_ts(payload: Mapping[str, object]) -> Instant:
    ts = payload.get("ts_ms")
    if type(ts) is int:
        return ts * 1000
    if not isinstance(ts, int) or isinstance(ts, bool):
        source = payload.get("source")
        ts = source.get("ts_ms") if isinstance(source, dict) else None
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise _Bad("the envelope has no integer 'ts_ms'; the simulated clock needs it")
    return ts * 1000


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


def _image(
    source: SourceDecoder, image: object, schema: Mapping[str, object] | None, which: str
) -> dict[str, Value]:
    if not isinstance(image, dict):
        raise _Bad(f"'{which}' is a JSON {_json_type(image)}, not a row object")
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
    source: SourceDecoder, payload: object, schema: Mapping[str, object] | None, image: object
) -> Key:
    if payload is None:
        payload = image
        schema = None
    if not isinstance(payload, dict):
        raise _Bad(f"the key is a JSON {_json_type(payload)}, not an object of key columns")
    logical = _columns_of(schema) if schema is not None else None
    key: list[tuple[str, KeyValue]] = []
    for column, decoder in source.key_columns:
        if column not in payload:
            raise _Bad(
                f"the key has no column {column!r}; the policy's primary_key is "
                f"{list(source.primary_key)}"
            )
        raw = payload[column]
        field = logical.get(column) if logical else None
        if field is not None:
            value: Value = _by_schema(column, field, raw)
        elif decoder is not None and raw is not None:
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
            raise _Bad(f"key column {column!r} is a JSON {_json_type(raw)}, not a scalar")
        key.append((column, value))
    return tuple(key)


def _is_int(raw: object) -> TypeGuard[int]:
    return isinstance(raw, int) and not isinstance(raw, bool)


def _by_schema(column: str, field: Mapping[str, object], raw: object) -> Value:
    name = field.get("name")
    if name == _ZONED_TIMESTAMP:
        if not isinstance(raw, str):
            raise _Bad(_expected(column, "an ISO-8601 string", name, raw))
        return _iso_instant(column, raw)
    if name in _MS_TIMESTAMPS:
        if not _is_int(raw):
            raise _Bad(_expected(column, "an integer (milliseconds)", name, raw))
        return _from_us(column, raw * 1000)
    if name == _MICRO_TIMESTAMP:
        if not _is_int(raw):
            raise _Bad(_expected(column, "an integer (microseconds)", name, raw))
        return _from_us(column, raw)
    if name == _NANO_TIMESTAMP:
        if not _is_int(raw):
            raise _Bad(_expected(column, "an integer (nanoseconds)", name, raw))
        return _from_us(column, raw // 1000)
    if name in _DATES:
        if not _is_int(raw):
            raise _Bad(_expected(column, "an integer (days since 1970-01-01)", name, raw))
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


def _by_type(column: str, kind: ColumnType, raw: object) -> Value:
    return _TYPE_DECODERS[kind](column, raw)


def _timestamptz(column: str, raw: object) -> Value:
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            return _iso_instant(column, raw)
        return moment if moment.tzinfo is UTC else _in_utc(moment)
    if _is_int(raw):
        return _from_us(column, raw)
    raise _Bad(_expected(column, "an ISO-8601 string or integer microseconds", None, raw))


def _date(column: str, raw: object) -> Value:
    if _is_int(raw):
        return _from_days(column, raw)
    if isinstance(raw, str):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise _Bad(_expected(column, "days since 1970-01-01", None, raw)) from None
    raise _Bad(_expected(column, "an integer (days since 1970-01-01)", None, raw))


def _boolean(column: str, raw: object) -> Value:
    if isinstance(raw, bool):
        return raw
    raise _Bad(_expected(column, "true or false", None, raw))


def _integer(column: str, raw: object) -> Value:
    if type(raw) is int or _is_int(raw):
        return raw
    raise _Bad(_expected(column, "an integer", None, raw))


def _numeric(column: str, raw: object) -> Value:
    if isinstance(raw, str):
        try:
            return Decimal(raw)
        except ArithmeticError:
            raise _Bad(_expected(column, "a decimal number", None, raw)) from None
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


def _expected(column: str, what: str, logical: object, raw: object) -> str:
    encoding = f" ({logical})" if logical else ""
    return (
        f"column {column!r}{encoding} should be {what}, got a JSON {_json_type(raw)}; "
        "check the connector's converter settings or the column type in the policy"
    )


def _iso_instant(column: str, raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _Bad(
            f"column {column!r} is not an ISO-8601 timestamp such as 2026-03-01T10:00:00Z"
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _in_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _from_us(column: str, micros: int) -> datetime:
    try:
        return EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise _Bad(f"column {column!r} is a timestamp out of range") from None


def _from_days(column: str, days: int) -> date:
    try:
        return date.fromordinal(_EPOCH_ORDINAL + days)
    except (ValueError, OverflowError):
        raise _Bad(f"column {column!r} is a date out of range") from None


def _decimal(column: str, raw: object, scale: object) -> Decimal:
    if isinstance(scale, str) and scale.isdigit():
        scale = int(scale)
    if not isinstance(raw, str) or not _is_int(scale):
        raise _Bad(_expected(column, "base64 bytes with an integer scale", _DECIMAL, raw))
    try:
        unscaled = int.from_bytes(base64.b64decode(raw, validate=True), "big", signed=True)
    except (binascii.Error, ValueError):
        raise _Bad(f"column {column!r} is not base64-encoded decimal bytes") from None
    return Decimal(unscaled).scaleb(-scale)


def instant_of(value: Value) -> Instant | None:
    """A decoded temporal value as an instant (a `date` stands for 00:00 UTC); else None."""
    if isinstance(value, datetime):
        return from_datetime(value)
    if isinstance(value, date):
        return (value.toordinal() - _EPOCH_ORDINAL) * 86_400_000_000
    return None
