"""Where the enforce agent's records go: `lethe.commands`, the sink topics, `lethe.audit`
and `lethe.deadletter`.

With the worker's confluent-kafka producer (`outbound`, `lethe.forwarding.KafkaForwarder`)
commands, sink records and audit are handed to it without waiting and delivered before the
consumer commits the input record's offset (a worker that stops first processes the record
again and sends the same records, same ids). Without it (unit tests over memory channels)
each goes through Faust and its delivery is awaited, sent again until the broker has it.
Dead letters (a refused command, a record the agent cannot use) are always awaited: they are
rare, and each carries the reason an operator needs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
import orjson
from faust.types import ChannelT, Message, TopicT

from lethe import topics
from lethe.agents.delivery import deliver_retrying, send_retrying
from lethe.forwarding import KafkaForwarder
from lethe.metrics import WorkerMetrics
from lethe.topics.batches import BatchItem
from policy import audit
from policy.audit_avro import audit_avro
from policy.command_records import COMMANDS_TOPIC, command_key
from policy.model import Action, Policy
from policy.sink_records import OutboundRecord, sink_topic
from policy.state import Command

log = logging.getLogger(__name__)


class Outputs:
    """The enforce agent's output topics, and how a record reaches them (see module)."""

    def __init__(
        self,
        app: faust.App,
        names: tuple[str, ...],
        *,
        metrics: WorkerMetrics,
        deadletters: ChannelT[bytes],
        outbound: KafkaForwarder | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.deadletters = deadletters
        self.outbound = outbound
        self.outputs: dict[str, TopicT] = {name: topics.output_topic(app, name) for name in names}
        self.audit = topics.audit_topic(app)

    async def declare(self) -> None:
        for topic in (*self.outputs.values(), self.audit):
            await topic.maybe_declare()

    async def send_audit(self, record: audit.AuditRecord) -> tuple[bytes, bytes, Any]:
        """Hand an audit record to the producer; return its key, value and delivery."""
        key, value = audit.audit_record_key(record), audit_avro(record)
        if self.outbound is not None:
            self.outbound.produce_now(topics.AUDIT_TOPIC, key, value)
            return key, value, None
        return key, value, await send_retrying(self.audit, key, value, topics.AUDIT_TOPIC)

    async def delivered(
        self, pending: Any, topic: ChannelT[bytes], key: bytes | None, value: bytes | None
    ) -> None:
        """Wait for a record's delivery; if it failed, send it again until the broker has it.
        A record handed to the outbound producer (`pending` None) is delivered before the
        consumer commits, or the worker stops and processes its input again."""
        if pending is None:
            return
        try:
            await pending
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("A record to %s was not delivered; sending it again", topic)
            await self.deliver(topic, key, value)

    async def deliver_audit(self, record: audit.AuditRecord) -> None:
        await self.deliver(self.audit, audit.audit_record_key(record), audit_avro(record))

    async def send(self, record: OutboundRecord) -> Any:
        """Hand the record to the producer (retrying until it takes it); return its delivery
        (None: handed to the outbound producer, delivered before the consumer commits)."""
        if self.outbound is not None:
            self.outbound.produce_now(record.topic, record.key, record.value)
            return None
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
        await self.deliver_audit(
            audit.dead_lettered(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                reason=reason,
                at=command.sent_at,
                table=command.table,
            )
        )

    def topic(self, name: str) -> TopicT:
        topic = self.outputs.get(name)
        if topic is None:
            topic = self.outputs[name] = topics.output_topic(self.app, name)
        return topic


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


def forward_letter(batch: Message, item: BatchItem) -> Message:
    """A forward of `batch` as a record of its own, for a dead letter: the batch's topic,
    partition, offset and time, the forward's key, headers and value."""
    return Message(
        batch.topic,
        batch.partition,
        batch.offset,
        batch.timestamp,
        batch.timestamp_type,
        list(item.headers.items()),
        item.key,
        item.value,
        None,
    )
