"""The `batch` record of `<app id>-subject-events`: many forwards of one partition in one record.

The worker's forwarder (`lethe.forwarding`) packs the keyed records it would send to a
partition into one record with the header `lethe-kind: batch`, a null key and this value:
the version byte 0x01, then per forward, in the order sent, three unsigned 32-bit big-endian
lengths (key, headers, value) followed by the key bytes, the headers as compact JSON
(`[["lethe-kind","event"],...]`, values as UTF-8 text) and the value bytes. Each forward is
what a plain record would have been (docs/design/enforcer.md, "Wire format of
lethe-subject-events"). `read_batch` gives them back; a value that does not follow the
format raises `BatchError` (the enforcer dead-letters the record).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import orjson

BATCH_VERSION: Final = b"\x01"
_LENGTHS: Final = struct.Struct(">III")


class BatchError(ValueError):
    """The value is not a batch of this format."""


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One forward of a batch: its key, headers and value."""

    key: bytes
    headers: dict[str, bytes]
    value: bytes


def batch_item(key: bytes, headers: Sequence[tuple[str, bytes]], value: bytes) -> bytes:
    """One forward, encoded for a batch (header values must be UTF-8)."""
    encoded = orjson.dumps([(name, raw.decode()) for name, raw in headers])
    return b"".join((_LENGTHS.pack(len(key), len(encoded), len(value)), key, encoded, value))


def batch_value(items: Sequence[bytes]) -> bytes:
    """A batch record's value: the version byte and the encoded forwards (`batch_item`)."""
    return BATCH_VERSION + b"".join(items)


def read_batch(value: bytes | None) -> list[BatchItem]:
    """The forwards of a batch record's value, in order; `BatchError` if it is not one."""
    if not value or value[:1] != BATCH_VERSION:
        raise BatchError("a batch whose value does not start with version 1 of the format")
    items: list[BatchItem] = []
    at = len(BATCH_VERSION)
    end = len(value)
    while at < end:
        if at + _LENGTHS.size > end:
            raise BatchError(f"a batch cut short in forward {len(items) + 1}")
        key_size, headers_size, value_size = _LENGTHS.unpack_from(value, at)
        at += _LENGTHS.size
        headers_at = at + key_size
        value_at = headers_at + headers_size
        item_end = value_at + value_size
        if item_end > end:
            raise BatchError(f"a batch cut short in forward {len(items) + 1}")
        items.append(
            BatchItem(
                value[at:headers_at],
                _headers(value[headers_at:value_at], len(items) + 1),
                value[value_at:item_end],
            )
        )
        at = item_end
    return items


def _headers(encoded: bytes, number: int) -> dict[str, bytes]:
    try:
        pairs = orjson.loads(encoded)
    except orjson.JSONDecodeError:
        raise BatchError(f"the headers of forward {number} of a batch are not JSON") from None
    if not isinstance(pairs, list) or not all(
        isinstance(pair, list)
        and len(pair) == 2
        and isinstance(pair[0], str)
        and isinstance(pair[1], str)
        for pair in pairs
    ):
        raise BatchError(f"the headers of forward {number} of a batch are not [name, text] pairs")
    return {name: text.encode() for name, text in pairs}
