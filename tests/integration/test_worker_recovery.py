"""A worker killed with SIGKILL mid-run and started again (same app id, same data directory)
recovers its state from its changelogs and issues every due command: each overdue row gets its
delete, and a command sent twice has the same command id; the rows end deleted in PostgreSQL.

The run has a table of its own, `it_recover_<run>_connection_logs` (a copy of the demo's
connection_logs, which no connector captures), and writes the Debezium change records of its
rows itself into `hosting.public.it_recover_<run>_connection_logs`. The worker's policy is
config/policy.yaml with that table as its only source (delete a year after logged_at), under
the wall clock: rows logged in 2024 are overdue at once. Rows 1-20 (overdue) and 41-50
(logged a year before a moment 40 s after they are written: due then) are written, the worker
is killed once it has issued some deletes and committed its input past every row (so rows
41-50 are read again by no one: their deletes can only come from the state it recovers), rows
21-40 are written while it is down, and it is started again. At the end the run's topics,
consumer group and table are dropped. Runs on the shared stack (own table, topics and app id).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Producer

from lethe.settings import Settings
from tests.integration.workers import (
    LogsRun,
    WorkerProcess,
    commands_of,
    committed_to_end,
    logs_run,
    quiet,
    start_worker,
    stop,
    wait_for,
)

pytestmark = pytest.mark.integration

OVERDUE = range(1, 41)
LATER = range(41, 51)
ROWS = range(1, 51)
LATER_S = 40
CUSTOMER = 987_650_081
"""A customer id no demo row has."""


@pytest.fixture
def run(real_stack: Settings, tmp_path: Path) -> Iterator[LogsRun]:
    with logs_run(real_stack, "lethe-it-recover-", "recover", tmp_path) as run:
        yield run


def overdue(row: int) -> str:
    """A day of 2024: the row's delete was due on that day of 2025."""
    return f"2024-03-{row % 28 + 1:02d}T{row % 24:02d}:15:00Z"


def due_soon() -> str:
    """One year before LATER_S seconds from now: a delete due then."""
    moment = datetime.now(UTC) + timedelta(seconds=LATER_S)
    return moment.replace(year=moment.year - 1).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def insert_rows(settings: Settings, run: LogsRun, logged: dict[int, str]) -> None:
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        for row, at in logged.items():
            conn.execute(
                f"INSERT INTO {run.table} (id, customer_id, ip_address, logged_at) "
                "VALUES (%s, %s, '192.0.2.81', %s)",
                (row, CUSTOMER + row % 3, at),
            )


def write_creates(settings: Settings, run: LogsRun, logged: dict[int, str], rows: range) -> None:
    """The Debezium create records (JsonConverter without schema) of `rows`."""
    producer = Producer(quiet(settings))
    for row in rows:
        now_ms = time.time_ns() // 1_000_000
        after = {
            "id": row,
            "customer_id": CUSTOMER + row % 3,
            "ip_address": "192.0.2.81",
            "logged_at": logged[row],
        }
        value = {
            "before": None,
            "after": after,
            "source": {"ts_ms": now_ms, "table": run.table},
            "op": "c",
            "ts_ms": now_ms,
        }
        producer.produce(run.topic, key=orjson.dumps({"id": row}), value=orjson.dumps(value))
    assert producer.flush(30) == 0, "the change records were not all delivered"


def remaining(settings: Settings, run: LogsRun) -> int:
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        found = conn.execute(f"SELECT count(*) FROM {run.table}").fetchone()
    assert found is not None
    return int(found[0])


def deletes_issued(settings: Settings, run: LogsRun) -> list[dict[str, Any]]:
    return [c for c in commands_of(settings, run.source) if c["action"] == "delete"]


def test_a_worker_killed_mid_run_recovers_and_issues_every_due_command(
    real_stack: Settings, run: LogsRun
) -> None:
    policy = run.write_policy()
    logged = {row: overdue(row) for row in OVERDUE}
    worker: WorkerProcess = start_worker(run.app_id, run.workdir, policy)
    try:
        wait_for("the worker's /metrics page", worker.metrics, worker)
        logged.update({row: due_soon() for row in LATER})
        insert_rows(real_stack, run, logged)
        write_creates(real_stack, run, logged, range(1, 21))
        write_creates(real_stack, run, logged, LATER)
        wait_for(
            "some deletes issued before the kill",
            lambda: True if len(deletes_issued(real_stack, run)) >= 5 else None,
            worker,
        )
        inputs = [run.topic, f"{run.app_id}-subject-events"]
        wait_for(
            "the worker's input committed past every row written",
            lambda: committed_to_end(real_stack, run.app_id, inputs),
            worker,
        )
        early = {int(c["key"]["id"]) for c in deletes_issued(real_stack, run)}
        assert not early & set(LATER), "rows 41-50 are not due before the kill"
        worker.process.kill()
        worker.process.wait(timeout=10)
        write_creates(real_stack, run, logged, range(21, 41))

        worker = start_worker(run.app_id, run.workdir, policy)
        wait_for(
            "every row deleted in PostgreSQL",
            lambda: True if remaining(real_stack, run) == 0 else None,
            worker,
        )
        ids_by_row: dict[int, set[str]] = {}
        for command in deletes_issued(real_stack, run):
            ids_by_row.setdefault(int(command["key"]["id"]), set()).add(str(command["command_id"]))
        assert sorted(ids_by_row) == list(ROWS), "a delete for every row"
        assert all(len(ids) == 1 for ids in ids_by_row.values()), (
            "a row's delete sent twice has the same command id"
        )
    finally:
        stop(worker)
