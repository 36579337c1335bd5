"""The forwarder's promise to the commit (`KafkaForwarder.settle`): it returns True only once
every record handed over before the call is delivered, and after a record refused for good it
never does again, nor sends anything. With the topic's partition count it sends the forwards
of a partition in batches, in order, before anything sent after them to that partition. The
producer is a stand-in that delivers when the test says so; the real broker path is
tests/integration/test_forwarding.py."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from faust import streams as faust_streams

from lethe import topics
from lethe.app import create_app
from lethe.forwarder import ForwardFailed
from lethe.forwarding import (
    BATCH_LINGER_S,
    BATCH_MAX_BYTES,
    BATCH_MAX_ITEMS,
    KafkaForwarder,
)
from lethe.settings import Settings
from lethe.topics.batches import read_batch


class HeldProducer:
    """Keeps each record's delivery callback until `deliver` is called."""

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[[Any, Any], None], Any]] = []

        self.produced: list[tuple[int, Any, Any, Any]] = []
        """(partition, key, value, headers) of every record, in the order produced."""
        self.offsets: dict[tuple[str, int], int] = {}

    def produce(
        self, topic: str, value: Any, key: Any, partition: int, on_delivery: Any, headers: Any
    ) -> None:
        offset = self.offsets[(topic, partition)] = self.offsets.get((topic, partition), -1) + 1
        self.pending.append((on_delivery, Record(topic, partition, offset)))
        self.produced.append((partition, key, value, headers))

    def poll(self, timeout: float) -> int:
        return 0

    def deliver(self, error: KafkaError | None = None) -> None:
        callback, record = self.pending.pop(0)
        callback(error, record)


class Record:
    def __init__(self, topic: str, partition: int, offset: int = 0) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset

    def offset(self) -> int:
        return self._offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition


def forwarder(partitions: int | None = None) -> tuple[KafkaForwarder, HeldProducer]:
    held = HeldProducer()
    forwarding = KafkaForwarder("lethe-subject-events", {}, partitions)
    forwarding._producer = held  # type: ignore[assignment]
    return forwarding, held


def test_settle_returns_once_every_record_handed_over_is_delivered() -> None:
    async def scenario() -> None:
        forwarding, held = forwarder()
        for subject in (b"customer:1", b"customer:2"):
            await forwarding.send(key=subject, value=b"{}", headers=[])
        settling = asyncio.ensure_future(forwarding.settle())
        await asyncio.sleep(0.05)
        assert not settling.done()
        held.deliver()
        await forwarding.send(key=b"customer:3", value=b"{}", headers=[])  # after the call
        await asyncio.sleep(0.05)
        assert not settling.done()
        held.deliver()
        assert await asyncio.wait_for(settling, 1.0) is True

    asyncio.run(scenario())


def test_after_a_refused_record_nothing_is_sent_nor_settled_again() -> None:
    async def scenario() -> None:
        forwarding, held = forwarder()
        await forwarding.send(key=b"customer:1", value=b"{}", headers=[])
        held.deliver(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        assert await forwarding.settle() is False
        assert forwarding.failure is not None and "MSG_SIZE_TOO_LARGE" in forwarding.failure
        with pytest.raises(ForwardFailed):
            await forwarding.send(key=None, value=b"{}", headers=[], partition=0)  # a tick
        assert await forwarding.settle() is False

    asyncio.run(scenario())


def forwards_of(record: tuple[int, Any, Any, Any]) -> list[tuple[bytes, bytes]]:
    """(key, value) of each forward of a produced batch record."""
    _, key, value, headers = record
    assert key is None and headers == [(topics.KIND_HEADER, topics.BATCH_KIND)]
    return [(item.key, item.value) for item in read_batch(value)]


EVENT = [(topics.KIND_HEADER, topics.EVENT_KIND)]


def test_a_partitions_forwards_go_in_one_batch_before_its_tick() -> None:
    async def scenario() -> None:
        forwarding, held = forwarder(partitions=4)
        for n in range(3):
            await forwarding.send(key=b"customer:1", value=b"%d" % n, headers=EVENT)
        partition = forwarding.place(b"customer:1")
        assert held.produced == [], "nothing sent before the batch is due"
        await forwarding.send(key=None, value=b"", headers=[], partition=partition)  # a tick
        batch, tick = held.produced
        assert batch[0] == tick[0] == partition
        assert forwards_of(batch) == [(b"customer:1", b"0"), (b"customer:1", b"1"),
                                      (b"customer:1", b"2")]  # fmt: skip
        assert tick[1:3] == (None, b"")

    asyncio.run(scenario())


def test_settle_sends_the_open_batches_and_returns_once_they_are_delivered() -> None:
    async def scenario() -> None:
        forwarding, held = forwarder(partitions=4)
        await forwarding.send(key=b"customer:1", value=b"{}", headers=EVENT)
        await forwarding.send(key=b"customer:2", value=b"{}", headers=EVENT)
        settling = asyncio.ensure_future(forwarding.settle())
        await asyncio.sleep(0.05)
        assert not settling.done()
        sent = sorted(key for record in held.produced for key, _ in forwards_of(record))
        assert sent == [b"customer:1", b"customer:2"]
        while held.pending:
            held.deliver()
        assert await asyncio.wait_for(settling, 1.0) is True

    asyncio.run(scenario())


def test_an_open_batch_goes_out_after_its_linger_without_a_settle() -> None:
    async def scenario() -> None:
        forwarding, held = forwarder(partitions=4)
        await forwarding.send(key=b"customer:1", value=b"{}", headers=EVENT)
        await asyncio.sleep(BATCH_LINGER_S + 0.05)
        [batch] = held.produced
        assert forwards_of(batch) == [(b"customer:1", b"{}")]

    asyncio.run(scenario())


def test_a_forward_too_large_for_a_batch_goes_alone_after_the_open_batch() -> None:
    async def scenario() -> None:
        forwarding, held = forwarder(partitions=4)
        large = b"x" * BATCH_MAX_BYTES
        await forwarding.send(key=b"customer:1", value=b"small", headers=EVENT)
        await forwarding.send(key=b"customer:1", value=large, headers=EVENT)
        batch, alone = held.produced
        assert forwards_of(batch) == [(b"customer:1", b"small")]
        assert alone[1:3] == (b"customer:1", large)
        assert alone[0] == batch[0]

    asyncio.run(scenario())


def test_a_full_batch_goes_out_at_once() -> None:
    async def scenario() -> None:
        forwarding, held = forwarder(partitions=4)
        for n in range(BATCH_MAX_ITEMS + 1):
            await forwarding.send(key=b"customer:1", value=b"%d" % n, headers=EVENT)
        [batch] = held.produced
        assert [value for _, value in forwards_of(batch)] == [
            b"%d" % n for n in range(BATCH_MAX_ITEMS)
        ]
        await forwarding.before_tick()
        assert forwards_of(held.produced[1]) == [(b"customer:1", b"%d" % BATCH_MAX_ITEMS)]

    asyncio.run(scenario())


def test_a_forward_without_value_goes_alone_after_its_partitions_open_batch() -> None:
    async def scenario() -> None:
        forwarding, held = forwarder(partitions=4)
        await forwarding.send(key=b"customer:1", value=b"{}", headers=EVENT)
        await forwarding.send(key=b"customer:1", value=None, headers=EVENT)  # a bare depart
        batch, alone = held.produced
        assert forwards_of(batch) == [(b"customer:1", b"{}")]
        assert alone[:3] == (batch[0], b"customer:1", None)

    asyncio.run(scenario())


class RefusingProducer(HeldProducer):
    """Raises `error` from produce while `refusing` is set."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.refusing = True

    def produce(
        self, topic: str, value: Any, key: Any, partition: int, on_delivery: Any, headers: Any
    ) -> None:
        if self.refusing:
            raise self.error
        super().produce(topic, value, key, partition, on_delivery, headers)


def refusing_forwarder(error: Exception) -> tuple[KafkaForwarder, RefusingProducer]:
    refusing = RefusingProducer(error)
    forwarding = KafkaForwarder("lethe-subject-events", {}, 4)
    forwarding._producer = refusing  # type: ignore[assignment]
    return forwarding, refusing


def test_a_batch_the_producer_will_not_take_stops_every_commit() -> None:
    async def scenario() -> None:
        forwarding, _ = refusing_forwarder(KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC)))
        await forwarding.send(key=b"customer:1", value=b"{}", headers=EVENT)
        await asyncio.sleep(BATCH_LINGER_S + 0.05)  # the linger tries to send it
        assert await forwarding.settle() is False
        assert forwarding.failure is not None and "UNKNOWN_TOPIC" in forwarding.failure
        with pytest.raises(ForwardFailed):
            await forwarding.send(key=b"customer:2", value=b"{}", headers=EVENT)

    asyncio.run(scenario())


def test_a_full_queue_keeps_the_batch_and_the_event_loop_running() -> None:
    async def scenario() -> None:
        forwarding, held = refusing_forwarder(BufferError("Local: Queue full"))
        await forwarding.send(key=b"customer:1", value=b"{}", headers=EVENT)
        settling = asyncio.ensure_future(forwarding.settle())
        beats = 0
        for _ in range(10):
            await asyncio.sleep(0.01)
            beats += 1
        assert beats == 10 and not settling.done() and held.produced == []
        held.refusing = False
        await asyncio.sleep(0.05)
        [batch] = held.produced
        assert forwards_of(batch) == [(b"customer:1", b"{}")]
        assert not settling.done(), "not delivered yet"
        held.deliver()
        assert await asyncio.wait_for(settling, 1.0) is True

    asyncio.run(scenario())


class PollingProducer:
    """Delivers every record handed over at its next poll, as librdkafka serves reports."""

    def __init__(self) -> None:
        self.queued: list[tuple[Callable[[Any, Any], None], OffsetRecord]] = []
        self.offsets: dict[int, int] = {}

    def produce(self, topic: str, value: Any, key: Any, partition: int, on_delivery: Any) -> None:
        offset = self.offsets[partition] = self.offsets.get(partition, -1) + 1
        self.queued.append((on_delivery, OffsetRecord(topic, partition, offset)))

    def poll(self, timeout: float) -> int:
        served, self.queued = self.queued, []
        for callback, record in served:
            callback(None, record)
        return len(served)


class OffsetRecord(Record):
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        super().__init__(topic, partition)
        self._offset = offset

    def offset(self) -> int:
        return self._offset


def polling_forwarder() -> tuple[KafkaForwarder, PollingProducer]:
    forwarding = KafkaForwarder("lethe-subject-events", {})
    producer = PollingProducer()
    forwarding._producer = producer  # type: ignore[assignment]
    return forwarding, producer


def test_after_a_poll_that_served_reports_the_settle_sees_every_offset_they_brought() -> None:
    forwarding, _ = polling_forwarder()
    delivered: list[tuple[str, int, int]] = []
    settled: list[list[tuple[str, int, int]]] = []
    forwarding.after_reports(lambda: settled.append(list(delivered)))

    def report(topic: str, partition: int, offset: int) -> None:
        delivered.append((topic, partition, offset))

    forwarding.produce_now("t-changelog", b"k", b"v", 3, report)
    assert delivered == [] and settled == [], "a record's report waits for the next poll"
    forwarding._poll(0)
    assert settled == [[("t-changelog", 3, 0)]], "settled at the end of the poll that served it"
    forwarding.produce_now("t-changelog", b"k", b"v", 3, report)
    forwarding.produce_now("t-changelog", b"k", b"v", 0, report)
    forwarding._poll(0)
    assert settled[-1] == [("t-changelog", 3, 0), ("t-changelog", 3, 1), ("t-changelog", 0, 0)]
    assert len(settled) == 2
    forwarding._poll(0)  # nothing to serve
    assert len(settled) == 2, "a poll that served nothing settles nothing"


def test_a_rebalance_serves_every_report_before_the_tables_recover(tmp_path: Path) -> None:
    """Faust flushes its producer when a rebalance revokes partitions, before it recovers the
    tables from their changelogs: the worker's forwarder is settled there too, so every
    changelog record handed over is delivered and its offset persisted by then."""
    app = create_app(Settings(data_dir=tmp_path), app_id="lethe-unit-flush", store="memory://")
    forwarding, _ = polling_forwarder()
    app.forwarder = forwarding
    delivered: list[int] = []
    forwarding.produce_now(
        "t-changelog", b"k", b"v", 1, lambda _t, _p, offset: delivered.append(offset)
    )
    forwarding.produce_now(
        "t-changelog", b"k", b"w", 1, lambda _t, _p, offset: delivered.append(offset)
    )
    assert delivered == []
    asyncio.run(app._producer_flush(logging.getLogger("test")))
    assert delivered == [0, 1]


class _Event:
    """What `faust.current_event()` gives a table: the record being processed."""

    def __init__(self, topic: str, partition: int) -> None:
        self.message = self
        self.topic = topic
        self.partition = partition


def test_a_table_write_sends_the_changelog_record_faust_would(tmp_path: Path) -> None:
    """`write_changelog` (the worker's table writes, `lethe.changelog.PartitionTable`) sends
    the record Faust's own path (`on_key_set`/`on_key_del`) sends: same topic, partition,
    key and value (None for a delete), and its offset is persisted after the poll."""
    app = create_app(Settings(data_dir=tmp_path), app_id="lethe-unit-write", store="memory://")
    table = app.Table("rows", key_type=bytes, value_type=bytes, partitions=4)
    forwarding, producer = polling_forwarder()
    app.forwarder = forwarding
    sent: list[tuple[Any, ...]] = []
    produce = producer.produce

    def recorded(topic: str, value: Any, key: Any, partition: int, on_delivery: Any) -> None:
        sent.append((topic, partition, key, value))
        produce(topic, value, key, partition, on_delivery)

    producer.produce = recorded  # type: ignore[method-assign]
    table._verified_source_topics_for_partitions.add("hosting.public.orders")
    event = _Event("hosting.public.orders", 2)
    token = faust_streams._current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        assert table.write_changelog(2, b"\x00key", b"\x01value") is True
        assert table.write_changelog(2, b"\x00key", None) is True
        table.on_key_set(b"\x00key", b"\x01value")
        table.on_key_del(b"\x00key")
    finally:
        faust_streams._current_event.reset(token)
    changelog = "lethe-unit-write-rows-changelog"
    assert sent[0] == (changelog, 2, b"\x00key", b"\x01value")
    assert sent[1] == (changelog, 2, b"\x00key", None)
    assert sent[2:] == sent[:2], "Faust's own path sends the same records"
    forwarding._poll(0)
    assert table._delivered == {}, "the offsets the poll served are persisted"
