"""Never early because an input lags: a real `lethe worker` (LETHE_CLOCK=wall) does not issue a
delete while the change topic of the legal holds is behind the delete's due instant, so a hold
placed just before the delete fell due, and stuck behind a backlog, still stops it.

The run has tables and change topics of its own, as in `test_enforce` (whose helpers it uses):
`inputs_it_<run>_<table>` copies of the demo's tables, the Debezium change records written by
the test. Two support tickets of two customers are deleted 5 years after their last message,
so their delete falls due a few seconds into the test (T). Just before, the test writes
`FILLER` tombstones to the holds topic (the backlog: Debezium writes one after each delete of
a row), then a hold on the first customer placed now (before T). When T passes the worker is
still reading the backlog (checked), so:
- neither delete is issued while the holds lag (the second ticket's table waits too: bounds
  are per table);
- once the holds are read, the held ticket is never deleted, and the other one is, within a
  few ticks (no stall once every input is caught up);
and a connection log that falls due later, with every input caught up, is deleted (no stall:
within the bounded wait), never before its due instant. How soon after its due is a figure for
`bench/delay_bench.py`, not a timed assertion here.

The source connector falls silent: the worker watches a heartbeat topic of the run's own
(LETHE_SOURCE_HEARTBEAT_TOPIC), to which the test writes a change of the heartbeat table
`lethe_heartbeat.source_heartbeat` committed now every 0.2 s, as the connector's
`heartbeat.action.query` does every `heartbeat.interval.ms`. Two tickets fall due a few seconds
after the heartbeats stop (the connector died, with every change topic read to its end); a hold
on the first customer is written in the database meanwhile, which a dead connector does not
publish. Nothing is deleted while the source is silent, and `lethe_source_heartbeat_age_seconds`
says so; when the connector is back, the hold comes first, then the heartbeats: the held ticket
is never deleted, the other one is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Producer

from lethe.settings import Settings
from tests.integration.test_enforce import (
    ChangeWriter,
    Commands,
    Run,
    instant,
    provisioned,
    select,
    start_worker,
)
from tests.integration.workers import WorkerProcess, quiet, serving, wait_for

pytestmark = pytest.mark.integration

APP_ID_PREFIX = "inputs-it-"
FILLER = 150_000
"""Tombstones ahead of the hold on its topic: several seconds of the worker's reading."""
HELD, FREE, LOGGER = 987_650_051, 987_650_052, 987_650_053
SILENT_HELD, SILENT_FREE = 987_650_054, 987_650_055
"""Customer ids no demo row has."""
DUE_IN_S = 4


@dataclass
class InputsRun(Run):
    def table(self, kind: str) -> str:
        return f"inputs_it_{self.run}_{kind}"


@pytest.fixture(scope="module")
def run(real_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The run's tables and change topics, its policy; dropped at the end."""
    workdir = tmp_path_factory.mktemp("inputs")
    with provisioned(real_stack, APP_ID_PREFIX, workdir, InputsRun) as run:
        yield run


class Heartbeats:
    """Writes a change of the heartbeat table, committed now, every 0.2 s to the run's
    heartbeat topic, as the connector does, until `silent` is set (the connector died) and
    again once it is cleared."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.silent = threading.Event()
        self._stop = threading.Event()
        self._producer = Producer(quiet(settings))
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(0.2):
            if not self.silent.is_set():
                now_us = time.time_ns() // 1000
                value = orjson.dumps(
                    {
                        "before": None,
                        "after": {"id": 1, "beat_at": now_us},
                        "source": {"ts_ms": now_us // 1000, "ts_us": now_us,
                                   "schema": "lethe_heartbeat", "table": "source_heartbeat"},
                        "op": "u",
                        "ts_ms": now_us // 1000,
                    }
                )  # fmt: skip
                self._producer.produce(self.topic, key=b'{"id":1}', value=value)
                self._producer.poll(0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._producer.flush(10)


@pytest.fixture(scope="module")
def heartbeats(real_stack: Settings, run: Run) -> Iterator[Heartbeats]:
    beats = Heartbeats(real_stack, f"{run.app_id}-heartbeat")
    try:
        yield beats
    finally:
        beats.close()


@pytest.fixture(scope="module")
def worker(real_stack: Settings, run: Run, heartbeats: Heartbeats) -> Iterator[WorkerProcess]:
    env = {"LETHE_SOURCE_HEARTBEAT_TOPIC": heartbeats.topic}
    with serving(start_worker(run, env)) as handle:
        yield handle


def whole_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def years_before(moment: datetime, years: int) -> datetime:
    return moment.replace(year=moment.year - years)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_backlog(settings: Settings, run: Run, count: int) -> None:
    """`count` tombstones on the holds topic (keys of rows that never existed)."""
    producer = Producer(
        {**quiet(settings), "linger.ms": 50, "queue.buffering.max.messages": 500_000}
    )
    topic = run.topic("legal_holds")
    for number in range(count):
        producer.produce(topic, key=orjson.dumps({"id": 1_000_000 + number}), value=None)
        if number % 50_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0, "the backlog was not delivered"


def ticket(number: int, customer: int, last_message: datetime) -> dict[str, Any]:
    return {
        "id": number,
        "customer_id": customer,
        "subject_line": "due soon",
        "body": "kept while held",
        "contact_email": "it-inputs@example.org",
        "created_at": iso(last_message),
        "last_message_at": iso(last_message),
    }


def insert_ticket(settings: Settings, run: Run, row: dict[str, Any]) -> None:
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {run.table('support_tickets')} (id, customer_id, subject_line, body, "
            "contact_email, created_at, last_message_at) VALUES (%(id)s, %(customer_id)s, "
            "%(subject_line)s, %(body)s, %(contact_email)s, %(created_at)s, %(last_message_at)s)",
            row,
        )


def ticket_ids(settings: Settings, run: Run) -> set[int]:
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        rows = conn.execute(f"SELECT id FROM {run.table('support_tickets')}").fetchall()
    return {row[0] for row in rows}


def lag_seconds(worker: WorkerProcess, table: str) -> float | None:
    """lethe_input_watermark_lag_seconds of `table` as /metrics shows it now."""
    metrics = worker.metrics() or {}
    name, labels = "lethe_input_watermark_lag_seconds", frozenset({("table", table)})
    return metrics.get((name, labels))


def count(worker: WorkerProcess, table: str, op: str) -> int:
    return (worker.change_counts(table) or {}).get(op, 0)


def test_a_hold_behind_a_backlog_on_its_topic_stops_a_delete_that_fell_due_meanwhile(
    real_stack: Settings, run: Run, worker: WorkerProcess
) -> None:
    changes = ChangeWriter(real_stack, run)
    holds = run.source("legal_holds")
    tickets = run.source("support_tickets")
    write_backlog(real_stack, run, FILLER)
    placed = iso(datetime.now(UTC))
    hold = {"id": 1, "customer_id": HELD, "case_ref": "IT-INPUTS", "placed_at": placed,
            "released_at": None}  # fmt: skip
    changes.write("legal_holds", "c", None, hold)
    due = whole_second(datetime.now(UTC)) + timedelta(seconds=DUE_IN_S)
    last_message = years_before(due, 5)  # deleted 5 years after the last message
    held, free = ticket(1, HELD, last_message), ticket(2, FREE, last_message)
    for row in (held, free):
        insert_ticket(real_stack, run, row)
        changes.write("support_tickets", "c", None, row)

    wait_for("the tickets read", lambda: True if count(worker, tickets, "c") == 2 else None, worker)
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 2.0)
    assert count(worker, holds, "c") == 0, (
        f"the worker read the hold ({count(worker, holds, 'tombstone')} of {FILLER} tombstones "
        "then) less than 2 s after the delete fell due: the holds did not lag; raise FILLER"
    )
    assert ticket_ids(real_stack, run) == {1, 2}, "nothing deleted while the holds lag"

    wait_for(
        lambda: f"the hold read ({count(worker, holds, 'tombstone')} of {FILLER} tombstones)",
        lambda: True if count(worker, holds, "c") == 1 else None,
        worker,
    )
    wait_for(
        "the free ticket deleted once the holds are caught up",
        lambda: True if 2 not in ticket_ids(real_stack, run) else None,
        worker,
    )
    assert 1 in ticket_ids(real_stack, run), "the held ticket was deleted"
    lag = lag_seconds(worker, holds)
    assert lag is not None and 0 <= lag < 60, f"the holds' lag on /metrics once caught up: {lag}"
    time.sleep(2.0)  # four more sweeps
    assert ticket_ids(real_stack, run) == {1}
    commands = Commands(real_stack, run, worker)
    try:
        issued = {(c["key"]["id"], c["action"], instant(c["due_at"])) for c in commands.of(tickets)}
    finally:
        commands.reader.close()
    assert issued == {(2, "delete", due)}, "the held ticket's delete is never issued"
    assert "it-inputs@example.org" not in worker.log(), "no row value in the log"


def test_with_every_input_caught_up_a_delete_is_issued_at_its_due_not_before(
    real_stack: Settings, run: Run, worker: WorkerProcess
) -> None:
    changes = ChangeWriter(real_stack, run)
    due = whole_second(datetime.now(UTC)) + timedelta(seconds=DUE_IN_S)
    logged = years_before(due, 1)  # connection logs are deleted a year after
    row = {"id": 1, "customer_id": LOGGER, "ip_address": "192.0.2.53", "logged_at": iso(logged)}
    with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {run.table('connection_logs')} (id, customer_id, ip_address, logged_at) "
            "VALUES (%(id)s, %(customer_id)s, %(ip_address)s, %(logged_at)s)",
            row,
        )
    changes.write("connection_logs", "c", None, row)
    wait_for(
        "the connection log deleted",
        lambda: True if select(real_stack, run, "connection_logs", "id") is None else None,
        worker,
    )
    commands = Commands(real_stack, run, worker)
    try:
        issued = commands.of(run.source("connection_logs"))
    finally:
        commands.reader.close()
    assert {(c["action"], instant(c["due_at"])) for c in issued} == {("delete", due)}
    assert all(instant(c["issued_at"]) >= due for c in issued), "never before its due"


def heartbeat_age(worker: WorkerProcess, topic: str) -> float | None:
    metrics = worker.metrics() or {}
    return metrics.get(("lethe_source_heartbeat_age_seconds", frozenset({("topic", topic)})))


def test_a_silent_source_connector_holds_back_the_deletes_that_fall_due_until_it_is_heard(
    real_stack: Settings, run: Run, worker: WorkerProcess, heartbeats: Heartbeats
) -> None:
    changes = ChangeWriter(real_stack, run)
    tickets = run.source("support_tickets")
    due = whole_second(datetime.now(UTC)) + timedelta(seconds=DUE_IN_S + 2)
    last_message = years_before(due, 5)
    held, free = ticket(11, SILENT_HELD, last_message), ticket(12, SILENT_FREE, last_message)
    before = count(worker, tickets, "c")
    for row in (held, free):
        insert_ticket(real_stack, run, row)
        changes.write("support_tickets", "c", None, row)
    wait_for(
        "the tickets read",
        lambda: True if count(worker, tickets, "c") == before + 2 else None,
        worker,
    )
    heartbeats.silent.set()
    placed = iso(datetime.now(UTC))  # the hold the silent connector does not publish
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 4.0)
    assert {11, 12} <= ticket_ids(real_stack, run), "nothing deleted while the source is silent"
    age = heartbeat_age(worker, heartbeats.topic)
    assert age is not None and age > 4.0, f"the heartbeat's age on /metrics: {age}"

    hold = {"id": 11, "customer_id": SILENT_HELD, "case_ref": "IT-SILENT", "placed_at": placed,
            "released_at": None}  # fmt: skip
    changes.write("legal_holds", "c", None, hold)  # the connector is back: what it missed first
    heartbeats.silent.clear()
    wait_for(
        "the free ticket deleted once the source is heard again",
        lambda: True if 12 not in ticket_ids(real_stack, run) else None,
        worker,
    )
    time.sleep(2.0)  # four more sweeps
    assert 11 in ticket_ids(real_stack, run), "the held ticket was deleted"
    age = heartbeat_age(worker, heartbeats.topic)
    assert age is not None and age < 5.0, f"the heartbeat's age once heard again: {age}"
    commands = Commands(real_stack, run, worker)
    try:
        issued = {(c["key"]["id"], c["action"]) for c in commands.of(tickets)}
    finally:
        commands.reader.close()
    assert (12, "delete") in issued and (11, "delete") not in issued
