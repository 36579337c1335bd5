"""The structure of Debezium records, policy-free (`parse_raw`) and with the policy (`decode_raw`).

`parse_raw` reads a record without a policy; the assign agent and the engine decode with
`decode_raw`. Both run the same envelope parser, so for the structure of a record they must
agree: same accept, same reason.
"""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from policy.decoding import decode_raw
from policy.engine import Engine
from policy.envelope import DecodeReason, Record, Rejection, parse_raw
from policy.events import Op
from policy.model import Policy

TOPIC = "hosting.public.customers"
KEY = orjson.dumps({"id": 42})
WRAPPED_KEY = orjson.dumps({"schema": {"type": "struct"}, "payload": {"id": 42}})
SOURCE_MS = 1_700_000_000_000
ENVELOPE_MS = 1_700_000_000_123
SECRET = "ada@example.org"


def envelope(op: object, before: object = None, after: object = None) -> dict[str, object]:
    return {
        "before": before,
        "after": after,
        "source": {"connector": "postgresql", "table": "customers", "ts_ms": SOURCE_MS},
        "op": op,
        "ts_ms": ENVELOPE_MS,
    }


def wrapped(payload: object) -> bytes:
    return orjson.dumps({"schema": {"type": "struct", "optional": False}, "payload": payload})


ROW = {"id": 42, "first_name": "Ada", "email": SECRET}


@pytest.mark.parametrize("encode", [orjson.dumps, wrapped], ids=["unwrapped", "wrapped"])
@pytest.mark.parametrize(
    ("op", "before", "after", "expected"),
    [
        ("c", None, ROW, Op.CREATE),
        ("u", ROW, {**ROW, "first_name": "Ada L."}, Op.UPDATE),
        ("u", None, ROW, Op.UPDATE),  # REPLICA IDENTITY DEFAULT: no before image
        ("d", {"id": 42}, None, Op.DELETE),
        ("d", None, None, Op.DELETE),  # the key says which row went
        ("r", None, ROW, Op.READ),
    ],
)
def test_envelopes_with_or_without_the_jsonconverter_wrapper(
    encode: object, op: str, before: object, after: object, expected: Op
) -> None:
    value = encode(envelope(op, before, after))  # type: ignore[operator]
    record = parse_raw(TOPIC, KEY, value)
    assert isinstance(record, Record), record
    assert (record.table, record.op, record.key) == ("public.customers", expected, {"id": 42})
    assert (record.before, record.after) == (before, after)
    assert record.op_label == op


def test_the_time_of_a_change_is_the_envelope_ts_ms() -> None:
    record = parse_raw(TOPIC, KEY, orjson.dumps(envelope("c", after=ROW)))
    assert isinstance(record, Record)
    assert record.ts == ENVELOPE_MS * 1000  # the envelope's ts_ms, not source.ts_ms


def test_without_an_envelope_time_the_source_time_is_used() -> None:
    value = {"op": "c", "after": ROW, "source": {"table": "customers", "ts_ms": SOURCE_MS}}
    record = parse_raw(TOPIC, KEY, orjson.dumps(value))
    assert isinstance(record, Record)
    assert record.ts == SOURCE_MS * 1000


def test_wrapped_key_is_unwrapped_and_rendered_without_row_values() -> None:
    record = parse_raw(TOPIC, WRAPPED_KEY, orjson.dumps(envelope("c", after=ROW)))
    assert isinstance(record, Record)
    assert record.key == {"id": 42}
    assert record.key_label == "id=42"


@pytest.mark.parametrize("value", [None, orjson.dumps({"schema": None, "payload": None})])
def test_tombstone_after_delete_is_counted_not_rejected(value: bytes | None) -> None:
    record = parse_raw(TOPIC, KEY, value)
    assert record == Record("public.customers", None, {"id": 42}, None, None, None)
    assert isinstance(record, Record)
    assert record.op_label == "tombstone"


def test_record_without_key_is_accepted_and_logged_without_one() -> None:
    record = parse_raw(TOPIC, None, orjson.dumps(envelope("c", after=ROW)))
    assert isinstance(record, Record)
    assert record.key is None
    assert record.key_label == "-"


def test_tables_the_policy_lacks_are_parsed() -> None:
    record = parse_raw("hosting.public.not_in_policy", KEY, orjson.dumps(envelope("c", after=ROW)))
    assert isinstance(record, Record)
    assert record.table == "public.not_in_policy"


BAD = [
    (KEY, b"\x00\xffgarbage", DecodeReason.NOT_JSON),
    (KEY, b"", DecodeReason.NOT_JSON),
    (KEY, b'{"op": "c", "after": {"id": 1}', DecodeReason.NOT_JSON),
    (KEY, b"[1, 2, 3]", DecodeReason.NOT_AN_OBJECT),
    (KEY, b'"just a string"', DecodeReason.NOT_AN_OBJECT),
    (KEY, wrapped([1, 2]), DecodeReason.NOT_AN_OBJECT),
    (KEY, orjson.dumps({"after": ROW, "ts_ms": ENVELOPE_MS}), DecodeReason.NO_OP),
    (KEY, orjson.dumps(envelope("x", after=ROW)), DecodeReason.UNKNOWN_OP),
    (KEY, orjson.dumps(envelope(1, after=ROW)), DecodeReason.UNKNOWN_OP),
    (KEY, orjson.dumps(envelope("t")), DecodeReason.TRUNCATE),
    (KEY, orjson.dumps(envelope("c")), DecodeReason.BAD_SHAPE),
    (KEY, orjson.dumps(envelope("c", after=[1, 2])), DecodeReason.BAD_SHAPE),
    (KEY, orjson.dumps(envelope("u", before="x", after=ROW)), DecodeReason.BAD_SHAPE),
    (None, orjson.dumps(envelope("d")), DecodeReason.BAD_SHAPE),
    (KEY, orjson.dumps({"op": "c", "after": ROW}), DecodeReason.NO_TS),
    (KEY, orjson.dumps({"op": "c", "after": ROW, "ts_ms": "soon"}), DecodeReason.NO_TS),
    (KEY, orjson.dumps({"op": "c", "after": ROW, "ts_ms": 300_000_000_000_000}),
     DecodeReason.TS_OUT_OF_RANGE),
    (KEY, orjson.dumps({"op": "c", "after": ROW, "ts_ms": -(2**50)}),
     DecodeReason.TS_OUT_OF_RANGE),
    (KEY, orjson.dumps({"op": "c", "after": ROW, "source": {"ts_ms": 2**53}}),
     DecodeReason.TS_OUT_OF_RANGE),
    (b"not json", orjson.dumps(envelope("c", after=ROW)), DecodeReason.BAD_KEY),
    (b"[42]", orjson.dumps(envelope("c", after=ROW)), DecodeReason.BAD_KEY),
    (b"{}", orjson.dumps(envelope("c", after=ROW)), DecodeReason.BAD_KEY),
    (None, None, DecodeReason.BAD_KEY),  # a tombstone that names no row
]  # fmt: skip


@pytest.mark.parametrize(("key", "value", "reason"), BAD)
def test_bad_records_are_errors_with_a_reason_code(
    key: bytes | None, value: bytes | None, reason: DecodeReason
) -> None:
    outcome = parse_raw(TOPIC, key, value)
    assert isinstance(outcome, Rejection)
    assert outcome.reason is reason
    assert outcome.detail


@pytest.mark.parametrize(("key", "value", "reason"), BAD)
def test_the_engine_refuses_the_same_structures_for_the_same_reason(
    demo_engine: Engine, key: bytes | None, value: bytes | None, reason: DecodeReason
) -> None:
    outcome = decode_raw(demo_engine.decoding, TOPIC, key, value)
    assert isinstance(outcome, Rejection)
    assert outcome.reason is reason


GOOD = [
    (KEY, orjson.dumps(envelope("c", after={"id": 42}))),
    (KEY, orjson.dumps(envelope("d"))),  # before null: the key names the row
    (KEY, orjson.dumps({"op": "u", "after": {"id": 42}, "source": {"ts_ms": SOURCE_MS}})),
    (None, orjson.dumps(envelope("r", after={"id": 42}))),
    (KEY, None),
    (WRAPPED_KEY, wrapped(envelope("u", before={"id": 42}, after={"id": 42}))),
]


@pytest.mark.parametrize(("key", "value"), GOOD)
def test_what_the_agent_accepts_the_engine_accepts_at_the_same_time(
    demo_engine: Engine, key: bytes | None, value: bytes | None
) -> None:
    record = parse_raw(TOPIC, key, value)
    decoded = decode_raw(demo_engine.decoding, TOPIC, key, value)
    assert isinstance(record, Record), record
    assert not isinstance(decoded, Rejection), decoded
    assert getattr(decoded, "ts", None) == record.ts


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (KEY, {**envelope("c", after=ROW), "op": SECRET}),
        (KEY, {"op": "c", "after": ROW, "ts_ms": SECRET}),
        (KEY, {"op": "c", "after": ROW, "source": {"ts_ms": SECRET}}),
        (KEY, {**envelope("c", after=ROW), "after": SECRET}),
        (KEY, SECRET),
        (orjson.dumps(SECRET), envelope("c", after=ROW)),
        (orjson.dumps([SECRET]), envelope("c", after=ROW)),
        (KEY, b'{"op": "c", "after": {"email": "' + SECRET.encode() + b'"'),
    ],
)
def test_errors_name_the_field_and_json_type_never_the_value(
    demo_engine: Engine, key: bytes, value: object
) -> None:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    for outcome in (parse_raw(TOPIC, key, raw), decode_raw(demo_engine.decoding, TOPIC, key, raw)):
        assert isinstance(outcome, Rejection)
        assert SECRET not in outcome.detail


def test_a_key_that_is_an_email_is_refused_without_quoting_it(demo_engine: Engine) -> None:
    value = orjson.dumps(envelope("c", after=ROW))
    outcome = parse_raw(TOPIC, orjson.dumps(SECRET), value)
    assert isinstance(outcome, Rejection)
    assert outcome.reason is DecodeReason.BAD_KEY
    assert outcome.detail == "the key is a JSON string, not an object of key columns"


def test_topic_that_is_not_prefix_schema_table_is_refused() -> None:
    outcome = parse_raw("customers", KEY, orjson.dumps(envelope("c", after=ROW)))
    assert isinstance(outcome, Rejection)
    assert outcome.reason is DecodeReason.BAD_TOPIC


def test_a_topic_prefix_with_dots_names_the_same_table_for_agent_and_engine(
    demo_policy: Policy,
) -> None:
    prefixed = {f"acme.hosting.{s.table}": s for s in demo_policy.sources.values()}
    engine = Engine.compile(replace(demo_policy, sources_by_topic=prefixed))
    topic, value = "acme.hosting.public.customers", orjson.dumps(envelope("c", after={"id": 42}))
    record = parse_raw(topic, KEY, value)
    decoded = decode_raw(engine.decoding, topic, KEY, value)
    assert isinstance(record, Record)
    assert not isinstance(decoded, Rejection), decoded
    assert record.table == decoded.table == "public.customers"
