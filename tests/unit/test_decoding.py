"""Decoding Debezium JsonConverter records: wrappers, temporal encodings, errors as data."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
import pytest

from policy.decoding import Decoding, SourceDecoder, decode_raw, decode_record
from policy.engine import Engine
from policy.envelope import DecodeReason, Rejection
from policy.events import ChangeEvent, Op, Tombstone

TOPIC = "hosting.public.payment_methods"
TABLE = "public.payment_methods"
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
    assert event.before == {"id": 3, "customer_id": 42}


def test_the_clock_is_the_envelope_ts_ms_as_simulate_states(demo_engine: Engine):
    committed = AT_MS - 3_600_000  # committed in the database an hour before the connector saw it
    envelope = {"op": "r", "after": {"id": 3}, "ts_ms": AT_MS, "source": {"ts_ms": committed}}
    event = _event(decode_record(demo_engine.decoding, TOPIC, {"id": 3}, envelope))
    assert event.ts == AT_MS * 1000


def test_without_an_envelope_ts_ms_source_ts_ms_is_the_clock(demo_engine: Engine):
    envelope = {"op": "r", "after": {"id": 3}, "source": {"table": "x", "ts_ms": AT_MS}}
    event = _event(decode_record(demo_engine.decoding, TOPIC, {"id": 3}, envelope))
    assert event.ts == AT_MS * 1000


def test_without_a_key_the_key_comes_from_the_decoded_row(demo_engine: Engine):
    record = _wrapped({"id": 3}, [_field("id", "int64")])
    assert _event(decode_record(demo_engine.decoding, TOPIC, None, record)).key == (("id", 3),)


def test_decode_raw_bytes(demo_engine: Engine):
    event = _event(
        decode_raw(demo_engine.decoding, TOPIC, b'{"id": 3}', orjson.dumps(_envelope({"id": 3})))
    )
    assert event.key == (("id", 3),)
    assert isinstance(decode_raw(demo_engine.decoding, TOPIC, b"{", None), Rejection)


SECRET = "ada.lovelace@example.org"


@pytest.mark.parametrize(
    ("topic", "key", "value", "code", "says"),
    [
        ("hosting.public.nope", {"id": 1}, _envelope({"id": 1}), "unknown_table", "not a source"),
        ("nope", {"id": 1}, _envelope({"id": 1}), "bad_topic", "<prefix>.<schema>.<table>"),
        (None, {"id": 1}, _envelope({"id": 1}), "bad_topic", "topic"),
        (TOPIC, {"id": 1}, [SECRET], "not_an_object", "not a Debezium change envelope"),
        (TOPIC, {"id": 1}, _envelope({"id": 1}, op="x"), "unknown_op", "'op'"),
        (TOPIC, {"id": 1}, _envelope({"id": 1}, op=SECRET), "unknown_op", "JSON string"),
        (TOPIC, {"id": 1}, _envelope({"id": 1}, op="t"), "truncate", "truncate"),
        (TOPIC, {"id": 1}, _envelope(None), "bad_shape", "without an 'after' row"),
        (TOPIC, {"id": 1}, {"op": "c", "after": {"id": 1}}, "no_ts", "ts_ms"),
        (TOPIC, {"id": 1}, _envelope({"id": 1}, ts_ms=SECRET), "no_ts", "'ts_ms' is a JSON string"),
        (TOPIC, {"id": 1}, _envelope({"id": 1}, ts_ms=300_000_000_000_000), "ts_out_of_range",
         "ts_ms' is out of range"),
        (TOPIC, {"id": 1}, _envelope({"id": 1}, ts_ms=-(2**50)), "ts_out_of_range",
         "out of range"),
        (TOPIC, {"nope": 1}, _envelope({"id": 1}), "bad_key", "no column 'id'"),
        (TOPIC, SECRET, _envelope({"id": 1}), "bad_key", "the key is a JSON string"),
        (TOPIC, {"id": SECRET}, _envelope({"id": 1}), "bad_value", "'id'"),
        (TOPIC, {"id": 1}, _envelope({"id": 1, "revoked_at": SECRET}), "bad_value", "'revoked_at'"),
        (TOPIC, {"id": 1}, _envelope({"id": 1, "revoked_at": True}), "bad_value", "'revoked_at'"),
        (TOPIC, {"id": 1}, _envelope({"id": 1, "expires_on": SECRET}), "bad_value",
         "'expires_on'"),
        (TOPIC, {"id": 1}, _envelope({"id": 1, "keep_for_purchases": "yes"}), "bad_value",
         "true or false"),
        (TOPIC, {"id": 1}, _envelope({"id": 1, "customer_id": SECRET}), "bad_value",
         "an integer"),
        (TOPIC, {"id": 1}, _envelope({"id": 1, "expires_on": 10**9}), "value_out_of_range",
         "out of range"),
        (TOPIC, {"id": 1}, _envelope({"id": 1, "revoked_at": 2**62}), "value_out_of_range",
         "'revoked_at' is out of range"),
        (TOPIC, {"id": 1}, _envelope({"id": 1, "revoked_at": "9999-12-31T23:00:00-05:00"}),
         "value_out_of_range", "years 0001-9999"),
        (TOPIC, {"id": 1}, _envelope({"id": 1, "revoked_at": "0001-01-01T00:30:00+01:00"}),
         "value_out_of_range", "years 0001-9999"),
    ],
)  # fmt: skip
def test_bad_records_are_errors_with_a_code_that_never_quote_values(
    demo_engine: Engine, topic: object, key: object, value: object, code: str, says: str
):
    result = decode_record(demo_engine.decoding, topic, key, value)
    assert isinstance(result, Rejection)
    assert result.reason is DecodeReason(code)
    assert says in result.detail
    assert SECRET not in result.detail


@pytest.mark.parametrize("ts_ms", [300_000_000_000_000, -(2**50)])
def test_simulate_skips_a_change_time_out_of_range_and_goes_on(demo_engine: Engine, ts_ms: int):
    from policy.simulation import simulate

    def line(ts: int, row_id: int) -> str:
        value = {"op": "c", "ts_ms": ts, "after": {"id": row_id, "handled_at": 1704067200000000}}
        return orjson.dumps(
            {"topic": "hosting.public.info_requests", "key": {"id": row_id}, "value": value}
        ).decode()

    result = simulate(demo_engine, [line(ts_ms, 1), line(AT_MS, 2)], None)
    assert [(error.line, error.message) for error in result.errors] == [
        (
            1,
            "'ts_ms' is out of range: not an instant of the years 0001-9999 in milliseconds",
        )
    ]
    assert result.events == 1


def test_a_decoder_bug_is_a_rejection_that_keeps_its_traceback_but_not_the_value():
    def broken(column: str, raw: object) -> object:
        return int(str(raw))  # a bug: raises ValueError("invalid literal ...: '<the value>'")

    topics = {TOPIC: SourceDecoder(TABLE, ("id",), {"email": broken}, (("id", None),))}
    result = decode_record(
        Decoding("demo", topics), TOPIC, {"id": 1}, _envelope({"id": 1, "email": SECRET})
    )
    assert isinstance(result, Rejection)
    assert result.reason is DecodeReason.INTERNAL_ERROR
    assert result.detail.startswith(
        f"{TABLE}: cannot decode the record: the decoder failed with ValueError at "
        "unit/test_decoding.py:"
    )
    assert result.detail.endswith(".<locals>.broken, a bug in Lethe to report")
    assert result.trace is not None
    frames = result.trace.splitlines()
    assert frames[0] == "Traceback (most recent call last):"
    assert [line.rsplit(", in ", 1)[1] for line in frames[1:-1]] == [
        "decode_record",
        "_typed",
        "_values",
        "test_a_decoder_bug_is_a_rejection_that_keeps_its_traceback_but_not_the_value"
        ".<locals>.broken",
    ]
    assert frames[-1] == "ValueError"
    assert SECRET not in result.detail + result.trace
