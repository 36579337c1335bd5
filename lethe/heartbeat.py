"""The source connector's heartbeats: up to when its change topics can be trusted complete.

A change topic read to its end says nothing of changes the Debezium connector has not
published: while the connector, or all of Kafka Connect, is stopped, or while it is alive but
behind on the database's log, a legal hold written in the database is invisible, and a delete
falling due meanwhile would be issued over it (and applied by the sink). So the worker
watches the connector's heartbeat table: on every heartbeat (`heartbeat.interval.ms`) the
connector runs its `heartbeat.action.query`, an upsert of the one row of
`lethe_heartbeat.source_heartbeat` with now() (config/demo/source-heartbeat.sql). That commit
travels the log behind every earlier commit, through the same connector, so once its change
is read from `<prefix>.lethe_heartbeat.source_heartbeat`, every change committed before its
`source.ts_ms` (the commit time) has been published. A caught-up change topic counts as
processed only up to the newest such commit time, plus LETHE_SOURCE_HEARTBEAT_LEASE
(`lethe.agents.watermarks`). When the connector stops or falls behind, the stages that fall
due wait; `lethe_source_heartbeat_age_seconds` grows and the `LetheSourceSilent` alert fires
(docs/runbook.md).

Debezium's own heartbeat topic (`__debezium-heartbeat.<prefix>`, named in
LETHE_SOURCE_HEARTBEAT_TOPIC) is still understood, by the time each record was written; those
heartbeats are stamped when the connector sends them, not where it is in the log, so they
cannot show a connector that is alive but behind (logged once at WARNING).

Each worker reads the heartbeat topic itself, outside its consumer group (so every worker
sees every heartbeat), from the last record on, in a thread of its own.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import orjson
from confluent_kafka import OFFSET_END, Consumer, KafkaException, Message, TopicPartition

from policy.envelope import is_int, unwrap
from policy.events import Op
from policy.instants import Instant

log = logging.getLogger(__name__)

POLL_S = 0.2
RETRY_S = 5.0
SEND_TIME_PREFIX = "__debezium-heartbeat"
"""Debezium's default `topic.heartbeat.prefix`: a topic named so holds heartbeats stamped
with their send time, not changes of the heartbeat table."""
CHANGE_OPS = frozenset(op.value for op in Op)


def commit_time(value: bytes | None) -> Instant | None:
    """When the change in a Debezium change record `value` (JsonConverter, with or without its
    schema wrapper) was committed in the database: `source.ts_us`, else `source.ts_ms`, in µs
    since the epoch; None when `value` is not such a record (a tombstone, anything else)."""
    if not value:
        return None
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    record, _ = unwrap(record)
    if not isinstance(record, dict) or record.get("op") not in CHANGE_OPS:
        return None
    source = record.get("source")
    if not isinstance(source, dict):
        return None
    micros, millis = source.get("ts_us"), source.get("ts_ms")
    if is_int(micros) and micros > 0:
        return micros
    if is_int(millis) and millis > 0:
        return millis * 1000
    return None


class SourceHeartbeat:
    """The newest heartbeat of the source connector on `topic`, read by a daemon thread."""

    def __init__(self, client: dict[str, str], topic: str, lease_s: float = 0.0) -> None:
        """`client`: the Kafka client settings (`lethe.kafka_clients.client_config`). `topic`:
        the heartbeat table's change topic, or Debezium's own heartbeat topic
        (`__debezium-heartbeat.*`, send times only)."""
        self.topic = topic
        self.send_times = topic.startswith(SEND_TIME_PREFIX)
        self.lease_us = round(lease_s * 1_000_000)
        self._config: dict[str, Any] = {
            **client,
            "group.id": f"lethe-heartbeat-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "log_level": 0,
        }
        self._newest: Instant | None = None
        self._started_us = time.time_ns() // 1000
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lethe-heartbeat", daemon=True)
        if self.send_times:
            log.warning(
                "LETHE_SOURCE_HEARTBEAT_TOPIC=%s is Debezium's own heartbeat topic: its "
                "heartbeats say when they were sent, not how far the connector has read the "
                "database's log, so a connector alive but behind goes unnoticed and a delete "
                "can be issued over a legal hold it has not published yet. Give the connector "
                "heartbeat.action.query on the lethe_heartbeat.source_heartbeat table and "
                "leave the variable unset (README)",
                self.topic,
            )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def newest(self) -> Instant | None:
        """When the newest heartbeat seen was committed in the database (sent, on Debezium's
        own heartbeat topic), in µs since the epoch; None before any."""
        return self._newest

    def heard_until(self) -> Instant | None:
        """Up to when the source is taken as having published every change: its newest
        heartbeat plus the lease; None before any heartbeat."""
        newest = self._newest
        return None if newest is None else newest + self.lease_us

    def age_seconds(self) -> float:
        """Seconds since the newest heartbeat was committed (sent, see `newest`; since the
        worker started watching, when it has seen none): how far behind the connector is."""
        now = time.time_ns() // 1000
        newest = self._newest if self._newest is not None else self._started_us
        return max(0.0, (now - newest) / 1_000_000)

    def seen(self, written_us: Instant) -> None:
        """A heartbeat committed (sent) at `written_us` was read."""
        if self._newest is None or written_us > self._newest:
            self._newest = written_us

    def read(self, message: Message) -> None:
        """Take a record of the heartbeat topic; one that is not a heartbeat is left out."""
        if self.send_times:
            _, written_ms = message.timestamp()
            if written_ms > 0:
                self.seen(written_ms * 1000)
            return
        committed = commit_time(message.value())
        if committed is None:
            log.debug(
                "Record %s/%d@%d is no change of the heartbeat table; left out",
                self.topic,
                message.partition() or 0,
                message.offset() or 0,
            )
            return
        self.seen(committed)

    def _run(self) -> None:
        warned = False
        while not self._stop.is_set():
            consumer = Consumer(self._config)
            try:
                partitions = self._assign(consumer)
                if not partitions:
                    if not warned:
                        log.warning(
                            "No heartbeat topic %s: the source connector's changes are not "
                            "trusted complete, so no stage falls due past what was read. Give "
                            "the Debezium connector heartbeat.interval.ms and a "
                            "heartbeat.action.query on the lethe_heartbeat.source_heartbeat table "
                            "(README), or set LETHE_SOURCE_HEARTBEAT_TOPIC to that table's "
                            "change topic",
                            self.topic,
                        )
                        warned = True
                    self._stop.wait(RETRY_S)
                    continue
                self._follow(consumer)
            except KafkaException:
                log.debug("Reading %s failed; trying again", self.topic, exc_info=True)
                self._stop.wait(RETRY_S)
            finally:
                consumer.close()

    def _assign(self, consumer: Consumer) -> list[int]:
        metadata = consumer.list_topics(self.topic, timeout=RETRY_S)
        described = metadata.topics.get(self.topic)
        if described is None or described.error is not None or not described.partitions:
            return []
        starts = []
        for partition in sorted(described.partitions):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=RETRY_S
            )
            offset = high - 1 if high > low else OFFSET_END
            starts.append(TopicPartition(self.topic, partition, offset))
        consumer.assign(starts)
        return [start.partition for start in starts]

    def _follow(self, consumer: Consumer) -> None:
        while not self._stop.is_set():
            message = consumer.poll(POLL_S)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                continue
            self.read(message)
