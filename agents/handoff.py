"""The in-process hand-off: stage A gives a change to stage E directly when one worker holds
every partition, instead of sending it through `<app id>-subject-events`.

Why: the hop through Kafka (A encodes and forwards the change, E fetches and decodes it
again) costs about a tenth of the worker's CPU per event (docs/benchmarks.md (a)). A
worker that holds every partition of every change topic and of `<app id>-subject-events`
(one worker, as in the demo and in small deployments) has both ends of the hop in one
process.

What stays the same: ticks, the sweeps they drive and the census still go through the
topic; so do the forwards of every partition not handed off yet, and all forwards of a
worker that shares the group with another. A change handed off is processed by the enforcer
before A's handler returns, under the same lock as E's own records of that partition, with
its commands, sink and audit records and changelog records handed to the same producer as
a forward would be: the consumer commits the change record's offset only once they are
delivered (`lethe.consumer.Consumer._commit`), so a crash makes the next worker process it
again, as with a forward.

The order of a row's changes: a partition of `<app id>-subject-events` is handed off only
once nothing this worker or another sent to it before is still to be read by E
(`ready`): this worker holds every partition since the last rebalance (no other worker
forwards), its forwarder has no record for the partition that is not delivered, and E has
processed the partition up to the newest record this worker delivered there since that
rebalance (so also everything before it: what other workers forwarded before they gave up
their partitions). While it waits, the partition's open batch is held back from its linger
(it still goes out when full, before a tick and at each commit), so that E can catch up;
the forwards still open then are taken back from the forwarder and processed by E at once,
in order, before the first change handed off; their change records are acknowledged already,
so the forwarder's `settle` (before every commit, and before a replay mark is stored) returns
only once E has processed them all (`settle`, one of its guards). Every rebalance ends the
hand-off: the partitions go through the topic again (order is kept: what was handed off is
processed already), until the new assignment proves ready again.

`lethe_local_handoff_partitions` shows how many partitions are handed off; LETHE_LOCAL_HANDOFF
turns it off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from faust.types import TP, Message

from lethe.forwarding import SETTLE_POLL_S, KafkaForwarder, gives_up

log = logging.getLogger(__name__)

Handler = Callable[[int, Message, Any], Awaitable[None]]
"""The enforcer's entry for a handed-off record: (partition, change record, subject record)."""


class LocalHandOff:
    """Which partitions of `subject_topic` this worker hands off in process (see module)."""

    def __init__(
        self,
        forwarder: KafkaForwarder,
        subject_topic: str,
        subject_partitions: int,
        change_topics: Iterable[str],
        change_partitions: int,
        shown: Callable[[int], None] = lambda count: None,
    ) -> None:
        self.forwarder = forwarder
        self.subject_topic = subject_topic
        self.everything = frozenset(
            [TP(subject_topic, partition) for partition in range(subject_partitions)]
            + [
                TP(topic, partition)
                for topic in change_topics
                for partition in range(change_partitions)
            ]
        )
        self.subject_partitions = subject_partitions
        self.local: set[int] = set()
        """Partitions whose changes are handed off."""
        self.pending: set[int] = set()
        """Partitions to hand off once `ready`."""
        self.processed: dict[int, int] = {}
        """Per partition, the offset of E's newest record processed since the last rebalance."""
        self.backlog: dict[int, deque[bytes]] = {}
        """Per partition that has just been handed off, the forwards taken back from the
        forwarder that E has not processed yet (oldest first; each removed once processed)."""
        self.locks: dict[int, asyncio.Lock] = {}
        forwarder.settle_guards.append(self.settle)
        self.handler: Handler | None = None
        """The enforcer's `handle_local` (set by the enforce agent)."""
        self._shown = shown

    def revoked(self) -> None:
        """A rebalance began: nothing is handed off until the next assignment is ready."""
        self.local.clear()
        self.pending.clear()
        self.processed.clear()
        self.forwarder.held.clear()
        self._shown(0)

    def assigned(self, assigned: Iterable[TP]) -> None:
        """The new assignment: when it is every partition, each becomes pending."""
        self.revoked()
        self.forwarder.new_landing()
        if self.handler is None or not self.everything <= set(assigned):
            return
        self.pending.update(range(self.subject_partitions))
        self.forwarder.held.update(self.pending)
        log.info(
            "This worker holds every partition: changes go to the enforcer in process, each "
            "partition of %s once it is read up to this worker's last record there",
            self.subject_topic,
        )

    def lock(self, partition: int) -> asyncio.Lock:
        """Held while E processes a record of the partition, its own or handed off."""
        lock = self.locks.get(partition)
        if lock is None:
            lock = self.locks[partition] = asyncio.Lock()
        return lock

    def target(self, key: bytes) -> int | None:
        """The partition a forward keyed `key` is handed off to; None: send it."""
        if not self.local:
            return None
        partition = self.forwarder.place(key)
        return partition if partition in self.local else None

    def read(self, partition: int, offset: int) -> None:
        """E processed the partition's record at `offset`. When that makes the partition
        ready, it is handed off from now on, and the forwards still open for it are taken
        back into `backlog` (E processes them before anything else of it)."""
        self.processed[partition] = offset
        if partition not in self.pending or not self.ready(partition):
            return
        self.pending.discard(partition)
        self.forwarder.held.discard(partition)
        self.local.add(partition)
        self._shown(len(self.local))
        if not self.pending:
            log.info("Every partition of %s is handed off in process", self.subject_topic)
        taken_back = self.forwarder.withdraw(partition)
        if taken_back:
            self.backlog[partition] = deque(taken_back)

    async def settle(self, stopping: Callable[[], bool] | None = None) -> bool:
        """Wait until E has processed every forward taken back (a guard of the forwarder's
        `settle`: their change records are acknowledged already and their forwards are in no
        topic, so neither a commit nor a replay mark may pass them); False if `stopping()`
        turns true and some are still waiting `lethe.forwarding.STOPPING_WAIT_S` later."""
        started = time.monotonic()
        while any(self.backlog.values()):
            if gives_up(stopping, started):
                log.warning(
                    "Stopping with forwards taken back and not processed; their change records "
                    "are not committed and are processed again at the next start"
                )
                return False
            await asyncio.sleep(SETTLE_POLL_S)
        return True

    def ready(self, partition: int) -> bool:
        """Nothing sent to the partition is still to be read by E (see module)."""
        forwarder = self.forwarder
        landed = forwarder.landed.get(partition)
        return (
            landed is not None
            and not forwarder.unlanded.get(partition, 0)
            and not forwarder.sending.get(partition, 0)
            and self.processed.get(partition, -1) >= landed
        )
