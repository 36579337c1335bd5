"""Malformed change records, generated from a seed, each with the dead-letter reason it must get.

Row 5 of the fault matrix (docs/reliability.md): `malformed(rng, source, count)` makes `count`
records a change topic of `source` might carry by mistake or malice (random bytes, truncated
JSON, wrong types, huge values, missing fields, unknown ops, schema mismatches, tombstones
with garbage keys, ...). The reason each must be dead-lettered with is written here by hand,
from the structure docs/dead-letters.md and `policy.envelope` describe, never asked of the
decoder. `good(...)` makes the well-formed Debezium records (JsonConverter without schema)
they are mixed with.

The unit test (tests/unit/test_poison_records.py) checks the decoder against these reasons;
the integration test (tests/integration/test_poison.py) produces them between good records and
counts the dead letters.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

HUGE_BYTES = 900_000
"""A value that fits a change topic but not, base64-encoded, a dead letter (docs/dead-letters.md:
the dead letter then goes without its raw record)."""


@dataclass(frozen=True)
class Source:
    """A table of the policy: its primary-key column, a bigint column, a timestamptz column
    and a text column (names as the policy declares them)."""

    key: str
    bigint: str
    timestamptz: str
    text: str


CONNECTION_LOGS = Source("id", "customer_id", "logged_at", "ip_address")
SATISFACTION_SURVEYS = Source("id", "customer_id", "submitted_at", "respondent_email")
SUPPORT_TICKETS = Source("id", "customer_id", "last_message_at", "subject_line")


@dataclass(frozen=True)
class Poison:
    """A malformed record: `kind` (what is wrong), its raw `key` and `value` (None: null), and
    the `reason` its dead letter must carry."""

    kind: str
    key: bytes | None
    value: bytes | None
    reason: str


def good_row(source: Source, row_id: int, customer: int, at: str) -> dict[str, Any]:
    return {source.key: row_id, source.bigint: customer, source.timestamptz: at, source.text: "x"}


def envelope(
    op: str, before: dict[str, Any] | None, after: dict[str, Any] | None, ts_ms: int
) -> dict[str, Any]:
    """A Debezium change envelope (JsonConverter without schema)."""
    return {
        "before": before,
        "after": after,
        "source": {"ts_ms": ts_ms},
        "op": op,
        "ts_ms": ts_ms,
    }


def _dumps(document: object) -> bytes:
    return orjson.dumps(document)


Maker = Callable[[random.Random, Source, int], tuple[bytes | None, bytes | None]]


def _template(rng: random.Random, source: Source, ts_ms: int) -> tuple[int, dict[str, Any]]:
    row_id = rng.randrange(1, 10**9)
    row = good_row(source, row_id, rng.randrange(1, 10**9), "2024-06-15T08:30:00Z")
    return row_id, envelope("c", None, row, ts_ms)


def _key(source: Source, row_id: int) -> bytes:
    return _dumps({source.key: row_id})


def _random_bytes(rng: random.Random, source: Source, ts_ms: int) -> tuple[bytes | None, bytes]:
    # 0xff never starts (nor appears in) valid UTF-8, so never JSON
    return _key(source, rng.randrange(1, 10**9)), b"\xff" + rng.randbytes(rng.randrange(0, 300))


def _truncated(rng: random.Random, source: Source, ts_ms: int) -> tuple[bytes | None, bytes]:
    row_id, value = _template(rng, source, ts_ms)
    whole = _dumps(value)
    return _key(source, row_id), whole[: rng.randrange(1, len(whole))]  # a proper prefix of {...}


def _deeply_nested(rng: random.Random, source: Source, ts_ms: int) -> tuple[bytes | None, bytes]:
    depth = rng.randrange(1_100, 3_000)  # past orjson's 1024 levels
    return _key(source, 1), b"[" * depth + b"]" * depth


def _invalid_utf8(rng: random.Random, source: Source, ts_ms: int) -> tuple[bytes | None, bytes]:
    row_id, value = _template(rng, source, ts_ms)
    value["after"][source.text] = "PLACEHOLDER"
    raw = _dumps(value).replace(b"PLACEHOLDER", b"\xc3\x28")
    return _key(source, row_id), raw


def _not_an_object(rng: random.Random, source: Source, ts_ms: int) -> tuple[bytes | None, bytes]:
    document = rng.choice([[1, 2, 3], "c", 42, 3.5, True, [], "", {"schema": {}, "payload": [1]}])
    return _key(source, 1), _dumps(document)


def _without(field: str) -> Maker:
    def make(rng: random.Random, source: Source, ts_ms: int) -> tuple[bytes | None, bytes]:
        row_id, value = _template(rng, source, ts_ms)
        del value[field]
        return _key(source, row_id), _dumps(value)

    return make


def _op(*ops: object) -> Maker:
    def make(rng: random.Random, source: Source, ts_ms: int) -> tuple[bytes | None, bytes]:
        row_id, value = _template(rng, source, ts_ms)
        value["op"] = rng.choice(ops)
        return _key(source, row_id), _dumps(value)

    return make


def _image_not_object(rng: random.Random, source: Source, ts_ms: int) -> tuple[bytes | None, bytes]:
    row_id, value = _template(rng, source, ts_ms)
    value[rng.choice(["before", "after"])] = rng.choice(["row", 7, [1], True])
    return _key(source, row_id), _dumps(value)


def _create_without_after(
    rng: random.Random, source: Source, ts_ms: int
) -> tuple[bytes | None, bytes]:
    row_id, value = _template(rng, source, ts_ms)
    value["op"] = rng.choice(["c", "u", "r"])
    value["after"] = None
    return _key(source, row_id), _dumps(value)


def _delete_without_row(
    rng: random.Random, source: Source, ts_ms: int
) -> tuple[bytes | None, bytes]:
    _, value = _template(rng, source, ts_ms)
    value["op"] = "d"
    value["before"] = None
    return None, _dumps(value)


def _no_ts(rng: random.Random, source: Source, ts_ms: int) -> tuple[bytes | None, bytes]:
    row_id, value = _template(rng, source, ts_ms)
    del value["ts_ms"]
    if rng.random() < 0.5:
        del value["source"]
    else:
        value["source"] = {"ts_ms": rng.choice(["yesterday", 1.5, None, [1], True])}
        if value["source"]["ts_ms"] is None:
            value["source"] = {}
    return _key(source, row_id), _dumps(value)


def _ts_out_of_range(rng: random.Random, source: Source, ts_ms: int) -> tuple[bytes | None, bytes]:
    row_id, value = _template(rng, source, ts_ms)
    value["ts_ms"] = rng.choice([10**15, -(10**15), 2**63 - 1, -(2**63)])
    return _key(source, row_id), _dumps(value)


def _wrong_type(rng: random.Random, source: Source, ts_ms: int) -> tuple[bytes | None, bytes]:
    row_id, value = _template(rng, source, ts_ms)
    if rng.random() < 0.5:
        value["after"][source.bigint] = rng.choice(["twelve", 1.5, True, [1], {"a": 1}])
    else:
        value["after"][source.timestamptz] = rng.choice(["yesterday", True, 1.5, [2024], {}])
    return _key(source, row_id), _dumps(value)


def _huge_value(rng: random.Random, source: Source, ts_ms: int) -> tuple[bytes | None, bytes]:
    row_id, value = _template(rng, source, ts_ms)
    value["after"][source.timestamptz] = rng.choice(
        ["9" * rng.randrange(1_000, 20_000), "x" * rng.randrange(1_000, 20_000)]
    )
    return _key(source, row_id), _dumps(value)


def _instant_out_of_range(
    rng: random.Random, source: Source, ts_ms: int
) -> tuple[bytes | None, bytes]:
    row_id, value = _template(rng, source, ts_ms)
    value["after"][source.timestamptz] = rng.choice([2**63 - 1, -(2**63), 9 * 10**18])
    return _key(source, row_id), _dumps(value)


def _bad_key(rng: random.Random, source: Source, ts_ms: int) -> tuple[bytes | None, bytes]:
    _, value = _template(rng, source, ts_ms)
    key = rng.choice(
        [
            b"\xfe" + rng.randbytes(rng.randrange(0, 40)),
            b"[1, 2]",
            b"42",
            b'"id"',
            b"{}",
            b'{"other": 1}',
            b"{",
        ]
    )
    return key, _dumps(value)


def _no_key_column(rng: random.Random, source: Source, ts_ms: int) -> tuple[bytes | None, bytes]:
    _, value = _template(rng, source, ts_ms)
    del value["after"][source.key]
    return None, _dumps(value)


def _schema_mismatch(rng: random.Random, source: Source, ts_ms: int) -> tuple[bytes | None, bytes]:
    """JsonConverter with schemas: the field's logical type says one encoding, the payload
    holds another."""
    row_id, value = _template(rng, source, ts_ms)
    logical, raw = rng.choice(
        [
            ("io.debezium.time.MicroTimestamp", "2024-06-15T08:30:00Z"),
            ("io.debezium.time.ZonedTimestamp", 1_718_440_200_000_000),
            ("io.debezium.time.Timestamp", "2024-06-15"),
            ("io.debezium.time.Date", "not a day"),
            ("org.apache.kafka.connect.data.Decimal", 12),
        ]
    )
    value["after"][source.timestamptz] = raw
    row_schema = {
        "type": "struct",
        "fields": [{"field": source.timestamptz, "type": "int64", "name": logical}],
    }
    schema = {
        "type": "struct",
        "fields": [{"field": "before", **row_schema}, {"field": "after", **row_schema}],
    }
    return _key(source, row_id), _dumps({"schema": schema, "payload": value})


def _tombstone_garbage_key(
    rng: random.Random, source: Source, ts_ms: int
) -> tuple[bytes | None, None]:
    key = rng.choice(
        [None, b"\xfd" + rng.randbytes(rng.randrange(0, 40)), b"[]", b"7", b"{}", b"null"]
    )
    return key, None


def _oversized(rng: random.Random, source: Source, ts_ms: int) -> tuple[bytes | None, bytes]:
    return _key(source, 1), b"\x00" + rng.randbytes(HUGE_BYTES)


KINDS: dict[str, tuple[Maker, str]] = {
    "random_bytes": (_random_bytes, "not_json"),
    "truncated_json": (_truncated, "not_json"),
    "deeply_nested": (_deeply_nested, "not_json"),
    "invalid_utf8": (_invalid_utf8, "not_json"),
    "not_an_object": (_not_an_object, "not_an_object"),
    "no_op": (_without("op"), "no_op"),
    "unknown_op": (_op("x", "insert", "C", "delete", "", "cc", 7, [1]), "unknown_op"),
    "truncate": (_op("t"), "truncate"),
    "image_not_object": (_image_not_object, "bad_shape"),
    "create_without_after": (_create_without_after, "bad_shape"),
    "delete_without_row": (_delete_without_row, "bad_shape"),
    "no_ts": (_no_ts, "no_ts"),
    "ts_out_of_range": (_ts_out_of_range, "ts_out_of_range"),
    "wrong_type": (_wrong_type, "bad_value"),
    "huge_value": (_huge_value, "bad_value"),
    "instant_out_of_range": (_instant_out_of_range, "value_out_of_range"),
    "bad_key": (_bad_key, "bad_key"),
    "no_key_column": (_no_key_column, "bad_key"),
    "schema_mismatch": (_schema_mismatch, "bad_value"),
    "tombstone_garbage_key": (_tombstone_garbage_key, "bad_key"),
}
"""Each kind of malformed record: how it is made, and the reason it must be dead-lettered with."""


def malformed(
    rng: random.Random, source: Source, count: int, ts_ms: int, oversized: int = 0
) -> list[Poison]:
    """`count` malformed records of `source`'s change topic, kinds drawn from `KINDS` (each at
    least once when `count` allows), `oversized` of them too large for a dead letter's raw copy."""
    names = sorted(KINDS)
    drawn = names[:count] + [rng.choice(names) for _ in range(count - len(names) - oversized)]
    rng.shuffle(drawn)
    found = []
    for kind in drawn:
        make, reason = KINDS[kind]
        key, value = make(rng, source, ts_ms)
        found.append(Poison(kind, key, value, reason))
    for _ in range(oversized):
        key, value = _oversized(rng, source, ts_ms)
        found.insert(rng.randrange(len(found) + 1), Poison("oversized", key, value, "not_json"))
    return found
