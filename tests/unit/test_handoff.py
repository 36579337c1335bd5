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
from tests.unit.test_forwarding import HeldProducer, forwarder, forwards_of

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
        gate.read(0, 0)
        assert gate.target(b"customer:1") is None and not forwarding.held

    asyncio.run(scenario())


def test_a_partition_is_handed_off_once_read_up_to_its_last_delivered_record() -> None:
    async def scenario() -> None:
        gate, forwarding, held = handoff(partitions=1)
        gate.assigned(everything(1))
        gate.read(0, 41)
        assert not gate.local, "nothing of this worker landed yet: others' may follow"
        await tick(forwarding, 0)  # offset 0 in the fake
        gate.read(0, 41)
        assert not gate.local, "the tick is not delivered yet"
        held.deliver()
        assert gate.target(b"customer:1") is None
        gate.read(0, 0)
        assert gate.target(b"customer:1") == 0

    asyncio.run(scenario())


def test_a_record_handed_over_and_not_yet_read_keeps_the_partition_on_the_topic() -> None:
    async def scenario() -> None:
        gate, forwarding, held = handoff(partitions=1)
        gate.assigned(everything(1))
        await tick(forwarding, 0)
        await tick(forwarding, 0)
        held.deliver()  # offset 0 landed, offset 1 not yet
        gate.read(0, 0)
        assert not gate.local
        held.deliver()
        gate.read(0, 0)
        assert not gate.local, "offset 1 landed and is not read"
        gate.read(0, 1)
        assert gate.local == {0}

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
        gate.read(0, 0)
        taken = gate.backlog[0]
        assert [item.value for item in read_batch(b"\x01" + b"".join(taken))] == [b"0", b"1", b"2"]
        taken.clear()  # what the enforcer does as it processes them
        await asyncio.wait_for(forwarding.settle(), 1.0)
        assert len(held.produced) == 1, "what was taken back is not sent as well"

    asyncio.run(scenario())


def test_records_handed_over_before_the_rebalance_do_not_count_as_landed() -> None:
    async def scenario() -> None:
        gate, forwarding, held = handoff(partitions=1)
        await tick(forwarding, 0)  # offset 0, before the assignment
        gate.assigned(everything(1))
        held.deliver()
        gate.read(0, 0)
        assert not gate.local, "others may have written after this worker's offset 0"
        await tick(forwarding, 0)
        held.deliver()
        gate.read(0, 1)
        assert gate.local == {0}

    asyncio.run(scenario())


def test_a_rebalance_ends_the_hand_off() -> None:
    async def scenario() -> None:
        gate, forwarding, held = handoff(partitions=1)
        shown: list[int] = []
        gate._shown = shown.append
        gate.assigned(everything(1))
        await tick(forwarding, 0)
        held.deliver()
        gate.read(0, 0)
        assert gate.target(b"customer:1") == 0
        gate.revoked()
        assert gate.target(b"customer:1") is None
        gate.assigned(everything(1))
        gate.read(0, 0)
        assert not gate.local, "nothing landed since the new assignment"
        assert shown[-1] == 0 and 1 in shown

    asyncio.run(scenario())


def test_a_send_waiting_for_room_in_the_producer_keeps_the_partition_on_the_topic() -> None:
    async def scenario() -> None:
        gate, forwarding, held = handoff(partitions=1)
        gate.assigned(everything(1))
        await tick(forwarding, 0)
        held.deliver()
        full = True
        produce = held.produce

        def refuse_while_full(*args: object, **kwargs: object) -> None:
            if full:
                raise BufferError("queue full")
            produce(*args, **kwargs)  # type: ignore[arg-type]

        held.produce = refuse_while_full  # type: ignore[method-assign]
        waiting = asyncio.ensure_future(
            forwarding.send(key=b"customer:1", value=b"x" * 300_000, headers=EVENT)
        )
        await asyncio.sleep(0.05)
        gate.read(0, 0)
        assert not gate.local, "a forward is on its way to the topic: it would come after"
        full = False
        await asyncio.wait_for(waiting, 1.0)
        held.deliver()
        gate.read(0, 0)
        assert not gate.local, "the forward landed at offset 1 and is not read yet"
        gate.read(0, 1)
        assert gate.local == {0}

    asyncio.run(scenario())


def test_the_forwarders_settle_waits_until_every_forward_taken_back_is_processed() -> None:
    async def scenario() -> None:
        gate, forwarding, held = handoff(partitions=1)
        gate.assigned(everything(1))
        await tick(forwarding, 0)
        held.deliver()
        await forwarding.send(key=b"customer:1", value=b"0", headers=EVENT)
        gate.read(0, 0)
        taken = gate.backlog[0]
        assert len(taken) == 1
        settling = asyncio.ensure_future(forwarding.settle())  # every commit, every replay mark
        await asyncio.sleep(0.05)
        assert not settling.done(), "a change acknowledged and not enforced yet"
        taken.popleft()
        assert await asyncio.wait_for(settling, 1.0) is True
        assert not [forwards_of(record) for record in held.produced[1:]], "never sent as well"

    asyncio.run(scenario())
