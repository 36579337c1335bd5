"""Which partitions the worker's consumer sends back to their beginning after a rebalance.

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
from aiokafka.errors import IllegalStateError

from lethe.app import create_app
from lethe.consumer import Consumer
from lethe.settings import Settings

CUSTOMERS = "hosting.public.customers"
ORDERS = "hosting.public.orders"
LEADER = "lethe-__assignor-__leader"
CHANGELOG = "lethe-subjects-changelog"


class ThreadRecorder:
    def __init__(self, error: Exception | None = None) -> None:
        self.sought: list[TopicPartition] = []
        self.error = error

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        if self.error is not None:
            raise self.error
        self.sought.extend(partitions)


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
    assert thread.sought == [TopicPartition(CUSTOMERS, 1), TopicPartition(ORDERS, 0)]


def test_partitions_taken_away_by_a_new_rebalance_are_left_to_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    thread = ThreadRecorder(IllegalStateError("Partitions are not assigned"))
    committed: dict[Any, int | None] = {TopicPartition(CUSTOMERS, 0): None}
    with caplog.at_level("INFO", logger="lethe.consumer"):
        asyncio.run(consumer_with(thread).seek_uncommitted_to_beginning(committed))
    assert f"{CUSTOMERS}[0]" in caplog.text
