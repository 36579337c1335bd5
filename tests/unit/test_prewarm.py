"""The prewarm's parts that need no broker: which offsets a partition's file lacks, and that the
file it writes from changelog records is the one Faust's own recovery writes from them (same
keys, values and persisted offset, read back through Faust's RocksDB store)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError
from faust.types import TP

from lethe.app import create_app, rocksdb_options
from lethe.faust_store import ROWS, declare_state_tables
from lethe.prewarm import (
    OFFSET_KEY,
    PartitionFill,
    Span,
    TableFiles,
    app_tables,
    open_file,
    read_changelogs,
    span_to_read,
)
from lethe.settings import Settings

Record = tuple[bytes, bytes | None, int]
"""A changelog record: key, value (None: a tombstone), offset."""

# A compacted changelog partition: offsets 2, 5 and 6 were compacted away; b"b" was deleted
# (tombstone at 4) and written again at 8; b"c" was deleted at 9 and stays deleted.
RECORDS: list[Record] = [
    (b"a", b"a-0", 0),
    (b"b", b"b-1", 1),
    (b"c", b"c-3", 3),
    (b"b", None, 4),
    (b"a", b"a-7", 7),
    (b"b", b"b-8", 8),
    (b"c", None, 9),
]
END = 11
"""The partition's end: offset 10 was compacted away too."""


def test_a_new_file_is_filled_from_the_log_start() -> None:
    assert span_to_read(None, 0, 500) == Span(0, 500)
    assert span_to_read(None, 120, 500) == Span(120, 500)


def test_a_kept_file_is_filled_from_the_offset_after_the_one_it_holds() -> None:
    assert span_to_read(349, 0, 500) == Span(350, 500)


def test_a_file_that_holds_offsets_the_log_no_longer_has_is_filled_from_the_log_start() -> None:
    assert span_to_read(49, 120, 500) == Span(120, 500)


def test_a_file_at_the_end_is_left_alone() -> None:
    assert span_to_read(499, 0, 500) is None


def test_a_file_past_the_end_is_left_to_faust_s_consistency_check() -> None:
    assert span_to_read(800, 0, 500) is None


def test_an_empty_partition_is_not_read() -> None:
    assert span_to_read(None, 0, 0) is None
    assert span_to_read(None, 40, 40) is None


def filled(path: Path, records: list[Record], end: int, *, at_end: bool) -> dict[bytes, bytes]:
    table = TableFiles("t-changelog", path, "t", rocksdb_options(Settings()))
    db = open_file(table, 0)
    try:
        fill = PartitionFill(db, Span(0, end))
        for key, value, offset in records[:4]:
            fill.apply(key, value, offset)
        fill.flush()  # two batches, as when the consumer hands the records over in two
        for key, value, offset in records[4:]:
            fill.apply(key, value, offset)
        if at_end:
            fill.reached(end)
        fill.flush()
    finally:
        db.close()
    db = open_file(table, 0)
    try:
        return dict(db.items())
    finally:
        db.close()


def test_the_file_holds_the_last_value_of_each_key_without_the_deleted_ones(
    tmp_path: Path,
) -> None:
    assert filled(tmp_path, RECORDS, END, at_end=False) == {
        b"a": b"a-7",
        b"b": b"b-8",
        OFFSET_KEY: b"9",
    }


def test_a_partition_read_to_its_end_records_the_end_as_read(tmp_path: Path) -> None:
    assert filled(tmp_path, RECORDS, END, at_end=True)[OFFSET_KEY] == b"10"


def written_buffer_size(path: Path) -> int:
    (written,) = path.glob("OPTIONS-*")
    (size,) = (o for o in written.read_text().split() if o.startswith("write_buffer_size="))
    return int(size.partition("=")[2])


def test_the_fill_writes_through_8_mib_memtables_even_when_the_worker_s_are_smaller(
    tmp_path: Path,
) -> None:
    small = rocksdb_options(Settings(rocksdb_write_buffer_bytes=262144))
    open_file(TableFiles("t-changelog", tmp_path / "small", "t", small), 0).close()
    assert written_buffer_size(tmp_path / "small" / "t-0.db") == 8 * 1024 * 1024
    large = rocksdb_options(Settings(rocksdb_write_buffer_bytes=32 * 1024 * 1024))
    open_file(TableFiles("t-changelog", tmp_path / "large", "t", large), 0).close()
    assert written_buffer_size(tmp_path / "large" / "t-0.db") == 32 * 1024 * 1024


def test_nothing_is_written_when_nothing_was_read(tmp_path: Path) -> None:
    table = TableFiles("t-changelog", tmp_path, "t", rocksdb_options(Settings()))
    db = open_file(table, 0)
    try:
        PartitionFill(db, Span(0, END)).flush()
        assert dict(db.items()) == {}
    finally:
        db.close()


def faust_table(tmp_path: Path, app_id: str) -> Any:
    settings = Settings.from_env({"LETHE_DATA_DIR": str(tmp_path)})
    app = create_app(settings, app_id=app_id, web_enabled=False)
    tables = declare_state_tables(app, 2)
    return app, tables.rows


def test_faust_s_store_reads_the_filled_file_as_it_reads_its_own_recovery(
    tmp_path: Path,
) -> None:
    _app, rows = faust_table(tmp_path / "faust", "pw-unit")
    tp = TP(rows.changelog_topic_name, 1)
    events = [
        SimpleNamespace(
            message=SimpleNamespace(tp=tp, partition=1, offset=offset, key=key, value=value)
        )
        for key, value, offset in RECORDS
    ]
    rows.data.apply_changelog_batch(events, None, None)
    recovered = dict(rows.data._db_for_partition(1).items())
    recovered_offset = rows.data.persisted_offset(tp)

    prewarm_app, prewarm_rows = faust_table(tmp_path / "prewarm", "pw-unit")
    (files,) = [t for t in app_tables(prewarm_app) if t.name == ROWS]
    assert files.path(1) == prewarm_rows.data.partition_path(1), "the file Faust opens"
    db = open_file(files, 1)
    try:
        fill = PartitionFill(db, Span(0, RECORDS[-1][2] + 1))
        for key, value, offset in RECORDS:
            fill.apply(key, value, offset)
        fill.flush()
    finally:
        db.close()

    assert dict(prewarm_rows.data._db_for_partition(1).items()) == recovered
    assert prewarm_rows.data.persisted_offset(tp) == recovered_offset == 9


def test_every_table_of_the_worker_is_filled_with_faust_s_changelog_and_options(
    tmp_path: Path,
) -> None:
    app, _ = faust_table(tmp_path, "pw-unit")
    app.Table("other", key_type=bytes, value_type=bytes, partitions=2)
    found = {t.name: t for t in app_tables(app)}
    assert sorted(found) == sorted(app.tables)
    assert found["other"].changelog == "pw-unit-other-changelog"
    assert found["other"].options == rocksdb_options(Settings())


def test_an_app_on_the_memory_store_has_nothing_to_fill(tmp_path: Path) -> None:
    settings = Settings.from_env({"LETHE_DATA_DIR": str(tmp_path)})
    app = create_app(settings, app_id="pw-unit", store="memory://", web_enabled=False)
    declare_state_tables(app, 2)
    assert app_tables(app) == []


@pytest.mark.parametrize("text", ["on", "off"])
def test_the_prewarm_is_a_setting(text: str) -> None:
    assert Settings.from_env({"LETHE_PREWARM": text}).prewarm is (text == "on")


def test_the_worker_prewarms_unless_told_not_to() -> None:
    assert Settings.from_env({}).prewarm is True


def test_faust_reads_only_the_files_of_the_partitions_it_is_assigned(tmp_path: Path) -> None:
    """The prewarm fills every partition; a worker assigned some of them must not see the
    others' rows (Faust opens, lists and looks up the files of assigned partitions only)."""
    app, rows = faust_table(tmp_path, "pw-unit")
    (files,) = [t for t in app_tables(app) if t.name == ROWS]
    for partition, key in ((0, b"row-of-0"), (1, b"row-of-1")):
        db = open_file(files, partition)
        try:
            fill = PartitionFill(db, Span(0, 1))
            fill.apply(key, b"state", 0)
            fill.flush()
        finally:
            db.close()
    assigned = {TP(rows.changelog_topic_name, 0)}
    app.assignor.assigned_actives = lambda: assigned
    app.assignor.assigned_standbys = lambda: set()

    asyncio.run(rows.data.assign_partitions(rows, assigned))

    assert sorted(rows.data._dbs) == [0]
    assert list(rows.data._iterkeys()) == [b"row-of-0"]
    assert rows.data._get(b"row-of-1") is None
    assert rows.data._get(b"row-of-0") == b"state"


class Fetched:
    """A confluent-kafka message as the consumer hands it over."""

    def __init__(
        self, partition: int, offset: int, key: bytes, value: bytes | None, eof: bool = False
    ) -> None:
        self._partition, self._offset, self._key, self._value = partition, offset, key, value
        self._eof = eof

    def topic(self) -> str:
        return "t-changelog"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def error(self) -> Any:
        if not self._eof:
            return None
        return SimpleNamespace(code=lambda: KafkaError._PARTITION_EOF)


class ChangelogConsumer:
    """Hands over the given batches, one per consume, then nothing; records the pauses."""

    def __init__(self, batches: list[list[Fetched]]) -> None:
        self.batches = batches
        self.paused: list[int] = []

    def consume(self, count: int, timeout: float) -> list[Fetched]:
        return self.batches.pop(0) if self.batches else []

    def pause(self, partitions: list[Any]) -> None:
        self.paused.extend(tp.partition for tp in partitions)


def read(tmp_path: Path, batches: list[list[Fetched]], end: int) -> tuple[dict[bytes, bytes], Any]:
    table = TableFiles("t-changelog", tmp_path, "t", rocksdb_options(Settings()))
    db = open_file(table, 0)
    consumer = ChangelogConsumer(batches)
    try:
        read_changelogs(consumer, {("t-changelog", 0): PartitionFill(db, Span(0, end))}, 10, 0.5)
        return dict(db.items()), consumer
    finally:
        db.close()


def test_a_changelog_written_while_it_is_read_is_read_to_the_end_it_had(tmp_path: Path) -> None:
    """The partition ended at 3 when the fill started; 3 and 4 came meanwhile, in the batch
    that reached 3, and 5 after: Faust's recovery reads 5 on from the offset the file holds."""
    batches = [
        [Fetched(0, 0, b"a", b"a-0"), Fetched(0, 1, b"b", b"b-1")],
        [Fetched(0, 2, b"a", None), Fetched(0, 3, b"b", b"b-3"), Fetched(0, 4, b"c", b"c-4")],
        [Fetched(0, 5, b"c", None)],
    ]
    held, consumer = read(tmp_path, batches, end=3)
    assert held == {b"b": b"b-3", b"c": b"c-4", OFFSET_KEY: b"4"}
    assert consumer.paused == [0]


def test_a_partition_whose_records_end_short_of_its_end_is_done_at_its_end_of_partition(
    tmp_path: Path,
) -> None:
    """Read committed: an open transaction's records (from 2 on) are not handed over."""
    batches = [
        [
            Fetched(0, 0, b"a", b"a-0"),
            Fetched(0, 1, b"b", b"b-1"),
            Fetched(0, 2, b"", None, eof=True),
        ]
    ]
    held, _ = read(tmp_path, batches, end=6)
    assert held == {b"a": b"a-0", b"b": b"b-1", OFFSET_KEY: b"1"}


def test_a_changelog_that_hands_over_nothing_stops_the_fill(tmp_path: Path) -> None:
    with pytest.raises(TimeoutError):
        read(tmp_path, [], end=3)
