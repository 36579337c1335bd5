"""A Debezium replay changes nothing: Kafka Connect killed with SIGKILL before it flushed its
offsets sends the changes since its last flush again when it restarts, with their old source
positions; the worker drops them, counts them in `lethe_change_events_replayed_total`, and
issues no second command for a row already deleted.

The run's table `it_replay_<run>_connection_logs` (a copy of the demo's connection_logs,
REPLICA IDENTITY FULL) is added to the demo connector's publication, so Debezium captures it
(topic `hosting.public.it_replay_<run>_connection_logs`); the worker's policy is
config/policy.yaml with that table as its only source (the demo's connection_logs rule: delete
a year after logged_at). A row logged 2024-06-15 is inserted and deleted (two transactions):
overdue under the wall clock, its delete is issued at most once (a stage found overdue on
first sight waits for a sweep with every input processed past the insert, so the delete event,
which follows at once, usually forgets the row before any command), and the row is forgotten.
Connect is frozen (SIGSTOP) as soon as both changes are in Kafka; when
its stored offset (topic `lethe-connect-offsets`, flushed every second by the stack's
`offset.flush.interval.ms=1000`) is still before the insert, it is killed (SIGKILL), otherwise
let go and, once its stored offset is past the delete, the fault tried again with the next
row (a row whose delete was not stored would be sent again too: the replay would hold two
rows). Restarted, Connect sends the insert and the delete again, and nothing else of the
table: both are dropped and counted (without the replay rule the counter stays at 0, and the
insert brings the row back to life in the enforcer until the replayed delete follows).

Connect is the stack's own (`lethe.stack`): in the end (finally) it runs again with its
connectors healthy, the table is out of the publication and dropped, the run's topics and
consumer group deleted. On the shared stack, run it alone: Connect is down for a few seconds.
Run a second time with the worker killed too (SIGKILL) and started again while Connect is
down: the restarted worker drops the replay by the mark it stored.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from lethe import stack
from lethe.settings import Settings
from lethe.stack.connect import Connect, SinkConnector, SourceConnector, source_config
from tests.integration.workers import (
    LogsRun,
    WorkerProcess,
    commands_of,
    committed_to_end,
    drop_run,
    quiet,
    read_topic,
    start_worker,
    stop,
    wait_for,
)

pytestmark = pytest.mark.integration

OFFSETS_TOPIC = "lethe-connect-offsets"
"""Connect's `offset.storage.topic` (lethe/stack/templates/connect-distributed.properties)."""
PUBLICATION = "lethe_hosting"
"""The demo connector's `publication.name` (config/connect/hosting-source.json)."""
CUSTOMER = 987_650_071
"""A customer id no demo row has."""
ATTEMPTS = 5


@pytest.fixture
def run(real_stack: Settings, tmp_path: Path) -> Iterator[LogsRun]:
    """The run's table, captured by the demo connector; Connect healthy and the table, topics
    and consumer group gone at the end."""
    hexed = uuid.uuid4().hex[:8]
    run = LogsRun(f"lethe-it-replay-{hexed}", f"it_replay_{hexed}_connection_logs", tmp_path)
    with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {run.table} (LIKE connection_logs INCLUDING ALL)")
        conn.execute(f"ALTER TABLE {run.table} REPLICA IDENTITY FULL")
        conn.execute(f"ALTER PUBLICATION {PUBLICATION} ADD TABLE {run.table}")
    try:
        yield run
    finally:
        try:
            restore_connect(real_stack)
        finally:
            drop_run(real_stack, run.app_id, run.table, [run.table])  # leaves the publication


def restore_connect(settings: Settings) -> None:
    """Connect running again (thawed, or started) with both connectors RUNNING."""
    pid = Connect(settings).pid()
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    stack.up(settings, only={"connect", "source", "sink"}, say=lambda line: None)
    for connector in (SourceConnector(settings), SinkConnector(settings)):
        assert connector.healthy(), f"{connector.connector} is not RUNNING after the test"


def order(sequence: str) -> tuple[int, int]:
    """A change's Debezium PostgreSQL `source.sequence` (the last commit LSN before it, its
    LSN) as a sortable pair (null commit first)."""
    commit, lsn = orjson.loads(sequence)
    return (-1 if commit is None else int(commit), int(lsn))


BOUNDARIES = ("BEGIN", "COMMIT")
"""The `messageType` of a stored offset taken at a transaction's start or end, not at a change."""


def stored_offset(settings: Settings) -> tuple[int, int]:
    """The demo connector's position Connect stored last, in the order of `order`. An offset
    stored at a commit (a heartbeat's, most often) is (its LSN, -1): it comes before every
    change of the next transaction, whose sequence starts with that same commit LSN and whose
    own LSN can equal it (measured: a heartbeat committed at 27531856, the insert after it had
    the sequence ["27531856","27531856"]; taken as a pair, the commit's offset equalled the
    insert's, and the test let Connect go with the insert not stored)."""
    connector = source_config(settings)[0]
    stored: dict[str, Any] | None = None
    for message in read_topic(settings, OFFSETS_TOPIC):
        key = orjson.loads(message.key() or b"null")
        if isinstance(key, list) and key and key[0] == connector and message.value():
            stored = orjson.loads(message.value())
    assert stored is not None, f"no offset of {connector} in {OFFSETS_TOPIC}"
    commit = stored.get("lsn_commit")
    lsn = -1 if stored.get("messageType") in BOUNDARIES else int(stored["lsn"])
    return (-1 if commit is None else int(commit), lsn)


def past(settings: Settings, position: tuple[int, int]) -> bool | None:
    """Whether Connect stored an offset at or past `position` (a change's `order`)."""
    return True if stored_offset(settings) >= position else None


def changes(settings: Settings, run: LogsRun) -> list[tuple[int, str, str]]:
    """(row id, op, source.sequence) of each change record on the run's change topic."""
    found = []
    for message in read_topic(settings, run.topic):
        if message.value() is None:
            continue
        payload = orjson.loads(message.value())["payload"]
        image = payload["after"] or payload["before"]
        found.append((image["id"], payload["op"], payload["source"]["sequence"]))
    return found


def changes_of(settings: Settings, run: LogsRun, row: int) -> list[tuple[str, str]]:
    """(op, source.sequence) of each change record of `row` on the run's change topic."""
    return [(op, sequence) for id_, op, sequence in changes(settings, run) if id_ == row]


def sent_again(settings: Settings, run: LogsRun) -> list[tuple[int, str, str]]:
    """The change records on the run's change topic at a position an earlier one has."""
    seen: set[str] = set()
    again = []
    for change in changes(settings, run):
        if change[2] in seen:
            again.append(change)
        seen.add(change[2])
    return again


class ChangeWatch:
    """Reads the run's change topic from its end, for the changes of one row."""

    def __init__(self, settings: Settings, run: LogsRun) -> None:
        self.consumer = Consumer(
            {**quiet(settings), "group.id": f"lethe-it-replay-watch-{uuid.uuid4().hex[:8]}"}
        )
        self.topic = run.topic

    def both(self, row: int, timeout_s: float = 60.0) -> tuple[str, str]:
        """Wait until the insert and the delete of `row` are in Kafka; their sequences."""
        deadline = time.monotonic() + timeout_s
        seen: dict[str, str] = {}
        while time.monotonic() < deadline and len(seen) < 2:
            for message in self.consumer.consume(100, timeout=0.05):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, str(error)
                    continue
                if message.value() is None:
                    continue
                payload = orjson.loads(message.value())["payload"]
                image = payload["after"] or payload["before"]
                if image["id"] == row:
                    seen[payload["op"]] = payload["source"]["sequence"]
        assert set(seen) == {"c", "d"}, f"Debezium sent {sorted(seen)} of row {row} only"
        return seen["c"], seen["d"]

    def from_end(self) -> None:
        partitions = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic].partitions
        assignment = []
        for partition in partitions:
            tp = TopicPartition(self.topic, partition)
            tp.offset = self.consumer.get_watermark_offsets(tp, timeout=10)[1]
            assignment.append(tp)
        self.consumer.assign(assignment)

    def close(self) -> None:
        self.consumer.close()


def insert_then_delete(settings: Settings, run: LogsRun, row: int) -> None:
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {run.table} (id, customer_id, ip_address, logged_at) "
            "VALUES (%s, %s, '192.0.2.71', '2024-06-15T08:30:00Z')",
            (row, CUSTOMER),
        )
        conn.execute(f"DELETE FROM {run.table} WHERE id = %s", (row,))


def commands_by_row(settings: Settings, run: LogsRun) -> dict[int, list[str]]:
    """The actions of the run's commands, by row id."""
    found: dict[int, list[str]] = {}
    for command in commands_of(settings, run.source):
        found.setdefault(command["key"]["id"], []).append(command["action"])
    return found


def replayed(worker: WorkerProcess, run: LogsRun) -> float:
    return worker.sample("lethe_change_events_replayed_total", table=run.source)


def processed(worker: WorkerProcess, run: LogsRun, op: str, count: int) -> bool | None:
    seen = worker.sample("lethe_change_events_total", table=run.source, op=op)
    return True if seen >= count else None


@pytest.mark.parametrize("worker_killed_too", [False, True], ids=["worker-runs", "worker-killed"])
def test_changes_connect_sends_again_after_a_sigkill_are_dropped_and_counted(
    real_stack: Settings, run: LogsRun, worker_killed_too: bool
) -> None:
    """With `worker_killed_too`, the worker is killed (SIGKILL) too before Connect restarts,
    once it committed its input, and started again with the same app id and data directory:
    it drops the replay by the mark it stored (table `change-positions`)."""
    policy = run.write_policy()
    worker = start_worker(run.app_id, run.workdir, policy)
    watch = ChangeWatch(real_stack, run)
    try:
        wait_for("the worker's /metrics page", worker.metrics, worker)
        wait_for(
            "the run's change topic",
            lambda: True if run.topic in read_topic_names(real_stack) else None,
            worker,
        )
        watch.from_end()
        connect = Connect(real_stack)
        row = 0
        for attempt in range(1, ATTEMPTS + 1):
            row = attempt
            insert_then_delete(real_stack, run, row)
            inserted, deleted = (order(sequence) for sequence in watch.both(row))
            pid = connect.pid()
            assert pid is not None, "Connect is not running"
            os.kill(pid, signal.SIGSTOP)
            if stored_offset(real_stack) < inserted:
                os.kill(pid, signal.SIGKILL)
                break
            os.kill(pid, signal.SIGCONT)  # flushed already: try again with the next row
            wait_for(
                f"Connect to store an offset past the delete of row {row}",
                functools.partial(past, real_stack, deleted),
                worker,
            )
        else:
            pytest.fail(f"Connect flushed its offsets before each of {ATTEMPTS} SIGSTOPs")
        wait_for("the delete processed", lambda: processed(worker, run, "d", row), worker)
        time.sleep(1.5)  # three sweeps
        before = commands_by_row(real_stack, run)
        assert all(actions == ["delete"] for actions in before.values()), "at most one delete"
        if worker_killed_too:
            inputs = [run.topic, f"{run.app_id}-subject-events"]
            wait_for(  # else it reads them again and may issue the delete again: at least once
                "the worker's input committed past the delete",
                lambda: committed_to_end(real_stack, run.app_id, inputs),
                worker,
            )
            worker.process.kill()
            worker.process.wait(timeout=10)
            worker = start_worker(run.app_id, run.workdir, policy)

        stack.up(real_stack, only={"connect", "source", "sink"}, say=lambda line: None)
        wait_for(
            "Connect to send the insert and the delete again",
            lambda: len(changes_of(real_stack, run, row)) == 4 or None,
            worker,
        )
        sent = changes_of(real_stack, run, row)
        assert [op for op, _ in sent] == ["c", "d", "c", "d"]
        assert sent[:2] == sent[2:], "sent again with the same positions"
        assert sent_again(real_stack, run) == [(row, op, sequence) for op, sequence in sent[:2]], (
            "Connect sent again the row's insert and delete, no other change of the table"
        )
        wait_for(
            "the replayed insert and delete counted",
            lambda: True if replayed(worker, run) >= 2 else None,
            worker,
        )
        time.sleep(2.0)  # four sweeps: a row brought back to life would be due at once
        assert commands_by_row(real_stack, run) == before, "no second command for any row"
        assert replayed(worker, run) == 2, "the insert and the delete counted as replayed"
    finally:
        watch.close()
        stop(worker)


def read_topic_names(settings: Settings) -> set[str]:
    return set(AdminClient(quiet(settings)).list_topics(timeout=10).topics)
