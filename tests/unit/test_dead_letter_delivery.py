"""Dead letters are delivered with their raw record when the broker takes them, without it
when it will not (an error that cannot heal, or one that persists past a few tries), and
never dropped. The channel here is a stand-in that fails as told; the real broker's refusal
of a too-large dead letter is tested in tests/integration/test_walking_skeleton.py."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from faust.exceptions import ProducerSendError

from lethe import forwarding, topics
from lethe.agents import delivery


class Channel:
    """Fails the first sends with the given errors, then takes every record."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.delivered: list[tuple[bytes | None, bytes | None]] = []

    async def send(self, *, key: bytes | None, value: bytes | None) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.errors:
            future.set_exception(self.errors.pop(0))
        else:
            self.delivered.append((key, value))
            future.set_result(None)
        return future


def dead_letter(raw_dropped: str | None = None) -> bytes:
    return topics.dead_letter_record(
        topic="hosting.public.customers",
        partition=3,
        offset=42,
        reason="not_json",
        detail="not JSON",
        key=b'{"id":1}',
        value=b"\x00" * 2000,
        timestamp_ms=None,
        raw_dropped=raw_dropped,
    )


def deliver(channel: Channel) -> bool:
    return asyncio.run(
        delivery.deliver_dead_letter(channel, b'{"id":1}', dead_letter(), dead_letter, "it")  # type: ignore[arg-type]
    )


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "RETRY_FIRST_S", 0.0)


def test_a_dead_letter_the_broker_takes_keeps_its_raw_record() -> None:
    channel = Channel()
    assert deliver(channel) is False
    [(key, value)] = channel.delivered
    record = orjson.loads(value or b"")
    assert key == b'{"id":1}'
    assert record["value_b64"] is not None
    assert record["raw_dropped"] is None
    assert record["value_bytes"] == 2000


def test_an_error_that_cannot_heal_sends_it_at_once_without_the_raw_record() -> None:
    channel = Channel(MessageSizeTooLargeError("too large"))
    assert deliver(channel) is True
    [(key, value)] = channel.delivered
    record = orjson.loads(value or b"")
    assert key is None
    assert record["key_b64"] is None and record["value_b64"] is None
    assert record["value_bytes"] == 2000 and record["key_bytes"] == 8
    assert record["raw_dropped"].startswith("MessageSizeTooLargeError")
    assert (record["topic"], record["partition"], record["offset"]) == (
        "hosting.public.customers",
        3,
        42,
    )


def test_a_too_large_dead_letter_behind_fausts_send_error_goes_at_once_without_raw() -> None:
    """Faust's producer raises the client's refusal as the cause of a ProducerSendError (as the
    worker meets it); it cannot heal either: one try, not eight over ~90 s."""
    try:
        try:
            raise MessageSizeTooLargeError("too large")
        except MessageSizeTooLargeError as refused:
            raise ProducerSendError(f"Error while sending: {refused!r}") from refused
    except ProducerSendError as wrapped:
        error = wrapped
    channel = Channel(error, KafkaTimeoutError())
    assert deliver(channel) is True
    [(key, value)] = channel.delivered
    assert key is None
    assert "MessageSizeTooLargeError" in orjson.loads(value or b"")["raw_dropped"]
    assert channel.errors == [], "the stripped dead letter came after one more failure"


def test_an_error_that_may_heal_is_retried_then_the_raw_record_is_given_up() -> None:
    heals_late = [KafkaTimeoutError() for _ in range(delivery.DEAD_LETTER_ATTEMPTS)]
    channel = Channel(*heals_late)
    assert deliver(channel) is True
    [(_, value)] = channel.delivered
    assert orjson.loads(value or b"")["raw_dropped"].startswith("KafkaTimeoutError")


def test_an_error_that_heals_within_the_tries_keeps_the_raw_record() -> None:
    channel = Channel(*[KafkaTimeoutError() for _ in range(delivery.DEAD_LETTER_ATTEMPTS - 1)])
    assert deliver(channel) is False
    [(_, value)] = channel.delivered
    assert orjson.loads(value or b"")["value_b64"] is not None


def test_the_stripped_dead_letter_is_retried_until_delivered() -> None:
    """The broker is down: the dead letter without its raw record waits for it; never lost."""
    errors = [MessageSizeTooLargeError("too large"), KafkaTimeoutError(), KafkaTimeoutError()]
    channel = Channel(*errors)
    assert deliver(channel) is True
    assert len(channel.delivered) == 1


async def delivered_after(gate: asyncio.Event, log: list[str], name: str) -> None:
    await gate.wait()
    log.append(name)


def test_the_pipeline_hands_back_at_once_and_settles_once_all_are_delivered() -> None:
    async def scenario() -> tuple[int, bool, list[str]]:
        gate, log = asyncio.Event(), []
        pipeline = delivery.DeadLetterPipeline()
        await pipeline.submit(delivered_after(gate, log, "a"), 10)
        await pipeline.submit(delivered_after(gate, log, "b"), 10)
        in_flight = pipeline.pending
        settling = asyncio.ensure_future(pipeline.settle())
        await asyncio.sleep(0.01)
        assert not settling.done(), "settle waits for the deliveries"
        gate.set()
        return in_flight, await settling, log

    in_flight, settled, log = asyncio.run(scenario())
    assert (in_flight, settled, sorted(log)) == (2, True, ["a", "b"])


def test_the_pipeline_waits_when_too_many_are_in_flight() -> None:
    async def scenario() -> list[str]:
        gates = [asyncio.Event(), asyncio.Event()]
        log: list[str] = []
        pipeline = delivery.DeadLetterPipeline(max_records=2)
        await pipeline.submit(delivered_after(gates[0], log, "first"), 1)
        await pipeline.submit(delivered_after(gates[1], log, "second"), 1)
        third = asyncio.ensure_future(pipeline.submit(delivered_after(gates[1], log, "third"), 1))
        await asyncio.sleep(0.01)
        log.append("third waits" if not third.done() else "third went at once")
        gates[0].set()
        await third
        gates[1].set()
        assert await pipeline.settle()
        return log

    assert asyncio.run(scenario()) == ["third waits", "first", "second", "third"]


def test_a_lost_dead_letter_stops_every_later_commit() -> None:
    async def scenario() -> tuple[bool, bool]:
        pipeline = delivery.DeadLetterPipeline()
        await pipeline.submit(asyncio.sleep(3600), 1)
        [task] = list(pipeline._tasks)
        task.cancel()
        first = await pipeline.settle()
        await pipeline.submit(asyncio.sleep(0), 1)
        return first, await pipeline.settle()

    assert asyncio.run(scenario()) == (False, False)


def test_a_stopping_worker_does_not_wait_for_ever(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forwarding, "STOPPING_WAIT_S", 0.0)

    async def scenario() -> bool:
        pipeline = delivery.DeadLetterPipeline()
        await pipeline.submit(asyncio.sleep(3600), 1)
        settled = await pipeline.settle(lambda: True)
        for task in list(pipeline._tasks):
            task.cancel()
        return settled

    assert asyncio.run(scenario()) is False
