"""How the worker writes `<app id>-subject-events`: the assign agent's forwards and the ticks.

The worker forwards every change record once, so the forward is on the hot path. Faust's
`Topic.send` costs about 125 µs per record (its futures, sensors and aiokafka's Python
sender; docs/benchmarks.md (a)); the worker instead produces through one confluent-kafka
producer (`KafkaForwarder`, made by `kafka_forwarder` from the settings), whose batching and
network work run in librdkafka's threads. The producer is idempotent (acks=all, per-partition
order kept across retries) and never times a record out (message.timeout.ms=0): while the
broker is away records wait in its queue, and once that is full the agent waits too.
Records are placed by murmur2 of their key, as Faust's (aiokafka's) producer places them, so
a subject keeps its partition whichever producer wrote its earlier records.

At-least-once: Faust commits a change record's offset only after `settle` returns True,
which it does once every record handed over before the call is delivered
(`lethe.consumer.Consumer._commit`). A record the broker refuses for good (too large, not
authorised, a fatal producer error) is never retried: the forwarder fails for good, logs it
at ERROR, every later commit is refused and the worker stops, so that it restarts from the
last committed offsets and processes, and forwards, everything after them again. Re-producing
the refused record instead would put it behind later records of its subject, and a refusal
that does not go away would loop.

Batches: a worker made with the subject events' partition count (`kafka_forwarder(...,
partitions=N)`, as `lethe worker` does) packs the forwards bound for one partition into one
record (`lethe-kind: batch`, `lethe.topics.batches`), placed by the same
murmur2 of each forward's key, so the enforcer pays Faust's per-record cost once per batch
instead of once per change (docs/benchmarks.md (a)). A batch goes out when it holds
`BATCH_MAX_ITEMS` forwards or `BATCH_MAX_BYTES`, `BATCH_LINGER_S` after its first forward,
and before anything that relies on what was sent: a tick, `settle` (so a change's offset is
still committed only once its forward is delivered) and `delivered`. A forward too large for a
batch goes alone, as a plain record, after the partition's open batch. Order within a
partition is kept: the enforcer reads a batch's forwards in the order they were sent.

Delivery reports are served by the forwarder's polls: after each record `send` produces and
each batch of forwards, in `settle` (every commit, every rebalance: `lethe.app`), and while the
producer's queue is full; not after each `produce_now` (a table's changelog record, a command,
an audit record), where a poll cost about 8 µs of the event loop even with nothing to serve
(docs/benchmarks.md (a), session 8). librdkafka sends those records at once either way; only
their reports wait, at most until the next batch or commit.

Ticks go through the same producer as the forwards, after them: the idempotent producer
keeps per-partition order, so every event a tick's watermarks cover is before it in the
partition. Unit tests, without a broker, use `lethe.forwarder.ChannelForwarder` over a Faust
channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

from aiokafka.partitioner import murmur2
from confluent_kafka import KafkaError, Message, Producer

from lethe import topics
from lethe.forwarder import ForwardFailed, Headers
from lethe.kafka_clients import client_config
from lethe.settings import Settings
from lethe.topics.batches import BATCH_VERSION, batch_item, batch_value

log = logging.getLogger(__name__)

PRODUCER_CONFIG: Final[dict[str, Any]] = {
    "enable.idempotence": True,
    "acks": "all",
    "message.timeout.ms": 0,
    "linger.ms": 5,
    "partitioner": "murmur2_random",
}
"""Idempotent (order kept per partition), never times a record out, Java/aiokafka placement."""

SETTLE_POLL_S: Final = 0.005
"""How often `settle` serves delivery reports while it waits."""
STOPPING_WAIT_S: Final = 10.0
"""How long a worker that is stopping waits for deliveries before it gives up committing."""
QUEUE_FULL_WAIT_S: Final = 0.01
UNASSIGNED_PARTITION: Final = -1
"""confluent-kafka's "let the partitioner place it" (RD_KAFKA_PARTITION_UA)."""
BATCH_MAX_ITEMS: Final = 500
BATCH_MAX_BYTES: Final = 256 * 1024
"""A batch's size cap, well under Kafka's default 1 MB record limit."""
BATCH_LINGER_S: Final = 0.005
"""How long a batch waits for more forwards after its first (as the producer's linger.ms)."""
BATCH_HEADERS: Final = [(topics.KIND_HEADER, topics.BATCH_KIND)]
PLACEMENT_CACHE: Final = 65_536
"""Subjects whose partition is remembered (murmur2 costs about 3 µs in Python)."""


def gives_up(stopping: Callable[[], bool] | None, started: float) -> bool:
    """Whether a wait for deliveries begun at `started` (`time.monotonic()`) gives up: the
    worker is stopping (`stopping()`) and it has waited `STOPPING_WAIT_S`."""
    return stopping is not None and stopping() and time.monotonic() - started > STOPPING_WAIT_S


class _Batch:
    """The records handed over between two `settle` calls; its `delivered` is their callback."""

    __slots__ = ("failure", "owner", "pending")

    def __init__(self, owner: KafkaForwarder) -> None:
        self.owner = owner
        self.pending = 0
        self.failure: KafkaError | None = None

    def delivered(self, error: KafkaError | None, message: Message) -> None:
        self.pending -= 1
        if error is not None and self.failure is None:
            self.failure = error
            if self.owner.failure is None:
                self.owner.failure = f"a record was refused: {error}"
            log.error(
                "The broker refused a record for %s[%s] for good (%s); the worker stops without "
                "committing and restarts from its committed offsets. Fix the cause first (e.g. "
                "the topic's max.message.bytes, its ACLs).",
                message.topic(),
                message.partition(),
                error,
            )


class _Open:
    """The forwards of one partition not sent yet: encoded batch items and their size."""

    __slots__ = ("items", "size")

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.size = len(BATCH_VERSION)


class KafkaForwarder:
    """Produces to `topic` through one confluent-kafka producer (see the module docstring);
    with `partitions` (the topic's count), keyed forwards go in batches."""

    def __init__(self, topic: str, config: dict[str, Any], partitions: int | None = None) -> None:
        self.topic = topic
        self.config = config
        self.partitions = partitions
        self._producer: Producer | None = None
        self._batch = _Batch(self)
        self._unsettled: list[_Batch] = []
        self._open: dict[int, _Open] = {}
        self._placed: dict[bytes, int] = {}
        self._linger: asyncio.TimerHandle | None = None
        self._after_reports: list[Callable[[], None]] = []
        self.failure: str | None = None
        """Why the forwarder failed for good; None while it works."""
        self.held: set[int] = set()
        """Partitions whose open batch is not sent when it has lingered (`lethe.agents.handoff`):
        it still goes when full, before a tick and at `settle`."""
        self.unlanded: dict[int, int] = {}
        """Per partition of `topic`, the records handed to the producer and not delivered yet."""
        self.settle_guards: list[Callable[[Callable[[], bool] | None], Awaitable[bool]]] = []
        """Waited for by `settle` once the open batches are handed over and before it waits
        for deliveries: each returns True once what it holds back is handed over (the
        in-process hand-off's forwards taken back, `lethe.agents.handoff`), False if it gave
        up (the worker is stopping)."""
        self.sending: dict[int, int] = {}
        """Per partition of `topic`, the `send` calls under way (one may wait for room in the
        producer's queue before its record is handed over)."""
        self.landed: dict[int, int] = {}
        """Per partition of `topic`, the offset of the newest record delivered since the last
        `new_landing` (records handed over before it do not count)."""
        self._landing = 0

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                {
                    **self.config,
                    "error_cb": self._on_error,
                    "logger": logging.getLogger("lethe.forwarding.librdkafka"),
                }
            )
        return self._producer

    def after_reports(self, settle: Callable[[], None]) -> None:
        """Call `settle()` at the end of every poll of the producer that served delivery
        reports, before the poll returns to the event loop (`lethe.changelog` persists the
        changelog offsets the reports brought there, one write per partition and poll)."""
        if settle not in self._after_reports:
            self._after_reports.append(settle)

    def _poll(self, timeout: float) -> None:
        if self.producer.poll(timeout) and self._after_reports:
            for settle in self._after_reports:
                settle()

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal() and self.failure is None:
            self.failure = f"fatal producer error: {error}"
            log.error("The forwarding producer failed for good (%s); the worker stops.", error)
        else:
            log.warning("Forwarding producer: %s", error)

    async def send(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        partition: int | None = None,
    ) -> None:
        if self.failure is not None:
            raise ForwardFailed(self.failure)
        item = None
        if partition is None and self.partitions and key is not None:
            partition = self.place(key)
            if value is not None:
                item = batch_item(key, headers, value)
                if len(item) + len(BATCH_VERSION) > BATCH_MAX_BYTES:
                    item = None  # too large for a batch: it goes alone
        if partition is None:
            await self._send(key, value, headers, None, None)
            return
        self.sending[partition] = self.sending.get(partition, 0) + 1
        try:
            await self._send(key, value, headers, partition, item)
        finally:
            self.sending[partition] -= 1

    async def _send(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        partition: int | None,
        item: bytes | None,
    ) -> None:
        """Add the forward's batch `item` to its partition's open batch, or, without one,
        produce the record alone (after the open batches it must follow)."""
        if item is not None and partition is not None:
            await self._add(partition, item)
            return
        if partition is not None:
            await self._drain(partition)
        elif self._open:
            await self._drain()
        producer = self.producer
        wire = cast(list[tuple[str, str | bytes | None]], headers)
        place = UNASSIGNED_PARTITION if partition is None else partition
        while True:
            batch = self._batch  # the one `settle` watches when the record is handed over
            try:
                producer.produce(
                    self.topic,
                    value,
                    key,
                    place,
                    self._landing_report(batch, partition),
                    headers=wire,
                )
                break
            except BufferError:  # queue full: the broker is slow or away
                self._poll(0)
                await asyncio.sleep(QUEUE_FULL_WAIT_S)
        batch.pending += 1
        if partition is not None:
            self.unlanded[partition] = self.unlanded.get(partition, 0) + 1
        self._poll(0)

    def new_landing(self) -> None:
        """Forget `landed`: from now on it tells only of records handed over after this call
        (a rebalance: what landed before may be followed by other workers' records)."""
        self._landing += 1
        self.landed.clear()

    def _landing_report(
        self, batch: _Batch, partition: int | None
    ) -> Callable[[KafkaError | None, Message], None]:
        """The delivery report of a record for `topic`: `batch`'s, and `unlanded` and
        `landed` kept for `partition` (None: placed by the producer, not kept)."""
        if partition is None:
            return batch.delivered
        landing = self._landing

        def report(error: KafkaError | None, message: Message) -> None:
            batch.delivered(error, message)
            self.unlanded[partition] -= 1
            if error is None and landing == self._landing:
                offset = cast(int, message.offset())
                if offset > self.landed.get(partition, -1):
                    self.landed[partition] = offset

        return report

    def withdraw(self, partition: int) -> list[bytes]:
        """Take the partition's open batch back, unsent: its encoded forwards, in order."""
        open_ = self._open.pop(partition, None)
        return [] if open_ is None else open_.items

    def produce_now(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        delivered: Callable[[str, int, int], None] | None = None,
    ) -> None:
        """Hand over one record for `topic` without awaiting (a table's changelog record,
        `lethe.changelog`; the enforcer's commands, sink records and audit), in `partition`
        or placed by its key; `delivered(topic, partition, offset)` once the broker has it.
        Counted with the forwards: the consumer commits only once it is delivered. Its
        delivery report is served at the forwarder's next poll (see module). While the
        producer's queue is full (the broker slow or away) this serves delivery reports until
        there is room: the worker waits, nothing is dropped."""
        if self.failure is not None:
            raise ForwardFailed(self.failure)
        producer = self.producer
        batch = self._batch

        report = batch.delivered
        if delivered is not None:
            then = delivered

            def report(error: KafkaError | None, message: Message) -> None:
                batch.delivered(error, message)
                if error is None:
                    then(topic, cast(int, message.partition()), cast(int, message.offset()))

        place = UNASSIGNED_PARTITION if partition is None else partition
        while True:
            try:
                producer.produce(topic, value, key, place, report)
                break
            except BufferError:
                self._poll(QUEUE_FULL_WAIT_S)
        batch.pending += 1

    def place(self, key: bytes) -> int:
        """The partition of `key`: murmur2, as Kafka's Java, aiokafka's and librdkafka's
        murmur2 partitioners place it."""
        partition = self._placed.get(key)
        if partition is None:
            if len(self._placed) >= PLACEMENT_CACHE:
                self._placed.clear()
            partitions = self.partitions or 1
            partition = self._placed[key] = (murmur2(key) & 0x7FFFFFFF) % partitions
        return partition

    async def _add(self, partition: int, item: bytes) -> None:
        open_ = self._open.get(partition)
        if open_ is not None and open_.size + len(item) > BATCH_MAX_BYTES:
            await self._drain(partition)
            open_ = self._open.get(partition)
        if open_ is None:
            open_ = self._open[partition] = _Open()
        open_.items.append(item)
        open_.size += len(item)
        if len(open_.items) >= BATCH_MAX_ITEMS:
            await self._drain(partition)
        elif self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(BATCH_LINGER_S, self._lingered)

    def _lingered(self) -> None:
        self._linger = None
        if not self._send_all(lingered=True):  # the producer's queue is full: try again later
            self._linger = asyncio.get_running_loop().call_later(BATCH_LINGER_S, self._lingered)

    def _send_all(self, lingered: bool = False) -> bool:
        """Hand every open batch to the producer (when they `lingered`, not those `held`);
        False if one stays open (queue full)."""
        sent = True
        for partition in list(self._open):
            if lingered and partition in self.held:
                continue
            sent = self._send_open(partition) and sent
        return sent

    def _send_open(self, partition: int) -> bool:
        """Hand the partition's open batch to the producer (delivered later, counted by
        `settle`); False when the producer's queue is full: the batch stays open. A batch
        the producer will not take fails the forwarder for good (nothing is committed any
        more: the worker stops and processes its changes again)."""
        open_ = self._open.get(partition)
        if open_ is None:
            return True
        if self.failure is not None:
            del self._open[partition]  # nothing is committed any more
            return True
        producer = self.producer
        batch = self._batch
        wire = cast(list[tuple[str, str | bytes | None]], BATCH_HEADERS)
        try:
            producer.produce(
                self.topic,
                batch_value(open_.items),
                None,
                partition,
                self._landing_report(batch, partition),
                headers=wire,
            )
        except BufferError:
            self._poll(0)
            return False
        except Exception as exc:
            del self._open[partition]
            self.failure = f"a batch of forwards could not be produced: {exc}"
            log.error(
                "The forwarding producer would not take a batch for %s[%s] (%s); the worker "
                "stops without committing and restarts from its committed offsets.",
                self.topic,
                partition,
                exc,
            )
            return True
        del self._open[partition]
        batch.pending += 1
        self.unlanded[partition] = self.unlanded.get(partition, 0) + 1
        self._poll(0)
        return True

    async def _drain(
        self, partition: int | None = None, stopping: Callable[[], bool] | None = None
    ) -> bool:
        """Hand the open batch of `partition` (None: every open batch) to the producer,
        waiting while its queue is full; False if `stopping()` turned true and the queue
        stayed full `STOPPING_WAIT_S`."""
        started = time.monotonic()
        while not (self._send_all() if partition is None else self._send_open(partition)):
            if gives_up(stopping, started):
                return False
            await asyncio.sleep(QUEUE_FULL_WAIT_S)
        return True

    async def before_tick(self) -> None:
        """Send the open batches: the idempotent producer keeps per-partition order."""
        await self._drain()

    async def delivered(self) -> None:
        if not await self.settle():
            raise ForwardFailed(self.failure or "forwarded records not delivered")

    async def settle(self, stopping: Callable[[], bool] | None = None) -> bool:
        """Wait until every record handed over so far is delivered; True then. False if one
        was refused for good (the forwarder has failed: `failure` says why), or if `stopping()`
        turns true and deliveries still lag `STOPPING_WAIT_S` later."""
        if not await self._drain(stopping=stopping):
            log.warning(
                "Stopping with forwards not handed to the producer (its queue full); their "
                "change records are not committed and are processed again at the next start"
            )
            return False
        for guard in self.settle_guards:
            if not await guard(stopping):
                return False
        if self._batch.pending or self._batch.failure is not None:
            self._unsettled.append(self._batch)
            self._batch = _Batch(self)
        started = time.monotonic()
        while True:
            if self._producer is not None:
                self._poll(0)
            if self.failure is not None:
                return False
            self._unsettled = [batch for batch in self._unsettled if batch.pending > 0]
            if not self._unsettled:
                return True
            if gives_up(stopping, started):
                log.warning(
                    "Stopping with %d forwarded record(s) not delivered; their change records "
                    "are not committed and are processed again at the next start",
                    sum(batch.pending for batch in self._unsettled),
                )
                return False
            await asyncio.sleep(SETTLE_POLL_S)


def kafka_forwarder(
    settings: Settings, topic: str, partitions: int | None = None
) -> KafkaForwarder:
    """The worker's forwarder to `topic` (`<app id>-subject-events`, of `partitions`
    partitions: keyed forwards go in batches; None: one record each) on
    LETHE_KAFKA_BOOTSTRAP."""
    config = {**client_config(settings), **PRODUCER_CONFIG}
    config.pop("log_level")  # the forwarder logs librdkafka through its own logger
    return KafkaForwarder(topic, config, partitions)
