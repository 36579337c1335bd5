"""The Faust app of the Lethe worker, built by `create_app(settings)`.

What the app is made of:
- id `lethe` (the Kafka consumer group and the prefix of Faust's own topics);
- tables in RocksDB under `<LETHE_DATA_DIR>/<id>`, with capped caches and
  write buffers (`rocksdb_options`: `ROCKSDB_OPTIONS` and LETHE_ROCKSDB_WRITE_BUFFER_BYTES;
  Faust's default is a 2 GiB block cache and 3 x 64 MiB memtables per table partition);
- a consumer tuned by LETHE_CONSUMER_MAX_FETCH_BYTES, LETHE_MAX_POLL_RECORDS and
  LETHE_STREAM_BUFFER_MAXSIZE (`lethe.settings`; their effect: docs/benchmarks.md);
- a web server on LETHE_WEB_HOST:LETHE_WEB_PORT (127.0.0.1 unless set) serving `/metrics`
  and `/health` only: every view Faust serves of its own (`/`, `/table` with the tables'
  contents, `/router`, `/stats`, `/graph`, ...) is off (`MetricsOnlyWeb`);
- a subscription fixed at start: the change topics the policy names
  (`lethe.topics.policy_change_topics`), created beforehand if missing
  (`declare_change_topics`), never changed while it runs (a subscription change
  can lose the first record of a new partition in Faust 0.15; a new table is a
  policy change and a restart);
- every change topic the policy names has the same partition count P
  (`change_topic_partitions`, checked before the app is built): the assign agent keeps
  its `locations` table co-partitioned with them;
- its own topic between stages, `<app id>-subject-events`, with LETHE_INTERNAL_PARTITIONS
  partitions (`declare_internal_topic` before the app starts; the assign agent declares
  it again before it sends);
- a check at start and every `UNCLASSIFIED_CHECK_S` for change topics of tables
  the policy does not name: counted in `lethe_unclassified_tables`, logged once
  each, never read;
- Kafka through `lethe.consumer.Transport`: Faust's, except that after every
  rebalance a change-topic partition without a committed offset is read from its
  beginning, and that no change record reaches a stream until a rebalance is over
  (Faust 0.15 could otherwise lose records at a rebalance);
- a consumer group session of LETHE_SESSION_TIMEOUT seconds (how long a dead worker's
  partitions wait before another worker of the app id takes them);
- Faust's at-least-once processing guarantee, set explicitly: a record's offset is committed
  only once what it caused is delivered, a record may be processed twice after a crash, and
  what it sends again is the same (commands keep their `command_id`; the sink's deletes and
  anonymisations change nothing the second time). Faust's `exactly_once` is not used: its
  transactions commit offsets without waiting for the assign agent's own producer
  (`lethe.forwarding`), whose forwards a crash can then lose, and the commands, sink records
  and audit go outside them anyway (docs/reliability.md);
- no agents: the worker command (`lethe.commands.worker`) installs them with
  `lethe.agents.install`, so this module never imports the agents and the
  agents never import it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import faust
from aiohttp.web import Response
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from faust.types import TopicT
from faust.types.transports import TransportT
from faust.web import Web
from faust.web import drivers as web_drivers
from prometheus_client import CONTENT_TYPE_LATEST, Gauge

from lethe import consumer, topics
from lethe.changelog import ForwardedChangelogTable
from lethe.errors import ConfigError, StackError
from lethe.faust_sensor import StreamTimeMonitor, install_faust_sensor
from lethe.forwarding import KafkaForwarder
from lethe.kafka_clients import Refusals, client_config, faust_credentials
from lethe.metrics import FAUST_METRICS_PREFIX, WorkerMetrics, metrics_text
from lethe.settings import APP_ID, HEARTBEAT_MAX_S, Settings

log = logging.getLogger(__name__)

ROCKSDB_OPTIONS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "block_cache_size": 8 * 1024 * 1024,
        "max_write_buffer_number": 2,
        "target_file_size_base": 16 * 1024 * 1024,
        "max_open_files": 256,
    }
)
"""Per table partition (one RocksDB per partition): an 8 MiB block cache and up to two
memtables of LETHE_ROCKSDB_WRITE_BUFFER_BYTES each (`rocksdb_options`)."""

PRODUCER_LINGER_S: Final = 0.005
"""How long Faust's producer (table changelogs, dead letters, the enforcer's commands and
audit) waits to batch records: with Faust's 0, nearly every changelog record went out in a
produce request of its own (docs/benchmarks.md (a))."""

PRODUCER_MAX_BATCH_BYTES: Final = 512 * 1024
"""How many bytes Faust's producer buffers per partition before a send waits for the batch to
go out: with aiokafka's 16 KiB, dead letters of a few KiB each (a flood of bad records) went
one produce request at a time, ~100 per second (docs/reliability.md, row 5). Half the broker's
default message.max.bytes (1 MiB), so that a full batch is always taken."""

UNCLASSIFIED_CHECK_S: Final = 30.0
"""How often the worker lists the broker's topics for change topics the policy does not name."""


class LetheApp(faust.App):
    """A Faust app that knows Lethe's settings, metrics and topics.

    Every table made with `Table`/`GlobalTable`/`SetTable`/`SetGlobalTable`
    gets `rocksdb_options(settings)`, but for the `options` it passes.
    """

    settings: Settings
    metrics: WorkerMetrics
    change_topic: TopicT
    change_topic_names: tuple[str, ...]
    deadletters: TopicT
    subject_events: TopicT
    forwarder: KafkaForwarder | None = None
    """The worker's producer to `subject_events` (`lethe.forwarding`), set by the worker
    command; the consumer commits only what it has delivered."""
    dead_letter_pipeline: Any = None
    """The assign agent's dead letters in flight (`lethe.agents.delivery.DeadLetterPipeline`),
    set by the worker command; the consumer commits only once they are delivered."""

    def _new_transport(self) -> TransportT:
        # Faust's `by_url` would pick its stock aiokafka transport for kafka:// URLs;
        # Lethe's only replaces the consumer (see lethe.consumer).
        return consumer.Transport(self.conf.broker_consumer, self)

    def _new_web(self) -> Web:
        driver: type[Web] = web_drivers.by_url(self.conf.web)

        class MetricsOnlyWeb(driver):  # type: ignore[valid-type,misc]
            """Faust's web server without any view of Faust's own: only the app's pages."""

            default_blueprints = ()
            production_blueprints = ()
            debug_blueprints = ()
            optional_blueprints = ()

        return MetricsOnlyWeb(self)

    def Table(self, name: str, **kwargs: Any) -> Any:
        return super().Table(name, **self._capped(kwargs))

    def GlobalTable(self, name: str, **kwargs: Any) -> Any:
        return super().GlobalTable(name, **self._capped(kwargs))

    def SetTable(self, name: str, **kwargs: Any) -> Any:
        return super().SetTable(name, **self._capped(kwargs))

    def SetGlobalTable(self, name: str, **kwargs: Any) -> Any:
        return super().SetGlobalTable(name, **self._capped(kwargs))

    async def _producer_flush(self, logger: Any) -> None:
        """Faust flushes its producer when a rebalance revokes partitions (after the agents
        finished their current events, before tables are recovered) and when the worker
        stops; Lethe's forwarder is settled there too: every record it was handed is
        delivered and its report served, so each table's persisted changelog offset is its
        last write before Faust reads the changelogs again (`lethe.changelog`). A forwarder
        that fails (or stays undelivered while the worker stops) is left as it is: nothing
        is committed after that (`lethe.consumer`)."""
        await super()._producer_flush(logger)
        if self.forwarder is not None and not await self.forwarder.settle(lambda: self.should_stop):
            logger.warning(
                "The forwarder has records not delivered; nothing more is committed until it has"
            )

    def _capped(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        # A fresh dict per table: faust's RocksDB store pops keys out of it.
        options = {**rocksdb_options(self.settings), **(kwargs.get("options") or {})}
        return {**kwargs, "options": options}


def rocksdb_options(settings: Settings) -> dict[str, int]:
    """The options of each table partition's RocksDB: `ROCKSDB_OPTIONS` with memtables of
    LETHE_ROCKSDB_WRITE_BUFFER_BYTES."""
    return {**ROCKSDB_OPTIONS, "write_buffer_size": settings.rocksdb_write_buffer_bytes}


def kafka_broker_urls(bootstrap: str) -> list[str]:
    """`h1:9092,h2:9092` -> Faust broker URLs."""
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def create_app(
    settings: Settings,
    *,
    app_id: str = APP_ID,
    store: str = "rocksdb://",
    change_topic_names: Sequence[str] = (),
    web_enabled: bool = True,
) -> LetheApp:
    """Build the worker's app, without agents.

    `change_topic_names` are the change topics it reads, for its whole life
    (`lethe.topics.policy_change_topics`; create them first with
    `declare_change_topics`). Tests pass `store="memory://"` and another `app_id`.
    """
    app = LetheApp(
        app_id,
        broker=kafka_broker_urls(settings.kafka_bootstrap),
        broker_credentials=faust_credentials(settings),
        store=store,
        datadir=str(settings.data_dir / app_id),
        autodiscover=False,
        processing_guarantee="at_least_once",
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(HEARTBEAT_MAX_S, settings.session_timeout / 3),
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=settings.consumer_max_fetch_bytes,
        broker_max_poll_records=settings.max_poll_records,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        producer_linger=PRODUCER_LINGER_S,
        producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        topic_replication_factor=1,
        web_enabled=web_enabled,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        canonical_url=f"http://{settings.web_host}:{settings.web_port}",
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        Table=ForwardedChangelogTable,
        monitor=None if settings.metrics and settings.faust_metrics else StreamTimeMonitor(),
    )
    app.settings = settings
    app.metrics = WorkerMetrics.create()
    if settings.metrics and settings.faust_metrics:
        install_faust_sensor(app, app.metrics.registry, FAUST_METRICS_PREFIX)
        # Faust names this one in milliseconds (`_ms`), which Prometheus's lint refuses; its
        # other latencies are milliseconds too, under unit-less names (docs/metrics.md).
        monitor: Any = app.monitor
        app.metrics.registry.unregister(monitor._metrics.events_runtime_latency)
    else:
        serve_metrics(app)
    serve_health(app)
    app.change_topic_names = tuple(change_topic_names)
    app.change_topic = topics.change_topics(app, app.change_topic_names)
    app.deadletters = topics.deadletter_topic(app)
    app.subject_events = topics.subject_events_topic(app, settings.internal_partitions)
    watch = UnclassifiedWatch(
        settings.cdc_topic_prefix,
        (*app.change_topic_names, *lethe_owned_topics(settings)),
        app.metrics.unclassified_tables,
    )

    async def declare_deadletter_topic() -> None:
        await app.deadletters.maybe_declare()

    async def report_unclassified_tables() -> None:
        await watch.check(lambda: list_topic_names(settings))

    async def report_unclassified_tables_at_start() -> None:
        await watch.check(lambda: list_topic_names(settings))

    app.task(declare_deadletter_topic)
    app.task(report_unclassified_tables_at_start)
    app.timer(UNCLASSIFIED_CHECK_S)(report_unclassified_tables)
    return app


def serve_metrics(app: LetheApp) -> None:
    """Serve the app's registry at /metrics (without Faust's sensor, which does it too);
    `/metrics?name[]=<sample name>&...` serves only those metrics, as prometheus_client's
    own handler does."""
    registry = app.metrics.registry

    @app.page("/metrics")
    async def metrics_page(self: Any, request: Any) -> Any:
        text = metrics_text(registry, request.query.getall("name[]", []))
        return Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})


def serve_health(app: LetheApp) -> None:
    """Serve /health: 200 `{"status": "ok"}` while the worker runs and its event loop answers
    (a process supervisor's liveness probe; lag and failures are on /metrics)."""

    @app.page("/health")
    async def health_page(self: Any, request: Any) -> Any:
        return self.json({"status": "ok"})


def _admin(settings: Settings, refusals: Refusals | None = None) -> AdminClient:
    return AdminClient(client_config(settings, refusals))


def _unreachable(settings: Settings, exc: Exception) -> StackError:
    return Refusals().error(settings, exc)


def list_topic_names(settings: Settings, timeout_s: float = 10.0) -> list[str]:
    """Every topic on the broker (names only, nothing subscribed); StackError if no answer,
    or saying that the broker refused the credentials or the TLS handshake."""
    refusals = Refusals()
    admin = _admin(settings, refusals)
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except Exception as exc:
        raise refusals.error(settings, exc, admin) from exc
    return list(metadata.topics)


def declare_change_topics(
    settings: Settings, names: Sequence[str], timeout_s: float = 30.0
) -> list[str]:
    """Create the change topics among `names` that the broker lacks; return their names.

    They get the broker's default partition count and replication factor (1 and 1 on
    the local stack, as the source connector creates its topics there). Run it
    before the app starts, so the consumer subscribes to existing topics only and reads
    each from its first record. A topic created meanwhile by Debezium is fine.
    StackError if the broker does not answer or refuses.
    """
    missing = sorted(set(names) - set(list_topic_names(settings)))
    if not missing:
        return []
    admin = _admin(settings)  # kept alive until every future is done
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=-1, replication_factor=-1) for name in missing]
    )
    created: list[str] = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise StackError(
                f"could not create the change topic {name} on {settings.kafka_bootstrap} "
                f"({exc}); create it, or check the broker's permissions and log"
            ) from exc
        except Exception as exc:
            raise _unreachable(settings, exc) from exc
        created.append(name)
    return sorted(created)


def topic_partitions(settings: Settings, names: Sequence[str]) -> dict[str, int]:
    """The partition count of each of `names` the broker has; StackError if no answer."""
    refusals = Refusals()
    admin = _admin(settings, refusals)
    try:
        metadata = admin.list_topics(timeout=10.0)
    except Exception as exc:
        raise refusals.error(settings, exc, admin) from exc
    return {
        name: len(metadata.topics[name].partitions) for name in names if name in metadata.topics
    }


def same_partition_count(counts: dict[str, int]) -> int | None:
    """The partition count all the change topics share (None for none); ConfigError naming
    the topics and counts when they differ."""
    distinct = sorted(set(counts.values()))
    if len(distinct) <= 1:
        return distinct[0] if distinct else None
    groups = "; ".join(
        f"{count} partition{'s' if count != 1 else ''}: "
        + ", ".join(sorted(name for name, n in counts.items() if n == count))
        for count in distinct
    )
    most = distinct[-1]
    raise ConfigError(
        f"the change topics the policy names have different partition counts ({groups}); "
        "the worker keeps each row's location in a table partitioned like them, so they need "
        f"one count: give them all the same one (e.g. {most}: recreate the others with "
        f"{most} partitions and re-snapshot them, or set Debezium's "
        "topic.creation.default.partitions before it creates them), or repartition them into "
        "topics of one count and name those in the policy"
    )


def change_topic_partitions(settings: Settings, names: Sequence[str]) -> int:
    """P: the partition count every change topic in `names` has (create them first). With
    no names, LETHE_INTERNAL_PARTITIONS. ConfigError when they differ or one is missing."""
    counts = topic_partitions(settings, names)
    missing = sorted(set(names) - counts.keys())
    if missing:
        raise ConfigError(
            f"the change topics {', '.join(missing)} are not on {settings.kafka_bootstrap}; "
            "the worker creates them at start: check the broker's log"
        )
    shared = same_partition_count(counts)
    return settings.internal_partitions if shared is None else shared


def declare_internal_topic(
    settings: Settings,
    name: str,
    partitions: int,
    timeout_s: float = 30.0,
    config: dict[str, str] | None = None,
) -> bool:
    """Create the worker's own topic `name` with `partitions` partitions (and the topic
    `config`) if the broker lacks it; return whether it was created. ConfigError if it
    exists with another count (its records are placed by key over that count); StackError
    if the broker does not answer."""
    existing = topic_partitions(settings, [name])
    if name in existing:
        if existing[name] != partitions:
            raise ConfigError(
                f"topic {name} has {existing[name]} partitions but LETHE_INTERNAL_PARTITIONS="
                f"{partitions}; set LETHE_INTERNAL_PARTITIONS={existing[name]}, or start the "
                "worker with a new --app-id (it reads the change topics again from their start)"
            )
        return False
    admin = _admin(settings)
    topic = NewTopic(name, num_partitions=partitions, config=config or {})
    future = admin.create_topics([topic])[name]
    try:
        future.result(timeout=timeout_s)
    except KafkaException as exc:
        if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return declare_internal_topic(settings, name, partitions, timeout_s, config)
        raise StackError(
            f"could not create topic {name} on {settings.kafka_bootstrap} ({exc}); create it "
            f"with {partitions} partitions, or check the broker's permissions and log"
        ) from exc
    except Exception as exc:
        raise _unreachable(settings, exc) from exc
    return True


def lethe_owned_topics(settings: Settings) -> tuple[str, ...]:
    """The change topics of Lethe's own tables (the source heartbeat table, and the heartbeat
    topic the worker watches): no personal data, never reported as unclassified."""
    watched = settings.heartbeat_topic
    return (settings.heartbeat_table_topic, *((watched,) if watched else ()))


class UnclassifiedWatch:
    """Reports change topics of tables the policy does not name: unclassified personal data.

    Each one is set to 1 in `lethe_unclassified_tables{topic}` (removed when the topic
    is gone) and logged once at WARNING with the fix. The worker never reads them.
    """

    def __init__(self, prefix: str, named: Sequence[str], gauge: Gauge) -> None:
        self.prefix = prefix
        self.named = frozenset(named)
        self.gauge = gauge
        self.current: set[str] = set()
        self.logged: set[str] = set()

    def update(self, names: Iterable[str]) -> list[str]:
        """Take the broker's topic names; return the unclassified change topics."""
        found = topics.unclassified_change_topics(names, self.prefix, self.named)
        for topic in found:
            self.gauge.labels(topic=topic).set(1)
            if topic not in self.logged:
                self.logged.add(topic)
                log.warning(
                    "Unclassified personal data: change topic %s holds a table the policy does "
                    "not name; the worker does not read it. Add the table to the policy, then "
                    "restart the worker.",
                    topic,
                )
        for gone in self.current - set(found):
            self.gauge.remove(gone)
        self.current = set(found)
        return found

    async def check(self, lister: Callable[[], list[str]]) -> None:
        """List the broker's topics in an executor and update; a broker that does not
        answer is logged and tried again at the next check."""
        loop = asyncio.get_running_loop()
        try:
            names = await loop.run_in_executor(None, lister)
        except StackError as exc:
            log.warning("Could not list topics to look for unclassified tables: %s", exc)
            return
        self.update(names)
