"""When the assign stage may hand changes to the enforcer in process (`lethe.agents.handoff`):
only once nothing sent to a partition of subject events is still to be read, so that a row's
changes are never processed out of order. The producer is a fake that holds each record's
delivery until told (tests/unit/test_forwarding.py)."""

from __future__ import annotations

import asyncio

from faust.types import TP

from lethe import topics
from lethe.agents.handoff import LocalHandOff
from lethe.forwarding import KafkaForwarder
from lethe.topics.batches import read_batch
from tests.unit.test_forwarding import HeldProducer, forwarder

SUBJECTS = "lethe-subject-events"
CHANGES = "hosting.public.customers"
EVENT = [(topics.KIND_HEADER, topics.EVENT_KIND)]


async def _enforcer(partition: int, message: object, record: object) -> None:
    """Stands for `Enforcer.handle_local`: the gate only needs one to be there."""


def handoff(partitions: int = 2) -> tuple[LocalHandOff, KafkaForwarder, HeldProducer]:
    forwarding, held = forwarder(partitions=partitions)
    gate = LocalHandOff(forwarding, SUBJECTS, partitions, [CHANGES], 1)
    gate.handler = _enforcer
    return gate, forwarding, held


def everything(partitions: int = 2) -> set[TP]:
    return {TP(SUBJECTS, p) for p in range(partitions)} | {TP(CHANGES, 0)}


async def tick(forwarding: KafkaForwarder, partition: int) -> None:
    await forwarding.send(key=None, value=b"", headers=[], partition=partition)


def test_a_worker_without_every_partition_never_hands_off() -> None:
    async def scenario() -> None:
        gate, forwarding, held = handoff()
        gate.assigned(everything() - {TP(CHANGES, 0)})  # another worker reads the changes
        await tick(forwarding, 0)
        held.deliver()
        assert gate.read(0, 0) is None
        assert gate.target(b"customer:1") is None and not forwarding.held

    asyncio.run(scenario())


def test_a_partition_is_handed_off_once_read_up_to_its_last_delivered_record() -> None:
    async def scenario() -> None:
        gate, forwarding, held = handoff(partitions=1)
        gate.assigned(everything(1))
        assert gate.read(0, 41) is None, "nothing of this worker landed yet: others' may follow"
        await tick(forwarding, 0)  # offset 0 in the fake
        assert gate.read(0, 41) is None, "the tick is not delivered yet"
        held.deliver()
        assert gate.target(b"customer:1") is None
        assert gate.read(0, 0) == []
        assert gate.target(b"customer:1") == 0

    asyncio.run(scenario())


def test_a_record_handed_over_and_not_yet_read_keeps_the_partition_on_the_topic() -> None:
    async def scenario() -> None:
        gate, forwarding, held = handoff(partitions=1)
        gate.assigned(everything(1))
        await tick(forwarding, 0)
        await tick(forwarding, 0)
        held.deliver()  # offset 0 landed, offset 1 not yet
        assert gate.read(0, 0) is None
        held.deliver()
        assert gate.read(0, 0) is None, "offset 1 landed and is not read"
        assert gate.read(0, 1) == []

    asyncio.run(scenario())


def test_the_open_batch_waits_for_the_hand_off_and_comes_back_in_order() -> None:
    async def scenario() -> None:
        gate, forwarding, held = handoff(partitions=1)
        gate.assigned(everything(1))
        await tick(forwarding, 0)
        held.deliver()
        for n in range(3):
            await forwarding.send(key=b"customer:1", value=b"%d" % n, headers=EVENT)
        await asyncio.sleep(0.05)  # well past the batch's linger
        assert len(held.produced) == 1, "a held partition's batch does not go at its linger"
        taken = gate.read(0, 0)
        assert taken is not None
        assert [item.value for item in read_batch(b"\x01" + b"".join(taken))] == [b"0", b"1", b"2"]
        await forwarding.settle()
        assert len(held.produced) == 1, "what was taken back is not sent as well"

    asyncio.run(scenario())


def test_records_handed_over_before_the_rebalance_do_not_count_as_landed() -> None:
    async def scenario() -> None:
        gate, forwarding, held = handoff(partitions=1)
        await tick(forwarding, 0)  # offset 0, before the assignment
        gate.assigned(everything(1))
        held.deliver()
        assert gate.read(0, 0) is None, "others may have written after this worker's offset 0"
        await tick(forwarding, 0)
        held.deliver()
        assert gate.read(0, 1) == []

    asyncio.run(scenario())


def test_a_rebalance_ends_the_hand_off() -> None:
    async def scenario() -> None:
        gate, forwarding, held = handoff(partitions=1)
        shown: list[int] = []
        gate._shown = shown.append
        gate.assigned(everything(1))
        await tick(forwarding, 0)
        held.deliver()
        assert gate.read(0, 0) == []
        gate.revoked()
        assert gate.target(b"customer:1") is None
        gate.assigned(everything(1))
        assert gate.read(0, 0) is None, "nothing landed since the new assignment"
        assert shown[-1] == 0 and 1 in shown

    asyncio.run(scenario())
