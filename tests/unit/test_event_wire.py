"""Stage A hands E its decoded change events (`policy.event_wire`): E must get back exactly
the event A decoded, every value of every type, or refuse the bytes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy.event_wire import EventWireError, decode_event, encode_event
from policy.events import ChangeEvent, Op, SourcePosition

scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text()
scalars |= st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
instants = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)
).map(lambda moment: moment.replace(tzinfo=UTC))
values = json_values | instants | st.dates() | st.decimals(allow_nan=False, allow_infinity=False)
images = st.none() | st.dictionaries(st.text(), values, max_size=6)
keys = st.lists(st.tuples(st.text(), scalars), min_size=1, max_size=3).map(tuple)
positions = st.none() | st.builds(
    SourcePosition, st.none() | st.integers(0, 2**63), st.integers(0, 2**63), st.booleans()
)
events = st.builds(
    ChangeEvent,
    table=st.text(min_size=1),
    key=keys,
    op=st.sampled_from(list(Op)),
    before=images,
    after=images,
    ts=st.integers(-(2**62), 2**62),
    position=positions,
)


wheres = st.none() | st.tuples(st.text(), st.integers(0, 2**31), st.integers(0, 2**63))


@given(events, wheres)
def test_every_event_comes_back_equal(
    event: ChangeEvent, where: tuple[str, int, int] | None
) -> None:
    decoded, back_where = decode_event(encode_event(event, where))
    assert decoded == event
    assert back_where == where
    for image, back in ((event.before, decoded.before), (event.after, decoded.after)):
        if image is not None:
            assert back is not None
            assert [type(value) for value in back.values()] == [
                type(value) for value in image.values()
            ]
            decimals = [value for value in image.values() if isinstance(value, Decimal)]
            assert [str(value) for value in back.values() if isinstance(value, Decimal)] == [
                str(value) for value in decimals
            ]


def test_the_wire_form_of_an_update() -> None:
    event = ChangeEvent(
        "public.orders",
        (("id", 42),),
        Op.UPDATE,
        None,
        {
            "customer_id": 7,
            "ordered_at": datetime(2024, 3, 1, 10, 0, tzinfo=UTC),
            "due_on": date(1970, 1, 11),
            "amount": Decimal("12.50"),
            "note": None,
        },
        1_709_287_200_000_000,
        SourcePosition(None, 26932208),
    )
    wire = encode_event(event, ("hosting.public.orders", 3, 1234))
    assert orjson.loads(wire) == [
        1,
        "public.orders",
        [["id", 42]],
        "u",
        1709287200000000,
        [None, 26932208, False],
        None,
        [
            {"customer_id": 7, "ordered_at": None, "due_on": None, "amount": None, "note": None},
            {"ordered_at": ["t", 1709287200000000], "due_on": ["d", 10], "amount": ["n", "12.50"]},
        ],
        ["hosting.public.orders", 3, 1234],
    ]
    assert decode_event(wire) == (event, ("hosting.public.orders", 3, 1234))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"{}",
        b'[2,"t",[["id",1]],"c",1,null,null,{},null]',
        b'[1,"t",[["id",1]],"x",1,null,null,{},null]',
        b'[1,"t",[["id",1]],["c"],1,null,null,{},null]',
        b'[1,"t",[["id",1]],"c","1",null,null,{},null]',
        b'[1,"t",[["id",[1]]],"c",1,null,null,{},null]',
        b'[1,"t",[["id",1]],"c",1,[1],null,{},null]',
        b'[1,"t",[["id",1]],"c",1,null,null,[{"a":null},{"a":["t","x"]}],null]',
        b'[1,"t",[["id",1]],"c",1,null,null,[{"a":null},{"b":["d",1]}],null]',
        b'[1,"t",[["id",1]],"c",1,null,null,[{"a":null},{"a":["n","x"]}],null]',
        b'[1,"t",[["id",1]],"c",1,null,null,[{"a":null},{"a":["t",1e30]}],null]',
        b'[1,"t",[["id",1]],"c",1,null,null,[{"a":null},{"a":["d",99999999]}],null]',
        b'[1,"t",[["id",1]],"c",1,null,null,7,null]',
        b'[1,"t",[["id",1]],"c",1,null,null,{},["t","0",1]]',
        b'[1,"t",[["id",1]],"c",1,null,null,{}]',
    ],
)
def test_bytes_that_are_not_an_encoded_event_are_refused(data: bytes) -> None:
    with pytest.raises(EventWireError):
        decode_event(data)


def test_a_value_the_format_cannot_carry_is_refused() -> None:
    event = ChangeEvent("t", (("id", 1),), Op.CREATE, None, {"big": 2**64}, 0)
    with pytest.raises(EventWireError):
        encode_event(event)


@given(events, st.integers(-(2**62), 2**62))
def test_an_event_moved_in_time_changes_its_time_alone(event: ChangeEvent, ts: int) -> None:
    assert event.at(ts) == replace(event, ts=ts)
