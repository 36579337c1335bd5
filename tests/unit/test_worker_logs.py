"""At `-l debug` the worker's log holds no record's key or value: the debug lines of Faust's
and aiokafka's producers (and aiokafka's request dumps) that print them are dropped, the other
lines of those loggers are kept."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from lethe.commands.worker import hide_record_contents

VALUE = b'{"after":{"email":"ann@example.org"}}'


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Every record of the root logger at debug, as text."""
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield text
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_producer_debug_lines_with_keys_and_values_are_not_written(
    debug_log: io.StringIO,
) -> None:
    hide_record_contents()
    hide_record_contents()  # installed once however often it is called
    faust = logging.getLogger("faust.topics")
    faust.debug(
        "send: topic=%r k=%r v=%r timestamp=%r partition=%r", "t", b"email:ann", VALUE, None, 0
    )
    logging.getLogger("aiokafka.producer.producer").debug(
        "Sending (key=%s value=%s) to %s", b"k", VALUE, "t-0"
    )
    logging.getLogger("aiokafka.conn").debug(
        "Response from %s:%d %d: %s", "127.0.0.1", 9092, 7, VALUE
    )
    faust.debug("an ordinary debug line")

    written = debug_log.getvalue()
    assert "ann@example.org" not in written
    assert "an ordinary debug line" in written
    assert len(logging.getLogger("faust.topics").filters) == 1
