"""Prometheus metrics of the worker, served at /metrics on its web server.

Each app gets its own registry (so tests can build several apps in one
process). Faust's own PrometheusMonitor (`faust.sensors.prometheus`) writes
into the same registry under the `lethe_faust_` prefix: messages received per
topic, committed and end offsets per partition (lag = end - committed),
rebalances, send latency. Labels carry tables, topics, operations and reasons
only, never row values (a topic name is a table name).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from policy.census import FORECAST_DAYS, Census
from policy.instants import Instant

FAUST_METRICS_PREFIX = "lethe_faust"

DELAY_BUCKETS_S = (
    1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0,
    float("inf"),
)  # fmt: skip
"""Due-to-issued and issued-to-confirmed delays: a second to a month (enforcement clock)."""
SWEEP_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, float("inf"))


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    registry: CollectorRegistry
    change_events: Counter
    """lethe_change_events_total{table,op}: change records seen, by kind."""
    change_events_replayed: Counter
    """lethe_change_events_replayed_total{table}: change records a connector sent again
    (at or below the partition's mark, `lethe.agents.replays`), dropped."""
    dead_letters: Counter
    """lethe_dead_letters_total{topic,reason}: records sent to lethe.deadletter; reason is a
    `policy.envelope.DecodeReason` code."""
    unclassified_tables: Gauge
    """lethe_unclassified_tables{topic}: 1 for each change topic on the broker whose table the
    policy does not name (unclassified personal data, never read); sum it to count them."""
    unreadable_partitions: Gauge
    """lethe_unreadable_partitions{topic,partition}: 1 for each change-topic partition the
    worker stopped reading because it cannot decompress its records (`lethe.consumer`), 0 for
    the others (set at start, so that the alert's expression always has data)."""
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
    input_watermark_lag: Gauge
    """lethe_input_watermark_lag_seconds{table}: how far behind the wall clock the table's
    change topic is processed, the worst over this worker's partitions of subject events
    (+Inf until every partition of the topic has reported on each)."""
    build_info: Gauge
    """lethe_build_info{version,policy_hash}: 1; which Lethe and which policy file run."""
    rows_tracked: Gauge
    """lethe_rows_tracked{table,purpose} (census): rows the worker keeps state for."""
    backlog: Gauge
    """lethe_backlog_rows{table,action} (census): rows with a stage due and not issued."""
    overdue_oldest_age: Gauge
    """lethe_overdue_oldest_age_seconds{table} (census): how long the oldest of them is due."""
    forecast: Gauge
    """lethe_forecast_rows{table,action,days} (census): rows with a stage due within 1, 7,
    30 days."""
    unconfirmed: Gauge
    """lethe_unconfirmed_commands{table,action} (census): commands sent, not seen applied."""
    unconfirmed_oldest_age: Gauge
    """lethe_unconfirmed_oldest_age_seconds{table} (census): since when the oldest is sent."""
    legal_holds: Gauge
    """lethe_legal_holds{table} (census): open legal holds, by the table of the hold rows."""
    local_handoff: Gauge
    """lethe_local_handoff_partitions: partitions of subject events whose changes this worker
    hands from its assign to its enforce stage in process (`lethe.agents.handoff`)."""
    census_duration: Gauge
    """lethe_census_duration_seconds: how long the last census of a partition scanned, over
    all its slices."""
    due_to_issued: Histogram
    """lethe_due_to_issued_seconds{table,action}: from a stage's due to its first send."""
    issued_to_confirmed: Histogram
    """lethe_issued_to_confirmed_seconds{table,action}: from first send to confirmation."""
    sweep_duration: Histogram
    """lethe_sweep_duration_seconds: a tick's sweep of a partition (advance and send)."""
    source_heartbeat_age: Gauge
    """lethe_source_heartbeat_age_seconds{topic}: seconds since the commit of the source
    connector's newest heartbeat read (`lethe.heartbeat`)."""
    consumer_lag_messages: Gauge
    """lethe_consumer_lag_messages{topic,partition}: end offset minus committed position."""
    consumer_lag_seconds: Gauge
    """lethe_consumer_lag_seconds{topic,partition}: now minus the newest processed event's
    time (0 once caught up)."""
    connector_tasks: Gauge
    """lethe_connector_tasks{connector,state}: Kafka Connect's tasks of the connector in each
    state (`lethe.connect_watch`)."""
    connector_state: Gauge
    """lethe_connector_state{connector,state}: 1 for the connector's own state, 0 for the
    others."""
    connect_up: Gauge
    """lethe_connect_up: 1 when Kafka Connect answered the last poll, 0 when not. In the
    registry only while the poll is on (`lethe.connect_watch.ConnectWatch` puts it there):
    with LETHE_CONNECT_POLL_INTERVAL=off no 0 says Connect is down."""
    connect_poll_age: Gauge
    """lethe_connect_poll_age_seconds: seconds since Kafka Connect last answered a poll (in
    the registry only while the poll is on, as `connect_up`)."""

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
            change_events_replayed=Counter(
                "lethe_change_events_replayed",
                "Debezium change records dropped as replays (sent again by a connector that "
                "restarted before it stored its position), by table; also counted in "
                "lethe_change_events_total.",
                ["table"],
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
            unreadable_partitions=Gauge(
                "lethe_unreadable_partitions",
                "Change-topic partitions the worker stopped reading (1; 0 for the others) "
                "because it cannot decompress their records (codec library missing; the log "
                "names the codec): their records wait, unprocessed. Install the codec "
                "libraries, then restart the worker.",
                ["topic", "partition"],
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
            build_info=Gauge(
                "lethe_build_info",
                "Always 1: the Lethe version and the policy (the first 12 hex digits of the "
                "SHA-256 of the policy file) this worker runs.",
                ["version", "policy_hash"],
                registry=registry,
            ),
            rows_tracked=Gauge(
                "lethe_rows_tracked",
                "Rows the worker keeps retention state for, by table and purpose (a row counts "
                "under each purpose its table's rules name); from the periodic census.",
                ["table", "purpose"],
                registry=registry,
            ),
            backlog=Gauge(
                "lethe_backlog_rows",
                "Rows with a stage due (on the enforcement clock) and not issued yet, by table "
                "and action; rows of held subjects are not counted. From the periodic census. "
                "Not 0 for long: an input lags (lethe_input_watermark_lag_seconds) or the "
                "enforcer is stuck.",
                ["table", "action"],
                registry=registry,
            ),
            overdue_oldest_age=Gauge(
                "lethe_overdue_oldest_age_seconds",
                "Seconds (enforcement clock) since the oldest stage due and not issued fell "
                "due, by table; 0 when nothing is due. From the periodic census.",
                ["table"],
                registry=registry,
            ),
            forecast=Gauge(
                "lethe_forecast_rows",
                "Rows with a stage falling due within the next `days` days (1, 7, 30; "
                "cumulative), by table and action; from the periodic census.",
                ["table", "action", "days"],
                registry=registry,
            ),
            unconfirmed=Gauge(
                "lethe_unconfirmed_commands",
                "Anonymise and delete commands sent and not yet seen applied in the change "
                "stream, by table and action; from the periodic census.",
                ["table", "action"],
                registry=registry,
            ),
            unconfirmed_oldest_age=Gauge(
                "lethe_unconfirmed_oldest_age_seconds",
                "Seconds (enforcement clock) since the oldest unconfirmed command was first "
                "sent, by table; 0 when none. From the periodic census.",
                ["table"],
                registry=registry,
            ),
            legal_holds=Gauge(
                "lethe_legal_holds",
                "Open legal holds, by the table of the hold rows; from the periodic census.",
                ["table"],
                registry=registry,
            ),
            local_handoff=Gauge(
                "lethe_local_handoff_partitions",
                "Partitions of subject events whose changes this worker hands from its assign "
                "to its enforce stage in process (it holds every partition; 0: through the "
                "topic, LETHE_LOCAL_HANDOFF=off or a group of several workers).",
                registry=registry,
            ),
            census_duration=Gauge(
                "lethe_census_duration_seconds",
                "Seconds the last census of one partition's state spent scanning its rows "
                "and subjects, over all its slices (one census every LETHE_CENSUS_INTERVAL "
                "seconds, at most 5% of the tick interval of it at each tick of the partition).",
                registry=registry,
            ),
            due_to_issued=Histogram(
                "lethe_due_to_issued_seconds",
                "Seconds (enforcement clock) from a stage's due to its command's first send, by "
                "table and action.",
                ["table", "action"],
                buckets=DELAY_BUCKETS_S,
                registry=registry,
            ),
            issued_to_confirmed=Histogram(
                "lethe_issued_to_confirmed_seconds",
                "Seconds (enforcement clock) from a command's first send to the change that "
                "showed it applied, by table and action.",
                ["table", "action"],
                buckets=DELAY_BUCKETS_S,
                registry=registry,
            ),
            sweep_duration=Histogram(
                "lethe_sweep_duration_seconds",
                "Wall seconds a tick's sweep of one partition took: advancing its driver and "
                "sending what fell due.",
                buckets=SWEEP_BUCKETS_S,
                registry=registry,
            ),
            source_heartbeat_age=Gauge(
                "lethe_source_heartbeat_age_seconds",
                "Seconds since the newest heartbeat of the Debezium source connector read on "
                "the heartbeat topic was committed in the database (since the worker started, "
                "when it has read none): how far behind the connector is. A caught-up change "
                "topic counts as processed only up to that commit, so while it grows nothing new "
                "falls due: check that the connector and its task are RUNNING, how far its "
                "replication slot is behind, and that it has heartbeat.interval.ms and its "
                "heartbeat.action.query (docs/runbook.md).",
                ["topic"],
                registry=registry,
            ),
            consumer_lag_messages=Gauge(
                "lethe_consumer_lag_messages",
                "Records of the topic partition not processed yet: its end offset (last fetch) "
                "minus the committed position, for the change topics and the subject events "
                "topic this worker is assigned.",
                ["topic", "partition"],
                registry=registry,
            ),
            consumer_lag_seconds=Gauge(
                "lethe_consumer_lag_seconds",
                "Wall seconds between now and the time of the newest event processed from the "
                "topic partition (0 once it is caught up), for the partitions this worker is "
                "assigned.",
                ["topic", "partition"],
                registry=registry,
            ),
            connector_tasks=Gauge(
                "lethe_connector_tasks",
                "Tasks of the Kafka Connect connector in each state (RUNNING, FAILED, PAUSED, "
                "UNASSIGNED, RESTARTING, STOPPED; 0 when none), as Connect answered the last "
                "poll (LETHE_CONNECT_URL, every LETHE_CONNECT_POLL_INTERVAL seconds). A FAILED "
                "task stays so until restarted: a sink's then applies no command, a source's "
                "publishes no change (docs/runbook.md#letheconnectortaskfailed).",
                ["connector", "state"],
                registry=registry,
            ),
            connector_state=Gauge(
                "lethe_connector_state",
                "1 for the Kafka Connect connector's own state (RUNNING, FAILED, PAUSED, "
                "UNASSIGNED, RESTARTING, STOPPED, or MISSING for one LETHE_CONNECT_CONNECTORS "
                "names that Connect does not have), 0 for the others, as of the last poll.",
                ["connector", "state"],
                registry=registry,
            ),
            connect_up=Gauge(
                "lethe_connect_up",
                "1 when Kafka Connect's REST API (LETHE_CONNECT_URL) answered the worker's last "
                "poll of its connectors' states, 0 when it did not (the lethe_connector_ "
                "gauges then keep the states of the last answer).",
                registry=None,
            ),
            connect_poll_age=Gauge(
                "lethe_connect_poll_age_seconds",
                "Seconds since Kafka Connect's REST API last answered the worker's poll (since "
                "the worker started, when it has not yet): how old the lethe_connector_ gauges "
                "are (docs/runbook.md#letheconnectunreachable).",
                registry=None,
            ),
        )


class Children:
    """A labelled metric's children by label values, looked up once each (a dict hit after)."""

    __slots__ = ("children", "metric")

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*values)
        return child


ACTIONS: Final = ("anonymise", "archive", "delete")


class CensusBoard:
    """The census gauges of the partitions this worker enforces: each partition's latest
    census (`report`), summed over partitions (ages: the worst). Every (table, action) and
    (table, purpose) of the policy is shown from the start, at 0 when nothing counts."""

    def __init__(self, metrics: WorkerMetrics, purposes: Mapping[str, tuple[str, ...]]) -> None:
        self.metrics = metrics
        self.purposes = dict(purposes)
        """table -> the purposes its rules name."""
        self.partitions: dict[int, tuple[Census, Instant]] = {}
        self.hold_tables: set[str] = set()
        self.publish()

    def report(self, partition: int, census: Census, now: Instant) -> None:
        """The partition's census as of `now` (enforcement clock, µs); the gauges follow."""
        self.partitions[partition] = (census, now)
        self.publish()

    def forget(self, partitions: Iterable[int]) -> None:
        """The partitions were revoked: their counts leave the gauges."""
        for partition in partitions:
            self.partitions.pop(partition, None)
        self.publish()

    def publish(self) -> None:
        total = Census()
        overdue_age: dict[str, float] = {}
        unconfirmed_age: dict[str, float] = {}
        for census, now in self.partitions.values():
            total = total.merge(census)
            _worst_age(overdue_age, census.oldest_overdue, now)
            _worst_age(unconfirmed_age, census.oldest_unconfirmed, now)
        m = self.metrics
        for table, purposes in self.purposes.items():
            for purpose in purposes:
                m.rows_tracked.labels(table, purpose).set(total.tracked.get((table, purpose), 0))
            for action in ACTIONS:
                m.backlog.labels(table, action).set(total.backlog.get((table, action), 0))
                m.unconfirmed.labels(table, action).set(total.unconfirmed.get((table, action), 0))
                for days in FORECAST_DAYS:
                    count = total.forecast.get((table, action, days), 0)
                    m.forecast.labels(table, action, str(days)).set(count)
            m.overdue_oldest_age.labels(table).set(overdue_age.get(table, 0.0))
            m.unconfirmed_oldest_age.labels(table).set(unconfirmed_age.get(table, 0.0))
        self.hold_tables |= total.holds.keys()
        for table in self.hold_tables:
            m.legal_holds.labels(table).set(total.holds.get(table, 0))


def _worst_age(ages: dict[str, float], oldest: Mapping[str, Instant], now: Instant) -> None:
    for table, instant in oldest.items():
        age = max(0.0, (now - instant) / 1e6)
        if age > ages.get(table, 0.0):
            ages[table] = age


def policy_hash(data: bytes) -> str:
    """The first 12 hex digits of the SHA-256 of the policy file's bytes."""
    return hashlib.sha256(data).hexdigest()[:12]


_LABELLED: dict[tuple[Any, tuple[str, ...]], Any] = {}


def labelled(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, looked up once per process (on the hot path, per event)."""
    key = (metric, values)
    child = _LABELLED.get(key)
    if child is None:
        child = _LABELLED[key] = metric.labels(*values)
    return child


def metrics_text(registry: CollectorRegistry, names: Collection[str] = ()) -> bytes:
    """The registry in Prometheus's text format; with `names` (sample names, such as
    `lethe_change_events_total`), only the metrics that have them."""
    if names:
        return generate_latest(registry.restricted_registry(names))
    return generate_latest(registry)
