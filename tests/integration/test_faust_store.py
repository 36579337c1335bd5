"""The driver's state in Faust tables (`lethe.faust_store.FaustStore`), on a real RocksDB store
and the real broker, run inside an agent's stream by `FaustHarness` (one app for the module).

- the store keeps the store contract: every test of `tests/unit/test_store_contract.py`,
  run inside the stream on partition 1 against a fresh store over emptied tables;
- partitions do not see each other's rows or timers;
- a new store over the same tables (a restart, a partition assigned again) finds every
  row's timer again from the rows;
- a row that moves to another partition (its subject changed) is located there and
  forgotten in the partition it left, in their databases and changelogs, when one worker
  holds both;
- storing a row state equal to the stored one writes no changelog record;
- the driver over the Faust store issues the same commands and ends in the same rows,
  subjects and locations as over the in-memory store, on random streams fed one record per
  change event, with a restart at a random point.

The module's topics (`lethe-it-faststore-<random>-*`) and consumer group are deleted at the end.
Fails (never skips) when the stack is down: start it with `lethe stack up`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from faust.types import TP
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.unit.test_store_contract as contract
from lethe.agents.census_slices import CensusRun
from lethe.faust_store import LOCATIONS, ROWS, FaustStore, decode_row_key, where_key
from lethe.settings import Settings
from policy.census import Census, take_census
from policy.driver import Driver
from policy.engine import next_due
from policy.events import ChangeEvent
from policy.instants import Instant
from policy.simulation import decode_line
from policy.state import Command, RowState, SubjectState
from policy.store import MemoryStore, RowId, Store
from tests.integration.faust_harness import FaustHarness, clear_partition, partition_items
from tests.unit.conftest import micros, record
from tests.unit.test_engine_properties import ENGINE, FAR, streams

LOG = "connection_logs"

pytestmark = pytest.mark.integration

CONTRACT: dict[str, Callable[[Store], None]] = {
    name: test for name, test in vars(contract).items() if name.startswith("test_")
}


@pytest.fixture(scope="module")
def harness(
    real_stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaustHarness]:
    running = FaustHarness(real_stack.kafka_bootstrap, tmp_path_factory.mktemp("faust"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


def never_due(row: RowState, subject: SubjectState | None) -> Instant | None:
    return None


def engine_due(row: RowState, subject: SubjectState | None) -> Instant | None:
    return next_due(ENGINE, row, subject)


def fresh_store(harness: FaustHarness, partition: int, due: Callable = never_due) -> FaustStore:
    """A store over the partition's tables emptied (run inside the stream)."""
    clear_partition(harness.tables, partition)
    return FaustStore(harness.tables, due)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_the_faust_store_keeps_the_store_contract(harness: FaustHarness, name: str):
    harness.run(lambda: CONTRACT[name](fresh_store(harness, 1)), partition=1)


def test_partitions_do_not_see_each_others_rows_or_timers(harness: FaustHarness):
    store = FaustStore(harness.tables, never_due)
    ticket = contract.rid("customer:1", "support_tickets", 7)

    def store_ticket() -> None:
        fresh_store(harness, 0)
        store.put_row(ticket, contract.state(ticket))
        store.arm(ticket, 10)

    def look_for_ticket() -> tuple[object, ...]:
        clear_partition(harness.tables, 1)
        return (
            store.row(ticket),
            store.locate("public.support_tickets", ticket[2]),
            store.rows_of("customer:1"),
            store.pop_due(100),
        )

    harness.run(store_ticket, partition=0)
    assert harness.run(look_for_ticket, partition=1) == (None, None, [], None)
    assert harness.run(lambda: contract.drain(store, 100), partition=0) == [(10, ticket)]


def test_a_new_store_over_the_same_tables_finds_every_timer_from_the_rows(harness: FaustHarness):
    def due_column(row: RowState, subject: SubjectState | None) -> Instant | None:
        value = row.values.get("due")
        return value if isinstance(value, int) else None

    rows = [contract.rid(f"customer:{n % 2}", "orders", n) for n in range(4)]
    dues = {rows[0]: 40, rows[1]: None, rows[2]: 10, rows[3]: 30}

    def store_rows() -> None:
        store = fresh_store(harness, 1, due_column)
        for row_id, at in dues.items():
            store.put_row(row_id, contract.state(row_id, **({} if at is None else {"due": at})))
            store.arm(row_id, at)

    harness.run(store_rows, partition=1)
    restarted = FaustStore(harness.tables, due_column, harness.app)
    assert harness.run(lambda: contract.drain(restarted, 35), partition=1) == [
        (10, rows[2]),
        (30, rows[3]),
    ]
    harness.revoke({TP(harness.jobs_topic, 1)})  # assigned again later: rebuilt from the rows
    assert harness.run(lambda: contract.drain(restarted, 100), partition=1) == [
        (10, rows[2]),
        (30, rows[3]),
        (40, rows[0]),
    ]


def test_a_census_taken_in_slices_counts_what_one_scan_counts(harness: FaustHarness):
    """1,000 connection logs of 150 customers (due from 2025-01 on, one year after their
    logged_at; 200 of them deleted already) and 5 legal holds: the census in slices that stop
    at every 64th row or subject counts what one scan of the partition counts, and stops
    at least 16 times."""
    logs = [
        record(LOG, "c", "2024-12-01T00:00:00Z", {
            "id": n, "customer_id": n % 150, "ip_address": "x",
            "logged_at": f"2024-{1 + n % 12:02d}-{1 + n % 28:02d}T00:00:00Z"})
        for n in range(1000)
    ]  # fmt: skip
    holds = [
        record("legal_holds", "c", "2024-12-01T00:00:00Z", {
            "id": n, "customer_id": n * 7, "case_ref": "X", "placed_at": None,
            "released_at": None})
        for n in range(5)
    ]  # fmt: skip
    now = micros("2025-06-01T00:00:00Z")

    def fill() -> Census:
        driver = Driver(ENGINE, fresh_store(harness, 0, engine_due))
        for event in change_events([*logs, *holds]):
            driver.feed(event)
        driver.advance(micros("2025-03-01T00:00:00Z"))
        store = FaustStore(harness.tables, engine_due)
        rows = ((row, subject) for _, row, subject in store.states_after(None))
        subjects = (state for _, state in store.subject_states_after(None))
        return take_census(ENGINE, rows, subjects, now)

    whole = harness.run(fill, partition=0)
    assert whole.holds == {"public.legal_holds": 5}
    assert sum(whole.backlog.values()) > 0 and sum(whole.unconfirmed.values()) > 0
    run = CensusRun(now)
    store = FaustStore(harness.tables, engine_due)
    slices = 1
    while not harness.run(lambda: run.scan(ENGINE, store, slice_s=0.0), partition=0):
        slices += 1
    assert run.census == whole
    assert slices >= 16


def changelog_state(harness: FaustHarness, table: str, partition: int) -> dict[bytes, bytes]:
    """What a recovery from the table's changelog partition restores: each key's last value."""
    topic = f"{harness.app_id}-{table}-changelog"
    asyncio.run_coroutine_threadsafe(harness.app.producer.flush(), harness.loop).result(30)
    end = wait_for_changelog(harness, table, partition, 0)
    consumer = Consumer(
        {"bootstrap.servers": harness.bootstrap, "group.id": harness.app_id + "-read"}
    )
    state: dict[bytes, bytes] = {}
    try:
        consumer.assign([TopicPartition(topic, partition, 0)])
        position = 0
        deadline = time.monotonic() + 30
        while position < end:
            assert time.monotonic() < deadline, f"{topic}[{partition}] read to {position} < {end}"
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            position = message.offset() + 1
            key, value = message.key(), message.value()
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
    finally:
        consumer.close()
    return {key: value for key, value in state.items() if not key.startswith(b"__faust")}


def test_a_row_moved_to_another_partition_is_located_there_and_forgotten_here(
    harness: FaustHarness,
):
    """A survey whose customer id is emptied moves from `customer:3` (partition 0) to no
    subject (partition 1), one worker holding both: the new partition stores it first, then
    the old one forgets it (the depart). Each partition, and its changelog, ends as if the
    other did not exist."""
    store = FaustStore(harness.tables, never_due)
    table, key = "public.satisfaction_surveys", (("id", 7),)
    old, new = (("customer:3", table, key), (None, table, key))
    location = where_key(table, key)
    harness.run(lambda: fresh_store(harness, 1), partition=1)
    harness.run(lambda: fresh_store(harness, 0), partition=0)
    harness.run(lambda: store.put_row(old, contract.state(old)), partition=0)
    harness.run(lambda: store.put_row(new, contract.state(new)), partition=1)
    harness.run(lambda: store.delete_row(old), partition=0)

    assert harness.run(lambda: (store.locate(table, key), store.row(new)), partition=1) == (
        new,
        contract.state(new),
    )
    assert harness.run(lambda: (store.locate(table, key), store.row(old)), partition=0) == (
        None,
        None,
    )
    assert dict(partition_items(harness.tables.locations, 1)) == {location: b"null"}
    assert dict(partition_items(harness.tables.locations, 0)) == {}
    assert changelog_state(harness, LOCATIONS, 1) == {location: b"null"}
    assert changelog_state(harness, LOCATIONS, 0) == {}
    assert changelog_state(harness, ROWS, 0) == {}


def changelog_end(harness: FaustHarness, table: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": harness.bootstrap, "group.id": harness.app_id})
    try:
        topic = f"{harness.app_id}-{table}-changelog"
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        return int(high)
    finally:
        consumer.close()


def wait_for_changelog(harness: FaustHarness, table: str, partition: int, at_least: int) -> int:
    deadline = time.monotonic() + 30
    while (end := changelog_end(harness, table, partition)) < at_least:
        assert time.monotonic() < deadline, f"{table} changelog stayed at {end} < {at_least}"
        time.sleep(0.2)
    return end


def settled_changelog(harness: FaustHarness, table: str, partition: int) -> int:
    """The changelog's end once it has not moved for 2 s: the records of earlier writes (Faust
    sends them asynchronously) are all in, so what comes next is the next writes' only."""
    deadline = time.monotonic() + 30
    end, since = changelog_end(harness, table, partition), time.monotonic()
    while time.monotonic() - since < 2.0:
        assert time.monotonic() < deadline, f"{table} changelog kept moving: {end}"
        time.sleep(0.2)
        if (now := changelog_end(harness, table, partition)) != end:
            end, since = now, time.monotonic()
    return end


def test_storing_an_unchanged_row_state_writes_no_changelog_record(harness: FaustHarness):
    order = contract.rid("customer:5", "orders", 1)
    store = FaustStore(harness.tables, never_due)
    harness.run(lambda: fresh_store(harness, 1), partition=1)
    rows_before = settled_changelog(harness, ROWS, 1)
    locations_before = settled_changelog(harness, LOCATIONS, 1)
    for values in ({"ordered_at": 5}, {"ordered_at": 5}, {"ordered_at": 6}):
        harness.run(lambda values=values: store.put_row(order, contract.state(order, **values)), 1)
    assert wait_for_changelog(harness, ROWS, 1, rows_before + 2) == rows_before + 2
    assert wait_for_changelog(harness, LOCATIONS, 1, locations_before + 1) == (locations_before + 1)


# --- the driver over both stores -------------------------------------------------------------


def change_events(lines: list[str]) -> list[ChangeEvent]:
    events = [decode_line(ENGINE, line) for line in lines]
    return [event for event in events if isinstance(event, ChangeEvent)]


def command_documents(commands: list[Command]) -> list[bytes]:
    """Timers due at the same instant pop in no particular order: compare as multisets."""
    return sorted(orjson.dumps(command.to_json()) for command in commands)


Snapshot = tuple[dict[RowId, RowState], dict[str, SubjectState], dict[bytes, str | None]]


def memory_snapshot(store: MemoryStore) -> Snapshot:
    rows = {row_id: store.row(row_id) for row_id in store.row_ids()}
    subjects = {key: store.subject(key) for key in store.subjects()}
    locations = {where_key(table, key): subject for subject, table, key in rows}
    return rows, subjects, locations  # type: ignore[return-value]


def faust_snapshot(harness: FaustHarness, partition: int) -> Snapshot:
    tables = harness.tables
    rows = {
        decode_row_key(key): RowState.from_bytes(value)
        for key, value in partition_items(tables.rows, partition)
    }
    subjects = {
        key.decode(): SubjectState.from_bytes(value)
        for key, value in partition_items(tables.subjects, partition)
    }
    locations = {
        key: orjson.loads(value) for key, value in partition_items(tables.locations, partition)
    }
    return rows, subjects, locations


@pytest.mark.filterwarnings(
    # the app's event loop thread (aiokafka) draws from `random` while examples are generated
    "ignore:Do not use the `random` module inside strategies"
)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines=streams(), restart_at=st.integers(min_value=0, max_value=25))
def test_the_driver_over_faust_tables_does_what_it_does_in_memory(
    harness: FaustHarness, lines: list[str], restart_at: int
):
    events = change_events(lines)
    in_memory = Driver(ENGINE, MemoryStore())
    expected = [command for event in events for command in in_memory.feed(event).commands]
    expected += in_memory.advance(FAR).commands

    driver = harness.run(lambda: Driver(ENGINE, fresh_store(harness, 0, engine_due)))
    issued: list[Command] = []
    fed = 0

    def feed(_: bytes) -> None:
        nonlocal driver, fed
        if fed == restart_at:  # a restart: the due index is rebuilt from the stored rows
            driver = Driver(ENGINE, FaustStore(harness.tables, engine_due), driver.clock)
        issued.extend(driver.feed(events[fed]).commands)
        fed += 1

    harness.feed([b"%d" % n for n in range(len(events))], feed, partition=0)

    def finish() -> Snapshot:
        issued.extend(driver.advance(FAR).commands)
        return faust_snapshot(harness, 0)

    assert fed == len(events)
    snapshot = harness.run(finish, partition=0)
    assert command_documents(issued) == command_documents(expected)
    assert snapshot == memory_snapshot(in_memory.store)  # type: ignore[arg-type]
