"""Row 7 of the fault matrix, without a broker: a change-topic partition whose records this
process cannot decompress (aiokafka's `UnsupportedCodecError`, a codec library missing) is set
aside: the worker stops reading it, says which and how to fix it (log and
`lethe_unreadable_partitions`), seeks the others back to their committed offsets and goes on.
The broker path (a snappy topic, cramjam hidden from the worker) is
tests/integration/test_unreadable_topic.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import UnsupportedCodecError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from lethe.consumer import Consumer, codec_of, unreadable_partition
from lethe.metrics import WorkerMetrics

CUSTOMERS = TP("hosting.public.customers", 0)
ORDERS = TP("hosting.public.orders", 1)
"""Faust's partitions; aiokafka's fetcher has its own `TopicPartition` (`unpack`)."""
MISSING = "Libraries for snappy compression codec not found"


def unpack(tp: TopicPartition, message: str) -> None:
    """Stands in for aiokafka's `PartitionRecords._unpack_records`: a `tp` local, then the
    codec error from deeper down."""
    decompress(message)


def decompress(message: str) -> None:
    raise UnsupportedCodecError(message)


def codec_error(tp: TP | None, message: str = MISSING) -> UnsupportedCodecError:
    try:
        if tp is None:
            decompress(message)
        else:
            unpack(TopicPartition(tp.topic, tp.partition), message)
    except UnsupportedCodecError as exc:
        return exc
    raise AssertionError("no error")


def test_the_partition_is_read_from_the_traceback() -> None:
    found = unreadable_partition(codec_error(ORDERS), __name__)
    assert isinstance(found, TP) and found == ORDERS
    assert unreadable_partition(codec_error(None), __name__) is None
    assert unreadable_partition(codec_error(ORDERS)) is None, "aiokafka's frames only"


@pytest.mark.parametrize(
    ("message", "codec"),
    [
        (MISSING, "snappy"),
        ("Libraries for zstd compression codec not found", "zstd"),
        ("Unknown compression codec 0x05", "0x05"),
        ("something else", "unknown"),
    ],
)
def test_the_codec_is_named(message: str, codec: str) -> None:
    assert codec_of(UnsupportedCodecError(message)) == codec


class Worker:
    """Lethe's consumer over a fetch that yields CUSTOMERS' record 7, then fails with
    `error` (Faust's own fetch, the parent's `getmany`, replaced)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
        async def faust_getmany(_consumer: Any, timeout: float) -> Any:
            yield CUSTOMERS, SimpleNamespace(offset=7)
            raise error

        monkeypatch.setattr(faust_aiokafka.Consumer, "getmany", faust_getmany)
        self.metrics = WorkerMetrics.create()
        self.consumer = Consumer.__new__(Consumer)
        self.consumer.unreadable_module = __name__  # type: ignore[misc]
        self.consumer.app = SimpleNamespace(  # type: ignore[assignment]
            rebalancing=False,
            metrics=self.metrics,
            topics=SimpleNamespace(acks_enabled_for=lambda topic: True),
            tables=SimpleNamespace(changelog_topics=set()),
        )
        self.consumer._active_partitions = {CUSTOMERS, ORDERS}
        self.consumer._paused_partitions = set()
        self.seeks = 0

        async def perform_seek() -> None:
            self.seeks += 1

        self.consumer.perform_seek = perform_seek  # type: ignore[method-assign]

    def fetch(self) -> list[tuple[str, int, int]]:
        async def drain() -> list[tuple[str, int, int]]:
            self.consumer._stopped = asyncio.Event()  # type: ignore[assignment]
            self.consumer._crashed = asyncio.Event()  # type: ignore[assignment]
            return [
                (tp.topic, tp.partition, message.offset)
                async for tp, message in self.consumer.getmany(timeout=1.0)
            ]

        return asyncio.run(drain())

    def unreadable(self) -> dict[tuple[str, str], float]:
        return {
            (s.labels["topic"], s.labels["partition"]): s.value
            for family in self.metrics.registry.collect()
            if family.name == "lethe_unreadable_partitions"
            for s in family.samples
        }


def test_an_unreadable_partition_is_set_aside_and_the_others_go_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Worker(monkeypatch, codec_error(ORDERS))
    with caplog.at_level("ERROR", logger="lethe.consumer"):
        assert worker.fetch() == [(CUSTOMERS.topic, 0, 7)], "the fetch ends; no error escapes"
    assert worker.consumer._active_partitions == {CUSTOMERS}, "ORDERS[1] is no longer read"
    assert worker.consumer._paused_partitions == {ORDERS}
    assert worker.seeks == 1, "the others go back to their committed offsets"
    assert worker.unreadable() == {(ORDERS.topic, "1"): 1.0}
    assert "Cannot read hosting.public.orders[1]" in caplog.text
    assert "compressed with snappy" in caplog.text
    assert "pip install 'aiokafka[lz4,snappy,zstd]'" in caplog.text


def test_without_the_partition_the_error_stops_the_worker_saying_the_fix(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Worker(monkeypatch, codec_error(None))
    with caplog.at_level("CRITICAL", logger="lethe.consumer"), pytest.raises(UnsupportedCodecError):
        worker.fetch()
    assert worker.consumer._active_partitions == {CUSTOMERS, ORDERS}
    assert worker.unreadable() == {}
    assert "Cannot read a change topic" in caplog.text
    assert "aiokafka[lz4,snappy,zstd]" in caplog.text


def test_the_worker_names_the_codecs_it_cannot_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiokafka import codec

    from lethe.commands.worker import missing_codecs

    assert missing_codecs() == [], "the project installs aiokafka with every codec"
    monkeypatch.setattr(codec, "cramjam", None)
    assert missing_codecs() == ["snappy", "lz4", "zstd"]
