"""Debezium change records, decoded and classified.

`decode_change(topic, key, value)` turns one raw Kafka record of a Debezium
change topic into either a `ChangeEvent` or a `Rejected` value that says why
the record cannot be used (errors as data: nothing here raises on bad input).
Values with or without the JsonConverter wrapper `{"schema": ..., "payload":
...}` are accepted. A null value after a delete is a tombstone, a kind of its
own, not an error.

Pure: no Kafka, no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import orjson

__all__ = [
    "ChangeEvent",
    "Operation",
    "RejectReason",
    "Rejected",
    "decode_change",
    "table_of_topic",
]


class Operation(StrEnum):
    """What happened to the row; the values are Debezium's `op` codes."""

    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"
    """A row read by the initial (or an incremental) snapshot."""
    TRUNCATE = "t"
    TOMBSTONE = "tombstone"
    """The null-valued record Debezium sends after a delete, for log compaction."""


class RejectReason(StrEnum):
    """Why a record was dead-lettered; a small fixed set, used as a metric label."""

    BAD_TOPIC = "bad_topic"
    BAD_KEY = "bad_key"
    NOT_JSON = "not_json"
    NOT_AN_OBJECT = "not_an_object"
    NO_OP = "no_op"
    UNKNOWN_OP = "unknown_op"
    BAD_SHAPE = "bad_shape"
    INTERNAL_ERROR = "internal_error"


Row = Mapping[str, object]


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One usable change of one row.

    `key` is the row's primary key as Debezium sent it (column -> value),
    or None for a table without a primary key. `before`/`after` are the row
    images (None where Debezium sends none). `source_ts_ms` is when the change
    was committed in the database, if the record says so.
    """

    table: str
    op: Operation
    key: Row | None
    before: Row | None
    after: Row | None
    source_ts_ms: int | None

    @property
    def key_label(self) -> str:
        """The key for logs, e.g. `id=42`: primary-key columns only, never row values."""
        return render_key(self.key)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that cannot be used; `detail` says what is wrong, without row values."""

    reason: RejectReason
    detail: str


_ROW_IMAGES: Final[dict[Operation, tuple[bool, bool]]] = {
    # op: (before required, after required)
    Operation.CREATE: (False, True),
    Operation.READ: (False, True),
    Operation.UPDATE: (False, True),
    Operation.DELETE: (True, False),
    Operation.TRUNCATE: (False, False),
}
_ENVELOPE_OPS: Final[dict[str, Operation]] = {op.value: op for op in _ROW_IMAGES}


def table_of_topic(topic: str) -> str | None:
    """`hosting.public.customers` -> `customers`; None unless `<prefix>.<schema>.<table>`."""
    parts = topic.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[2]


def render_key(key: Row | None) -> str:
    """Render a primary key as `col=value[,col=value]`, or `-` when there is none."""
    if not key:
        return "-"
    return ",".join(f"{column}={value}" for column, value in key.items())


def decode_change(topic: str, key: bytes | None, value: bytes | None) -> ChangeEvent | Rejected:
    """Decode and classify one record of a Debezium change topic."""
    table = table_of_topic(topic)
    if table is None:
        return Rejected(RejectReason.BAD_TOPIC, f"topic {topic!r} is not <prefix>.<schema>.<table>")

    decoded_key = _decode_key(key)
    if isinstance(decoded_key, Rejected):
        return decoded_key

    if value is None:
        return ChangeEvent(table, Operation.TOMBSTONE, decoded_key, None, None, None)
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return Rejected(RejectReason.NOT_JSON, f"value is not JSON: {exc}")
    envelope = _unwrap(document)
    if envelope is None:
        # JsonConverter with schemas on renders a null value as a null payload.
        return ChangeEvent(table, Operation.TOMBSTONE, decoded_key, None, None, None)
    if not isinstance(envelope, dict):
        return Rejected(
            RejectReason.NOT_AN_OBJECT,
            f"value is a JSON {type(envelope).__name__}, not a Debezium envelope object",
        )
    return _classify(table, decoded_key, envelope)


def _unwrap(document: object) -> object:
    """Strip JsonConverter's `{"schema": ..., "payload": ...}` wrapper if present."""
    if isinstance(document, dict) and "payload" in document and "schema" in document:
        return document["payload"]
    return document


def _decode_key(key: bytes | None) -> Row | Rejected | None:
    if key is None:
        return None
    try:
        document = _unwrap(orjson.loads(key))
    except orjson.JSONDecodeError as exc:
        return Rejected(RejectReason.BAD_KEY, f"key is not JSON: {exc}")
    if document is None:
        return None
    if not isinstance(document, dict):
        return Rejected(
            RejectReason.BAD_KEY, f"key is a JSON {type(document).__name__}, not an object"
        )
    return document


def _classify(table: str, key: Row | None, envelope: dict[str, object]) -> ChangeEvent | Rejected:
    raw_op = envelope.get("op")
    if raw_op is None:
        return Rejected(RejectReason.NO_OP, "envelope has no 'op' field")
    if not isinstance(raw_op, str) or raw_op not in _ENVELOPE_OPS:
        return Rejected(
            RejectReason.UNKNOWN_OP,
            f"'op' is {raw_op!r}; expected one of {', '.join(sorted(_ENVELOPE_OPS))}",
        )
    op = _ENVELOPE_OPS[raw_op]
    before = _row_image(envelope, "before")
    if isinstance(before, Rejected):
        return before
    after = _row_image(envelope, "after")
    if isinstance(after, Rejected):
        return after
    needs_before, needs_after = _ROW_IMAGES[op]
    if needs_before and before is None:
        return Rejected(RejectReason.BAD_SHAPE, f"op {op.value!r} without a 'before' row")
    if needs_after and after is None:
        return Rejected(RejectReason.BAD_SHAPE, f"op {op.value!r} without an 'after' row")
    source_ts_ms = _source_ts_ms(envelope)
    return ChangeEvent(table, op, key, before, after, source_ts_ms)


def _row_image(envelope: dict[str, object], name: str) -> Row | Rejected | None:
    image = envelope.get(name)
    if image is None or isinstance(image, dict):
        return image
    return Rejected(
        RejectReason.BAD_SHAPE, f"'{name}' is a JSON {type(image).__name__}, not an object"
    )


def _source_ts_ms(envelope: dict[str, object]) -> int | None:
    source = envelope.get("source")
    if isinstance(source, dict):
        ts = source.get("ts_ms")
        if isinstance(ts, int) and not isinstance(ts, bool):
            return ts
    ts = envelope.get("ts_ms")
    if isinstance(ts, int) and not isinstance(ts, bool):
        return ts
    return None
