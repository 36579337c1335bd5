"""Fill the worker's RocksDB tables from their changelogs before Faust starts (LETHE_PREWARM).

Faust rebuilds a lost table by reading its changelog through its own consumer, at about
5,000 records a second here (docs/benchmarks.md (e)): 10^6 tracked rows took 8-10 minutes.
This reads the same changelogs with confluent-kafka, a batch at a time, and writes them into
the very files Faust opens, exactly as Faust's recovery does (`faust.stores.rocksdb.Store.
apply_changelog_batch`): each record's key and value bytes as they are in the changelog, a
tombstone (no value) deleting its key, in offset order, and Faust's persisted offset
(`__faust\\0offset__`, the last offset applied, in decimal) in the same write batch, so a file
is never ahead of or behind the offset it records. Faust's recovery then reads each changelog
from that offset: only what was written after (by another worker still running, say).

What it covers and why:
- every table of the app on the RocksDB store, every partition of each changelog (as the
  broker has it): the partitions this worker will be assigned, as active or standby, are not
  known before it joins its group. A file for a partition it is not assigned is never opened
  by Faust (it opens the files of assigned partitions only, and reads only those it opened);
  if the partition is assigned later, Faust reads the changelog from the offset that file
  holds, as for a file kept from an earlier assignment (tests/unit/test_prewarm.py checks
  that Faust leaves unassigned files alone). Such a file is as old as a file Faust keeps
  after a rebalance: assigned only after the changelog's `delete.retention.ms` (a day by
  default), its recovery can miss a tombstone compacted away meanwhile. Each start brings
  every file up to date again; with several workers each reads every changelog (disk and
  start time grow with the whole state, not the worker's share);
- a partition is read from the offset after the one its file holds (none: from the log
  start): a kept data directory costs one look-up per partition. A file that holds an
  offset at or past the changelog's end is left alone: Faust's own check refuses it
  (the topic was recreated: delete the data directory);
- it reads each partition up to the end it had when the fill started, or the end it finds
  (records written meanwhile are applied too, in order); Faust reads whatever follows;
- compacted changelogs: offsets missing from a partition were compacted away; the file
  records the end reached, as Faust's would after reading that far;
- at-least-once reads uncommitted records, as Faust's recovery does; exactly-once reads
  committed ones only.
Any failure (broker gone, timeout) stops the fill and the worker starts anyway: what was
written is consistent, and Faust reads the rest itself, slowly. Runs in the worker process
before Faust starts, so no other process holds the files.
"""

from __future__ import annotations

import logging
import multiprocessing
import resource
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

log = logging.getLogger(__name__)

OFFSET_KEY: Final = b"__faust\x00offset__"
"""Faust's key, in each partition's RocksDB, of the last changelog offset it applied."""
BATCH: Final = 20_000
"""Records taken from the consumer at a time; each partition's share is one write batch."""
STALL_S: Final = 60.0
"""How long the fill waits for any record or end of partition before it gives up."""
FILL_WRITE_BUFFER_BYTES: Final = 8 * 1024 * 1024
"""The smallest memtable the fill writes a file through. The worker's (LETHE_ROCKSDB_WRITE_
BUFFER_BYTES, 256 KiB) bounds its RSS over hours; the fill is a child process that exits once
done, and a bulk load of 10^6 rows took 2-3 times as long through 256 KiB memtables as through
8 MiB ones (docs/benchmarks.md (f), "The memtable size")."""


@dataclass(frozen=True, slots=True)
class TableFiles:
    """A table's changelog and where Faust keeps its partitions' files, with the options it
    opens them with (`faust.stores.rocksdb.RocksDBOptions` keywords)."""

    changelog: str
    tabledir: Path
    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def path(self, partition: int) -> Path:
        """Faust's file of the partition (`Store.partition_path`)."""
        return self.tabledir / f"{self.name}-{partition}.db"


@dataclass(frozen=True, slots=True)
class Span:
    """The changelog offsets to apply to a partition's file: from `first` to `end`
    (exclusive), the end the partition had when the fill started."""

    first: int
    end: int


def span_to_read(held: int | None, low: int, high: int) -> Span | None:
    """What a file holding offset `held` (None: a new file) lacks of a changelog partition
    from `low` (its log start) to `high` (its end, exclusive); None when nothing, or when
    the file holds an offset at or past the end (Faust's consistency check refuses it)."""
    first = low if held is None else max(held + 1, low)
    if first >= high:
        return None
    return Span(first, high)


@dataclass(frozen=True, slots=True)
class Filled:
    """What a fill did: records applied, partitions read, partitions read to their end, the
    seconds it took, and the peak memory (RSS, MiB) of the process that read them."""

    records: int
    partitions: int
    complete: int
    seconds: float
    peak_mib: float = 0.0


class PartitionFill:
    """The write batch of one partition's file: the records of its changelog in offset
    order, then the offset applied, written at once by `flush`."""

    __slots__ = ("at_end", "batch", "db", "end", "position", "records", "written")

    def __init__(self, db: Any, span: Span) -> None:
        self.db = db
        self.end = span.end
        self.position = span.first
        """The next offset to read: every record before it is in the batch or the file."""
        self.written = span.first
        self.at_end = False
        self.records = 0
        self.batch = _new_batch()

    def apply(self, key: bytes, value: bytes | None, offset: int) -> None:
        """Add a changelog record (None: a tombstone, its key deleted)."""
        if value is None:
            self.batch.delete(key)
        else:
            self.batch.put(key, value)
        self.position = offset + 1
        self.records += 1

    def reached(self, offset: int) -> None:
        """The partition's end was found at `offset`: every record before it was read (under
        read_committed, the end of its committed records, which may be short of `end`)."""
        self.position = max(self.position, offset)
        self.at_end = True

    @property
    def done(self) -> bool:
        return self.at_end or self.position >= self.end

    def flush(self) -> None:
        """Write the batch and the last offset read in one RocksDB write."""
        if self.position == self.written:
            return
        self.batch.put(OFFSET_KEY, str(self.position - 1).encode())
        self.db.write(self.batch)
        self.written = self.position
        self.batch = _new_batch()


def _new_batch() -> Any:
    from rocksdict import WriteBatch

    return WriteBatch(raw_mode=True)


def open_file(table: TableFiles, partition: int) -> Any:
    """The partition's RocksDB, opened as Faust opens it (raw mode, the table's options), with
    memtables of at least `FILL_WRITE_BUFFER_BYTES`."""
    from faust.stores.rocksdb import RocksDBOptions

    options = {k: v for k, v in table.options.items() if k not in ("read_only", "driver")}
    options["write_buffer_size"] = max(options.get("write_buffer_size", 0), FILL_WRITE_BUFFER_BYTES)
    table.tabledir.mkdir(parents=True, exist_ok=True)
    return RocksDBOptions(**options, use_rocksdict=True).open(table.path(partition))


def held_offset(db: Any) -> int | None:
    """The changelog offset a file says it holds (Faust's `persisted_offset`)."""
    held = db.get(OFFSET_KEY)
    return None if held is None else int(held)


@dataclass(frozen=True, slots=True)
class Lack:
    """A table partition whose file lacks changelog records, and which."""

    table: TableFiles
    partition: int
    span: Span


Client = Mapping[str, Any]
"""The Kafka client settings (`lethe.kafka_clients.client_config`: bootstrap servers, SASL and
TLS); picklable, for the reader process."""


def _consumer(client: Client, committed_only: bool) -> Consumer:
    return Consumer(
        {
            **client,
            "group.id": "lethe-prewarm",  # never joined nor committed: assign() only
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed" if committed_only else "read_uncommitted",
            "fetch.max.bytes": 32 * 1024 * 1024,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            "queued.max.messages.kbytes": 64 * 1024,
            "log_level": 0,
        }
    )


def lacking(client: Client, tables: Sequence[TableFiles]) -> list[Lack]:
    """Every partition of the `tables`' changelogs whose file lacks records (see the module):
    the changelog's offsets from the broker, the file's from the file (not created when
    missing)."""
    consumer = _consumer(client, committed_only=False)
    found: list[Lack] = []
    try:
        counts = _partition_counts(consumer, [table.changelog for table in tables])
        for table in tables:
            for partition in range(counts.get(table.changelog, 0)):
                where = TopicPartition(table.changelog, partition)
                low, high = consumer.get_watermark_offsets(where, timeout=10)
                held = None
                if table.path(partition).exists() and high > low:
                    db = open_file(table, partition)
                    try:
                        held = held_offset(db)
                    finally:
                        db.close()
                span = span_to_read(held, low, high)
                if span is not None:
                    found.append(Lack(table, partition, span))
    finally:
        consumer.close()
    return found


def fill(
    client: Client,
    tables: Sequence[TableFiles],
    *,
    committed_only: bool = False,
    batch: int = BATCH,
    stall_s: float = STALL_S,
) -> Filled:
    """Bring every partition file of `tables` up to its changelog's end (see the module)."""
    started = time.monotonic()
    filled = fill_lacks(
        client,
        lacking(client, tables),
        committed_only=committed_only,
        batch=batch,
        stall_s=stall_s,
    )
    return replace(filled, seconds=time.monotonic() - started)


def fill_lacks(
    client: Client,
    lacks: Sequence[Lack],
    *,
    committed_only: bool = False,
    batch: int = BATCH,
    stall_s: float = STALL_S,
) -> Filled:
    """Read what each of `lacks` lacks from its changelog into its file."""
    started = time.monotonic()
    consumer = _consumer(client, committed_only)
    fills: dict[tuple[str, int], PartitionFill] = {}
    try:
        for lack in lacks:
            db = open_file(lack.table, lack.partition)
            fills[(lack.table.changelog, lack.partition)] = PartitionFill(db, lack.span)
        if fills:
            consumer.assign([TopicPartition(t, p, f.position) for (t, p), f in fills.items()])
        read_changelogs(consumer, fills, batch, stall_s)
    finally:
        consumer.close()
        for target in fills.values():
            target.db.close()
    return Filled(
        sum(f.records for f in fills.values()),
        len(fills),
        sum(1 for f in fills.values() if f.done),
        time.monotonic() - started,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def read_changelogs(
    consumer: Any,
    fills: dict[tuple[str, int], PartitionFill],
    batch: int = BATCH,
    stall_s: float = STALL_S,
) -> None:
    """Consume the assigned changelog partitions ((topic, partition) -> its fill) until each
    reached its end, writing each partition's records after every batch and pausing it once
    it is done (records past its end in the batch that reached it are applied too). A
    TimeoutError after `stall_s` without a record or an end of partition."""
    pending = {where for where, f in fills.items() if not f.done}
    quiet_since = time.monotonic()
    while pending:
        messages = consumer.consume(batch, timeout=1.0)
        touched = _apply(messages, fills, pending)
        for where in touched:
            fills[where].flush()
            if fills[where].done:
                pending.discard(where)
                consumer.pause([TopicPartition(*where)])
        if touched:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > stall_s:
            raise TimeoutError(
                f"no changelog record for {stall_s:.0f}s with {len(pending)} partition(s) "
                "still to read"
            )


def _apply(
    messages: Iterable[Message],
    fills: dict[tuple[str, int], PartitionFill],
    pending: set[tuple[str, int]],
) -> set[tuple[str, int]]:
    touched: set[tuple[str, int]] = set()
    for message in messages:
        where = (message.topic(), message.partition())
        if where not in pending:
            continue  # past the end of a partition already written
        target = fills[where]
        error = message.error()
        offset = message.offset()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                target.reached(target.position if offset is None else offset)
                touched.add(where)
                continue
            raise KafkaException(error)
        key = message.key()
        if key is None or offset is None:
            continue  # not a table record; Faust's table never writes one
        target.apply(key, message.value(), offset)
        touched.add(where)
    return touched


def _partition_counts(consumer: Consumer, topics: Sequence[str]) -> dict[str, int]:
    metadata = consumer.list_topics(timeout=10)
    return {
        name: len(metadata.topics[name].partitions)
        for name in topics
        if name in metadata.topics and metadata.topics[name].error is None
    }


def app_tables(app: Any) -> list[TableFiles]:
    """Every table of a Faust `app` kept on the RocksDB store, with its files' places."""
    store = str(app.conf.store)
    if not store.startswith("rocksdb:"):
        return []
    tabledir = Path(app.conf.tabledir)
    found: list[TableFiles] = []
    for table in app.tables.values():
        if getattr(table, "_store", None) not in (None, app.conf.store):
            continue  # a table on a store of its own
        found.append(
            TableFiles(table.changelog_topic_name, tabledir, table.name, dict(table.options or {}))
        )
    return found


def prewarm_app(app: Any, client: Client) -> Filled | None:
    """Fill the app's RocksDB tables from their changelogs before it starts, in a child
    process (the memory RocksDB and the consumer took goes with it) when any file lacks
    records; log what was done. A failure is logged and returns None: Faust then reads what
    is missing itself."""
    from faust.types.enums import ProcessingGuarantee

    tables = app_tables(app)
    if not tables:
        return None
    committed_only = app.conf.processing_guarantee == ProcessingGuarantee.EXACTLY_ONCE
    started = time.monotonic()
    try:
        lacks = lacking(client, tables)
        if lacks:
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(1, mp_context=spawn) as child:
                done = child.submit(
                    fill_lacks, dict(client), lacks, committed_only=committed_only
                ).result()
        else:
            done = Filled(0, 0, 0, 0.0)
        filled = replace(done, seconds=time.monotonic() - started)
    except Exception as exc:
        log.warning(
            "Prewarm stopped (%s): the worker starts anyway, and Faust reads what the tables "
            "still lack from their changelogs itself, more slowly. Set LETHE_PREWARM=off to "
            "skip the prewarm.",
            exc,
        )
        return None
    log.info(
        "Prewarm: %d changelog records applied to %d table partitions (%d read to their end) "
        "in %.1fs",
        filled.records,
        filled.partitions,
        filled.complete,
        filled.seconds,
    )
    return filled
