"""A worker whose data directory is lost starts from its changelogs with LETHE_PREWARM=on, and its
state is the one Faust's own recovery rebuilds: the same RocksDB contents, the same rows tracked
on /metrics, and the commands it then issues are the ones the rows owe.

The run has a table of its own, `it_prewarm_<run>_connection_logs` (a copy of the demo's
connection_logs, which no connector captures), and writes the Debezium change records of its
rows itself into `hosting.public.it_prewarm_<run>_connection_logs`. The worker's policy is
config/policy.yaml with that table as its only source (delete a year after logged_at), under a
manual clock that stands at T0 (nothing due) or T1. Rows 1-30 are created, logged a year and
`row` hours before T0 + `row` hours; rows 21-25 are then updated to be logged a year and one
hour before T0 (due at T0 + 1 h); rows 3, 7 and 11 are deleted (their state and locations go:
tombstones in the changelogs). At T1 = T0 + 15.5 h, rows 1-15 and 21-25 are due, less the
deleted ones.

1. A worker (prewarm off, clock T0) reads them all, then stops: its changelogs hold the state,
   and its data directory the last changelog offset of each partition (checked against 3).
2. A worker on a new data directory, prewarm off: Faust's own recovery. Its files are kept.
3. The prewarm alone (`lethe.prewarm.fill`) into a new directory: the same files, offsets too.
4. A worker on a new data directory, prewarm on, clock T0: it applied the changelogs before
   Faust started, tracks what worker 2 tracked, and its files hold what worker 2's hold.
5. A worker on a new data directory, prewarm on, clock T1: one delete for each due row, due a
   year after its last logged_at, none for the others.
6. The prewarm brings worker 4's directory, now behind, up to date: it reads only what worker 5
   wrote, and the files then hold what worker 5's hold.
At the end the run's topics, consumer group and table are dropped. Runs on the shared stack.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from rocksdict import Options, Rdict

from lethe.kafka_clients import client_config
from lethe.prewarm import OFFSET_KEY, Filled, TableFiles, fill
from lethe.settings import Settings
from policy.instants import parse_instant
from tests.integration.workers import (
    LogsRun,
    WorkerProcess,
    commands_of,
    committed_to_end,
    logs_run,
    quiet,
    read_topic,
    start_worker,
    stop,
    wait_for,
)

pytestmark = pytest.mark.integration

CUSTOMER = 987_650_071
"""A customer id no demo row has (rows go to customers CUSTOMER + row % 3)."""
T0 = datetime(2026, 6, 1, tzinfo=UTC)
T1 = T0 + timedelta(hours=15, minutes=30)
CREATED = range(1, 31)
UPDATED = range(21, 26)
DELETED = (3, 7, 11)
DUE_AT_T1 = sorted((set(range(1, 16)) | set(UPDATED)) - set(DELETED))
"""Hand-worked: created rows are due `row` hours after T0, updated ones 1 hour after."""


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def logged_at(row: int) -> datetime:
    hours = 1 if row in UPDATED else row
    return (T0 + timedelta(hours=hours)).replace(year=T0.year - 1)


@pytest.fixture
def run(real_stack: Settings, tmp_path: Path) -> Iterator[LogsRun]:
    with logs_run(real_stack, "prewarm-it-", "prewarm", tmp_path) as run:
        yield run


def write_changes(settings: Settings, run: LogsRun) -> None:
    """Creates of rows 1-30, updates of rows 21-25, deletes of rows 3, 7 and 11 (each with
    Debezium's tombstone after it), JsonConverter without schema."""

    def image(row: int, at: datetime) -> dict[str, Any]:
        return {
            "id": row,
            "customer_id": CUSTOMER + row % 3,
            "ip_address": "192.0.2.71",
            "logged_at": stamp(at),
        }

    producer = Producer(quiet(settings))

    def send(row: int, op: str, before: Any, after: Any) -> None:
        now_ms = time.time_ns() // 1_000_000
        value = {
            "before": before,
            "after": after,
            "source": {"ts_ms": now_ms, "table": run.table},
            "op": op,
            "ts_ms": now_ms,
        }
        producer.produce(run.topic, key=orjson.dumps({"id": row}), value=orjson.dumps(value))

    first = {row: (T0 + timedelta(hours=row)).replace(year=T0.year - 1) for row in CREATED}
    for row in CREATED:
        send(row, "c", None, image(row, first[row]))
    for row in UPDATED:
        send(row, "u", image(row, first[row]), image(row, logged_at(row)))
    for row in DELETED:
        send(row, "d", image(row, first[row]), None)
        producer.produce(run.topic, key=orjson.dumps({"id": row}), value=None)
    assert producer.flush(30) == 0, "the change records were not all delivered"


def worker(run: LogsRun, name: str, at: datetime, *, prewarm: bool) -> WorkerProcess:
    """A worker of the run on the data directory `<workdir>/<name>` under the manual clock at
    `at` (a clock topic no one writes: it stays there)."""
    return start_worker(
        run.app_id,
        run.workdir,
        run.write_policy(),
        log_name=f"{name}.log",
        env={
            "LETHE_DATA_DIR": str(run.workdir / name),
            "LETHE_CLOCK": "manual",
            "LETHE_CLOCK_START": stamp(at),
            "LETHE_CLOCK_TOPIC": f"{run.app_id}-no-clock",
            "LETHE_CENSUS_INTERVAL": "1",
            "LETHE_PREWARM": "on" if prewarm else "off",
        },
    )


def tracked(worker: WorkerProcess, table: str) -> dict[str, float] | None:
    """The rows tracked of `table` on /metrics by purpose, once the census has counted some."""
    metrics = worker.metrics() or {}
    counts = {
        dict(labels)["purpose"]: value
        for (name, labels), value in metrics.items()
        if name == "lethe_rows_tracked" and dict(labels).get("table") == table
    }
    return counts if any(counts.values()) else None


def files_of(data_dir: Path, app_id: str) -> dict[str, dict[bytes, bytes]]:
    """Every table partition's RocksDB under a worker's data directory, by file name."""
    tabledir = data_dir / app_id / "v1" / "tables"
    found: dict[str, dict[bytes, bytes]] = {}
    for path in sorted(tabledir.glob("*.db")):
        db = Rdict(str(path), Options(raw_mode=True))
        try:
            found[path.name] = dict(db.items())
        finally:
            db.close()
    return found


def without_offsets(files: dict[str, dict[bytes, bytes]]) -> dict[str, dict[bytes, bytes]]:
    return {
        name: {k: v for k, v in data.items() if k != OFFSET_KEY}
        for name, data in files.items()
        if any(k != OFFSET_KEY for k in data)
    }


def tracks_then_stopped(
    started: WorkerProcess, table: str, expected: dict[str, float], when: str
) -> None:
    """Wait until the census on /metrics shows `expected` rows of `table` tracked; the worker
    stopped. The census counts each partition at its own first tick and shows the sum of those
    counted so far: just after a start it may show one partition only (18 of 27 rows, once)."""
    seen: list[dict[str, float] | None] = [None]

    def counted() -> bool | None:
        seen[0] = tracked(started, table)
        return True if seen[0] == expected else None

    try:
        wait_for("the worker's /metrics page", started.metrics, started)
        wait_for(lambda: f"{expected} rows tracked {when}; last seen {seen[0]}", counted, started)
    finally:
        stop(started)


def test_a_lost_data_directory_is_prewarmed_to_the_state_faust_recovers(
    real_stack: Settings, run: LogsRun
) -> None:
    table = run.source
    first = worker(run, "first", T0, prewarm=False)
    try:
        wait_for("the worker's /metrics page", first.metrics, first)
        write_changes(real_stack, run)
        inputs = [run.topic, f"{run.app_id}-subject-events"]
        wait_for(
            "the worker's input committed past every change",
            lambda: committed_to_end(real_stack, run.app_id, inputs),
            first,
        )
        expected = {"user_identification": len(CREATED) - len(DELETED)}
        wait_for(
            f"{expected} rows tracked",
            lambda: True if tracked(first, table) == expected else None,
            first,
        )
    finally:
        stop(first)

    changelogs = sorted(
        t for t in AdminClient(quiet(real_stack)).list_topics(timeout=10).topics
        if t.startswith(f"{run.app_id}-") and t.endswith("-changelog")
    )  # fmt: skip
    tombstones = sum(
        1 for topic in changelogs for m in read_topic(real_stack, topic) if m.value() is None
    )
    assert tombstones >= 2 * len(DELETED), "the deletes left tombstones in the changelogs"

    recovered = worker(run, "recovered", T0, prewarm=False)
    tracks_then_stopped(recovered, table, expected, "after Faust's recovery")
    faust_files = files_of(run.workdir / "recovered", run.app_id)

    def prewarm_into(data_dir: Path) -> Filled:
        tabledir = data_dir / run.app_id / "v1" / "tables"
        name = slice(len(run.app_id) + 1, -len("-changelog"))
        tables = [TableFiles(topic, tabledir, topic[name]) for topic in changelogs]
        return fill(client_config(real_stack), tables)

    filled_dir = run.workdir / "filled"
    filled = prewarm_into(filled_dir)
    assert filled.records > 0
    assert filled.complete == filled.partitions
    prewarm_files = files_of(filled_dir, run.app_id)
    assert without_offsets(prewarm_files) == without_offsets(faust_files)
    first_files = files_of(run.workdir / "first", run.app_id)
    for name, data in prewarm_files.items():
        assert first_files.get(name, {}).get(OFFSET_KEY) == data.get(OFFSET_KEY), (
            f"{name}: the worker stopped with its last changelog offset persisted (a restart "
            "on its directory replays nothing)"
        )
    for name, data in prewarm_files.items():
        if OFFSET_KEY in faust_files.get(name, {}):
            assert data[OFFSET_KEY] == faust_files[name][OFFSET_KEY], name

    prewarmed = worker(run, "prewarmed", T0, prewarm=True)
    tracks_then_stopped(prewarmed, table, expected, "after the prewarm, as after Faust's recovery")
    assert "lethe worker: prewarm applied" in prewarmed.log()
    assert without_offsets(files_of(run.workdir / "prewarmed", run.app_id)) == without_offsets(
        faust_files
    )

    enforcing = worker(run, "enforcing", T1, prewarm=True)
    try:
        wait_for(
            f"deletes of rows {DUE_AT_T1}",
            lambda: (
                True
                if len({c["key"]["id"] for c in commands_of(real_stack, table)}) >= len(DUE_AT_T1)
                else None
            ),
            enforcing,
        )
        time.sleep(3)  # anything more it would send
        commands = commands_of(real_stack, table)
    finally:
        stop(enforcing)
    assert "lethe worker: prewarm applied" in enforcing.log()
    assert len(commands) == len(DUE_AT_T1), "each delete sent once"
    assert {(c["action"], int(c["key"]["id"]), parse_instant(c["due_at"])) for c in commands} == {
        ("delete", row, parse_instant(stamp(logged_at(row).replace(year=T0.year))))
        for row in DUE_AT_T1
    }

    behind = run.workdir / "prewarmed"  # as the worker at T0 left it: without the deletes issued
    caught_up = prewarm_into(behind)
    assert 0 < caught_up.records < filled.records, "only what was written after"
    behind_files = files_of(behind, run.app_id)
    enforcing_files = files_of(run.workdir / "enforcing", run.app_id)
    assert without_offsets(behind_files) == without_offsets(enforcing_files)
    for name, data in behind_files.items():
        if OFFSET_KEY in enforcing_files.get(name, {}):
            assert data[OFFSET_KEY] == enforcing_files[name][OFFSET_KEY], name
