"""Prometheus metrics of the worker, served at /metrics on its web server.

Each app gets its own registry (so tests can build several apps in one
process). Faust's own PrometheusMonitor (`faust.sensors.prometheus`) writes
into the same registry under the `lethe_faust_` prefix: messages received per
topic, committed and end offsets per partition (lag = end - committed),
rebalances, send latency. Labels carry tables, topics, operations and reasons
only, never row values (a topic name is a table name).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)

FAUST_METRICS_PREFIX = "lethe_faust"


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    registry: CollectorRegistry
    change_events: Counter
    """lethe_change_events_total{table,op}: change records seen, by kind."""
    dead_letters: Counter
    """lethe_dead_letters_total{topic,reason}: records sent to lethe.deadletter; reason is a
    `policy.envelope.DecodeReason` code."""
    unclassified_tables: Gauge
    commands_issued: Counter
    """lethe_commands_issued_total{table,action}: commands produced (with their sink record)."""
    commands_refused: Counter
    """lethe_commands_refused_total{table,reason}: commands not produced because applying them
    would be unsafe, dead-lettered; reason is a `policy.sink_records.RefusalReason` code."""
    commands_reissued: Counter
    """lethe_commands_reissued_total{table,action}: commands sent again (same id) because the
    change stream had not shown them applied within LETHE_CONFIRM_TIMEOUT (and its backoff)."""
    commands_confirmed: Counter
    """lethe_commands_confirmed_total{table,action}: commands the change stream showed applied
    (the row's delete, its anonymised values)."""
    """lethe_unclassified_tables{topic}: 1 for each change topic on the broker whose table the
    policy does not name (unclassified personal data, never read); sum it to count them."""
    input_watermark_lag: Gauge
    """lethe_input_watermark_lag_seconds{table}: how far behind the wall clock the table's
    change topic is processed, the worst over this worker's partitions of subject events
    (+Inf until every partition of the topic has reported on each)."""

    @classmethod
    def create(cls) -> WorkerMetrics:
        registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        return cls(
            registry=registry,
            change_events=Counter(
                "lethe_change_events",
                "Debezium change records processed, by table and operation "
                "(c, u, d, r = snapshot read, tombstone).",
                ["table", "op"],
                registry=registry,
            ),
            dead_letters=Counter(
                "lethe_dead_letters",
                "Input records that could not be used and went to lethe.deadletter, "
                "by source topic and reason.",
                ["topic", "reason"],
                registry=registry,
            ),
            unclassified_tables=Gauge(
                "lethe_unclassified_tables",
                "Change topics of tables the policy does not name (1 each, by topic): "
                "unclassified personal data the worker does not read. Add the table to the "
                "policy, then restart the worker.",
                ["topic"],
                registry=registry,
            ),
            commands_issued=Counter(
                "lethe_commands_issued",
                "Retention commands sent to lethe.commands (and to the table's sink topic for "
                "anonymise and delete), by table and action.",
                ["table", "action"],
                registry=registry,
            ),
            commands_refused=Counter(
                "lethe_commands_refused",
                "Retention commands not sent because applying them would be unsafe (see "
                "lethe.deadletter), by table and reason.",
                ["table", "reason"],
                registry=registry,
            ),
            commands_reissued=Counter(
                "lethe_commands_reissued",
                "Retention commands sent again, with the same command_id, because the change "
                "stream had not shown them applied in time (LETHE_CONFIRM_TIMEOUT), by table and "
                "action. Rising: the sink connector is not applying them.",
                ["table", "action"],
                registry=registry,
            ),
            commands_confirmed=Counter(
                "lethe_commands_confirmed",
                "Anonymise and delete commands the change stream showed applied (the row's "
                "delete, its anonymised values), by table and action.",
                ["table", "action"],
                registry=registry,
            ),
            input_watermark_lag=Gauge(
                "lethe_input_watermark_lag_seconds",
                "Wall seconds between now and the instant up to which the table's change "
                "topic is processed (its newest event, or its last fetch once caught up), the "
                "worst the ticks on this worker's partitions of subject events say (+Inf: a "
                "partition of the topic has not reported on one of them yet). A "
                "stage of a row is issued only once every table that can change its fate is "
                "processed past its due: a growing lag delays them; check the consumer lag of "
                "that topic and the worker that reads it.",
                ["table"],
                registry=registry,
            ),
        )


_LABELLED: dict[tuple[Any, tuple[str, ...]], Any] = {}


def labelled(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, looked up once per process (on the hot path, per event)."""
    key = (metric, values)
    child = _LABELLED.get(key)
    if child is None:
        child = _LABELLED[key] = metric.labels(*values)
    return child
