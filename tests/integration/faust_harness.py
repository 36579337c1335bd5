"""An in-process Faust app on the real broker, running test code inside an agent's stream.

The Faust RocksDB store writes only in stream context (its `_set` asserts a current event),
so `FaustHarness` starts a real app (RocksDB in a temporary directory, no web server, its
own app id `lethe-it-faststore-<random>`) on an event loop in a background thread, with one
agent on its own topic (`<app id>-jobs`, `PARTITIONS` partitions, created beforehand). The
state tables of `lethe.faust_store` are declared with as many partitions.

- `run(job, partition)` produces one record to that partition; the agent runs `job()` on
  that event and hands back its result (or raises its exception) in the calling thread.
- `feed(values, handle, partition)` produces one record per value; the agent calls
  `handle(value)` on each, and the call returns when the last one is handled.
- `revoke(partitions)` sends the app's partitions-revoked signal (as a rebalance would).
- `stop()` stops the app and deletes every topic whose name starts with the app id, and
  its consumer group.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import faust
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from faust.types import TP

from lethe.app import kafka_broker_urls, rocksdb_options
from lethe.faust_store import StateTables, declare_state_tables
from lethe.settings import Settings

APP_ID_PREFIX = "lethe-it-faststore-"
PARTITIONS = 2
START_TIMEOUT_S = 120.0
JOB_TIMEOUT_S = 120.0

T = TypeVar("T")


class FaustHarness:
    """See the module docstring."""

    def __init__(self, bootstrap: str, datadir: Path, **app_options: Any) -> None:
        self.bootstrap = bootstrap
        self.app_id = f"{APP_ID_PREFIX}{uuid.uuid4().hex[:10]}"
        self.jobs_topic = f"{self.app_id}-jobs"
        self.loop = asyncio.new_event_loop()
        self.app = faust.App(
            self.app_id,
            broker=kafka_broker_urls(bootstrap),
            store="rocksdb://",
            datadir=str(datadir / self.app_id),
            autodiscover=False,
            web_enabled=False,
            consumer_auto_offset_reset="earliest",
            topic_replication_factor=1,
            topic_partitions=PARTITIONS,
            loop=self.loop,
            **app_options,
        )
        self.tables: StateTables = declare_state_tables(
            self.app, PARTITIONS, rocksdb_options(Settings())
        )
        self._handlers: dict[bytes, Callable[[bytes], None]] = {}
        self._thread = threading.Thread(target=self._serve, name=self.app_id, daemon=True)
        topic = self.app.topic(
            self.jobs_topic,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=PARTITIONS,
        )

        @self.app.agent(topic, concurrency=1)
        async def jobs(stream: Any) -> None:
            async for event in stream.events():
                handler = self._handlers.get(event.key)
                if handler is not None:
                    handler(event.value)

        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        created = admin.create_topics(
            [NewTopic(self.jobs_topic, num_partitions=PARTITIONS, replication_factor=1)]
        )
        for future in created.values():
            future.result(timeout=30)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.app.start(), self.loop).result(START_TIMEOUT_S)
        for partition in range(PARTITIONS):  # assigned, recovered and consuming
            self.run(lambda: None, partition, timeout=START_TIMEOUT_S)

    def stop(self) -> None:
        try:
            if self._thread.is_alive():
                stopping = asyncio.run_coroutine_threadsafe(self.app.stop(), self.loop)
                stopping.result(60)
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(30)
        finally:
            self.delete_topics()

    def delete_topics(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        names = [
            name for name in admin.list_topics(timeout=30).topics if name.startswith(self.app_id)
        ]
        if names:
            for future in admin.delete_topics(names, operation_timeout=30).values():
                future.result(timeout=60)
        for future in admin.delete_consumer_groups([self.app_id]).values():
            with contextlib.suppress(Exception):  # a group that never joined is gone already
                future.result(timeout=30)

    def revoke(self, partitions: set[TP]) -> None:
        """Send the app's partitions-revoked signal, as a rebalance does (nothing is revoked)."""
        sending = self.app.on_partitions_revoked.send(partitions)
        asyncio.run_coroutine_threadsafe(sending, self.loop).result(30)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    # --- running code in the stream --------------------------------------------------------

    def run(self, job: Callable[[], T], partition: int = 0, timeout: float = JOB_TIMEOUT_S) -> T:
        """`job()` run inside the agent on a record of `partition`; its result or its error."""
        outcome: concurrent.futures.Future[T] = concurrent.futures.Future()

        def handle(_: bytes) -> None:
            try:
                outcome.set_result(job())
            except BaseException as exc:
                outcome.set_exception(exc)

        with self._handler(handle) as key:
            self._producer.produce(self.jobs_topic, b"", key=key, partition=partition)
            self._producer.flush(30)
            return outcome.result(timeout)

    def feed(
        self,
        values: Iterable[bytes],
        handle: Callable[[bytes], None],
        partition: int = 0,
        timeout: float = JOB_TIMEOUT_S,
    ) -> None:
        """`handle(value)` run inside the agent on one record per value, in order."""
        values = list(values)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        remaining = len(values)

        def each(value: bytes) -> None:
            nonlocal remaining
            if done.done():
                return
            try:
                handle(value)
            except BaseException as exc:
                done.set_exception(exc)
                return
            remaining -= 1
            if remaining == 0:
                done.set_result(None)

        if not values:
            return
        with self._handler(each) as key:
            for value in values:
                self._producer.produce(self.jobs_topic, value, key=key, partition=partition)
                self._producer.poll(0)
            self._producer.flush(30)
            done.result(timeout)

    def _handler(self, handle: Callable[[bytes], None]) -> _Registered:
        return _Registered(self._handlers, handle)


class _Registered:
    """A handler registered under a fresh record key while the `with` block runs."""

    def __init__(self, handlers: dict[bytes, Callable[[bytes], None]], handle: Any) -> None:
        self.handlers = handlers
        self.handle = handle
        self.key = uuid.uuid4().hex.encode()

    def __enter__(self) -> bytes:
        self.handlers[self.key] = self.handle
        return self.key

    def __exit__(self, *_: object) -> None:
        self.handlers.pop(self.key, None)


def partition_items(table: Any, partition: int) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) the table holds in the partition's RocksDB, Faust's own keys left out."""
    for key, value in table.data._db_for_partition(partition).items():
        if not key.startswith(b"__faust"):
            yield key, value


def clear_partition(tables: StateTables, partition: int) -> None:
    """Delete every key of the three tables in the partition (run it inside the stream), in
    its database and its changelog (not `del table[key]`, which deletes the key from the
    partition where this process last wrote it)."""
    for table in (tables.rows, tables.subjects, tables.locations):
        db = table.data._db_for_partition(partition)
        for key in [key for key, _ in partition_items(table, partition)]:
            table.on_key_del(key)
            db.delete(key)
