"""The record a retention command becomes on its table's sink topic, or why it is refused.

Debezium's JDBC sink connector applies `lethe.sink.<schema>.<table>` (e.g.
`lethe.sink.public.satisfaction_surveys`) to the table as it is, in Kafka Connect's
JSON-with-schema form (`{"schema": ..., "payload": ...}`):

- key: a struct of every primary-key column of the row, never anything else;
- anonymise: a flat struct of only the anonymised columns, each `optional`, which the
  sink (`insert.mode=update`) writes into the row and nothing else; a row already gone
  stays gone;
- delete: a tombstone (null value), which the sink (`delete.enabled=true`) turns into
  `DELETE ... WHERE <primary key>`;
- archive: nothing. Archiving restricts access, which the business's archive job applies
  from `lethe.commands`; it changes nothing in the database.

An anonymise and a later delete of one row share its key, so they stay in order on one
partition of one topic.

A sink record whose key lacks a primary-key column makes the sink update or delete every
row of the table, silently. So nothing is built for a command whose key is not exactly
the table's primary key with a value of the column's type in every column, nor for an
anonymise whose new values cannot be worked out: `sink_record` returns a `Refusal`
(reason code and detail naming columns, never values) and the caller dead-letters the
command instead of producing anything.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Final

import orjson

from policy.anonymise import anonymise_value, method_for
from policy.clock_closures import collect_reads
from policy.events import Value
from policy.instants import EPOCH_ORDINAL, US_PER_DAY, format_instant, from_datetime, to_datetime
from policy.model import Action, Bucket, Coarsen, ColumnType, Constant, Policy, Source
from policy.state import Command, StateValue

SINK_TOPIC_PREFIX: Final = "lethe.sink."

JsonObject = dict[str, object]


def sink_topic(table: str) -> str:
    """The sink topic of a schema-qualified table: `lethe.sink.public.orders`."""
    return SINK_TOPIC_PREFIX + table


class RefusalReason(StrEnum):
    """Why no sink record is built for a command (the dead letter's `reason`)."""

    UNKNOWN_TABLE = "unknown_table"
    """The command's table is not a source of the policy."""
    NO_PRIMARY_KEY = "no_primary_key"
    """The source declares no primary-key column: any key would hit the whole table."""
    KEY_MISSING_COLUMN = "key_missing_column"
    """The key lacks a primary-key column."""
    KEY_NULL_VALUE = "key_null_value"
    """A primary-key column of the key is null."""
    KEY_EXTRA_COLUMN = "key_extra_column"
    """The key names a column that is not part of the primary key, or one twice."""
    KEY_BAD_TYPE = "key_bad_type"
    """A key value does not fit its column's type (text for a bigint, a boolean, ...)."""
    NO_FIELDS = "no_fields"
    """An anonymise command names no column: the sink cannot apply a value of key only."""
    UNKNOWN_COLUMN = "unknown_column"
    """An anonymised column is not a column of the source."""
    KEY_COLUMN_FIELD = "key_column_field"
    """An anonymise command names a primary-key column: a key is never rewritten."""
    VALUE_NOT_KEPT = "value_not_kept"
    """The method needs the current value (coarsen, bucket) and the row state does not keep it."""
    VALUE_UNFIT = "value_unfit"
    """The anonymised value does not fit the column's type (a text constant for a bigint)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A command Lethe will not send anywhere: dead-letter it with `reason` and `detail`
    (keep the command as `command.to_json()`: its Avro cannot hold every bad key, a null one).

    `detail` names the table and columns, never a value (values are personal data).
    """

    command: Command
    reason: RefusalReason
    detail: str


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    """One record to produce as it is: topic, key bytes and value bytes (None: tombstone)."""

    topic: str
    key: bytes
    value: bytes | None


class _Unfit(ValueError):
    """A value that does not fit its column's type (internal; becomes a Refusal)."""


_INT_RANGE: Final = {
    ColumnType.BIGINT: (-(2**63), 2**63 - 1),
    ColumnType.INTEGER: (-(2**31), 2**31 - 1),
}
_KEY_TYPES: Final = frozenset({ColumnType.BIGINT, ColumnType.INTEGER, ColumnType.TEXT})
"""Primary-key column types Lethe sends (the command schema's key holds long or string)."""

_ZONED_TIMESTAMP: Final = "io.debezium.time.ZonedTimestamp"
_CONNECT_DATE: Final = "org.apache.kafka.connect.data.Date"
_CONNECT_DECIMAL: Final = "org.apache.kafka.connect.data.Decimal"


def connect_schema(column: str, column_type: ColumnType, *, optional: bool) -> JsonObject:
    """The Connect field schema of a column: bigint int64, integer int32, text string,
    boolean boolean, timestamptz Debezium's ZonedTimestamp (ISO text), date Connect's
    Date (days since 1970-01-01), numeric Connect's Decimal (base64 of the unscaled
    value; its scale, a parameter of the schema, is the value's own: see `_field`)."""
    schema: JsonObject
    if column_type is ColumnType.BIGINT:
        schema = {"type": "int64"}
    elif column_type is ColumnType.INTEGER:
        schema = {"type": "int32"}
    elif column_type is ColumnType.TEXT:
        schema = {"type": "string"}
    elif column_type is ColumnType.BOOLEAN:
        schema = {"type": "boolean"}
    elif column_type is ColumnType.TIMESTAMPTZ:
        schema = {"type": "string", "name": _ZONED_TIMESTAMP, "version": 1}
    elif column_type is ColumnType.DATE:
        schema = {"type": "int32", "name": _CONNECT_DATE, "version": 1}
    else:
        schema = {"type": "bytes", "name": _CONNECT_DECIMAL, "version": 1}
    return {"field": column, **schema, "optional": optional}


def kept_columns(source: Source) -> frozenset[str]:
    """The columns a row state of `source` keeps: those its clocks and conditions read."""
    reads: dict[str, None] = {}
    for rule in source.rules:
        for stage in rule.stages:
            collect_reads(stage.due, reads)
    return frozenset(reads)


def check_key(policy: Policy, command: Command) -> Refusal | None:
    """None when the command's key is exactly its table's primary key, every value set and
    of its column's type; else the refusal saying what is wrong."""
    source = policy.sources.get(command.table)
    if source is None:
        return Refusal(
            command,
            RefusalReason.UNKNOWN_TABLE,
            f"{command.table} is not a source of the policy {policy.name!r}",
        )
    table = command.table
    if not source.primary_key:
        return Refusal(
            command,
            RefusalReason.NO_PRIMARY_KEY,
            f"{table} declares no primary-key column; a sink record for it would hit every row",
        )
    named = [column for column, _ in command.key]
    missing = [column for column in source.primary_key if column not in named]
    if missing:
        return Refusal(
            command,
            RefusalReason.KEY_MISSING_COLUMN,
            f"the key of the {table} row lacks primary-key column(s) {', '.join(missing)} "
            f"(primary key: {', '.join(source.primary_key)})",
        )
    extra = [c for i, c in enumerate(named) if c not in source.primary_key or c in named[:i]]
    if extra:
        return Refusal(
            command,
            RefusalReason.KEY_EXTRA_COLUMN,
            f"the key of the {table} row names {', '.join(extra)} besides its primary key "
            f"({', '.join(source.primary_key)})",
        )
    for column, value in command.key:
        if value is None:
            return Refusal(
                command,
                RefusalReason.KEY_NULL_VALUE,
                f"primary-key column {column} of the {table} row is null",
            )
        column_type = source.columns.get(column, ColumnType.TEXT)
        if column_type not in _KEY_TYPES:
            return Refusal(
                command,
                RefusalReason.KEY_BAD_TYPE,
                f"primary-key column {column} of {table} is {column_type}; Lethe sends rows "
                "keyed by bigint, integer or text columns only",
            )
        try:
            _connect_value(column_type, value)
        except _Unfit as exc:
            return Refusal(
                command,
                RefusalReason.KEY_BAD_TYPE,
                f"primary-key column {column} of the {table} row: {exc}",
            )
    return None


def sink_record(
    policy: Policy, command: Command, values: Mapping[str, StateValue]
) -> OutboundRecord | Refusal | None:
    """The record of `command` for its table's sink topic; None for archive (no sink record).

    `values` are the row state's values (`RowState.values`: instants as µs, an absent
    column is null); methods that read the current value (coarsen, bucket) take it from
    there, and a column the row state does not keep refuses the command. A constant goes
    as it is into a column the row state does not keep (even where the row holds null);
    into a kept column, only where it is not null, as `policy.anonymise` does.
    """
    refused = check_key(policy, command)
    if refused is not None:
        return refused
    source = policy.sources[command.table]
    if command.action is Action.ARCHIVE:
        return None
    key = _key_document(source, command)
    topic = sink_topic(command.table)
    if command.action is Action.DELETE:
        return OutboundRecord(topic, key, None)
    value = _anonymise_document(policy, source, command, values)
    if isinstance(value, Refusal):
        return value
    return OutboundRecord(topic, key, value)


def _key_document(source: Source, command: Command) -> bytes:
    key = dict(command.key)
    fields: list[JsonObject] = []
    payload: dict[str, object] = {}
    for column in source.primary_key:
        field, payload[column] = _field(
            column, source.columns.get(column, ColumnType.TEXT), key[column], optional=False
        )
        fields.append(field)
    return orjson.dumps(
        {"schema": {"type": "struct", "fields": fields, "optional": False}, "payload": payload}
    )


def _anonymise_document(
    policy: Policy, source: Source, command: Command, values: Mapping[str, StateValue]
) -> bytes | Refusal:
    table = command.table
    columns = list(dict.fromkeys(command.fields))
    if not columns:
        return Refusal(
            command, RefusalReason.NO_FIELDS, f"the anonymise of a {table} row names no column"
        )
    kept = kept_columns(source)
    fields: list[JsonObject] = []
    payload: dict[str, object] = {}
    for column in columns:
        column_type = source.columns.get(column)
        if column_type is None:
            return Refusal(
                command, RefusalReason.UNKNOWN_COLUMN, f"{column} is not a column of {table}"
            )
        if column in source.primary_key:
            return Refusal(
                command,
                RefusalReason.KEY_COLUMN_FIELD,
                f"{column} is a primary-key column of {table}; keys are never anonymised",
            )
        method = method_for(policy, command, column)
        if isinstance(method, Coarsen | Bucket) and column not in kept:
            return Refusal(
                command,
                RefusalReason.VALUE_NOT_KEPT,
                f"{column} of {table} is anonymised by {type(method).__name__.lower()}, which "
                "needs its current value, and the row state does not keep it (no clock or "
                "condition reads it)",
            )
        if isinstance(method, Constant) and column not in kept:
            anonymised: Value = method.value
        else:
            anonymised = anonymise_value(method, _as_value(column_type, values.get(column)))
        try:
            field, payload[column] = _field(column, column_type, anonymised, optional=True)
        except _Unfit as exc:
            return Refusal(
                command,
                RefusalReason.VALUE_UNFIT,
                f"the anonymised {column} of {table} does not fit the column: {exc}",
            )
        fields.append(field)
    return orjson.dumps(
        {"schema": {"type": "struct", "fields": fields, "optional": False}, "payload": payload}
    )


def _as_value(column_type: ColumnType, kept: StateValue) -> Value:
    """A row state value as `anonymise_value` takes it: instants (µs) back to datetime/date."""
    if isinstance(kept, bool) or not isinstance(kept, int):
        return kept
    if column_type is ColumnType.TIMESTAMPTZ:
        return to_datetime(kept)
    if column_type is ColumnType.DATE:
        return date.fromordinal(EPOCH_ORDINAL + kept // US_PER_DAY)
    return kept


def _field(
    column: str, column_type: ColumnType, value: Value, *, optional: bool
) -> tuple[JsonObject, object]:
    """The Connect field schema and JSON payload of `value`; _Unfit when it does not fit."""
    schema = connect_schema(column, column_type, optional=optional)
    if column_type is not ColumnType.NUMERIC:
        return schema, _connect_value(column_type, value)
    payload, scale = (None, 0) if value is None else _decimal_value(value)
    schema["parameters"] = {"scale": str(scale)}
    return schema, payload


def _connect_value(column_type: ColumnType, value: Value) -> object:
    """`value` as the JSON payload of a Connect field of `column_type`; _Unfit if it is not one."""
    if value is None:
        return None
    if column_type in _INT_RANGE:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Unfit(f"{column_type} takes a whole number, not {type(value).__name__}")
        low, high = _INT_RANGE[column_type]
        if not low <= value <= high:
            raise _Unfit(f"out of the range of {column_type}")
        return value
    if column_type is ColumnType.TEXT:
        if not isinstance(value, str):
            raise _Unfit(f"text takes a string, not {type(value).__name__}")
        return value
    if column_type is ColumnType.BOOLEAN:
        if not isinstance(value, bool):
            raise _Unfit(f"boolean takes true or false, not {type(value).__name__}")
        return value
    if column_type is ColumnType.TIMESTAMPTZ:
        return format_instant(from_datetime(_instant_value(value)))
    if column_type is ColumnType.DATE:
        return _date_value(value).toordinal() - EPOCH_ORDINAL
    return _decimal_value(value)[0]


def _instant_value(value: Value) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise _Unfit("timestamptz takes an ISO-8601 instant") from None
        if moment.tzinfo is None:
            raise _Unfit("timestamptz takes an ISO-8601 instant with its zone")
        return moment
    raise _Unfit(f"timestamptz takes an instant, not {type(value).__name__}")


def _date_value(value: Value) -> date:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo is not None else value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise _Unfit("date takes an ISO-8601 date") from None
    raise _Unfit(f"date takes a date, not {type(value).__name__}")


def _decimal_value(value: Value) -> tuple[str, int]:
    """Connect's Decimal payload: base64 of the unscaled value, big-endian two's complement."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise _Unfit(f"numeric takes a number, not {type(value).__name__}")
    try:
        number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise _Unfit("numeric takes a number") from None
    if not number.is_finite():
        raise _Unfit("numeric takes a finite number")
    scale = max(0, -int(number.as_tuple().exponent))
    unscaled = int(number.scaleb(scale))
    size = max(1, (unscaled.bit_length() + 8) // 8)
    return base64.b64encode(unscaled.to_bytes(size, "big", signed=True)).decode("ascii"), scale
