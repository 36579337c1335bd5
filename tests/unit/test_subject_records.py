"""The enforcer reads the records of `<app id>-subject-events` as the assign agent writes them.

Headers are built by the assign agent's own `wire_headers`, so writer and reader cannot drift
apart; the expected values are worked out by hand from the event.
"""

from __future__ import annotations

import pytest

from lethe.agents.routing import CHANGE_HEADERS, Kind, Outgoing, wire_headers
from lethe.agents.subject_records import (
    TICK,
    ChangeRecord,
    DecodedChange,
    Depart,
    UnreadableRecord,
    header_map,
    parse_key,
    read_subject_record,
    tick_headers,
)
from policy.event_wire import encode_event
from policy.events import ChangeEvent, Op

TICKET = ChangeEvent(
    table="public.support_tickets",
    key=(("id", 42),),
    op=Op.UPDATE,
    before={"id": 42, "customer_id": 1},
    after={"id": 42, "customer_id": 2},
    ts=1_764_000_000_123_000,
)
VALUE = b'{"op":"u"}'


def headers_of(record: Outgoing) -> dict[str, bytes]:
    return header_map(wire_headers(record, TICKET, "hosting.public.support_tickets", 0, 17))


def test_an_event_names_the_change_record_to_decode() -> None:
    moved = Outgoing(Kind.EVENT, "customer:2", "customer:2", moved="customer:1")
    assert read_subject_record(headers_of(moved), VALUE) == ChangeRecord(
        VALUE, "hosting.public.support_tickets", 0, 17
    )


def test_a_change_is_the_event_as_the_assign_agent_decoded_it() -> None:
    value = encode_event(TICKET, ("hosting.public.support_tickets", 0, 17))
    assert read_subject_record(header_map(CHANGE_HEADERS), value) == DecodedChange(
        TICKET, "hosting.public.support_tickets", 0, 17
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b'{"op":"u"}',
        encode_event(TICKET),
        b'[1,"t",[],["x"],0,null,null,null,["t",0,0]]',
    ],
    ids=["null", "empty", "a Debezium value", "without where it was read", "an op that is a list"],
)
def test_a_change_that_is_not_an_encoded_event_is_unreadable(value: bytes | None) -> None:
    with pytest.raises(UnreadableRecord):
        read_subject_record(header_map(CHANGE_HEADERS), value)


def test_a_depart_names_the_row_the_subject_it_left_and_when() -> None:
    depart = Outgoing(Kind.DEPART, "customer:1", "customer:1", moved="customer:2")
    assert read_subject_record(headers_of(depart), None) == Depart(
        "public.support_tickets", (("id", 42),), "customer:1", 1_764_000_000_123_000
    )


def test_a_depart_carries_the_change_that_moved_the_row_and_where_it_is() -> None:
    depart = Outgoing(Kind.DEPART, "customer:1", "customer:1", moved="customer:2")
    assert read_subject_record(headers_of(depart), VALUE) == Depart(
        "public.support_tickets", (("id", 42),), "customer:1", 1_764_000_000_123_000,
        VALUE, "hosting.public.support_tickets", 0, 17,
    )  # fmt: skip


def test_a_depart_keyed_by_the_row_has_no_subject() -> None:
    depart = Outgoing(Kind.DEPART, 'public.support_tickets:{"id":42}', None, moved="customer:2")
    record = read_subject_record(headers_of(depart), None)
    assert isinstance(record, Depart) and record.subject is None


def test_a_tick_is_its_kind_header_alone() -> None:
    assert read_subject_record(header_map(tick_headers()), None) is TICK


def test_a_key_keeps_its_column_order_and_value_types() -> None:
    assert parse_key('{"day":"2026-01-02","id":7,"code":"x"}') == (
        ("day", "2026-01-02"),
        ("id", 7),
        ("code", "x"),
    )


@pytest.mark.parametrize(
    ("headers", "value", "message"),
    [
        ({}, VALUE, "lethe-kind is none"),
        ({"lethe-kind": b"gossip"}, VALUE, "lethe-kind is b'gossip'"),
        ({"lethe-kind": b"event", "lethe-source-topic": b"t"}, None, "null value"),
        ({"lethe-kind": b"event", "lethe-source-topic": b"t"}, VALUE, "lethe-source-partition"),
        (
            {
                "lethe-kind": b"depart",
                "lethe-table": b"public.t",
                "lethe-key": b"[42]",
                "lethe-ts": b"1",
            },
            None,
            "lethe-key is not a JSON object",
        ),
        (
            {
                "lethe-kind": b"depart",
                "lethe-table": b"public.t",
                "lethe-key": b'{"id":1}',
                "lethe-ts": b"soon",
            },
            None,
            "lethe-ts is not a whole number",
        ),
    ],
)
def test_a_record_off_the_format_is_unreadable_naming_the_header(
    headers: dict[str, bytes], value: bytes | None, message: str
) -> None:
    with pytest.raises(UnreadableRecord, match=message):
        read_subject_record(headers, value)
