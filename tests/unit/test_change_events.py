"""Decoding and classifying Debezium change records (policy.change_event)."""

from __future__ import annotations

import orjson
import pytest

from policy.change_event import (
    ChangeEvent,
    Operation,
    Rejected,
    RejectReason,
    decode_change,
    table_of_topic,
)

TOPIC = "hosting.public.customers"
KEY = orjson.dumps({"id": 42})
WRAPPED_KEY = orjson.dumps({"schema": {"type": "struct"}, "payload": {"id": 42}})


def envelope(op: str, before: object = None, after: object = None) -> dict[str, object]:
    return {
        "before": before,
        "after": after,
        "source": {"connector": "postgresql", "table": "customers", "ts_ms": 1_700_000_000_000},
        "op": op,
        "ts_ms": 1_700_000_000_123,
    }


def wrapped(payload: object) -> bytes:
    return orjson.dumps({"schema": {"type": "struct", "optional": False}, "payload": payload})


ROW = {"id": 42, "first_name": "Ada", "email": "ada@example.org"}


@pytest.mark.parametrize("encode", [orjson.dumps, wrapped], ids=["unwrapped", "wrapped"])
@pytest.mark.parametrize(
    ("op", "before", "after", "expected"),
    [
        ("c", None, ROW, Operation.CREATE),
        ("u", ROW, {**ROW, "first_name": "Ada L."}, Operation.UPDATE),
        ("u", None, ROW, Operation.UPDATE),  # REPLICA IDENTITY DEFAULT: no before image
        ("d", {"id": 42}, None, Operation.DELETE),
        ("r", None, ROW, Operation.READ),
    ],
)
def test_envelopes_with_or_without_the_jsonconverter_wrapper(
    encode: object, op: str, before: object, after: object, expected: Operation
) -> None:
    value = encode(envelope(op, before, after))  # type: ignore[operator]
    event = decode_change(TOPIC, KEY, value)
    assert event == ChangeEvent(
        table="customers",
        op=expected,
        key={"id": 42},
        before=before,  # type: ignore[arg-type]
        after=after,  # type: ignore[arg-type]
        source_ts_ms=1_700_000_000_000,
    )


def test_snapshot_read_is_its_own_operation() -> None:
    event = decode_change(TOPIC, KEY, orjson.dumps(envelope("r", after=ROW)))
    assert isinstance(event, ChangeEvent)
    assert event.op is Operation.READ
    assert event.op.value == "r"


def test_wrapped_key_is_unwrapped_and_rendered_without_row_values() -> None:
    event = decode_change(TOPIC, WRAPPED_KEY, orjson.dumps(envelope("c", after=ROW)))
    assert isinstance(event, ChangeEvent)
    assert event.key == {"id": 42}
    assert event.key_label == "id=42"
    assert "ada" not in event.key_label.lower()


@pytest.mark.parametrize("value", [None, orjson.dumps({"schema": None, "payload": None})])
def test_tombstone_after_delete_is_counted_not_rejected(value: bytes | None) -> None:
    event = decode_change(TOPIC, KEY, value)
    assert event == ChangeEvent("customers", Operation.TOMBSTONE, {"id": 42}, None, None, None)


def test_record_without_key_is_accepted() -> None:
    event = decode_change(TOPIC, None, orjson.dumps(envelope("c", after=ROW)))
    assert isinstance(event, ChangeEvent)
    assert event.key is None
    assert event.key_label == "-"


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (KEY, b"\x00\xffgarbage", RejectReason.NOT_JSON),
        (KEY, b"", RejectReason.NOT_JSON),
        (KEY, b'{"op": "c", "after": {"id": 1}', RejectReason.NOT_JSON),
        (KEY, b"[1, 2, 3]", RejectReason.NOT_AN_OBJECT),
        (KEY, b'"just a string"', RejectReason.NOT_AN_OBJECT),
        (KEY, wrapped([1, 2]), RejectReason.NOT_AN_OBJECT),
        (KEY, orjson.dumps({"after": ROW}), RejectReason.NO_OP),
        (KEY, orjson.dumps(envelope("x", after=ROW)), RejectReason.UNKNOWN_OP),
        (KEY, orjson.dumps({**envelope("c", after=ROW), "op": 1}), RejectReason.UNKNOWN_OP),
        (KEY, orjson.dumps(envelope("c")), RejectReason.BAD_SHAPE),
        (KEY, orjson.dumps(envelope("d")), RejectReason.BAD_SHAPE),
        (KEY, orjson.dumps(envelope("c", after=[1, 2])), RejectReason.BAD_SHAPE),
        (b"not json", orjson.dumps(envelope("c", after=ROW)), RejectReason.BAD_KEY),
        (b"[42]", orjson.dumps(envelope("c", after=ROW)), RejectReason.BAD_KEY),
    ],
)
def test_bad_records_become_rejections_with_a_reason(
    key: bytes, value: bytes, reason: RejectReason
) -> None:
    outcome = decode_change(TOPIC, key, value)
    assert isinstance(outcome, Rejected)
    assert outcome.reason is reason
    assert outcome.detail


def test_rejection_detail_never_echoes_the_value() -> None:
    secret = b'{"op": "c", "after": {"email": "ada@example.org"'
    outcome = decode_change(TOPIC, KEY, secret)
    assert isinstance(outcome, Rejected)
    assert "ada@example.org" not in outcome.detail


def test_topic_that_is_not_prefix_schema_table_is_rejected() -> None:
    outcome = decode_change("customers", KEY, orjson.dumps(envelope("c", after=ROW)))
    assert isinstance(outcome, Rejected)
    assert outcome.reason is RejectReason.BAD_TOPIC


@pytest.mark.parametrize(
    ("topic", "table"),
    [
        ("hosting.public.support_tickets", "support_tickets"),
        ("hosting.public", None),
        ("hosting..customers", None),
        ("a.b.c.d", None),
    ],
)
def test_table_of_topic(topic: str, table: str | None) -> None:
    assert table_of_topic(topic) == table
