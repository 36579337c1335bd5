"""`lethe worker`: run the Faust worker that reads the change topics the policy names.

The composition root: it reads the settings and the policy (LETHE_POLICY), takes
the change topic of every source the policy names (`<LETHE_CDC_TOPIC_PREFIX>.
<schema>.<table>`; the policy's `topic_prefix` must be the same), creates those the
broker lacks, checks they all have the same partition count P (stops naming the topics
and counts if not), creates the worker's `<app id>-subject-events` with
LETHE_INTERNAL_PARTITIONS partitions, builds the app (`lethe.app.create_app`) subscribed
to exactly the change topics, installs the agents (`lethe.agents.install`: the assign
agent, and the enforce agent under the enforcement clock of the LETHE_CLOCK* settings unless
LETHE_ENFORCE=off), polls Kafka Connect's connector states in the background
(LETHE_CONNECT_POLL_INTERVAL, `lethe.connect_watch`) and runs it until interrupted. The
subscription never changes while it runs: to read a new table, add it to the
policy and restart; until then the worker counts its topic in
`lethe_unclassified_tables`. Metrics are served at
http://LETHE_WEB_HOST:LETHE_WEB_PORT/metrics and a liveness check at /health, nothing else
(docs/security.md); Kafka is reached as the LETHE_KAFKA_* settings say (SASL/SCRAM over
TLS too), and a refused login stops it at start. Stop it with Ctrl-C or SIGTERM.
Faust and the Kafka clients are imported by `run` only, so other subcommands
start without them.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from lethe.policy_file import load_policy
from lethe.settings import APP_ID, Settings

if TYPE_CHECKING:
    import faust

    from lethe.app import LetheApp
    from lethe.connect_watch import ConnectWatch
    from lethe.heartbeat import SourceHeartbeat
    from policy.model import Policy

log = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error")
RECORD_CONTENT_LOGS: Final = {
    "faust.topics": frozenset({"send: topic=%r k=%r v=%r timestamp=%r partition=%r"}),
    "faust.transport.drivers.aiokafka": frozenset(
        {"send: topic=%r k=%r v=%r timestamp=%r partition=%r"}
    ),
    "aiokafka.producer.producer": frozenset({"Sending (key=%s value=%s) to %s"}),
    "aiokafka.conn": frozenset({"Request to %s:%d %d: %s", "Response from %s:%d %d: %s"}),
}
"""The debug lines of Faust and aiokafka that print a record's key and value or a whole
request or response (the rows' values, a changelog's e-mail subjects), by logger: never
written, even at `-l debug` (`hide_record_contents`). tests/integration/test_personal_data.py
runs a worker at debug and fails if a library update adds another."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--app-id",
        default=APP_ID,
        help=f"Faust app id = Kafka consumer group and prefix of internal topics "
        f"(default: {APP_ID}); a new id starts from the beginning of the change topics",
    )
    parser.add_argument(
        "-l", "--loglevel", choices=LOG_LEVELS, default="info", help="log level (default: info)"
    )


def build_worker_app(
    settings: Settings,
    app_id: str,
    policy: Policy,
    change_topic_names: Sequence[str],
    change_partitions: int,
) -> LetheApp:
    """The worker's app with every agent installed; the change topics have
    `change_partitions` partitions each; it forwards to its subject events through its own
    producer (`lethe.forwarding`)."""
    from lethe import agents
    from lethe.agents.delivery import DeadLetterPipeline
    from lethe.app import create_app
    from lethe.clock import LiveClock
    from lethe.forwarding import kafka_forwarder
    from policy.engine import Engine

    app = create_app(settings, app_id=app_id, change_topic_names=change_topic_names)
    app.forwarder = kafka_forwarder(
        settings, app.subject_events.get_topic_name(), settings.internal_partitions
    )
    app.dead_letter_pipeline = DeadLetterPipeline()
    for topic in change_topic_names:
        for partition in range(change_partitions):
            app.metrics.unreadable_partitions.labels(topic=topic, partition=str(partition)).set(0)
    heartbeat = watch_source_heartbeat(settings, app) if settings.enforce else None
    watch_connectors(settings, app)
    agents.install(
        app,
        engine=Engine.compile(policy, confirm_after=settings.confirm_after),
        metrics=app.metrics,
        changes=app.change_topic,
        change_partitions=change_partitions,
        deadletters=app.deadletters,
        subject_events=app.subject_events,
        subject_partitions=settings.internal_partitions,
        clock=LiveClock(settings) if settings.enforce else None,
        tick_interval=settings.tick_interval,
        audit_hash_key=settings.audit_hash_key_bytes,
        census_interval=settings.census_interval,
        detailed_metrics=settings.metrics,
        forwarder=app.forwarder,
        dead_letter_pipeline=app.dead_letter_pipeline,
        heartbeat=heartbeat,
        local_handoff=settings.local_handoff,
    )
    return app


def watch_source_heartbeat(settings: Settings, app: LetheApp) -> SourceHeartbeat | None:
    """Start reading the source connector's heartbeats (`lethe.heartbeat`), their age on
    `lethe_source_heartbeat_age_seconds`; None when LETHE_SOURCE_HEARTBEAT_TOPIC is off."""
    from lethe.heartbeat import SourceHeartbeat
    from lethe.kafka_clients import client_config

    topic = settings.heartbeat_topic
    if topic is None:
        log.warning(
            "LETHE_SOURCE_HEARTBEAT_TOPIC=off: a stopped source connector goes unnoticed, and "
            "stages fall due over changes it has not published"
        )
        return None
    heartbeat = SourceHeartbeat(client_config(settings), topic, settings.source_heartbeat_lease)
    app.metrics.source_heartbeat_age.labels(topic).set_function(heartbeat.age_seconds)
    heartbeat.start()
    return heartbeat


def watch_connectors(settings: Settings, app: LetheApp) -> ConnectWatch | None:
    """Poll Kafka Connect's connector states from the worker's start (`lethe.connect_watch`,
    the `lethe_connector_` and `lethe_connect_` gauges); None when
    LETHE_CONNECT_POLL_INTERVAL is off."""
    from lethe.connect_watch import ConnectWatch

    interval = settings.connect_poll_interval
    if interval is None:
        log.warning(
            "LETHE_CONNECT_POLL_INTERVAL=off: a FAILED connector task (a sink applying no "
            "delete, a source publishing no change) is not watched by Lethe"
        )
        return None
    watch = ConnectWatch(settings.connect_url, interval, app.metrics, settings.watched_connectors)

    async def start_connect_watch() -> None:
        watch.start()

    app.task(start_connect_watch)
    return watch


def declare_changelog_topics(settings: Settings, app: LetheApp) -> None:
    """Create every table's changelog topic (compacted, the table's partition count) before
    the worker starts.

    Left to Faust, a new app id's changelog topics are created while its consumer already
    subscribes: the consumer's metadata may then hold one with 0 partitions, and every write
    to that table fails (`PartitionsMismatch`) until its metadata is refreshed, minutes later.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    from lethe.app import _admin, topic_partitions

    wanted = {
        table.changelog_topic_name: table.changelog_topic.partitions or table.partitions
        for table in app.tables.values()
    }
    existing = topic_partitions(settings, list(wanted))
    missing = {name: count for name, count in wanted.items() if name not in existing and count}
    if not missing:
        return
    admin = _admin(settings)
    futures = admin.create_topics(
        [
            NewTopic(name, num_partitions=count, config={"cleanup.policy": "compact"})
            for name, count in missing.items()
        ]
    )
    for future in futures.values():
        try:
            future.result(timeout=30)
        except KafkaException as exc:  # one made meanwhile by another worker of the app is fine
            if not (exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise


def prewarm(settings: Settings, app: LetheApp) -> None:
    """Fill the app's tables from their changelogs (LETHE_PREWARM, `lethe.prewarm`) and say
    so on stderr: Faust's logging is not set up yet."""
    from lethe.kafka_clients import client_config
    from lethe.prewarm import prewarm_app

    print("lethe worker: prewarming the tables from their changelogs", file=sys.stderr)
    filled = prewarm_app(app, client_config(settings))
    if filled is not None and filled.partitions == 0:
        print(
            "lethe worker: prewarm: every table file holds its whole changelog (looked up in "
            f"{filled.seconds:.1f}s)",
            file=sys.stderr,
        )
    elif filled is not None:
        print(
            f"lethe worker: prewarm applied {filled.records} changelog records to "
            f"{filled.partitions} table partitions ({filled.complete} read to their end) in "
            f"{filled.seconds:.1f}s (reader's peak RSS {filled.peak_mib:.0f} MiB)",
            file=sys.stderr,
        )


class RecordContentFilter(logging.Filter):
    """Drops the debug lines of `RECORD_CONTENT_LOGS`: logs never hold personal data."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in RECORD_CONTENT_LOGS.get(record.name, ())


def hide_record_contents() -> None:
    """Install `RecordContentFilter` on the loggers of `RECORD_CONTENT_LOGS`."""
    for name in RECORD_CONTENT_LOGS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RecordContentFilter) for f in logger.filters):
            logger.addFilter(RecordContentFilter())


def quiet_root_worker(settings: Settings | None = None) -> type[faust.Worker]:
    """Faust's worker, except that the root logger stays at the chosen level, and that its
    handlers write no secret of `settings` (`lethe.redaction`), whichever library logs it.

    At `-l warning` and above Faust sets the root logger to DEBUG for its terminal spinner,
    so every debug line of Faust and aiokafka (several per record) was built and then
    dropped by the handler: about a tenth of the worker's time (docs/benchmarks.md).
    """
    import faust

    from lethe.redaction import redact_secrets

    class Worker(faust.Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            if level:
                logger.setLevel(level)
            if settings is not None:
                redact_secrets(settings, logger)

    return Worker


def missing_codecs() -> list[str]:
    """The compression codecs aiokafka cannot decompress in this environment (snappy, lz4 and
    zstd need `cramjam`, which aiokafka's extras bring)."""
    from aiokafka import codec

    found = (("snappy", codec.has_snappy), ("lz4", codec.has_lz4), ("zstd", codec.has_zstd))
    return [name for name, has in found if not has()]


GC_THRESHOLDS: Final = (20_000, 20, 20)
"""Python's collector runs its youngest generation every 20,000 container allocations
instead of 700 (each change event allocates dozens: Faust's event, parsed JSON, the decoded
change), and the older ones a little less often."""


def tune_gc() -> None:
    """Move everything the start made (modules, Faust's app, the policy) out of the garbage
    collector's sight (`gc.freeze`) and collect less often (`GC_THRESHOLDS`): 5% less CPU
    per change event (docs/benchmarks.md (a), session 10). Cyclic garbage waits a little
    longer to be freed; the memory it holds stays small against the row states."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(args: argparse.Namespace) -> int:
    from lethe import __version__, topics
    from lethe.app import change_topic_partitions, declare_change_topics, declare_internal_topic
    from lethe.metrics import policy_hash

    settings = Settings.from_env()
    missing = missing_codecs()
    if missing:
        print(
            f"lethe worker: warning: this environment cannot decompress {', '.join(missing)}: "
            "a change topic compressed with one of them is set aside, unread "
            "(lethe_unreadable_partitions); install pip install 'aiokafka[lz4,snappy,zstd]'",
            file=sys.stderr,
        )
    policy = load_policy(settings.policy_path)
    names = topics.policy_change_topics(policy, settings.cdc_topic_prefix)
    created = declare_change_topics(settings, names)
    if created:
        print(
            f"lethe worker: created {len(created)} change topic(s) the policy names and the "
            f"broker lacked: {', '.join(created)}",
            file=sys.stderr,
        )
    partitions = change_topic_partitions(settings, names)
    subject_events = topics.subject_events_topic_name(args.app_id)
    if declare_internal_topic(
        settings,
        subject_events,
        settings.internal_partitions,
        config=topics.SUBJECT_EVENTS_TOPIC_CONFIG,
    ):
        print(
            f"lethe worker: created {subject_events} with {settings.internal_partitions} "
            "partitions",
            file=sys.stderr,
        )
    app = build_worker_app(settings, args.app_id, policy, names, partitions)
    running = policy_hash(settings.policy_path.read_bytes())
    app.metrics.build_info.labels(__version__, running).set(1)
    declare_changelog_topics(settings, app)
    app.conf.datadir.parent.mkdir(parents=True, exist_ok=True)  # faust creates one level only
    if settings.prewarm:
        prewarm(settings, app)
    hide_record_contents()
    tune_gc()
    worker = quiet_root_worker(settings)(app, loglevel=args.loglevel)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0
