"""Decoding Debezium JsonConverter records: wrappers, temporal encodings, errors as data."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
import pytest

from policy.debezium import (
    ChangeEvent,
    DecodeError,
    Op,
    Tombstone,
    decode_raw,
    decode_record,
)
from policy.engine import Engine

TOPIC = "hosting.public.payment_methods"
# 2024-02-29T10:00:00Z
AT = datetime(2024, 2, 29, 10, 0, tzinfo=UTC)
AT_MS = 1709200800000


def _envelope(after: dict[str, object] | None, op: str = "c", **extra: object) -> dict:
    return {"op": op, "ts_ms": AT_MS, "before": None, "after": after, **extra}


def _field(name: str, kind: str, logical: str | None = None, **more: object) -> dict:
    field: dict[str, object] = {"type": kind, "optional": True, "field": name, **more}
    if logical:
        field["name"] = logical
    return field


def _wrapped(after: dict[str, object], fields: list[dict]) -> dict:
    row_schema = {"type": "struct", "optional": True, "fields": fields}
    schema = {
        "type": "struct",
        "name": "hosting.public.payment_methods.Envelope",
        "fields": [
            {**row_schema, "field": "before"},
            {**row_schema, "field": "after"},
            {"type": "string", "field": "op"},
            {"type": "int64", "field": "ts_ms"},
        ],
    }
    return {"schema": schema, "payload": _envelope(after)}


def _event(result: object) -> ChangeEvent:
    assert isinstance(result, ChangeEvent), result
    return result


def test_plain_record_uses_the_policy_column_types(demo_engine: Engine):
    event = _event(
        decode_record(
            demo_engine.decoding,
            TOPIC,
            {"id": 3},
            _envelope(
                {
                    "id": 3,
                    "customer_id": 42,
                    "expires_on": 19782,  # days since 1970-01-01
                    "revoked_at": "2024-02-29T11:00:00+01:00",
                    "subscription_cancelled_at": 1709200800000000,  # µs
                    "keep_for_purchases": True,
                    "holder_name": "Ada",
                }
            ),
        )
    )
    assert event.table == "public.payment_methods"
    assert event.key == (("id", 3),)
    assert event.op is Op.CREATE
    assert event.ts == AT_MS * 1000
    assert event.ts_datetime == AT
    assert event.after is not None
    assert event.after["expires_on"] == date(2024, 2, 29)
    assert event.after["revoked_at"] == AT
    assert event.after["subscription_cancelled_at"] == AT
    assert event.after["keep_for_purchases"] is True
    assert event.after["holder_name"] == "Ada"


@pytest.mark.parametrize(
    ("logical", "kind", "raw", "expected"),
    [
        ("io.debezium.time.ZonedTimestamp", "string", "2024-02-29T10:00:00Z", AT),
        ("io.debezium.time.ZonedTimestamp", "string", "2024-02-29T05:00:00-05:00", AT),
        ("io.debezium.time.Timestamp", "int64", AT_MS, AT),
        ("org.apache.kafka.connect.data.Timestamp", "int64", AT_MS, AT),
        ("io.debezium.time.MicroTimestamp", "int64", AT_MS * 1000 + 7, AT.replace(microsecond=7)),
        ("io.debezium.time.NanoTimestamp", "int64", AT_MS * 1_000_000 + 7000,
         AT.replace(microsecond=7)),
        ("io.debezium.time.Date", "int32", 19782, date(2024, 2, 29)),
        ("org.apache.kafka.connect.data.Date", "int32", 0, date(1970, 1, 1)),
    ],
)  # fmt: skip
def test_schema_logical_types_win_over_column_types(
    demo_engine: Engine, logical: str, kind: str, raw: object, expected: object
):
    # revoked_at is timestamptz in the policy; the schema's logical type decides
    record = _wrapped(
        {"id": 3, "revoked_at": raw},
        [_field("id", "int64"), _field("revoked_at", kind, logical)],
    )
    key = {"schema": {"type": "struct", "fields": [_field("id", "int64")]}, "payload": {"id": 3}}
    event = _event(decode_record(demo_engine.decoding, TOPIC, key, record))
    assert event.after is not None
    assert event.after["revoked_at"] == expected
    assert event.key == (("id", 3),)


def test_connect_decimal_from_schema(demo_engine: Engine):
    unscaled = base64.b64encode((12345).to_bytes(2, "big", signed=True)).decode()
    record = _wrapped(
        {"id": 3, "pan_last4": unscaled},
        [_field("pan_last4", "bytes", "org.apache.kafka.connect.data.Decimal",
                parameters={"scale": "2"})],
    )  # fmt: skip
    event = _event(decode_record(demo_engine.decoding, TOPIC, {"id": 3}, record))
    assert event.after is not None
    assert event.after["pan_last4"] == Decimal("123.45")


def test_key_may_be_absent_then_taken_from_the_row(demo_engine: Engine):
    event = _event(decode_record(demo_engine.decoding, TOPIC, None, _envelope({"id": 9})))
    assert event.key == (("id", 9),)


def test_tombstone_with_and_without_wrapper(demo_engine: Engine):
    assert decode_record(demo_engine.decoding, TOPIC, {"id": 3}, None) == Tombstone(
        "public.payment_methods", (("id", 3),)
    )
    wrapped_null = {"schema": None, "payload": None}
    assert decode_record(demo_engine.decoding, TOPIC, {"id": 3}, wrapped_null) == Tombstone(
        "public.payment_methods", (("id", 3),)
    )


def test_delete_keeps_the_before_image(demo_engine: Engine):
    envelope = {"op": "d", "ts_ms": AT_MS, "before": {"id": 3, "customer_id": 42}, "after": None}
    event = _event(decode_record(demo_engine.decoding, TOPIC, {"id": 3}, envelope))
    assert event.op is Op.DELETE
    assert event.row == {"id": 3, "customer_id": 42}


def test_source_ts_ms_is_the_fallback_clock(demo_engine: Engine):
    envelope = {"op": "r", "after": {"id": 3}, "source": {"ts_ms": AT_MS}}
    assert (
        _event(decode_record(demo_engine.decoding, TOPIC, {"id": 3}, envelope)).ts == AT_MS * 1000
    )


def test_decode_raw_bytes(demo_engine: Engine):
    event = _event(
        decode_raw(demo_engine.decoding, TOPIC, b'{"id": 3}', orjson.dumps(_envelope({"id": 3})))
    )
    assert event.key == (("id", 3),)
    assert isinstance(decode_raw(demo_engine.decoding, TOPIC, b"{", None), DecodeError)


SECRET = "ada.lovelace@example.org"


@pytest.mark.parametrize(
    ("topic", "key", "value", "says"),
    [
        ("hosting.public.nope", {"id": 1}, _envelope({"id": 1}), "not a source"),
        (None, {"id": 1}, _envelope({"id": 1}), "topic"),
        (TOPIC, {"id": 1}, [SECRET], "not a Debezium change envelope"),
        (TOPIC, {"id": 1}, _envelope({"id": 1}, op="x"), "'op'"),
        (TOPIC, {"id": 1}, _envelope({"id": 1}, op="t"), "truncate"),
        (TOPIC, {"id": 1}, _envelope(None), "without an 'after' row"),
        (TOPIC, {"id": 1}, {"op": "c", "after": {"id": 1}}, "ts_ms"),
        (TOPIC, {"nope": 1}, _envelope({"id": 1}), "no column 'id'"),
        (TOPIC, {"id": 1}, _envelope({"id": 1, "revoked_at": SECRET}), "'revoked_at'"),
        (TOPIC, {"id": 1}, _envelope({"id": 1, "revoked_at": True}), "'revoked_at'"),
        (TOPIC, {"id": 1}, _envelope({"id": 1, "expires_on": SECRET}), "'expires_on'"),
        (TOPIC, {"id": 1}, _envelope({"id": 1, "keep_for_purchases": "yes"}), "true or false"),
        (TOPIC, {"id": 1}, _envelope({"id": 1, "customer_id": SECRET}), "an integer"),
        (TOPIC, {"id": 1}, _envelope({"id": 1, "expires_on": 10**9}), "out of range"),
    ],
)
def test_bad_records_are_errors_that_never_quote_values(
    demo_engine: Engine, topic: object, key: object, value: object, says: str
):
    result = decode_record(demo_engine.decoding, topic, key, value)
    assert isinstance(result, DecodeError)
    assert says in result.reason
    assert SECRET not in result.reason
