"""Which partitions the worker's consumer sends back to their beginning after a rebalance,
and which fetched records it keeps from the streams during one.

No broker: the consumer's aiokafka thread is replaced by a recorder. The broker path
(a second worker joining while the first one's loop stalls) is covered by
tests/integration/test_rebalance.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaConnectionError
from faust.transport.drivers import aiokafka as faust_aiokafka

import lethe.consumer
from lethe.app import create_app
from lethe.consumer import Consumer
from lethe.settings import Settings

CUSTOMERS = "hosting.public.customers"
ORDERS = "hosting.public.orders"
LEADER = "lethe-__assignor-__leader"
CHANGELOG = "lethe-subjects-changelog"


class ThreadRecorder:
    """The aiokafka thread: every partition begins at offset 3 (older records deleted),
    seeks are recorded (partition -> offset), or fail with `error`."""

    def __init__(self, error: Exception | None = None) -> None:
        self.sought: dict[TopicPartition, int] = {}
        self.error = error

    async def earliest_offsets(self, *partitions: TopicPartition) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 3)

    async def seek_wait(self, partitions: dict[TopicPartition, int]) -> None:
        if self.error is not None:
            raise self.error
        self.sought.update(partitions)


def consumer_with(thread: ThreadRecorder) -> Consumer:
    """A consumer of an app that reads the change topics with acks, its leader topic
    without, and has one table changelog."""
    consumer = Consumer.__new__(Consumer)
    consumer.app = SimpleNamespace(  # type: ignore[assignment]
        topics=SimpleNamespace(acks_enabled_for=lambda topic: topic in {CUSTOMERS, ORDERS}),
        tables=SimpleNamespace(changelog_topics={CHANGELOG}),
    )
    consumer._thread = thread  # type: ignore[assignment]
    return consumer


def test_the_worker_reads_kafka_through_lethes_consumer(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path), app_id="lethe-unit", store="memory://")
    assert isinstance(app.consumer, Consumer)


def test_the_brokers_hold_an_idle_fetch_100_ms_not_fausts_1500(tmp_path: Path) -> None:
    """A caught-up partition's watermark is its last fetch: Faust's 1.5 s wait delayed every
    stage by up to that much (bench/delay_bench.py: p99 2.04 s, 1.26 s with 100 ms)."""
    app = create_app(Settings(data_dir=tmp_path), app_id="lethe-unit", store="memory://")

    async def fetch_wait() -> int:
        thread = app.consumer._new_consumer_thread()  # type: ignore[attr-defined]
        return int(thread._create_worker_consumer(app.transport)._fetch_max_wait_ms)

    assert asyncio.run(fetch_wait()) == 100


def test_partitions_without_a_committed_offset_start_at_their_beginning() -> None:
    thread = ThreadRecorder()
    committed: dict[Any, int | None] = {
        TopicPartition(CUSTOMERS, 0): 42,
        TopicPartition(CUSTOMERS, 1): None,
        TopicPartition(ORDERS, 0): 0,
        TopicPartition(ORDERS, 1): 1,
        TopicPartition(LEADER, 0): None,
        TopicPartition(CHANGELOG, 0): None,
    }
    asyncio.run(consumer_with(thread).seek_uncommitted_to_beginning(committed))
    assert thread.sought == {TopicPartition(CUSTOMERS, 1): 3, TopicPartition(ORDERS, 0): 3}


def test_partitions_taken_away_by_a_new_rebalance_are_left_to_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    thread = ThreadRecorder(IllegalStateError("Partitions are not assigned"))
    committed: dict[Any, int | None] = {TopicPartition(CUSTOMERS, 0): None}
    with caplog.at_level("INFO", logger="lethe.consumer"):
        asyncio.run(consumer_with(thread).seek_uncommitted_to_beginning(committed))
    assert f"{CUSTOMERS}[0]" in caplog.text


def fetched(*records: tuple[str, int, int]) -> list[tuple[TopicPartition, SimpleNamespace]]:
    """(topic, partition, offset) -> what Faust's fetch yields: partition and message."""
    return [
        (TopicPartition(topic, partition), SimpleNamespace(offset=offset))
        for topic, partition, offset in records
    ]


class Fetch:
    """Faust's own fetch (the parent's `getmany`) replaced by a fixed batch, and
    `perform_seek` by a recorder that fails with the given errors first."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        batch: list[tuple[TopicPartition, SimpleNamespace]],
        *seek_errors: Exception,
    ) -> None:
        self.seeks = 0
        self.errors = list(seek_errors)

        async def faust_getmany(_consumer: Any, timeout: float) -> Any:
            for record in batch:
                yield record

        monkeypatch.setattr(faust_aiokafka.Consumer, "getmany", faust_getmany)
        monkeypatch.setattr(lethe.consumer, "SEEK_RETRY_S", 0.0)

    def run(self, *, rebalancing: bool) -> list[tuple[str, int, int]]:
        """The records handed to the streams, as (topic, partition, offset)."""
        consumer = consumer_with(ThreadRecorder())
        consumer.app.rebalancing = rebalancing  # type: ignore[attr-defined]

        async def perform_seek() -> None:
            self.seeks += 1
            if self.errors:
                raise self.errors.pop(0)

        consumer.perform_seek = perform_seek  # type: ignore[method-assign]

        async def drain() -> list[tuple[str, int, int]]:
            consumer._stopped = asyncio.Event()  # type: ignore[assignment]
            consumer._crashed = asyncio.Event()  # type: ignore[assignment]
            return [
                (tp.topic, tp.partition, message.offset)
                async for tp, message in consumer.getmany(timeout=1.0)
            ]

        return asyncio.run(drain())


BATCH = fetched((CUSTOMERS, 3, 0), (CHANGELOG, 0, 7), (CUSTOMERS, 2, 0), (LEADER, 0, 1))


def test_outside_a_rebalance_every_fetched_record_reaches_the_streams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fetch = Fetch(monkeypatch, BATCH)
    assert fetch.run(rebalancing=False) == [
        (CUSTOMERS, 3, 0),
        (CHANGELOG, 0, 7),
        (CUSTOMERS, 2, 0),
        (LEADER, 0, 1),
    ]
    assert fetch.seeks == 0


def test_change_records_fetched_during_a_rebalance_are_read_again_after_a_seek(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fetch = Fetch(monkeypatch, BATCH)
    with caplog.at_level("INFO", logger="lethe.consumer"):
        handed = fetch.run(rebalancing=True)
    assert handed == [(CHANGELOG, 0, 7), (LEADER, 0, 1)]
    assert fetch.seeks == 1
    assert f"{CUSTOMERS}[2,3]" in caplog.text


def test_a_failed_seek_back_is_retried_until_it_succeeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fetch = Fetch(monkeypatch, BATCH, KafkaConnectionError(), KafkaConnectionError())
    assert fetch.run(rebalancing=True) == [(CHANGELOG, 0, 7), (LEADER, 0, 1)]
    assert fetch.seeks == 3


def test_no_seek_back_when_a_new_rebalance_took_the_partitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fetch = Fetch(monkeypatch, BATCH, IllegalStateError("Partitions are not assigned"))
    fetch.run(rebalancing=True)
    assert fetch.seeks == 1
