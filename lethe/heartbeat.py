"""The source connector's heartbeats: up to when its change topics can be trusted complete.

A change topic read to its end says nothing of changes the Debezium connector has not
published: while the connector, or all of Kafka Connect, is stopped, a legal hold written in
the database is invisible, and a delete falling due meanwhile would be issued over it (and
applied by the sink as soon as Connect is back). So the worker watches the connector's
heartbeats (`heartbeat.interval.ms` on the connector, written to
`__debezium-heartbeat.<topic prefix>`): a caught-up change topic counts as processed only up
to the newest heartbeat, plus LETHE_SOURCE_HEARTBEAT_LEASE (`lethe.agents.watermarks`).
When the heartbeats stop, the stages that fall due wait; `lethe_source_heartbeat_age_seconds`
grows and the `LetheSourceSilent` alert fires (docs/runbook.md).

Each worker reads the heartbeat topic itself, outside its consumer group (so every worker
sees every heartbeat), from the last record on, in a thread of its own.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from policy.instants import Instant

log = logging.getLogger(__name__)

POLL_S = 0.2
RETRY_S = 5.0


class SourceHeartbeat:
    """The newest heartbeat of the source connector on `topic`, read by a daemon thread."""

    def __init__(self, client: dict[str, str], topic: str, lease_s: float = 0.0) -> None:
        """`client`: the Kafka client settings (`lethe.kafka_clients.client_config`)."""
        self.topic = topic
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

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def newest(self) -> Instant | None:
        """When the newest heartbeat seen was written (µs since the epoch), or None."""
        return self._newest

    def heard_until(self) -> Instant | None:
        """Up to when the source is taken as having published every change: its newest
        heartbeat plus the lease; None before any heartbeat."""
        newest = self._newest
        return None if newest is None else newest + self.lease_us

    def age_seconds(self) -> float:
        """Seconds since the newest heartbeat was written (since the worker started watching,
        when it has seen none)."""
        now = time.time_ns() // 1000
        newest = self._newest if self._newest is not None else self._started_us
        return max(0.0, (now - newest) / 1_000_000)

    def seen(self, written_us: Instant) -> None:
        """A heartbeat written at `written_us` was read."""
        if self._newest is None or written_us > self._newest:
            self._newest = written_us

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
                            "trusted complete, so no stage falls due past what was read. Set "
                            "heartbeat.interval.ms on the Debezium connector (or "
                            "LETHE_SOURCE_HEARTBEAT_TOPIC to its heartbeat topic)",
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
            _, written_ms = message.timestamp()
            if written_ms > 0:
                self.seen(written_ms * 1000)
