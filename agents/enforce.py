"""Enforce: run each subject's rows through the policy and send the commands that fall due.

Reads `<app id>-subject-events` (one partition per driver: a subject's rows, holds and
activity are all in one partition) with one `policy.driver.Driver` per partition over a
`lethe.faust_store.FaustStore`. For each record (`lethe.agents.subject_records`):
- `event`: decode the Debezium value with the policy, map its time to the enforcement clock
  (`LiveClock.event_instant`) and feed it to the driver;
- `depart`: the row moved to another subject: the driver forgets it here;
- `tick`: take the watermarks it carries (`lethe.agents.watermarks`), then advance the driver
  to the enforcement clock's now (`LiveClock.now`, read in a thread: the manual clock asks
  Kafka).
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
row state's values), sent and delivered before the record is acknowledged: at least once, a
command may be sent twice (same `command_id`), never lost. A command that would be unsafe to
apply (a `Refusal`) is not sent: it goes to `lethe.deadletter` with its reason and the
command's JSON (no row values), counted in `lethe_commands_refused_total{table,reason}`. Sent
commands are counted in `lethe_commands_issued_total{table,action}`. The log names tables,
actions, reasons and command ids only.

Ticks: a timer on every worker sends a `tick` to every partition of
`<app id>-subject-events` each LETHE_TICK_INTERVAL seconds (null key; the value holds the
worker's watermarks, never empty-and-null: Kafka's client refuses a record with neither key
nor value). Faust's tables can be written
from an agent's stream only, so the sweep goes through the topic. Every worker rather than
the leader: ticking then depends on no leader election (Faust's, by partition 0 of its
assignor topic, which stops ticking for every partition while a dead leader's session
times out); it costs workers x partitions records per interval, each a heap peek when
nothing is due. Each tick carries the watermarks of the change-topic partitions the sending
worker's assign agent processed, taken before the producer is flushed, so that every event
they cover is before the tick in the partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Final

import faust
import orjson
from faust.types import AgentT, ChannelT, Message, TopicT

from lethe import topics
from lethe.agents.assign import raw_bytes, reject
from lethe.agents.delivery import deliver_retrying, send_retrying
from lethe.agents.subject_records import (
    ChangeRecord,
    Depart,
    Tick,
    UnreadableRecord,
    header_map,
    read_subject_record,
    tick_headers,
    tick_value,
)
from lethe.agents.watermarks import ChangeProgress, InputWatermarks, partition_ends
from lethe.clock import LiveClock, wall_now
from lethe.faust_store import FaustStore, declare_state_tables
from lethe.metrics import WorkerMetrics
from policy.command_records import COMMANDS_TOPIC, command_key, records_for
from policy.decoding import decode_raw
from policy.driver import Bounds, Driver, row_bounds
from policy.engine import Engine, next_due
from policy.envelope import DecodeReason, Rejection, rejection_of_bug
from policy.events import ChangeEvent
from policy.model import Action, Policy
from policy.sink_records import OutboundRecord, Refusal, sink_topic
from policy.state import Command

log = logging.getLogger(__name__)

AGENT_NAME: Final = "lethe.enforce"


def output_topic_names(policy: Policy) -> tuple[str, ...]:
    """`lethe.commands`, and the sink topic of every table with an anonymise or delete stage."""
    changing = sorted(
        table
        for table, source in policy.sources.items()
        if any(
            stage.action in (Action.ANONYMISE, Action.DELETE)
            for rule in source.rules
            for stage in rule.stages
        )
    )
    return (COMMANDS_TOPIC, *(sink_topic(table) for table in changing))


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
        change_partitions: int = 1,
    ) -> None:
        self.app = app
        self.engine = engine
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.deadletters = deadletters
        self.drivers: dict[int, Driver] = {}
        self.outputs: dict[str, TopicT] = {
            name: topics.output_topic(app, name) for name in output_topic_names(engine.policy)
        }
        self.watermarks = InputWatermarks(
            {topic: source.table for topic, source in engine.policy.sources_by_topic.items()},
            change_partitions,
        )
        self.bounds: dict[int, Bounds] = {}
        """Per partition, the rows' bounds as of its last tick (none yet: nothing issued)."""

    def forget(self, partitions: Iterable[int]) -> None:
        """The partitions were revoked: drop their watermarks (a partition assigned again
        issues nothing until its ticks have reported every input again)."""
        for partition in partitions:
            self.bounds.pop(partition, None)
            self.watermarks.forget(partition)

    def take_tick(self, partition: int, tick: Tick, wall: int) -> Bounds:
        """Keep the tick's watermarks; return the partition's new bounds. Sets the lag of
        each table's change topic, in wall seconds before `wall` (now), the worst over this
        worker's partitions."""
        self.watermarks.report(partition, tick.watermarks)
        slowest = self.watermarks.slowest()
        lag = self.metrics.input_watermark_lag
        for table in self.engine.policy.sources:
            mark = slowest.get(table)
            lag.labels(table=table).set(float("inf") if mark is None else (wall - mark) / 1e6)
        reported = self.watermarks.processed(partition)
        processed = {table: self.clock.event_instant(mark) for table, mark in reported.items()}
        bounds = self.bounds[partition] = row_bounds(self.engine, processed)
        return bounds

    async def declare_outputs(self) -> None:
        for topic in self.outputs.values():
            await topic.maybe_declare()

    def driver(self, partition: int) -> Driver:
        driver = self.drivers.get(partition)
        if driver is None:
            driver = self.drivers[partition] = Driver(self.engine, self.store)
        return driver

    async def handle(self, message: Message) -> None:
        """Process one record of `<app id>-subject-events`; never raises for bad input."""
        try:
            record = read_subject_record(_headers(message.headers), raw_bytes(message.value))
            driver = self.driver(message.partition)
            if isinstance(record, ChangeRecord):
                outcome = decode_raw(self.engine.decoding, record.source_topic, None, record.value)
                if isinstance(outcome, Rejection):
                    await reject(message, outcome, self.metrics, self.deadletters)
                    return
                if not isinstance(outcome, ChangeEvent):
                    return  # a tombstone: the assign agent never forwards one
                event = replace(outcome, ts=self.clock.event_instant(outcome.ts))
                commands = driver.feed(event, self.bounds.get(message.partition, {}))
            elif isinstance(record, Depart):
                at = self.clock.event_instant(record.ts)
                bounds = self.bounds.get(message.partition, {})
                commands = driver.depart(record.table, record.key, record.subject, at, bounds)
            else:
                now = await asyncio.get_running_loop().run_in_executor(None, self.clock.now)
                bounds = self.take_tick(message.partition, record, wall_now())
                commands = driver.advance(now, bounds)
        except UnreadableRecord as exc:
            unreadable = Rejection(DecodeReason.BAD_RECORD, str(exc))
            await reject(message, unreadable, self.metrics, self.deadletters)
            return
        except Exception as exc:  # a bug must not stop the enforcer
            log.exception(
                "Enforcing %s[%s]@%s failed", message.topic, message.partition, message.offset
            )
            await reject(message, rejection_of_bug(exc), self.metrics, self.deadletters)
            return
        await self.issue(commands, message)

    async def issue(self, commands: Iterable[Command], message: Message) -> None:
        """Send each command's records and wait until the broker has them all."""
        sent: list[tuple[Command, list[tuple[OutboundRecord, Any]]]] = []
        for command in commands:
            try:
                row = self.store.row((command.subject, command.table, command.key))
                records = records_for(
                    self.engine.policy, command, row.values if row is not None else {}
                )
            except Exception as exc:
                log.exception("Building the records of command %s failed", command.command_id)
                bug = rejection_of_bug(exc, command.table)
                await self.refuse(command, bug.reason.value, bug.detail, message)
                continue
            if isinstance(records, Refusal):
                await self.refuse(command, records.reason.value, records.detail, message)
                continue
            sent.append((command, [(record, await self.send(record)) for record in records]))
        for command, deliveries in sent:
            for record, pending in deliveries:
                try:
                    await pending
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("Command %s not delivered; sending it again", command.command_id)
                    await self.deliver(self.topic(record.topic), record.key, record.value)
            self.metrics.commands_issued.labels(
                table=command.table, action=command.action.value
            ).inc()
            log.info(
                "issued %s %s command_id=%s",
                command.action.value,
                command.table,
                command.command_id,
            )

    async def send(self, record: OutboundRecord) -> Any:
        """Hand the record to the producer (retrying until it takes it); return its delivery."""
        return await send_retrying(self.topic(record.topic), record.key, record.value, record.topic)

    async def deliver(self, topic: ChannelT[bytes], key: bytes | None, value: bytes | None) -> None:
        """Send and wait until the broker has it, retrying with a capped backoff."""
        await deliver_retrying(topic, key, value, f"a record to {topic}")

    async def refuse(self, command: Command, reason: str, detail: str, message: Message) -> None:
        """Dead-letter a command that is not sent, with the command's JSON, and count it."""
        log.warning(
            "refused %s %s command_id=%s reason=%s: %s",
            command.action.value,
            command.table,
            command.command_id,
            reason,
            detail,
        )
        record = topics.dead_letter_record(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            reason=reason,
            detail=detail,
            key=command_key(command),
            value=orjson.dumps(command.to_json()),
            timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
        )
        await self.deliver(self.deadletters, command_key(command), record)
        self.metrics.commands_refused.labels(table=command.table, reason=reason).inc()

    def topic(self, name: str) -> TopicT:
        topic = self.outputs.get(name)
        if topic is None:
            topic = self.outputs[name] = topics.output_topic(self.app, name)
        return topic


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
    progress: ChangeProgress,
    change_partitions: int,
) -> AgentT[Any]:
    """Register the enforce agent on `app`, reading `subject_events` (`partitions` partitions),
    and the timer that ticks every partition each `tick_interval` seconds with the watermarks
    of `progress` (the assign agent's, over change topics of `change_partitions` each)."""
    tables = declare_state_tables(app, partitions)
    store = FaustStore(tables, lambda row, subject: next_due(engine, row, subject), app=app)
    enforcer = Enforcer(
        app,
        engine=engine,
        store=store,
        clock=clock,
        metrics=metrics,
        deadletters=deadletters,
        change_partitions=change_partitions,
    )
    subject_topic = subject_events.get_topic_name()

    def forget_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0] if args else kwargs.get("revoked", set())
        enforcer.forget(tp.partition for tp in revoked if tp.topic == subject_topic)

    app.on_partitions_revoked.connect(forget_revoked)

    async def enforce(stream: Any) -> None:
        await enforcer.declare_outputs()
        async for event in stream.events():
            await enforcer.handle(event.message)

    async def tick_every_partition() -> None:
        try:
            watermarks = progress.watermarks(partition_ends(app.consumer, progress.topics))
            await app.producer.flush()  # the events the watermarks cover are delivered first
            value = tick_value(watermarks)
            for partition in range(partitions):
                await subject_events.send(
                    key=None, value=value, partition=partition, headers=tick_headers()
                )
        except Exception:
            log.exception("Could not send the ticks; trying again in %.1fs", tick_interval)

    app.timer(tick_interval, name="lethe.tick")(tick_every_partition)
    return app.agent(subject_events, name=AGENT_NAME, concurrency=1)(enforce)


def _headers(headers: Any) -> dict[str, bytes]:
    if isinstance(headers, Mapping):
        headers = headers.items()
    return header_map(headers)
