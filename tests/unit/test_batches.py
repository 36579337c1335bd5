"""The `batch` record of `<app id>-subject-events` (`lethe.topics.batches`): the forwards come
back as they were sent, and a value that is not a batch is refused with a reason."""

from __future__ import annotations

import struct

import pytest

from lethe.topics.batches import BatchError, BatchItem, batch_item, batch_value, read_batch

EVENT = [("lethe-kind", b"event"), ("lethe-table", b"public.orders"), ("lethe-key", b'{"id":1}')]


def test_a_batch_gives_back_its_forwards_in_order() -> None:
    items = [
        batch_item(b"customer:1", EVENT, b'{"op":"c"}'),
        batch_item(b"email:\xc3\xa9@example.org", [("lethe-kind", b"depart")], b""),
        batch_item(b"customer:1", EVENT, b'{"op":"u"}'),
    ]
    assert read_batch(batch_value(items)) == [
        BatchItem(b"customer:1", dict(EVENT), b'{"op":"c"}'),
        BatchItem("email:é@example.org".encode(), {"lethe-kind": b"depart"}, b""),
        BatchItem(b"customer:1", dict(EVENT), b'{"op":"u"}'),
    ]


def test_the_wire_format_is_lengths_then_key_headers_and_value() -> None:
    """Hand-built per docs/design/enforcer.md: version 1, then per forward three big-endian
    32-bit lengths and the bytes."""
    headers = b'[["lethe-kind","event"]]'
    value = b"\x01" + struct.pack(">III", 2, len(headers), 3) + b"k1" + headers + b"{ }"
    assert read_batch(value) == [BatchItem(b"k1", {"lethe-kind": b"event"}, b"{ }")]
    assert batch_value([batch_item(b"k1", [("lethe-kind", b"event")], b"{ }")]) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "version 1"),
        (b"", "version 1"),
        (b'{"op":"c"}', "version 1"),
        (b"\x01\x00\x00", "cut short in forward 1"),
        (b"\x01" + struct.pack(">III", 2, 2, 50) + b"k1[]{}", "cut short in forward 1"),
        (b"\x01" + struct.pack(">III", 1, 3, 0) + b"k{x}", "forward 1 of a batch are not JSON"),
        (b"\x01" + struct.pack(">III", 1, 5, 0) + b'k["a"]', "not [name, text] pairs"),
    ],
)
def test_a_value_that_is_not_a_batch_is_refused_with_its_reason(
    value: bytes | None, reason: str
) -> None:
    with pytest.raises(BatchError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        read_batch(value)
