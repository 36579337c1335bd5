"""Check the structure of a Debezium JsonConverter record, with no policy: topic, key, envelope.

`parse_record(topic, key, value)` (`parse_raw` for bytes) returns a `Record` (the envelope
taken apart, column values not decoded) or a `Rejection`. The walking-skeleton agent uses
it to count every table under the CDC prefix, also tables the policy lacks; the typed
decoding (`policy.decoding`) runs the same checks first, so both accept and reject exactly
the same structures, for the same reason.

Nothing here raises on bad input. A `Rejection` carries a `DecodeReason` (a short fixed
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

Where Debezium read the change, its `position` (`policy.events.SourcePosition`), is taken
from `source.sequence` (Debezium PostgreSQL: a JSON text `["<last commit LSN>", "<LSN>"]`,
the first may be null) and `source.snapshot`. A record without one, or with one of another
shape (other connectors, hand-written records), has no position; it is never rejected for
that.

The time of a change, its `ts`, is the envelope's `ts_ms`, as `lethe simulate`'s fixed
interface states: the time the enforcer learns of the change, which is its clock. Only
when the envelope has none is `source.ts_ms` (the commit in the database) used. Retention
periods themselves run from the row's own columns (closed_at, last_message_at, ...), never
from `ts`, so a connector lagging behind a backlog delays commands but moves no due time.

A bug in the decoder (an exception it did not mean to raise) is a `Rejection` too, with
reason `internal_error`, so the stream goes on and the record is kept as a dead letter to
replay once fixed. Its `trace` keeps the traceback's frames and the exception's type, but
not the exception's message: a message such as `invalid literal for int(): '<value>'` can
quote a value of the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, NamedTuple, TypeGuard

import orjson

from policy.events import TOMBSTONE, Op, SourcePosition
from policy.instants import MAX_INSTANT, MIN_INSTANT, Instant

Image = Mapping[str, Any]
"""A row image or a key as Debezium sent it: parsed JSON, values not decoded."""


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
class Rejection:
    """A record that cannot be used, returned as a value (the decoder never raises on one).

    `reason` is the fixed code (the dead letter's `reason`, the metric label); `detail`
    says in words what is wrong, naming fields and JSON types, never a value of the record;
    `trace` is only set for `internal_error`: the decoder bug's traceback, its frames and
    exception type without the exception's message (see the module).
    """

    reason: DecodeReason
    detail: str
    trace: str | None = None


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
    position: SourcePosition | None = None
    """Where Debezium read the change (see the module); None when the record does not say."""

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
            f"{column}={value}" if _is_scalar(value) else f"{column}=<{json_type(value)}>"
            for column, value in self.key.items()
        )


class Malformed(Exception):
    """Raised inside the decoder for a record that does not decode; `check_structure` and
    `policy.decoding` turn it into a `Rejection` at their boundary, so it never escapes."""

    def __init__(self, reason: DecodeReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_OPS: Final = MappingProxyType({op.value: op for op in Op})
_MIN_TS_MS: Final = -(-MIN_INSTANT // 1000)
_MAX_TS_MS: Final = MAX_INSTANT // 1000
_TOPIC_SHAPE: Final = "the topic is not <prefix>.<schema>.<table> such as hosting.public.orders"


def unwrap(document: object) -> tuple[object, Mapping[str, object] | None]:
    """Split JsonConverter's `{"schema": ..., "payload": ...}` wrapper: (payload, schema)."""
    if isinstance(document, dict) and "payload" in document and "schema" in document:
        schema = document["schema"]
        return document["payload"], schema if isinstance(schema, dict) else None
    return document, None


def parse_raw(topic: object, key: bytes | None, value: bytes | None) -> Record | Rejection:
    """`parse_record` for a record whose key and value are JSON bytes (as read from Kafka)."""
    parsed = parse_json(key, value)
    if isinstance(parsed, Rejection):
        return parsed
    return parse_record(topic, *parsed)


def parse_record(topic: object, key: object, value: object) -> Record | Rejection:
    """Check the structure of one record (key and value as parsed JSON); never raises."""
    return check_structure(topic, None, key, value)


def check_structure(
    topic: object, table: str | None, key: object, value: object
) -> Record | Rejection:
    """`parse_record`; `table` is the topic's table when the caller knows it already."""
    try:
        return _structure(_table_of_topic(topic) if table is None else table, key, value)
    except Malformed as bad:
        return Rejection(bad.reason, bad.detail)
    except Exception as exc:  # errors as data: a decoder bug must not stop the stream
        return rejection_of_bug(exc)


def rejection_of_bug(exc: Exception, table: str | None = None) -> Rejection:
    """An exception the decoder did not mean to raise, as an `internal_error` rejection.

    The detail names the exception's type and where it was raised; `trace` lists every
    frame (file, line, function: no source text is read, so no I/O). Neither holds the
    exception's message, which may quote a value of the record.
    """
    frames: list[tuple[str, int, str]] = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, tb.tb_lineno, code.co_qualname))
        tb = tb.tb_next
    kind = type(exc).__qualname__
    if type(exc).__module__ != "builtins":
        kind = f"{type(exc).__module__}.{kind}"
    where = ""
    if frames:
        filename, line, function = frames[-1]
        where = f" at {_short_path(filename)}:{line} in {function}"
    prefix = f"{table}: " if table is not None else ""
    return Rejection(
        DecodeReason.INTERNAL_ERROR,
        f"{prefix}cannot decode the record: the decoder failed with {kind}{where}, a bug in "
        "Lethe to report",
        "Traceback (most recent call last):\n"
        + "".join(f'  File "{f}", line {n}, in {name}\n' for f, n, name in frames)
        + kind
        + "\n",
    )


def _short_path(filename: str) -> str:
    """`policy/decoding.py` of `/somewhere/site-packages/policy/decoding.py`."""
    parts = filename.replace("\\", "/").rsplit("/", 2)
    return "/".join(parts[-2:])


def parse_json(key: bytes | None, value: bytes | None) -> tuple[object, object] | Rejection:
    """Key and value bytes as parsed JSON (None stays None), or why they are not JSON."""
    try:
        parsed_key = orjson.loads(key) if key is not None else None
    except orjson.JSONDecodeError as exc:
        return _not_json("key", exc, DecodeReason.BAD_KEY)
    try:
        parsed_value = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError as exc:
        return _not_json("value", exc, DecodeReason.NOT_JSON)
    return parsed_key, parsed_value


def _not_json(which: str, exc: orjson.JSONDecodeError, reason: DecodeReason) -> Rejection:
    return Rejection(
        reason,
        f"the record {which} is not JSON (at byte {exc.pos}); is the topic written by "
        "JsonConverter?",
    )


def _structure(table: str, key: object, value: object) -> Record:
    key_payload, key_schema = unwrap(key)
    if key_payload is not None:
        if not isinstance(key_payload, dict):
            raise Malformed(
                DecodeReason.BAD_KEY,
                f"the key is a JSON {json_type(key_payload)}, not an object of key columns",
            )
        if not key_payload:
            raise Malformed(DecodeReason.BAD_KEY, "the key is an object without columns")
    payload, schema = unwrap(value)
    if payload is None:
        if key_payload is None:
            raise Malformed(DecodeReason.BAD_KEY, "a tombstone (null value) without a key")
        return Record(table, None, key_payload, None, None, None, key_schema)
    if not isinstance(payload, dict):
        raise Malformed(
            DecodeReason.NOT_AN_OBJECT,
            f"the value is a JSON {json_type(payload)}, not a Debezium change envelope",
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
            raise Malformed(DecodeReason.BAD_SHAPE, "op d without a key and without a 'before' row")
    elif after is None:
        raise Malformed(DecodeReason.BAD_SHAPE, f"op {op.value} without an 'after' row")
    return Record(
        table,
        op,
        key_payload,
        before,
        after,
        _change_ts(payload),
        key_schema,
        schema,
        source_position(payload.get("source"), op),
    )


def _table_of_topic(topic: object) -> str:
    if not isinstance(topic, str):
        raise Malformed(DecodeReason.BAD_TOPIC, "the record has no topic string")
    parts = topic.rsplit(".", 2)  # Debezium's topic.prefix may itself hold dots
    if len(parts) != 3 or not all(parts):
        raise Malformed(DecodeReason.BAD_TOPIC, _TOPIC_SHAPE)
    return parts[1] + "." + parts[2]


def _bad_op(raw: object) -> Malformed:
    if raw is None:
        return Malformed(DecodeReason.NO_OP, "the envelope has no 'op'; expected c, u, d or r")
    if raw == "t":
        return Malformed(
            DecodeReason.TRUNCATE,
            "op t (truncate) removes rows without a change per row, which retention cannot "
            "follow; keep t in the source connector's skipped.operations (its default)",
        )
    return Malformed(
        DecodeReason.UNKNOWN_OP,
        f"the envelope's 'op' is a JSON {json_type(raw)} that is not c, u, d or r",
    )


def _bad_image(which: str, image: object) -> Malformed:
    return Malformed(
        DecodeReason.BAD_SHAPE, f"'{which}' is a JSON {json_type(image)}, not a row object"
    )


_NOT_SNAPSHOT: Final = (None, False, "false")


def source_position(source: object, op: Op) -> SourcePosition | None:
    """The position in `source` (the envelope's `source` block), None when it has none.

    `sequence` is a JSON text (as Debezium PostgreSQL sends it) or an array, of two LSNs as
    decimal strings or integers, the first may be null; anything else is no position.
    """
    if type(source) is not dict:
        return None
    sequence = source.get("sequence")
    if isinstance(sequence, str):
        try:
            sequence = orjson.loads(sequence)
        except orjson.JSONDecodeError:
            return None
    if type(sequence) is not list or len(sequence) != 2:
        return None
    commit = _lsn(sequence[0])
    lsn = _lsn(sequence[1])
    if lsn is None or (commit is None and sequence[0] is not None):
        return None
    snapshot = op is Op.READ or source.get("snapshot") not in _NOT_SNAPSHOT
    return SourcePosition(commit, lsn, snapshot)


def _lsn(raw: object) -> int | None:
    if is_int(raw):
        return raw if raw >= 0 else None
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        return int(raw)
    return None


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
            raise Malformed(
                DecodeReason.NO_TS,
                "the envelope has neither 'ts_ms' nor 'source.ts_ms'; the clock needs the "
                "time of the change",
            )
    if not is_int(ts):
        raise Malformed(
            DecodeReason.NO_TS, f"'{field}' is a JSON {json_type(ts)}, not integer milliseconds"
        )
    if not _MIN_TS_MS <= ts <= _MAX_TS_MS:
        raise Malformed(
            DecodeReason.TS_OUT_OF_RANGE,
            f"'{field}' is out of range: not an instant of the years 0001-9999 in milliseconds",
        )
    return ts * 1000


def json_type(value: object) -> str:
    """The JSON type of a parsed value (`string`, `number`, ...): what a detail may name."""
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


def is_int(raw: object) -> TypeGuard[int]:
    """A JSON integer (a boolean is not one)."""
    return isinstance(raw, int) and not isinstance(raw, bool)
