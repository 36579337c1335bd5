"""The enforcer end to end: change records -> `lethe worker` -> `lethe.commands` and the JDBC
sink `lethe-sink` -> rows deleted and anonymised in PostgreSQL.

The run has tables of its own, so the demo's rows are never touched: four copies of demo
tables in the `hosting` database (`it_<run>_connection_logs`, `..._satisfaction_surveys`,
`..._support_tickets`, `..._legal_holds`: `CREATE TABLE ... (LIKE <demo table>)`), which no
connector captures. The test writes the Debezium change records of its rows itself into the
run's change topics (`hosting.public.it_<run>_<table>`), and the worker's policy is
config/policy.yaml with those four sources only (the demo tables' columns and rules under
the run's table names). The sink applies `lethe.sink.public.it_<run>_<table>` to the run's
tables. Under the wall clock (LETHE_CLOCK=wall), rows dated years ago are overdue at once:
- a connection log logged 2024-06-15 (due a year later) is deleted;
- a survey submitted 2024-03-17 is anonymised: customer_id, respondent_email and comments
  emptied, submitted_at to its month, the score untouched;
- a support ticket last answered 2020-05-04 (deleted 5 years later) of a customer with an
  open legal hold is left alone while the hold is open, and deleted once it is released;
and `lethe.commands` carries those commands (Avro, read with schemas/retention_command.avsc)
with the command ids `lethe simulate` gives for the same change records.

At the end the worker is stopped, the sink is let to apply what is left, and the run's topics,
consumer group and tables are dropped. Fails (never skips) when the stack is down.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import orjson
import psycopg
import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from lethe.settings import Settings
from tests.integration.workers import (
    WorkerProcess,
    free_port,
    produce,
    quiet,
    sink_caught_up,
    wait_for,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
APP_ID_PREFIX = "lethe-it-enforce-"
PARTITIONS = 2
KINDS = ("connection_logs", "satisfaction_surveys", "support_tickets", "legal_holds")
APPLIED = ("connection_logs", "satisfaction_surveys", "support_tickets")
"""The run's tables the sink changes (with an anonymise or delete stage); legal_holds has none."""
LOGGER, SURVEYOR, HELD = 987_650_041, 987_650_042, 987_650_043
"""Customer ids no demo row has."""
COMMAND_SCHEMA = fastavro.parse_schema(
    json.loads((ROOT / "schemas" / "retention_command.avsc").read_text(encoding="utf-8"))
)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Run:
    app_id: str
    run: str
    workdir: Path
    policy: Path

    def table(self, kind: str) -> str:
        """The run's PostgreSQL table (schema public) copying the demo's `kind`."""
        return f"it_{self.run}_{kind}"

    def source(self, kind: str) -> str:
        return f"public.{self.table(kind)}"

    def topic(self, kind: str) -> str:
        return f"hosting.public.{self.table(kind)}"


def write_policy(run: Run) -> Path:
    """config/policy.yaml with the run's four tables as its only sources."""
    document = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
    sources = document["sources"]
    document["sources"] = {run.source(kind): sources[f"public.{kind}"] for kind in KINDS}
    run.policy.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return run.policy


def start_worker(run: Run) -> WorkerProcess:
    port = free_port()
    log_path = run.workdir / "worker.log"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("LETHE_CLOCK") and name != "LETHE_ENFORCE"
    }
    env.update(
        {
            "LETHE_DATA_DIR": str(run.workdir / "data"),
            "LETHE_WEB_PORT": str(port),
            "LETHE_POLICY": str(run.policy),
            "LETHE_INTERNAL_PARTITIONS": str(PARTITIONS),
            "LETHE_CLOCK": "wall",
            "LETHE_TICK_INTERVAL": "0.5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "lethe", "worker", "--app-id", run.app_id, "-l", "info"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return WorkerProcess(process, log_path, f"http://127.0.0.1:{port}/metrics", run.app_id)


def stop(worker: WorkerProcess) -> None:
    process = worker.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def forget(settings: Settings, run: Run) -> None:
    """Delete the run's consumer group and every topic of the run."""
    admin = AdminClient(quiet(settings))
    doomed = [
        topic
        for topic in admin.list_topics(timeout=10).topics
        if topic.startswith(f"{run.app_id}-") or f"it_{run.run}_" in topic
    ]
    futures = list(admin.delete_consumer_groups([run.app_id]).values())
    if doomed:
        futures += list(admin.delete_topics(doomed).values())
    for future in futures:
        with contextlib.suppress(KafkaException):
            future.result(timeout=30)


@pytest.fixture(scope="module")
def run(real_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The run's tables (in PostgreSQL) and change topics, its policy; dropped at the end."""
    app_id = APP_ID_PREFIX + uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("enforce")
    run = Run(app_id, app_id.rsplit("-", 1)[-1], workdir, workdir / "policy.yaml")
    write_policy(run)
    admin = AdminClient(quiet(real_stack))
    with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
        for kind in APPLIED:
            conn.execute(f"CREATE TABLE {run.table(kind)} (LIKE {kind} INCLUDING ALL)")
    try:
        for future in admin.create_topics(
            [NewTopic(run.topic(kind), num_partitions=1, replication_factor=1) for kind in KINDS]
        ).values():
            future.result(timeout=30)
        yield run
    finally:
        sink_topics = [f"lethe.sink.public.{run.table(kind)}" for kind in APPLIED]
        caught_up = sink_caught_up(real_stack, sink_topics)
        forget(real_stack, run)
        if not caught_up:
            time.sleep(10)  # the sink may still hold fetched records: let them fail on no topic
        with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
            for kind in APPLIED:
                conn.execute(f"DROP TABLE IF EXISTS {run.table(kind)}")


@pytest.fixture(scope="module")
def worker(real_stack: Settings, run: Run) -> Iterator[WorkerProcess]:
    handle = start_worker(run)
    try:
        wait_for("the worker's /metrics page", handle.metrics, handle)
        yield handle
    finally:
        stop(handle)


class ChangeWriter:
    """Writes Debezium change records (JsonConverter without schema) of the run's rows."""

    def __init__(self, settings: Settings, run: Run) -> None:
        self.settings = settings
        self.run = run

    def write(
        self, kind: str, op: str, before: dict[str, Any] | None, after: dict[str, Any] | None
    ) -> None:
        row = after if after is not None else before
        assert row is not None
        now_ms = time.time_ns() // 1_000_000
        value = {
            "before": before,
            "after": after,
            "source": {"ts_ms": now_ms, "table": self.run.table(kind)},
            "op": op,
            "ts_ms": now_ms,
        }
        produce(
            self.settings,
            self.run.topic(kind),
            orjson.dumps({"id": row["id"]}),
            orjson.dumps(value),
        )


class Reader:
    """Reads a topic from its start, every partition; each `read` goes up to the end the
    topic had when it was called (ticks keep arriving on the subject events topic)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = Consumer(
            {
                **quiet(settings),
                "group.id": f"lethe-it-enforce-reader-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
            }
        )
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.partitions = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self.next = {tp.partition: 0 for tp in self.partitions}
        self.records: list[Any] = []

    def read(self) -> list[Any]:
        ends = {
            tp.partition: self.consumer.get_watermark_offsets(tp, timeout=10)[1]
            for tp in self.partitions
        }
        deadline = time.monotonic() + 30
        while any(self.next[p] < end for p, end in ends.items()):
            assert time.monotonic() < deadline, "could not read the topic to its end"
            for message in self.consumer.consume(500, timeout=0.5):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, str(error)
                    continue
                self.next[message.partition()] = message.offset() + 1
                self.records.append(message)
        return self.records

    def close(self) -> None:
        self.consumer.close()


def topic_exists(settings: Settings, name: str) -> bool | None:
    return True if name in AdminClient(quiet(settings)).list_topics(timeout=10).topics else None


class Commands:
    """The run's commands on `lethe.commands`, decoded with the published Avro schema."""

    def __init__(self, settings: Settings, run: Run, worker: WorkerProcess) -> None:
        wait_for("lethe.commands", lambda: topic_exists(settings, "lethe.commands"), worker)
        self.reader = Reader(settings, "lethe.commands")
        self.tables = {run.source(kind) for kind in KINDS}

    def of(self, table: str) -> list[dict[str, Any]]:
        found = []
        for message in self.reader.read():
            command = fastavro.schemaless_reader(io.BytesIO(message.value()), COMMAND_SCHEMA)
            if command["table"] == table:
                found.append({**command, "record_key": message.key().decode()})
        return found

    def mine(self) -> dict[str, dict[str, Any]]:
        """The run's commands by id (a command may be sent twice: at least once)."""
        return {str(c["command_id"]): c for table in sorted(self.tables) for c in self.of(table)}


def select(settings: Settings, run: Run, kind: str, columns: str) -> tuple[Any, ...] | None:
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        return conn.execute(f"SELECT {columns} FROM {run.table(kind)} WHERE id = 1").fetchone()


def subject_events_processed(settings: Settings, app_id: str) -> bool | None:
    """Whether the worker has committed everything now on its subject events topic."""
    topic = f"{app_id}-subject-events"
    consumer = Consumer({**quiet(settings), "group.id": app_id, "enable.auto.commit": False})
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            committed = consumer.committed(partitions, timeout=10)
            if all(max(tp.offset, 0) >= end for tp, end in zip(committed, ends, strict=True)):
                return True
            time.sleep(0.5)
        return None
    finally:
        consumer.close()


def forwarded(settings: Settings, app_id: str, table: str) -> bool | None:
    """Whether the worker has forwarded a change of `table` to its subject events topic."""
    reader = Reader(settings, f"{app_id}-subject-events")
    try:
        tables = {dict(m.headers() or []).get("lethe-table") for m in reader.read()}
        return True if table.encode() in tables else None
    finally:
        reader.close()


def simulate(run: Run, settings: Settings) -> list[dict[str, Any]]:
    """`lethe simulate` over the run's change records, read back from its change topics."""
    lines = []
    for kind in KINDS:
        reader = Reader(settings, run.topic(kind))
        try:
            for message in reader.read():
                lines.append(
                    {
                        "topic": message.topic(),
                        "key": orjson.loads(message.key()),
                        "value": orjson.loads(message.value()),
                    }
                )
        finally:
            reader.close()
    lines.sort(key=lambda line: line["value"]["ts_ms"])
    events = run.workdir / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    env = {name: value for name, value in os.environ.items() if not name.startswith("LETHE_CLOCK")}
    until = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "lethe", "simulate", "--policy", str(run.policy)),
            *("--events", str(events), "--until", until),
        ],
        cwd=ROOT,
        env={**env, "LETHE_CLOCK": "wall"},
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_overdue_rows_are_deleted_and_anonymised_held_ones_only_once_released(
    real_stack: Settings, run: Run, worker: WorkerProcess
) -> None:
    changes = ChangeWriter(real_stack, run)
    with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {run.table('connection_logs')} (id, customer_id, ip_address, logged_at) "
            "VALUES (1, %s, '192.0.2.41', '2024-06-15T08:30:00Z')",
            (LOGGER,),
        )
        conn.execute(
            f"INSERT INTO {run.table('satisfaction_surveys')} "
            "(id, customer_id, respondent_email, score, comments, submitted_at) "
            "VALUES (1, %s, 'it-enforce@example.org', 7, 'fine', '2024-03-17T10:20:30Z')",
            (SURVEYOR,),
        )
        conn.execute(
            f"INSERT INTO {run.table('support_tickets')} (id, customer_id, subject_line, body, "
            "contact_email, created_at, last_message_at) VALUES (1, %s, 'held', 'kept', "
            "'it-enforce@example.org', '2020-05-01T09:00:00Z', '2020-05-04T12:00:00Z')",
            (HELD,),
        )
    hold = {
        "id": 1,
        "customer_id": HELD,
        "case_ref": "IT-ENFORCE",
        "placed_at": "2026-11-01T00:00:00Z",
        "released_at": None,
    }
    changes.write("legal_holds", "c", None, hold)
    hold_table = run.source("legal_holds")
    wait_for("the hold forwarded", lambda: forwarded(real_stack, run.app_id, hold_table), worker)
    assert wait_for("the hold processed", lambda: subject_events_processed(real_stack, run.app_id))
    changes.write(
        "support_tickets",
        "c",
        None,
        {
            "id": 1,
            "customer_id": HELD,
            "subject_line": "held",
            "body": "kept",
            "contact_email": "it-enforce@example.org",
            "created_at": "2020-05-01T09:00:00Z",
            "last_message_at": "2020-05-04T12:00:00Z",
        },
    )
    changes.write(
        "connection_logs",
        "c",
        None,
        {
            "id": 1,
            "customer_id": LOGGER,
            "ip_address": "192.0.2.41",
            "logged_at": "2024-06-15T08:30:00Z",
        },
    )
    changes.write(
        "satisfaction_surveys",
        "c",
        None,
        {
            "id": 1,
            "customer_id": SURVEYOR,
            "respondent_email": "it-enforce@example.org",
            "score": 7,
            "comments": "fine",
            "submitted_at": "2024-03-17T10:20:30Z",
        },
    )

    wait_for(
        "the connection log deleted",
        lambda: True if select(real_stack, run, "connection_logs", "id") is None else None,
        worker,
    )
    survey_columns = "customer_id, respondent_email, score, comments, submitted_at"
    wait_for(
        "the survey anonymised",
        lambda: (
            select(real_stack, run, "satisfaction_surveys", survey_columns)
            == (None, None, 7, None, datetime(2024, 3, 1, tzinfo=UTC))
            or None
        ),
        worker,
    )
    assert wait_for("all processed", lambda: subject_events_processed(real_stack, run.app_id))
    time.sleep(1.5)  # three sweeps
    assert select(real_stack, run, "support_tickets", "customer_id, body") == (HELD, "kept")
    commands = Commands(real_stack, run, worker)
    try:
        assert commands.of(run.source("support_tickets")) == [], "nothing while held"
        log_commands = commands.of(run.source("connection_logs"))
        assert {(c["action"], instant(c["due_at"])) for c in log_commands} == {
            ("delete", datetime(2025, 6, 15, 8, 30, tzinfo=UTC))
        }
        assert log_commands[0]["record_key"] == f"customer:{LOGGER}"
        survey_commands = commands.of(run.source("satisfaction_surveys"))
        assert {
            (c["action"], instant(c["due_at"]), tuple(c["fields"])) for c in survey_commands
        } == {
            (
                "anonymise",
                datetime(2025, 3, 17, 10, 20, 30, tzinfo=UTC),
                ("customer_id", "respondent_email", "comments", "submitted_at"),
            )
        }

        changes.write("legal_holds", "u", hold, {**hold, "released_at": "2026-11-30T00:00:00Z"})
        wait_for(
            "the ticket deleted once the hold is released",
            lambda: True if select(real_stack, run, "support_tickets", "id") is None else None,
            worker,
        )
        ticket_commands = commands.of(run.source("support_tickets"))
        assert {(c["action"], instant(c["due_at"])) for c in ticket_commands} == {
            ("delete", datetime(2025, 5, 4, 12, 0, tzinfo=UTC))
        }

        issued = commands.mine()
        simulated = {
            c["command_id"]: c for c in simulate(run, real_stack) if c["table"] in commands.tables
        }
        assert {i: (c["action"], c["table"]) for i, c in issued.items()} == {
            i: (c["action"], c["table"]) for i, c in simulated.items()
        }, "the worker's commands are those `lethe simulate` gives for the same records"
    finally:
        commands.reader.close()
    assert "it-enforce@example.org" not in worker.log(), "no row value in the log"
