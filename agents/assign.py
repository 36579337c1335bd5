"""Assign each change of the policy's tables to its subject, and forward it keyed by that subject.

Reads the change topics the policy names (all with the same partition count P, checked at
worker start). For each record:
- decode it with the policy (`policy.decoding.decode_raw`). A record the policy refuses goes
  to `lethe.deadletter` with its topic, partition, offset, reason code
  (`policy.envelope.DecodeReason`) and detail, is counted in
  `lethe_dead_letters_total{topic,reason}`, and processing goes on; so does a record whose
  decoding or routing raised (a bug: reason `internal_error`, logged with its traceback);
- count it in `lethe_change_events_total{table,op}` (op c, u, d, r or tombstone); a tombstone
  is otherwise ignored;
- drop it when it is a replay: a change the connector sent already (its source position at
  or below the partition's mark, `lethe.agents.replays`), counted in
  `lethe_change_events_replayed_total{table}`;
- find its subject and send it to `<app id>-subject-events` keyed by that subject (through
  the worker's forwarding producer, `lethe.forwarding`: its offset is committed once that
  producer delivered it) as a `change` record: the event as decoded here, with the change
  record's topic, partition and offset (`policy.event_wire`), so that the enforcer does not
  decode it again (an event holding a value that format cannot carry, none seen so far, goes
  as an `event` record: the Debezium value and the metadata in headers);
  plus a `depart` for the old key when the row moved, with the Debezium value (the enforcer
  there checks whether the move confirms a command: an anonymise that empties the subject's
  column moves the row) (`lethe.agents.routing.route`, which says when the `locations`
  table is written: first sight, a move, a delete).

After each record, its offset (and the time of the event it forwarded) goes to the worker's
`lethe.agents.watermarks.ChangeProgress`, which the ticks report to the enforcer.

`locations` (RocksDB, P partitions, changelog `<app id>-locations-changelog`) maps
`<table>:<key JSON>` to the row's subject, or `-` for a row without subject. One line per
event with table, op and key (the primary key only, never row values nor the subject, which
may be an email address) is logged at DEBUG only (`-l debug`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import faust
from faust.exceptions import PartitionsMismatch
from faust.types import AgentT, ChannelT, EventT, Message, TopicT
from mode import CrashingSupervisor

from lethe import topics
from lethe.agents.delivery import DeadLetterPipeline, deliver_dead_letter
from lethe.agents.handoff import LocalHandOff
from lethe.agents.replays import ReplayMarks
from lethe.agents.routing import (
    CHANGE_HEADERS,
    Kind,
    Outgoing,
    Routing,
    Unknown,
    located_by_event,
    route,
    row_id,
    wire_headers,
)
from lethe.agents.subject_records import DecodedChange, Depart, SubjectRecord
from lethe.agents.tables import await_changelogs, retry_on_partitions_mismatch
from lethe.agents.watermarks import ChangeProgress
from lethe.changelog import PartitionTable
from lethe.forwarder import ChannelForwarder, Forwarder
from lethe.metrics import WorkerMetrics, labelled
from policy.decoding import decode_raw
from policy.engine import Engine
from policy.envelope import Rejection, rejection_of_bug
from policy.event_wire import EventWireError, encode_event
from policy.events import TOMBSTONE, ChangeEvent, Key
from policy.instants import Instant

log = logging.getLogger(__name__)

AGENT_NAME: Final = "lethe.assign"
LOCATIONS_TABLE: Final = "locations"


def install(
    app: faust.App,
    changes: ChannelT[bytes],
    deadletters: ChannelT[bytes],
    subject_events: TopicT,
    *,
    engine: Engine,
    metrics: WorkerMetrics,
    partitions: int,
    progress: ChangeProgress | None = None,
    replay_marks: ReplayMarks | None = None,
    forwarder: Forwarder | None = None,
    dead_letter_pipeline: DeadLetterPipeline | None = None,
    handoff: LocalHandOff | None = None,
) -> AgentT[Any]:
    """Register the assign agent on `app`, reading `changes` (P = `partitions` each) and
    forwarding through `forwarder` (the worker's producer, `lethe.forwarding`; None: Faust
    sends to `subject_events`); each record processed is told to `progress`; `replay_marks`
    defaults to `ReplayMarks.install(app, partitions)`, storing a mark only once the forwards
    it covers are delivered. Dead letters go through `dead_letter_pipeline` (delivered in the
    background, the consumer commits once they are; None: each awaited in turn)."""
    forward = forwarder if forwarder is not None else ChannelForwarder(subject_events)
    marks = replay_marks or ReplayMarks.install(app, partitions, flush=forward.delivered)
    locations = app.Table(
        LOCATIONS_TABLE,
        partitions=partitions,
        key_type=bytes,  # raw bytes in the store and the changelog
        value_type=bytes,
        help="Row (<table>:<key JSON>) -> its subject, or - for none.",
    )

    located = PartitionTable(locations)

    async def assign(stream: Any) -> None:
        await subject_events.maybe_declare()
        await await_changelogs(app, [locations, marks.table], partitions)
        handling: dict[str, Any] = {
            "engine": engine,
            "locations": located,
            "metrics": metrics,
            "deadletters": deadletters,
            "subject_events": forward,
            "replay_marks": marks,
            "pipeline": dead_letter_pipeline,
            "handoff": handoff,
        }
        event: EventT[bytes]
        async for event in stream.events():
            message = event.message
            try:
                forwarded = await handle_change(message, **handling)
            except PartitionsMismatch:
                forwarded = await retry_on_partitions_mismatch(
                    partial(handle_change, message, **handling),
                    f"Assigning {message.topic}[{message.partition}]@{message.offset}",
                )
            if progress is not None:
                progress.processed(message.topic, message.partition, message.offset, forwarded)
            if marks.due(message.topic, message.partition, message.offset):
                await marks.store(message.topic, message.partition, message.offset)

    return app.agent(
        changes, name=AGENT_NAME, concurrency=1, supervisor_strategy=CrashingSupervisor
    )(assign)


async def handle_change(
    message: Message,
    *,
    engine: Engine,
    locations: PartitionTable,
    metrics: WorkerMetrics,
    deadletters: ChannelT[bytes],
    subject_events: Forwarder,
    replay_marks: ReplayMarks | None = None,
    pipeline: DeadLetterPipeline | None = None,
    handoff: LocalHandOff | None = None,
) -> Instant | None:
    """Process one change record; never raises for bad input. Returns the time of the event
    it forwarded to `subject_events` or handed off (None: neither)."""
    value = raw_bytes(message.value)
    try:
        outcome = decode_raw(engine.decoding, message.topic, raw_bytes(message.key), value)
    except Exception as exc:  # decode_raw never raises on bad input; a bug must not kill the agent
        log.exception("Decoding %s[%s]@%s failed", message.topic, message.partition, message.offset)
        outcome = rejection_of_bug(exc)
    if isinstance(outcome, Rejection):
        await reject(message, outcome, metrics, deadletters, pipeline)
        return None
    op = TOMBSTONE if not isinstance(outcome, ChangeEvent) else outcome.op.value
    labelled(metrics.change_events, outcome.table, op).inc()
    if log.isEnabledFor(logging.DEBUG):
        log.debug("change table=%s op=%s key=%s", outcome.table, op, _key_label(outcome.key))
    if not isinstance(outcome, ChangeEvent):
        return None
    source = (message.topic, message.partition)
    if replay_marks is not None and replay_marks.replayed(*source, outcome.position):
        metrics.change_events_replayed.labels(table=outcome.table).inc()
        log.debug("replayed table=%s op=%s key=%s", outcome.table, op, _key_label(outcome.key))
        return None
    row_text = row_id(outcome.table, outcome.key)
    try:
        located = located_by_event(engine, outcome)
        if isinstance(located, Unknown):
            stored = locations.get(message.partition, row_text.encode())
            located = None if stored is None else stored.decode()
        routing = route(engine, located, outcome, row_text)
    except PartitionsMismatch:
        raise
    except Exception as exc:
        log.exception("Routing %s[%s]@%s failed", message.topic, message.partition, message.offset)
        await reject(message, rejection_of_bug(exc, outcome.table), metrics, deadletters, pipeline)
        return None
    _write(locations, message.partition, routing)
    for record in routing.records:
        if handoff is not None and handoff.handler is not None:
            key = record.key.encode()
            target = handoff.target(key)
            if target is not None:
                await handoff.handler(target, message, _handed_off(record, outcome, message))
                continue
        if record.kind is Kind.EVENT:
            try:
                decoded = encode_event(outcome, (message.topic, message.partition, message.offset))
            except EventWireError:
                log.warning(
                    "%s[%s]@%s holds a value a change record cannot carry; forwarding its raw "
                    "value (the enforcer decodes it again)",
                    message.topic,
                    message.partition,
                    message.offset,
                )
            else:
                await subject_events.send(
                    key=record.key.encode(), value=decoded, headers=CHANGE_HEADERS
                )
                continue
        await subject_events.send(
            key=record.key.encode(),
            value=value,
            headers=wire_headers(record, outcome, message.topic, message.partition, message.offset),
        )
    if replay_marks is not None:
        replay_marks.forwarded(*source, outcome.position)
    return outcome.ts


def _handed_off(record: Outgoing, event: ChangeEvent, message: Message) -> SubjectRecord:
    """What the enforcer would read of the forward of `record` (`lethe.agents.handoff`)."""
    if record.kind is Kind.EVENT:
        return DecodedChange(event, message.topic, message.partition, message.offset)
    value = raw_bytes(message.value)
    if not value:
        return Depart(event.table, event.key, record.subject, event.ts)
    return Depart(
        event.table,
        event.key,
        record.subject,
        event.ts,
        value,
        message.topic,
        message.partition,
        message.offset,
    )


def _write(locations: PartitionTable, partition: int, routing: Routing) -> None:
    for key, subject in routing.writes:
        if subject is None:
            locations.delete(partition, key.encode())
        else:
            locations.put(partition, key.encode(), subject.encode())


async def reject(
    message: Message,
    rejected: Rejection,
    metrics: WorkerMetrics,
    deadletters: ChannelT[bytes],
    pipeline: DeadLetterPipeline | None = None,
) -> None:
    """Dead-letter the record and count it once the broker has it: through `pipeline` in the
    background (its record is committed only once delivered), else awaited here."""
    counted = metrics.dead_letters.labels(topic=message.topic, reason=rejected.reason.value)
    delivery = send_dead_letter(message, rejected, deadletters, counted.inc)
    if pipeline is None:
        await delivery
    else:
        await pipeline.submit(delivery, len(raw_bytes(message.value) or b""))


async def send_dead_letter(
    message: Message,
    rejected: Rejection,
    deadletters: ChannelT[bytes],
    delivered: Callable[[], None] | None = None,
) -> None:
    """Send the dead letter and wait until the broker has it; then call `delivered`.

    The source record is acknowledged only after this returns (or, through a
    `DeadLetterPipeline`, committed only after it returns), so a broker outage delays
    processing instead of losing data. A dead letter the broker will not take with its raw
    record (too large, or failing past a few tries) goes without it
    (`lethe.agents.delivery.deliver_dead_letter`).
    """
    log.warning(
        "dead letter topic=%s partition=%s offset=%s reason=%s: %s",
        message.topic,
        message.partition,
        message.offset,
        rejected.reason.value,
        rejected.detail,
    )
    key = raw_bytes(message.key)
    value = raw_bytes(message.value)

    def record(raw_dropped: str | None = None) -> bytes:
        return topics.dead_letter_record(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            reason=rejected.reason.value,
            detail=rejected.detail,
            key=key,
            value=value,
            timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
            raw_dropped=raw_dropped,
        )

    what = f"the dead letter for {message.topic}[{message.partition}]@{message.offset}"
    await deliver_dead_letter(deadletters, key, record(), record, what)
    if delivered is not None:
        delivered()


def _key_label(key: Key) -> str:
    return ",".join(f"{column}={value}" for column, value in key)


def raw_bytes(data: object) -> bytes | None:
    """A record's key or value as bytes, whatever Faust handed over."""
    if data is None or isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    return repr(data).encode()
