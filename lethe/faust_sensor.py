"""Faust's sensors: its Prometheus sensor with its labelled children looked up once, and,
when that is off, its in-memory monitor reduced to what Faust itself reads.

Faust's `PrometheusMonitor` calls prometheus_client's `labels()` on every message received,
stream event, table access and send (about 7 calls per change event in the worker), and
builds the stream's label with a regular expression on every event. `CachedPrometheusMonitor`
keeps the same metrics, names and labels (`lethe_faust_*`: messages received per topic and
partition, table operations, sends, commit latency; what issue 8's consumer lag needs) and
keeps each labelled child in a dict after its first use.
"""

from __future__ import annotations

import typing
from time import monotonic
from typing import Any

from faust.sensors.monitor import Monitor
from faust.sensors.prometheus import PrometheusMonitor, setup_prometheus_sensors
from faust.types import TP, AppT, CollectionT, EventT, Message, StreamT
from faust.types.transports import ProducerT
from faust.types.tuples import PendingMessage
from prometheus_client import CollectorRegistry


class CachedPrometheusMonitor(PrometheusMonitor):
    """Faust's Prometheus sensor; each labelled child is looked up once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._labelled: dict[tuple[Any, ...], Any] = {}

    def _child(self, key: tuple[Any, ...], make: typing.Callable[[], Any]) -> Any:
        child = self._labelled.get(key)
        if child is None:
            child = self._labelled[key] = make()
        return child

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        Monitor.on_message_in(self, tp, offset, message)
        metrics = self._metrics
        metrics.messages_received.inc()
        metrics.active_messages.inc()
        self._child(
            ("in", tp.topic),
            lambda: metrics.messages_received_per_topics.labels(topic=tp.topic),
        ).inc()
        self._child(
            ("in", tp),
            lambda: metrics.messages_received_per_topics_partition.labels(
                topic=tp.topic, partition=tp.partition
            ),
        ).set(offset)

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any]
    ) -> dict[Any, Any] | None:
        state = Monitor.on_stream_event_in(self, tp, offset, stream, event)
        metrics = self._metrics
        metrics.total_events.inc()
        metrics.total_active_events.inc()
        self._child(
            ("stream", stream),
            lambda: metrics.total_events_per_stream.labels(
                stream=f"stream.{self._stream_label(stream)}.events"
            ),
        ).inc()
        return state

    def _table_op(self, table: CollectionT, operation: str) -> None:
        self._child(
            ("table", table.name, operation),
            lambda: self._metrics.table_operations.labels(
                table=f"table.{table.name}", operation=operation
            ),
        ).inc()

    def on_table_get(self, table: CollectionT, key: Any) -> None:
        Monitor.on_table_get(self, table, key)
        self._table_op(table, self.KEYS_RETRIEVED)

    def on_table_set(self, table: CollectionT, key: Any, value: Any) -> None:
        Monitor.on_table_set(self, table, key, value)
        self._table_op(table, self.KEYS_UPDATED)

    def on_table_del(self, table: CollectionT, key: Any) -> None:
        Monitor.on_table_del(self, table, key)
        self._table_op(table, self.KEYS_DELETED)

    def on_send_initiated(
        self,
        producer: ProducerT,
        topic: str,
        message: PendingMessage,
        keysize: int,
        valsize: int,
    ) -> Any:
        self._child(
            ("send", topic),
            lambda: self._metrics.topic_messages_sent.labels(topic=f"topic.{topic}"),
        ).inc()
        return Monitor.on_send_initiated(self, producer, topic, message, keysize, valsize)

    def track_tp_end_offset(self, tp: TP, offset: int) -> None:
        Monitor.track_tp_end_offset(self, tp, offset)
        self._child(
            ("end", tp),
            lambda: self._metrics.topic_partition_end_offset.labels(
                topic=tp.topic, partition=tp.partition
            ),
        ).set(offset)


def install_faust_sensor(app: AppT, registry: CollectorRegistry, name_prefix: str) -> None:
    """Faust's Prometheus metrics (and its /metrics page) in `registry`, prefixed
    `name_prefix`, through `CachedPrometheusMonitor`."""
    setup_prometheus_sensors(app, registry=registry, name_prefix=name_prefix)
    plain = typing.cast(PrometheusMonitor, app.monitor)
    app.monitor = CachedPrometheusMonitor(metrics=plain._metrics)


class StreamTimeMonitor(Monitor):
    """Faust's in-memory monitor (the sensor when LETHE_FAUST_METRICS is off) with one piece
    of its per-record bookkeeping left: when each partition's stream last took an event,
    which Faust's consumer reads to warn of a stalled stream. The counters and timings it
    kept per message, event and table access are read by Faust's web statistics alone, which
    the worker does not serve; they cost about 5 µs a change event (docs/benchmarks.md (a),
    session 10). Commit and end-offset bookkeeping stay Faust's."""

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        return None

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any]
    ) -> dict[str, Any] | None:
        self.stream_inbound_time[tp] = monotonic()
        return None

    def on_stream_event_out(
        self,
        tp: TP,
        offset: int,
        stream: StreamT[Any],
        event: EventT[Any],
        state: dict[str, Any] | None = None,
    ) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        return None

    def on_table_get(self, table: CollectionT, key: Any) -> None:
        return None

    def on_table_set(self, table: CollectionT, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: CollectionT, key: Any) -> None:
        return None
