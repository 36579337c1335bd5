"""Count the change events of the demo database, dead-letter what is unusable.

For each change record (the change topics the policy names): check its structure
with the engine's own envelope parser (`policy.envelope.parse_raw`) and count it in
`lethe_change_events_total{table,op}` (table `<schema>.<table>`, op c, u, d, r or
tombstone). One line per event with table, op and key (the primary key only, never
row values) is logged at DEBUG only (`-l debug`): at INFO it cost about 30% of the
throughput. A record the engine would refuse for its structure goes to
`lethe.deadletter` with its topic, partition, offset, reason code
(`policy.envelope.DecodeReason`) and detail, is counted in
`lethe_dead_letters_total{topic,reason}`, and processing goes on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from faust.types import AgentT, ChannelT, EventT, Message

from lethe import topics
from lethe.metrics import WorkerMetrics
from policy.envelope import DecodeReason, Record, Rejection, parse_raw

log = logging.getLogger(__name__)

AGENT_NAME = "lethe.change_counter"
DEADLETTER_RETRY_MAX_S = 30.0


def install(
    app: faust.App,
    changes: ChannelT[bytes],
    deadletters: ChannelT[bytes],
    *,
    metrics: WorkerMetrics,
) -> AgentT[Any]:
    """Register the change counter on `app`, reading `changes`, dead-lettering to `deadletters`."""

    async def count_changes(stream: Any) -> None:
        event: EventT[bytes]
        async for event in stream.events():
            await handle_change(event.message, metrics, deadletters)

    return app.agent(changes, name=AGENT_NAME, concurrency=1)(count_changes)


async def handle_change(
    message: Message, metrics: WorkerMetrics, deadletters: ChannelT[bytes]
) -> None:
    """Process one record; never raises for bad input."""
    try:
        outcome = parse_raw(message.topic, message.key, message.value)
    except Exception as exc:  # parse_raw never raises on bad input; a bug must not kill the agent
        log.exception("Decoding %s[%s]@%s failed", message.topic, message.partition, message.offset)
        outcome = Rejection(DecodeReason.INTERNAL_ERROR, f"decoder raised {type(exc).__name__}")
    if isinstance(outcome, Record):
        op = outcome.op_label
        metrics.change_events.labels(table=outcome.table, op=op).inc()
        log.debug("change table=%s op=%s key=%s", outcome.table, op, outcome.key_label)
        return
    await send_dead_letter(message, outcome, deadletters)
    metrics.dead_letters.labels(topic=message.topic, reason=outcome.reason.value).inc()


async def send_dead_letter(
    message: Message, rejected: Rejection, deadletters: ChannelT[bytes]
) -> None:
    """Send the dead letter and wait until the broker has it.

    Retries until it succeeds: the source record is acknowledged only after
    this returns, so a broker outage delays processing instead of losing data.
    """
    log.warning(
        "dead letter topic=%s partition=%s offset=%s reason=%s: %s",
        message.topic,
        message.partition,
        message.offset,
        rejected.reason.value,
        rejected.detail,
    )
    record = topics.dead_letter_record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        reason=rejected.reason.value,
        detail=rejected.detail,
        key=_raw(message.key),
        value=_raw(message.value),
        timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
    )
    key = _raw(message.key)
    delay = 0.5
    while True:
        try:
            delivery = await deadletters.send(key=key, value=record)
            await delivery
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "Could not send the dead letter for %s[%s]@%s; retrying in %.1fs",
                message.topic,
                message.partition,
                message.offset,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, DEADLETTER_RETRY_MAX_S)


def _raw(data: object) -> bytes | None:
    if data is None or isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    return repr(data).encode()
