"""Table changelog records through the worker's confluent-kafka producer.

Every write to a Faust table is a changelog record. Through Faust's own producer (aiokafka,
its futures and sensors) each costs about 100-130 µs of the agent's time, which made
changelog records the largest share of the worker's cost per event (docs/benchmarks.md (a));
through a confluent-kafka produce, batched in librdkafka's threads, they cost a few µs.

`ForwardedChangelogTable` (the app's table class, `lethe.app.create_app`) sends its changelog
records through the app's forwarder (`app.forwarder`, `lethe.forwarding.KafkaForwarder`) when
the app has one. Nothing else changes:
- the records are byte for byte the ones Faust would send (its key and value serializers), to
  the same changelog partition, so Faust's recovery and standby replicas read them as before;
- once the broker has a record, the table persists its offset in the partition's RocksDB, as
  Faust does, so a restart with the state directory kept replays only what follows. The
  delivery reports a producer poll serves are persisted at the end of that poll, one write per
  partition (the newest offset), not one per record. Reports wait for the forwarder's next
  poll (`lethe.forwarding`), and every rebalance settles the forwarder before Faust recovers
  the tables (`lethe.app.LetheApp._producer_flush`), so recovery never starts from an offset
  behind the partition's local writes; after a crash, an offset left behind only makes the
  restart replay more of the changelog;
- the consumer commits a change record's offset only once the forwarder delivered everything
  handed to it before (`lethe.consumer`): the table writes an event made are in Kafka before
  the event counts as processed, as with Faust's producer;
- the idempotent producer keeps each partition's records in order across retries.
The table's RocksDB databases are opened without a write-ahead log (`ChangelogBackedOptions`):
the changelog is the durable copy (as in Kafka Streams' state stores). A clean stop flushes
the memtables when Faust drops the databases; a crash loses the writes since the last flush,
the persisted offset with them (RocksDB keeps a prefix of the writes), so the restart replays
the changelog from an older offset and ends in the same state. A put cost 3-4 µs more with
the log, about 5% of the worker's CPU per event (docs/benchmarks.md (a), session 9).
Without a forwarder (unit tests over memory channels) or inside a Faust transaction
(`exactly_once`, whose changelog records must be in its transaction) the table sends through
Faust as before.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import faust
import rocksdict
from faust.stores.rocksdb import RocksDBOptions
from faust.types import TP


class _Sent:
    """What Faust's `on_key_set`/`on_key_del` read of a sent changelog record: its partition."""

    __slots__ = ("message", "partition")

    def __init__(self, partition: int) -> None:
        self.message = self
        self.partition = partition


class ForwardedChangelogTable(faust.Table):  # type: ignore[type-arg]
    """A Faust table whose changelog records go through the app's forwarder (see module)."""

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> Any:
        forwarder = getattr(self.app, "forwarder", None)
        if forwarder is None or partition is None or self.app.in_transaction:
            return super().send_changelog(partition, key, value, key_serializer, value_serializer)
        topic = self.changelog_topic
        wire_key, _ = topic.prepare_key(key, key_serializer or self.key_serializer)
        wire_value = None
        if value is not None:
            wire_value, _ = topic.prepare_value(value, value_serializer or self.value_serializer)
        self._produce(forwarder, partition, wire_key, wire_value)
        return _Sent(partition)

    def write_changelog(
        self, partition: int, key: bytes, value: bytes | None, handed_off: bool = False
    ) -> bool:
        """Send the changelog record of a write (`value`) or delete (None) of `key` in
        `partition`, the current event's, straight to the forwarder: what `on_key_set` and
        `on_key_del` do for a table of raw bytes, without their partition lookup, key expiry
        and serializer calls. False when it must go through Faust (no forwarder, inside a
        transaction, or a table that is not raw bytes): call `on_key_set`/`on_key_del`.
        `handed_off`: `partition` is not the current event's but the one a change was handed
        off to (`lethe.agents.handoff`); it must go to the forwarder (RuntimeError if not)."""
        forwarder = getattr(self.app, "forwarder", None)
        if forwarder is None or self.app.in_transaction or not self._raw_bytes:
            if handed_off:
                raise RuntimeError("a handed-off change needs the worker's forwarder")
            return False
        if not handed_off:
            event = faust.current_event()
            if event is None:
                raise TypeError("Cannot modify table key from outside of stream iteration")
            self._verify_source_topic_partitions(event.message.topic)
        self._produce(forwarder, partition, key, value)
        if value is None:
            self._sensor_on_del(self, key)
        else:
            self._sensor_on_set(self, key, value)
        return True

    def _produce(self, forwarder: Any, partition: int, key: Any, value: bytes | None) -> None:
        """Hand the changelog record to the forwarder; its offset is persisted after the
        poll that serves its report (`_persist_delivered`, registered at the first send)."""
        if not self._persisting:
            forwarder.after_reports(self._persist_delivered)
            self._persisting = True
        forwarder.produce_now(
            self._changelog_name, key, value, partition, self._changelog_delivered
        )

    @cached_property
    def _raw_bytes(self) -> bool:
        """Whether keys and values go to the changelog as they are (raw serializers, no key
        expiry): `write_changelog` may skip Faust's serializing."""
        return (
            self.key_serializer == "raw"
            and self.value_serializer == "raw"
            and not self._should_expire_keys()
        )

    def _new_store_by_url(self, url: Any) -> Any:
        store: Any = super()._new_store_by_url(url)
        if getattr(store, "use_rocksdict", False):
            store.rocksdb_options = ChangelogBackedOptions(**store.options, use_rocksdict=True)
        return store

    _persisting = False
    """Whether the forwarder calls `_persist_delivered` after its polls (set at the first send)."""

    @cached_property
    def _changelog_name(self) -> str:
        """The changelog topic's name, worked out once (Faust's `get_topic_name` matches its
        pattern each call: a cost on every table write)."""
        name: str = self.changelog_topic.get_topic_name()
        return name

    @cached_property
    def _delivered(self) -> dict[int, int]:
        """Per changelog partition, the newest offset delivered and not persisted yet."""
        return {}

    def _changelog_delivered(self, topic: str, partition: int, offset: int) -> None:
        delivered = self._delivered
        if offset > delivered.get(partition, -1):
            delivered[partition] = offset

    def _persist_delivered(self) -> None:
        """Persist the offsets the poll just served (called by the forwarder before its poll
        returns)."""
        delivered = self._delivered
        while delivered:
            partition, offset = delivered.popitem()
            self.data.set_persisted_offset(TP(self._changelog_name, partition), offset)


class ChangelogBackedOptions(RocksDBOptions):
    """Faust's RocksDB options, each database opened without a write-ahead log (see module)."""

    def open(self, path: Path, *, read_only: bool = False) -> Any:
        db = super().open(path, read_only=read_only)
        write = rocksdict.WriteOptions()
        write.disable_wal = True  # type: ignore[method-assign,assignment]  # a property; the stub says a method
        db.set_write_options(write)
        return db


class PartitionTable:
    """Reads and writes of a table in one given partition, straight on that partition's
    RocksDB (Faust's mapping interface adds, per access, its sensor, its key-to-partition
    index and, for an absent key, a `KeyError` raised and caught: about half the cost of a
    `locations` lookup, docs/benchmarks.md (a)). A write sends its changelog record to the
    same partition (`on_key_set`/`on_key_del`), then writes the database. Over a memory store
    (unit tests) it goes through Faust's mapping. Use it from an agent's stream only, with the
    partition of the event being processed."""

    __slots__ = ("_direct", "_through", "table")

    def __init__(self, table: Any) -> None:
        self.table = table
        self._direct = hasattr(table.data, "_db_for_partition")
        self._through = isinstance(table, ForwardedChangelogTable)

    def get(self, partition: int, key: bytes) -> bytes | None:
        if not self._direct:
            value: bytes | None = self.table.get(key)
            return value
        found: bytes | None = self.table.data._db_for_partition(partition).get(key)
        return found

    def put(self, partition: int, key: bytes, value: bytes, handed_off: bool = False) -> None:
        """Write `key` in `partition`: the current event's, or with `handed_off` the one a
        change was handed off to (`ForwardedChangelogTable.write_changelog`)."""
        if not self._direct:
            self._only_own(handed_off)
            self.table[key] = value
            return
        table = self.table
        if not (self._through and table.write_changelog(partition, key, value, handed_off)):
            self._only_own(handed_off)
            table.on_key_set(key, value)
        table.data._db_for_partition(partition).put(key, value)

    def delete(self, partition: int, key: bytes, handed_off: bool = False) -> None:
        if not self._direct:
            self._only_own(handed_off)
            del self.table[key]
            return
        table = self.table
        if not (self._through and table.write_changelog(partition, key, None, handed_off)):
            self._only_own(handed_off)
            table.on_key_del(key)
        table.data._db_for_partition(partition).delete(key)

    @staticmethod
    def _only_own(handed_off: bool) -> None:
        """Faust's own writes go to the current event's partition: never for a handed-off
        change."""
        if handed_off:
            raise RuntimeError("a handed-off change needs the worker's forwarder")
