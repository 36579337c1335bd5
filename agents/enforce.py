"""Enforce: run each subject's rows through the policy and send the commands that fall due.

Reads `<app id>-subject-events` (one partition per driver: a subject's rows, holds and
activity are all in one partition) with one `policy.driver.Driver` per partition over a
`lethe.faust_store.FaustStore`. For each record (`lethe.agents.subject_records`):
- `change`: the event as the assign stage decoded it; map its time to the enforcement clock
  (`LiveClock.event_instant`) and feed it to the driver;
- `event`: the same, but decode the Debezium value with the policy first;
- `depart`: the row moved to another subject: the driver forgets it here, after confirming
  what the change that moved it (the depart's value) shows applied;
- `tick`: take the watermarks it carries (`lethe.agents.watermarks`), then advance the driver
  to the enforcement clock's now (`LiveClock.now`, read in a thread: the manual clock asks
  Kafka).
- `batch` (`lethe.topics.batches`, how the worker's forwarder sends): each of its forwards in
  turn, as a record of its own; a dead letter of one holds the batch's topic, partition and
  offset with the forward's key and value.
Never early because an input lags: every call to the driver passes the partition's bounds
(`policy.driver.row_bounds` over the watermarks the ticks on this partition brought, mapped
to the enforcement clock like event times), so a stage due at T is issued only once every
table that can change the row's fate is processed up to T; until each change-topic partition
has been reported (after a start or a rebalance, a tick or so), nothing is issued. The lag
per table is `lethe_input_watermark_lag_seconds{table}`.
A record that cannot be read or decoded, or whose processing raised, goes to
`lethe.deadletter` with its topic, partition, offset and reason, is counted in
`lethe_dead_letters_total{topic,reason}`, and processing goes on.

Every command the driver returns becomes the records of `policy.command_records.records_for`
(its `lethe.commands` record, and its sink record for anonymise and delete, built from the
row state's values), handed to the worker's confluent-kafka producer (`lethe.forwarding`;
ordered per key, so a row's anonymise stays before its delete) without waiting, and
delivered before the consumer commits the record's offset (a worker that stops first
processes the record again): at least once, a command may be sent twice (same
`command_id`), never lost. A command that would be unsafe to
apply (a `Refusal`) is not sent: it goes to `lethe.deadletter` with its reason and the
command's JSON (no row values), counted in `lethe_commands_refused_total{table,reason}`. Sent
commands are counted in `lethe_commands_issued_total{table,action}`, re-issues of commands not
confirmed in time (`Command.attempt` > 1, sent exactly like the first send) in
`lethe_commands_reissued_total{table,action}`, and the confirmations the change stream
brought in `lethe_commands_confirmed_total{table,action}`. The log names tables, actions,
reasons and command ids only.

Metrics besides those counters (docs/metrics.md): each first send's delay after its due in
`lethe_due_to_issued_seconds{table,action}`, each confirmation's delay after the first send in
`lethe_issued_to_confirmed_seconds{table,action}`, each tick's sweep in
`lethe_sweep_duration_seconds`; and, at a tick at most every LETHE_CENSUS_INTERVAL seconds per
partition, a census of the partition's state (`policy.census`, a scan of its rows): rows
tracked, the backlog and its oldest due, the forecast, the unconfirmed commands and the open
legal holds, summed over the partitions this worker holds (`lethe.agents.census_slices`).

Each decision goes to `lethe.audit` (`policy.audit`, keyed by the row): `tracked` (a row
stored: first seen, or under a new subject) and `scheduled` (a row's next due moved), from
the outcome's `DueChange`s, `issued`, `reissued`, `confirmed` (with the confirming change
record's topic, partition and offset), `held` and `released` (a legal hold opened or closed),
and `dead_lettered` for a refused command or a record this agent could not use. Its audit
records go with the commands, through the same producer, delivered before the record's
offset is committed. Nothing is written to the audit for a record that decided nothing (an
update of columns no clock reads, most ticks).

Ticks: a timer on every worker sends a `tick` to every partition of
`<app id>-subject-events` each LETHE_TICK_INTERVAL seconds (null key; the value holds the
worker's watermarks, never empty-and-null: Kafka's client refuses a record with neither key
nor value). Faust's tables can be written
from an agent's stream only, so the sweep goes through the topic. Every worker rather than
the leader: ticking then depends on no leader election (Faust's, by partition 0 of its
assignor topic, which stops ticking for every partition while a dead leader's session
times out); it costs workers x partitions records per interval, each a heap peek when
nothing is due. Each tick carries the watermarks of the change-topic partitions the sending
worker's assign agent processed, taken before the ticks are sent through the producer the
assign agent forwards with (`lethe.forwarding`), which keeps per-partition order, so that
every event they cover is before the tick in the partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, Final

import faust
from faust.exceptions import PartitionsMismatch
from faust.types import AgentT, ChannelT, Message, TopicT
from mode import CrashingSupervisor

from lethe import topics
from lethe.agents.assign import raw_bytes, reject
from lethe.agents.census_slices import CENSUS_SLICE_SHARE, CensusSchedule
from lethe.agents.handoff import LocalHandOff
from lethe.agents.issuing import Issuer
from lethe.agents.outputs import Outputs, forward_letter, output_topic_names
from lethe.agents.subject_records import (
    ChangeRecord,
    DecodedChange,
    Depart,
    SubjectRecord,
    Tick,
    UnreadableRecord,
    header_map,
    read_subject_record,
    tick_headers,
    tick_value,
)
from lethe.agents.tables import await_changelogs, retry_on_partitions_mismatch
from lethe.agents.watermarks import UNCHECKED, ChangeProgress, InputWatermarks, partition_ends
from lethe.clock import LiveClock, wall_now
from lethe.faust_store import FaustStore, declare_state_tables
from lethe.forwarder import ChannelForwarder, Forwarder
from lethe.forwarding import KafkaForwarder
from lethe.metrics import Children, WorkerMetrics
from lethe.topics.batches import BatchError, BatchItem, batch_value, read_batch
from policy import audit
from policy.decoding import decode_raw
from policy.driver import NOTHING, Bounds, Driver, row_bounds
from policy.engine import Engine, next_due
from policy.envelope import DecodeReason, Rejection, rejection_of_bug
from policy.events import ChangeEvent, Tombstone
from policy.instants import Instant
from policy.outcome_audit import Where

log = logging.getLogger(__name__)

AGENT_NAME: Final = "lethe.enforce"


class Enforcer:
    """The agent's state: the drivers (one per partition), the store, the output topics."""

    def __init__(
        self,
        app: faust.App,
        *,
        engine: Engine,
        store: FaustStore,
        clock: LiveClock,
        metrics: WorkerMetrics,
        deadletters: ChannelT[bytes],
        audit_hash_key: bytes,
        change_partitions: int = 1,
        census_interval: float | None = 30.0,
        census_slice: float = CENSUS_SLICE_SHARE,
        consumed: ChangeProgress | None = None,
        outbound: KafkaForwarder | None = None,
    ) -> None:
        self.app = app
        self.engine = engine
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.audit_hash_key = audit_hash_key
        self.drivers: dict[int, Driver] = {}
        self.out = Outputs(
            app,
            output_topic_names(engine.policy),
            metrics=metrics,
            deadletters=deadletters,
            outbound=outbound,
        )
        """Where commands, sink records, audit and dead letters go (`lethe.agents.outputs`)."""
        self.watermarks = InputWatermarks(
            {topic: source.table for topic, source in engine.policy.sources_by_topic.items()},
            change_partitions,
        )
        self.bounds: dict[int, Bounds] = {}
        """Per partition, the rows' bounds as of its last tick (none yet: nothing issued)."""
        self.consumed = consumed
        """What this agent processed of its topic (for `lethe_consumer_lag_*`)."""
        self.census = (
            None
            if census_interval is None
            else CensusSchedule(engine, store, metrics, census_interval, census_slice)
        )
        """Each partition's census, for the census gauges (`lethe.agents.census_slices`)."""
        self.input_lag = Children(metrics.input_watermark_lag)
        self.issuer = Issuer(engine, store, self.out, metrics, audit_hash_key)
        """Sends what the driver decided (`lethe.agents.issuing`)."""
        self.handoff: LocalHandOff | None = None
        """The in-process hand-off from the assign agent (`lethe.agents.handoff`)."""

    def forget(self, partitions: Iterable[int]) -> None:
        """The partitions were revoked: drop their watermarks (a partition assigned again
        issues nothing until its ticks have reported every input again)."""
        partitions = list(partitions)
        for partition in partitions:
            self.bounds.pop(partition, None)
            self.watermarks.forget(partition)
        if self.census is not None:
            self.census.forget(partitions)

    def take_tick(self, partition: int, tick: Tick, wall: int) -> Bounds:
        """Keep the tick's watermarks; return the partition's new bounds. Sets the lag of
        each table's change topic, in wall seconds before `wall` (now), the worst over this
        worker's partitions."""
        self.watermarks.report(partition, tick.watermarks)
        slowest = self.watermarks.slowest()
        for table in self.engine.policy.sources:
            mark = slowest.get(table)
            self.input_lag(table).set(float("inf") if mark is None else (wall - mark) / 1e6)
        reported = self.watermarks.processed(partition)
        processed = {table: self.clock.event_instant(mark) for table, mark in reported.items()}
        bounds = self.bounds[partition] = row_bounds(self.engine, processed)
        return bounds

    async def declare_outputs(self) -> None:
        await self.out.declare()

    def driver(self, partition: int) -> Driver:
        driver = self.drivers.get(partition)
        if driver is None:
            driver = self.drivers[partition] = Driver(self.engine, self.store)
        return driver

    async def handle(self, message: Message) -> None:
        """Process one record of `<app id>-subject-events`, each forward of a batch in turn;
        never raises for bad input. With the hand-off, under the partition's lock, and then
        the forwards the hand-off took back, if it starts here (`lethe.agents.handoff`)."""
        if self.consumed is not None:
            self.consumed.processed(
                message.topic, message.partition, message.offset, _message_time(message)
            )
        handoff = self.handoff
        if handoff is None:
            await self._handle(message)
            return
        partition = message.partition
        async with handoff.lock(partition):
            await self._handle(message)
            handoff.read(partition, message.offset)
            taken_back = handoff.backlog.get(partition)
            if taken_back:
                await retry_on_partitions_mismatch(
                    partial(self._take_back, message, taken_back),
                    f"Enforcing the forwards taken back at {message.topic}[{partition}]",
                )

    async def _take_back(self, message: Message, taken_back: deque[bytes]) -> None:
        """Process the forwards the hand-off took back, oldest first, each removed once
        processed (a retry goes on from the first one not processed)."""
        while taken_back:
            for item in read_batch(batch_value([taken_back[0]])):
                await self.handle_record(message, item.headers, item.value, item)
            taken_back.popleft()

    async def _handle(self, message: Message) -> None:
        headers = _headers(message.headers)
        if headers.get(topics.KIND_HEADER) != topics.BATCH_KIND:
            await self.handle_record(message, headers, raw_bytes(message.value))
            return
        try:
            items = read_batch(raw_bytes(message.value))
        except BatchError as exc:
            await self.reject(message, Rejection(DecodeReason.BAD_RECORD, str(exc)))
            return
        for item in items:
            await self.handle_record(message, item.headers, item.value, item)

    async def handle_local(self, partition: int, message: Message, record: SubjectRecord) -> None:
        """Process `record`, handed off by the assign agent for the partition (never a tick),
        read from the change record `message`: as if read from the topic, its dead letters
        at `message`'s place (`lethe.agents.handoff`)."""
        handoff = self.handoff
        if handoff is None:
            raise RuntimeError("handle_local without a hand-off")
        async with handoff.lock(partition):
            with self.store.serving(partition):
                await self.process(partition, record, lambda: message)

    async def handle_record(
        self,
        message: Message,
        headers: dict[str, bytes],
        value: bytes | None,
        item: BatchItem | None = None,
    ) -> None:
        """Process one record, or the forward `item` of the batch `message`; a dead letter
        of a forward holds the batch's place with the forward's key and value
        (`lethe.agents.outputs.forward_letter`)."""

        def letter() -> Message:
            return message if item is None else forward_letter(message, item)

        try:
            record = read_subject_record(headers, value)
        except UnreadableRecord as exc:
            await self.reject(letter(), Rejection(DecodeReason.BAD_RECORD, str(exc)))
            return
        except Exception as exc:  # a bug must not stop the enforcer
            await self.reject_bug(letter(), exc, "Reading")
            return
        await self.process(message.partition, record, letter)

    async def process(
        self, partition: int, record: SubjectRecord, letter: Callable[[], Message]
    ) -> None:
        """Feed `record` to the partition's driver and issue what it decides; `letter()` is
        the record to dead-letter when it cannot be used."""
        where: Where | None = None
        swept: tuple[float, int] | None = None
        try:
            driver = self.driver(partition)
            if isinstance(record, DecodedChange | ChangeRecord):
                if isinstance(record, DecodedChange):
                    decoded: ChangeEvent | Tombstone | Rejection = record.event
                else:
                    decoded = decode_raw(
                        self.engine.decoding, record.source_topic, None, record.value
                    )
                if isinstance(decoded, Rejection):
                    await self.reject(letter(), decoded)
                    return
                if not isinstance(decoded, ChangeEvent):
                    return  # a tombstone: the assign agent never forwards one
                at = self.clock.event_instant(decoded.ts)
                event = decoded if at == decoded.ts else decoded.at(at)
                where = (record.source_topic, record.source_partition, record.source_offset)
                outcome = driver.feed(event, self.bounds.get(partition, {}))
            elif isinstance(record, Depart):
                at = self.clock.event_instant(record.ts)
                moved_by = self.moving_event(record)
                if moved_by is not None:
                    where = record.source
                bounds = self.bounds.get(partition, {})
                outcome = driver.depart(
                    record.table, record.key, record.subject, at, moved_by, bounds
                )
            else:
                now = await asyncio.get_running_loop().run_in_executor(None, self.clock.now)
                swept = (time.perf_counter(), now)
                bounds = self.take_tick(partition, record, wall_now())
                outcome = driver.advance(now, bounds)
        except UnreadableRecord as exc:
            await self.reject(letter(), Rejection(DecodeReason.BAD_RECORD, str(exc)))
            return
        except PartitionsMismatch:
            raise
        except Exception as exc:  # a bug must not stop the enforcer
            await self.reject_bug(letter(), exc, "Enforcing")
            return
        if outcome is not NOTHING:
            await self.issuer.issue(outcome, letter, where)
        if swept is not None:
            started, now = swept
            self.metrics.sweep_duration.observe(time.perf_counter() - started)
            if self.census is not None:
                self.census.take(partition, now)

    def moving_event(self, depart: Depart) -> ChangeEvent | None:
        """The change that moved the departing row, when the depart carries it; its own
        partition dead-letters it if it cannot be decoded."""
        if depart.value is None or depart.source_topic is None:
            return None
        decoded = decode_raw(self.engine.decoding, depart.source_topic, None, depart.value)
        return decoded if isinstance(decoded, ChangeEvent) else None

    async def reject_bug(self, message: Message, exc: Exception, doing: str) -> None:
        """Log the bug that `doing` the record hit, with its traceback (call it from the
        `except` block), and dead-letter the record as `internal_error`."""
        log.exception(
            "%s %s[%s]@%s failed", doing, message.topic, message.partition, message.offset
        )
        await self.reject(message, rejection_of_bug(exc))

    async def reject(self, message: Message, rejection: Rejection) -> None:
        """Dead-letter a record of `<app id>-subject-events` this agent cannot use, and audit
        it (`dead_lettered`: where it is and why, nothing of its content)."""
        await reject(message, rejection, self.metrics, self.out.deadletters)
        await self.out.deliver_audit(
            audit.dead_lettered(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                reason=rejection.reason.value,
                at=self.clock.event_instant(_message_time(message)),
            )
        )


def install(
    app: faust.App,
    subject_events: TopicT,
    deadletters: ChannelT[bytes],
    *,
    engine: Engine,
    metrics: WorkerMetrics,
    clock: LiveClock,
    partitions: int,
    tick_interval: float,
    audit_hash_key: bytes,
    progress: ChangeProgress,
    change_partitions: int,
    census_interval: float | None = 30.0,
    consumed: ChangeProgress | None = None,
    forwarder: Forwarder | None = None,
    heard_until: Callable[[], Instant | None] = lambda: UNCHECKED,
    handoff: LocalHandOff | None = None,
) -> AgentT[Any]:
    """Register the enforce agent on `app`, reading `subject_events` (`partitions` partitions),
    and the timer that ticks every partition each `tick_interval` seconds with the watermarks
    of `progress` (the assign agent's, over change topics of `change_partitions` each);
    `audit_hash_key` (LETHE_AUDIT_HASH_KEY) hashes the subjects the audit may not keep as they
    are. Each partition's state is counted for the census gauges every `census_interval`
    seconds; `consumed` is told every record processed (for the consumer lag). The ticks go
    through `forwarder`, the assign agent's (None: Faust sends them). A caught-up change
    topic counts as processed up to `heard_until()` at most (`lethe.heartbeat`). With
    `handoff`, the assign agent hands changes to this agent in process when this worker
    holds every partition (`lethe.agents.handoff`)."""
    ticks = forwarder if forwarder is not None else ChannelForwarder(subject_events)
    tables = declare_state_tables(app, partitions)
    store = FaustStore(tables, lambda row, subject: next_due(engine, row, subject), app=app)
    enforcer = Enforcer(
        app,
        engine=engine,
        store=store,
        clock=clock,
        metrics=metrics,
        deadletters=deadletters,
        audit_hash_key=audit_hash_key,
        change_partitions=change_partitions,
        census_interval=census_interval,
        census_slice=CENSUS_SLICE_SHARE * tick_interval,
        consumed=consumed,
        outbound=forwarder if isinstance(forwarder, KafkaForwarder) else None,
    )
    subject_topic = subject_events.get_topic_name()
    if handoff is not None:
        enforcer.handoff = handoff
        handoff.handler = enforcer.handle_local

    def forget_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0] if args else kwargs.get("revoked", set())
        enforcer.forget(tp.partition for tp in revoked if tp.topic == subject_topic)

    app.on_partitions_revoked.connect(forget_revoked)

    async def enforce(stream: Any) -> None:
        await enforcer.declare_outputs()
        await await_changelogs(app, (tables.rows, tables.subjects, tables.locations), partitions)
        async for event in stream.events():
            message = event.message
            await retry_on_partitions_mismatch(
                partial(enforcer.handle, message),
                f"Enforcing {message.topic}[{message.partition}]@{message.offset}",
            )

    async def tick_every_partition() -> None:
        try:
            ends = partition_ends(app.consumer, progress.topics)
            watermarks = progress.watermarks(ends, heard_until())
            await ticks.before_tick()  # the events the watermarks cover land before the ticks
            value = tick_value(watermarks)
            for partition in range(partitions):
                await ticks.send(key=None, value=value, partition=partition, headers=tick_headers())
        except Exception:
            log.exception("Could not send the ticks; trying again in %.1fs", tick_interval)

    app.timer(tick_interval, name="lethe.tick")(tick_every_partition)
    return app.agent(
        subject_events, name=AGENT_NAME, concurrency=1, supervisor_strategy=CrashingSupervisor
    )(enforce)


def _message_time(message: Message) -> int:
    """The record's Kafka timestamp in µs (the wall time it was written)."""
    return round((message.timestamp or 0) * 1_000_000)


def _headers(headers: Any) -> dict[str, bytes]:
    if isinstance(headers, Mapping):
        headers = headers.items()
    return header_map(headers)
