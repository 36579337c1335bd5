"""The forwarder's promise to the commit (`KafkaForwarder.settle`): it returns True only once
every record handed over before the call is delivered, and after a record refused for good it
never does again, nor sends anything. The producer is a stand-in that delivers when the test
says so; the real broker path is tests/integration/test_forwarding.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError

from lethe.forwarding import ForwardFailed, KafkaForwarder


class HeldProducer:
    """Keeps each record's delivery callback until `deliver` is called."""

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[[Any, Any], None], Any]] = []

    def produce(
        self, topic: str, value: Any, key: Any, partition: int, on_delivery: Any, headers: Any
    ) -> None:
        self.pending.append((on_delivery, Record(topic, partition)))

    def poll(self, timeout: float) -> int:
        return 0

    def deliver(self, error: KafkaError | None = None) -> None:
        callback, record = self.pending.pop(0)
        callback(error, record)


class Record:
    def __init__(self, topic: str, partition: int) -> None:
        self._topic, self._partition = topic, partition

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition


def forwarder() -> tuple[KafkaForwarder, HeldProducer]:
    held = HeldProducer()
    forwarding = KafkaForwarder("lethe-subject-events", {})
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
