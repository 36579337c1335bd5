"""Never early because the source connector is behind: a real Debezium connector, alive and
sending its heartbeats, but far behind on PostgreSQL's log, does not let a delete fall due over
a legal hold it has not published yet.

The run has tables of its own, copies of the demo's support_tickets and legal_holds
(`it_behind_<run>_*`, REPLICA IDENTITY FULL) and a ballast table, all three added to the demo
connector's publication, so the stack's real connector captures them; the worker's policy is
config/policy.yaml with the two copies as its only sources, and it watches the default
heartbeat topic, the change topic of the heartbeat table `lethe_heartbeat.source_heartbeat`
(config/demo/source-heartbeat.sql). Two support tickets of two customers are deleted 5 years
after their last message, so their delete falls due a few seconds into the test (T). Once the
worker has read both, 3 s before T, the test commits `BALLAST` rows in one transaction (tens
of seconds of the connector's work), then a hold on the first customer. When T has passed:
- the connector is behind (the hold is not on its topic yet) but alive: Debezium's own
  heartbeat topic has a heartbeat sent after T, which the old heartbeat rule (the send time,
  LETHE_SOURCE_HEARTBEAT_TOPIC=__debezium-heartbeat.hosting) took as "heard up to T": with it,
  this test fails, both tickets deleted;
- neither ticket is deleted: the newest heartbeat-table change the worker has read was
  committed before the ballast;
- once the connector has caught up, the held ticket is never deleted and the other one is.

It slows the stack's connector for everyone for that long: run it on a private stack (or
alone). The run's tables leave the publication as they are dropped.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from lethe.settings import Settings
from tests.integration.workers import (
    WorkerProcess,
    commands_of,
    drop_run,
    quiet,
    serving,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PUBLICATION = "lethe_hosting"
"""The demo connector's `publication.name` (config/connect/hosting-source.json)."""
BALLAST = 300_000
"""Rows committed ahead of the hold: 10 to 40 s of the connector's work on this machine."""
BACKLOG_BEFORE_S = 3
"""The backlog, then the hold, are committed this long before the delete falls due."""
HELD, FREE = 987_650_081, 987_650_082
"""Customer ids no demo row has."""
DUE_IN_S = 15
KINDS = ("support_tickets", "legal_holds")


@dataclass
class BehindRun:
    app_id: str
    run: str
    workdir: Path

    def table(self, kind: str) -> str:
        return f"it_behind_{self.run}_{kind}"

    def source(self, kind: str) -> str:
        return f"public.{self.table(kind)}"

    def topic(self, kind: str) -> str:
        return f"hosting.public.{self.table(kind)}"

    def write_policy(self) -> Path:
        document = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
        sources = document["sources"]
        document["sources"] = {self.source(kind): sources[f"public.{kind}"] for kind in KINDS}
        path = self.workdir / "policy.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return path


@pytest.fixture
def run(real_stack: Settings, tmp_path: Path) -> Iterator[BehindRun]:
    """The run's tables, captured by the demo connector, and their change topics; dropped at
    the end."""
    hexed = uuid.uuid4().hex[:8]
    run = BehindRun(f"lethe-it-behind-{hexed}", hexed, tmp_path)
    tables = [run.table(kind) for kind in (*KINDS, "ballast")]
    with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
        for kind in KINDS:
            conn.execute(f"CREATE TABLE {run.table(kind)} (LIKE {kind} INCLUDING ALL)")
            conn.execute(f"ALTER TABLE {run.table(kind)} REPLICA IDENTITY FULL")
        conn.execute(f"CREATE TABLE {run.table('ballast')} (id bigint PRIMARY KEY, pad text)")
        conn.execute(f"ALTER PUBLICATION {PUBLICATION} ADD TABLE {', '.join(tables)}")
    try:
        admin = AdminClient(quiet(real_stack))
        for future in admin.create_topics(
            [NewTopic(run.topic(kind), num_partitions=1, replication_factor=1) for kind in KINDS]
        ).values():
            future.result(timeout=30)
        yield run
    finally:
        drop_run(real_stack, run.app_id, f"it_behind_{run.run}_", tables)


@pytest.fixture
def worker(real_stack: Settings, run: BehindRun) -> Iterator[WorkerProcess]:
    env = {"LETHE_SOURCE_HEARTBEAT_TOPIC": real_stack.heartbeat_table_topic}
    with serving(start_worker(run.app_id, run.workdir, run.write_policy(), env=env)) as handle:
        yield handle


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ticket_ids(settings: Settings, run: BehindRun) -> set[int]:
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        rows = conn.execute(f"SELECT id FROM {run.table('support_tickets')}").fetchall()
    return {row[0] for row in rows}


def count(worker: WorkerProcess, table: str, op: str) -> int:
    return (worker.change_counts(table) or {}).get(op, 0)


def sent_after(settings: Settings, topic: str, moment: datetime) -> bool | None:
    """True when the newest record of `topic` (one partition) was written to Kafka after
    `moment`."""
    consumer = Consumer({**quiet(settings), "group.id": f"lethe-it-behind-{uuid.uuid4().hex}"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        if high <= low:
            return None
        consumer.assign([TopicPartition(topic, 0, high - 1)])
        message = consumer.poll(10)
        assert message is not None and message.error() is None, f"cannot read {topic}"
        sent = datetime.fromtimestamp(message.timestamp()[1] / 1000, UTC)
        return True if sent > moment else None
    finally:
        consumer.close()


def test_a_connector_alive_but_behind_on_the_log_lets_no_delete_fall_due_over_its_backlog(
    real_stack: Settings, run: BehindRun, worker: WorkerProcess
) -> None:
    tickets, holds = run.source("support_tickets"), run.source("legal_holds")
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=DUE_IN_S)
    last_message = due.replace(year=due.year - 5)  # deleted 5 years after the last message
    with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
        for number, customer in ((1, HELD), (2, FREE)):
            conn.execute(
                f"INSERT INTO {run.table('support_tickets')} (id, customer_id, subject_line, "
                "body, contact_email, created_at, last_message_at) VALUES (%s, %s, 'due soon', "
                "'kept while held', 'it-behind@example.org', %s, %s)",
                (number, customer, iso(last_message), iso(last_message)),
            )
    wait_for("the tickets read", lambda: True if count(worker, tickets, "c") == 2 else None, worker)
    backlog_at = due - timedelta(seconds=BACKLOG_BEFORE_S)
    assert datetime.now(UTC) < backlog_at, "the tickets were read too late"
    time.sleep((backlog_at - datetime.now(UTC)).total_seconds())

    with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {run.table('ballast')} SELECT n, repeat('x', 100) "
            "FROM generate_series(1, %s) AS n",
            (BALLAST,),
        )
        conn.execute(
            f"INSERT INTO {run.table('legal_holds')} (id, customer_id, case_ref, placed_at) "
            "VALUES (1, %s, 'IT-BEHIND', now())",
            (HELD,),
        )
    committed = datetime.now(UTC)
    assert committed < due, f"the hold was committed at {committed}, after the due {due}"

    wait_for("the delete's due passed", lambda: True if datetime.now(UTC) > due else None)
    debezium_heartbeats = f"__debezium-heartbeat.{real_stack.cdc_topic_prefix}"
    wait_for(
        "a heartbeat sent 3 s after the due on Debezium's own heartbeat topic",
        lambda: sent_after(real_stack, debezium_heartbeats, due + timedelta(seconds=3)),
    )
    assert count(worker, holds, "c") == 0, (
        f"the worker read the hold less than 3 s after the delete fell due: the connector was "
        f"not behind; raise BALLAST ({BALLAST})"
    )
    assert ticket_ids(real_stack, run) == {1, 2}, "nothing deleted while the connector is behind"

    wait_for("the hold read", lambda: True if count(worker, holds, "c") == 1 else None, worker)
    wait_for(
        "the free ticket deleted once the connector has caught up",
        lambda: True if 2 not in ticket_ids(real_stack, run) else None,
        worker,
    )
    time.sleep(2.0)  # four more sweeps
    deleted = {c["key"]["id"] for c in commands_of(real_stack, tickets) if c["action"] == "delete"}
    assert deleted == {2}, "the held ticket's delete is never issued"
    assert ticket_ids(real_stack, run) == {1}, "the held ticket was deleted"
    assert "it-behind@example.org" not in worker.log(), "no row value in the log"
