"""The Faust app of the Lethe worker, built by `create_app(settings)`.

What the app is made of:
- id `lethe` (the Kafka consumer group and the prefix of Faust's own topics);
- tables in RocksDB under `<LETHE_DATA_DIR>/<id>`, with capped caches and
  write buffers (`ROCKSDB_OPTIONS`; Faust's default is a 2 GiB block cache per
  table partition);
- a web server on LETHE_WEB_HOST:LETHE_WEB_PORT serving `/metrics`, with the
  `/table` views (they expose table contents) and the `/router` views off;
- no agents: the worker command (`lethe.commands.worker`) installs them with
  `lethe.agents.install`, so this module never imports the agents and the
  agents never import it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

import faust
from confluent_kafka.admin import AdminClient
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.types import TopicT

from lethe import topics
from lethe.errors import StackError
from lethe.metrics import FAUST_METRICS_PREFIX, WorkerMetrics
from lethe.settings import APP_ID, Settings

log = logging.getLogger(__name__)

ROCKSDB_OPTIONS: Final[dict[str, int]] = {
    "block_cache_size": 8 * 1024 * 1024,
    "write_buffer_size": 8 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "target_file_size_base": 16 * 1024 * 1024,
    "max_open_files": 256,
}
"""Per table partition (one RocksDB per partition): at most ~24 MiB of memory each."""

CONSUMER_MAX_FETCH_BYTES: Final = 4 * 1024 * 1024
"""Per partition and fetch. Faust's 1 MiB default held a one-partition topic to
~1.5k events/s of 800-byte records on the local stack; 4 MiB gives ~3.9k/s."""

TOPIC_REFRESH_S: Final = 30.0
"""How often the worker looks for new change topics (`<LETHE_CDC_TOPIC_PREFIX>.public.*`)."""


class LetheApp(faust.App):
    """A Faust app that knows Lethe's settings, metrics and topics.

    Every table made with `Table`/`GlobalTable`/`SetTable`/`SetGlobalTable`
    gets `ROCKSDB_OPTIONS` unless it passes its own `options`.
    """

    settings: Settings
    metrics: WorkerMetrics
    change_topic: TopicT
    change_topic_names: list[str]
    deadletters: TopicT

    def Table(self, name: str, **kwargs: Any) -> Any:
        return super().Table(name, **_capped(kwargs))

    def GlobalTable(self, name: str, **kwargs: Any) -> Any:
        return super().GlobalTable(name, **_capped(kwargs))

    def SetTable(self, name: str, **kwargs: Any) -> Any:
        return super().SetTable(name, **_capped(kwargs))

    def SetGlobalTable(self, name: str, **kwargs: Any) -> Any:
        return super().SetGlobalTable(name, **_capped(kwargs))


def _capped(kwargs: dict[str, Any]) -> dict[str, Any]:
    # A fresh dict per table: faust's RocksDB store pops keys out of it.
    return {**kwargs, "options": {**ROCKSDB_OPTIONS, **(kwargs.get("options") or {})}}


def kafka_broker_urls(bootstrap: str) -> list[str]:
    """`h1:9092,h2:9092` -> Faust broker URLs."""
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def create_app(
    settings: Settings,
    *,
    app_id: str = APP_ID,
    store: str = "rocksdb://",
    change_topic_names: list[str] | None = None,
    web_enabled: bool = True,
) -> LetheApp:
    """Build the worker's app, without agents.

    `change_topic_names` are the change topics to start with (see
    `list_change_topics`); the worker follows new ones while it runs. Tests
    pass `store="memory://"` and another `app_id`.
    """
    app = LetheApp(
        app_id,
        broker=kafka_broker_urls(settings.kafka_bootstrap),
        store=store,
        datadir=str(settings.data_dir / app_id),
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=CONSUMER_MAX_FETCH_BYTES,
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
    )
    app.settings = settings
    app.metrics = WorkerMetrics.create()
    setup_prometheus_sensors(app, registry=app.metrics.registry, name_prefix=FAUST_METRICS_PREFIX)
    app.change_topic_names = list(change_topic_names or [])
    app.change_topic = topics.change_topics(app, app.change_topic_names)
    app.deadletters = topics.deadletter_topic(app)

    async def declare_deadletter_topic() -> None:
        await app.deadletters.maybe_declare()

    async def follow_change_topics() -> None:
        await follow_new_change_topics(app, lambda: list_change_topics(settings))

    app.task(declare_deadletter_topic)
    app.timer(TOPIC_REFRESH_S)(follow_change_topics)
    return app


def list_change_topics(settings: Settings, timeout_s: float = 10.0) -> list[str]:
    """Ask the broker for the `<cdc_topic_prefix>.public.*` topics; StackError if no answer."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 0})
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except Exception as exc:
        raise StackError(
            f"Kafka at {settings.kafka_bootstrap} did not answer ({exc}); "
            "start the stack with `lethe stack up` or set LETHE_KAFKA_BOOTSTRAP"
        ) from exc
    return topics.matching_change_topics(metadata.topics, settings.cdc_topic_prefix)


async def follow_new_change_topics(app: LetheApp, lister: Callable[[], list[str]]) -> list[str]:
    """Subscribe to change topics created since start-up; return the new names.

    Faust has no pattern subscription, so the names are appended to the list
    the change topic (and its clones) share, and the conductor is told that
    the subscription changed; it resubscribes, and the consumer group
    rebalances.
    """
    loop = asyncio.get_running_loop()
    try:
        current = await loop.run_in_executor(None, lister)
    except StackError as exc:
        log.warning("Could not list change topics: %s", exc)
        return []
    new = [name for name in current if name not in app.change_topic_names]
    if new:
        log.info("Subscribing to new change topics: %s", ", ".join(new))
        app.change_topic_names.extend(new)
        app.topics._flag_changes()  # type: ignore[attr-defined]  # no public resubscribe
    return new
