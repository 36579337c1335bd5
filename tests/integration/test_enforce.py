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

Then the test plays Debezium for what the sink applied: it reads each changed row back from
PostgreSQL and writes the change record Debezium would emit (a delete for a row gone, an
update with the anonymised values), and the worker shows the three commands confirmed, in
`lethe_commands_confirmed_total` on its /metrics and as `confirmed` records on `lethe.audit`
(Avro, read with schemas/audit_record.avsc), next to their `issued` records and the hold's
`held` and `released`; each row's schedule is there too: `tracked` with its first due when
it was first seen (the held customer's ticket: none), `scheduled` when it moved (the hold's
release gave the ticket its due back; each command issued left its row nothing pending), and
the anonymised survey, which lost its customer id, `tracked` again without subject. The
worker runs with LETHE_CONFIRM_TIMEOUT=3: a delete of a row the table does not hold (the sink
changes nothing, Debezium would write nothing) is sent again on `lethe.commands` with the
same command id, counted in `lethe_commands_reissued_total` and audited as `reissued`, which
moves no due.

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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import orjson
import psycopg
import pytest
import yaml
from confluent_kafka.admin import AdminClient, NewTopic

from lethe.settings import Settings
from tests.integration import workers
from tests.integration.workers import (
    Reader,
    WorkerProcess,
    drop_run,
    produce,
    quiet,
    serving,
    subject_events_processed,
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
AUDIT_SCHEMA = fastavro.parse_schema(
    json.loads((ROOT / "schemas" / "audit_record.avsc").read_text(encoding="utf-8"))
)
CONFIRM_TIMEOUT_S = 3
COMMAND_NAMESPACE = uuid.UUID("6f1c1d8e-3b52-5d0e-9a57-1e7e5c0a4d21")
"""docs/commands.md: a command id is UUID v5 in this namespace."""


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


def start_worker(run: Run, env: Mapping[str, str] | None = None) -> WorkerProcess:
    """The run's worker: the wall clock, a command unconfirmed after CONFIRM_TIMEOUT_S sent
    again; `env` adds variables."""
    return workers.start_worker(
        run.app_id,
        run.workdir,
        run.policy,
        env={
            "LETHE_INTERNAL_PARTITIONS": str(PARTITIONS),
            "LETHE_CONFIRM_TIMEOUT": str(CONFIRM_TIMEOUT_S),
            **(env or {}),
        },
    )


@contextlib.contextmanager
def provisioned(
    settings: Settings, app_id_prefix: str, workdir: Path, run_type: type[Run] = Run
) -> Iterator[Run]:
    """A new run (app id `app_id_prefix` + its own id): its policy, its tables (in PostgreSQL,
    copies of the demo's) and change topics, created; its tables, topics and consumer group
    dropped on leaving."""
    app_id = app_id_prefix + uuid.uuid4().hex[:8]
    run = run_type(app_id, app_id.rsplit("-", 1)[-1], workdir, workdir / "policy.yaml")
    write_policy(run)
    admin = AdminClient(quiet(settings))
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        for kind in APPLIED:
            conn.execute(f"CREATE TABLE {run.table(kind)} (LIKE {kind} INCLUDING ALL)")
    try:
        for future in admin.create_topics(
            [NewTopic(run.topic(kind), num_partitions=1, replication_factor=1) for kind in KINDS]
        ).values():
            future.result(timeout=30)
        yield run
    finally:
        drop_run(settings, run.app_id, f"it_{run.run}_", [run.table(kind) for kind in APPLIED])


@pytest.fixture(scope="module")
def run(real_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The run's tables (in PostgreSQL) and change topics, its policy; dropped at the end."""
    with provisioned(real_stack, APP_ID_PREFIX, tmp_path_factory.mktemp("enforce")) as run:
        yield run


@pytest.fixture(scope="module")
def worker(real_stack: Settings, run: Run) -> Iterator[WorkerProcess]:
    with serving(start_worker(run)) as handle:
        yield handle


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


class Audit:
    """The run's records on `lethe.audit`, decoded with the published Avro schema."""

    def __init__(self, settings: Settings, run: Run, worker: WorkerProcess) -> None:
        wait_for("lethe.audit", lambda: topic_exists(settings, "lethe.audit"), worker)
        self.reader = Reader(settings, "lethe.audit")
        self.tables = {run.source(kind) for kind in KINDS}

    def mine(self) -> list[dict[str, Any]]:
        decoded = (
            fastavro.schemaless_reader(io.BytesIO(message.value()), AUDIT_SCHEMA)
            for message in self.reader.read()
        )
        return [record for record in decoded if record["table"] in self.tables]

    def close(self) -> None:
        self.reader.close()


def schedule_of(records: list[dict[str, Any]], table: str, row_id: int) -> list[tuple[Any, ...]]:
    """The row's `tracked` and `scheduled` records, in order: (decision, subject, due_at,
    previous_due_at, purposes)."""
    return [
        (r["decision"], r["subject"], r["due_at"], r["previous_due_at"], r["purposes"])
        for r in records
        if r["table"] == table
        and r["key"] == {"id": row_id}
        and r["decision"] in ("tracked", "scheduled")
    ]


def decided_at(
    records: list[dict[str, Any]], table: str, row_id: int, decision: str
) -> list[datetime]:
    """When the row's records of `decision` were decided (`scheduled`: to no due only)."""
    return [
        r["at"]
        for r in records
        if r["table"] == table
        and r["key"] == {"id": row_id}
        and r["decision"] == decision
        and (decision != "scheduled" or r["due_at"] is None)
    ]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def command_id(table: str, row_id: int, stage: str, due_at: str) -> str:
    """The id docs/commands.md defines, worked out here from its text."""
    name = json.dumps([table, [["id", row_id]], stage, due_at], separators=(",", ":"))
    return str(uuid.uuid5(COMMAND_NAMESPACE, name))


def counter(worker: WorkerProcess, name: str, tables: set[str]) -> dict[tuple[str, str], int]:
    """`name`{table,action} on the worker's /metrics, for `tables` (those not at 0: every
    table and action is shown from the start)."""
    metrics = worker.metrics() or {}
    return {
        (dict(labels)["table"], dict(labels)["action"]): int(value)
        for (sample, labels), value in metrics.items()
        if sample == name and dict(labels).get("table") in tables and value
    }


def row_now(settings: Settings, run: Run, kind: str) -> dict[str, Any] | None:
    """The run's row 1 of `kind` as a change record shows it (times as ISO text), or None."""
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        cursor = conn.execute(f"SELECT * FROM {run.table(kind)} WHERE id = 1")
        found = cursor.fetchone()
        names = [column.name for column in cursor.description or ()]
    if found is None:
        return None
    return {
        name: value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if isinstance(value, datetime)
        else value
        for name, value in zip(names, found, strict=True)
    }


def play_debezium(
    changes: ChangeWriter, settings: Settings, run: Run, kind: str, before: dict[str, Any]
) -> None:
    """Write the change record Debezium would emit for row 1 of `kind` now that the sink
    changed it (no connector captures the run's tables): a delete when the row is gone
    (REPLICA IDENTITY FULL: the before image whole), else an update to what it holds."""
    after = row_now(settings, run, kind)
    changes.write(kind, "d" if after is None else "u", before, after)


def select(settings: Settings, run: Run, kind: str, columns: str) -> tuple[Any, ...] | None:
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        return conn.execute(f"SELECT {columns} FROM {run.table(kind)} WHERE id = 1").fetchone()


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
    return simulate_until_now(run.policy, events)


def simulate_until_now(policy: Path, events: Path) -> list[dict[str, Any]]:
    """`lethe simulate` of `policy` over the change records in `events` (JSON lines) under the
    wall clock up to now: the commands it prints."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("LETHE_CLOCK")}
    until = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "lethe", "simulate", "--policy", str(policy)),
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
    wait_for(
        "the hold's change record committed (forwarded, or handed off in process and enforced)",
        lambda: workers.committed_to_end(real_stack, run.app_id, [run.topic("legal_holds")]),
        worker,
    )
    assert wait_for(
        "the hold processed", lambda: subject_events_processed(real_stack, run.app_id, PARTITIONS)
    )
    ticket = {
        "id": 1,
        "customer_id": HELD,
        "subject_line": "held",
        "body": "kept",
        "contact_email": "it-enforce@example.org",
        "created_at": "2020-05-01T09:00:00Z",
        "last_message_at": "2020-05-04T12:00:00Z",
    }
    changes.write("support_tickets", "c", None, ticket)
    log = {
        "id": 1,
        "customer_id": LOGGER,
        "ip_address": "192.0.2.41",
        "logged_at": "2024-06-15T08:30:00Z",
    }
    changes.write("connection_logs", "c", None, log)
    survey = {
        "id": 1,
        "customer_id": SURVEYOR,
        "respondent_email": "it-enforce@example.org",
        "score": 7,
        "comments": "fine",
        "submitted_at": "2024-03-17T10:20:30Z",
    }
    changes.write("satisfaction_surveys", "c", None, survey)

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
    assert wait_for(
        "all processed", lambda: subject_events_processed(real_stack, run.app_id, PARTITIONS)
    )
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

    for kind, before in (
        ("connection_logs", log),
        ("satisfaction_surveys", survey),
        ("support_tickets", ticket),
    ):
        play_debezium(changes, real_stack, run, kind, before)
    confirmed_wanted = {
        (run.source("connection_logs"), "delete"): 1,
        (run.source("satisfaction_surveys"), "anonymise"): 1,
        (run.source("support_tickets"), "delete"): 1,
    }
    tables = {run.source(kind) for kind in KINDS}
    wait_for(
        lambda: (
            f"lethe_commands_confirmed_total {confirmed_wanted}, seen "
            f"{counter(worker, 'lethe_commands_confirmed_total', tables)}"
        ),
        lambda: (
            counter(worker, "lethe_commands_confirmed_total", tables) == confirmed_wanted or None
        ),
        worker,
    )
    ids = {
        command_id(run.source("connection_logs"), 1, "delete", "2025-06-15T08:30:00Z"): (
            "connection_logs", "delete", "delete"),
        command_id(run.source("satisfaction_surveys"), 1, "anonymise:satisfaction_surveys:0",
                   "2025-03-17T10:20:30Z"): (
            "satisfaction_surveys", "anonymise:satisfaction_surveys:0", "anonymise"),
        command_id(run.source("support_tickets"), 1, "delete", "2025-05-04T12:00:00Z"): (
            "support_tickets", "delete", "delete"),
    }  # fmt: skip
    audit = Audit(real_stack, run, worker)
    survey_table = run.source("satisfaction_surveys")
    try:

        def three_confirmed() -> list[dict[str, Any]] | None:
            found = audit.mine()
            if sum(r["decision"] == "confirmed" for r in found) < 3:
                return None
            retracked = [r for r in schedule_of(found, survey_table, 1) if r[1] is None]
            return found if retracked else None

        records = wait_for(
            "the confirmed records and the survey tracked anew on lethe.audit",
            three_confirmed,
            worker,
        )
    finally:
        audit.close()
    confirmed = {
        str(r["command_id"]): (r["table"], r["stage"], r["action"], r["topic"])
        for r in records
        if r["decision"] == "confirmed"
    }
    assert confirmed == {
        i: (run.source(kind), stage, action, run.topic(kind))
        for i, (kind, stage, action) in ids.items()
    }, "each command confirmed once, by the change record of its own table"
    assert set(ids) <= {str(r["command_id"]) for r in records if r["decision"] == "issued"}
    assert [
        (r["decision"], r["subject"], r["key"])
        for r in records
        if r["table"] == hold_table and r["decision"] in ("held", "released")
    ] == [("held", f"customer:{HELD}", {"id": 1}), ("released", f"customer:{HELD}", {"id": 1})]
    logs, tickets = run.source("connection_logs"), run.source("support_tickets")
    assert schedule_of(records, logs, 1) == [
        ("tracked", f"customer:{LOGGER}", utc(2025, 6, 15, 8, 30), None, ["user_identification"]),
        ("scheduled", f"customer:{LOGGER}", None, utc(2025, 6, 15, 8, 30), []),
    ], "logged 2024-06-15 08:30, deleted a year later: nothing pending once issued"
    assert schedule_of(records, survey_table, 1) == [
        ("tracked", f"customer:{SURVEYOR}", utc(2025, 3, 17, 10, 20, 30), None,
         ["satisfaction_surveys"]),
        ("scheduled", f"customer:{SURVEYOR}", None, utc(2025, 3, 17, 10, 20, 30), []),
        ("tracked", None, None, None, ["satisfaction_surveys"]),
    ], "anonymised a year after 2024-03-17 10:20:30; without customer, nothing pending"  # fmt: skip
    assert schedule_of(records, tickets, 1) == [
        ("tracked", f"customer:{HELD}", None, None, ["support"]),
        ("scheduled", f"customer:{HELD}", utc(2021, 5, 4, 12), None, ["support"]),
        ("scheduled", f"customer:{HELD}", None, utc(2021, 5, 4, 12), []),
    ], "held at first sight; released: its archive (2020-05-04 12:00 + 1 year) overdue"
    assert schedule_of(records, hold_table, 1) == [], "a hold row has no rules"
    for table in (logs, survey_table, tickets):
        issued = decided_at(records, table, 1, "issued")
        assert len(issued) == 1 and issued == decided_at(records, table, 1, "scheduled"), (
            "its due went when its command was issued"
        )
    assert "it-enforce" not in repr(records), "no row value in the audit"
    assert "it-enforce@example.org" not in worker.log(), "no row value in the log"


def test_a_command_the_change_stream_never_confirms_is_sent_again_with_its_id(
    real_stack: Settings, run: Run, worker: WorkerProcess
) -> None:
    """Row 2 is in the change topic, not in the table: the sink's delete changes nothing and
    Debezium would write nothing, so the delete stays unconfirmed and is re-issued."""
    ghost = {
        "id": 2,
        "customer_id": LOGGER,
        "ip_address": "192.0.2.42",
        "logged_at": "2024-06-16T08:30:00Z",
    }
    ChangeWriter(real_stack, run).write("connection_logs", "c", None, ghost)
    table = run.source("connection_logs")
    wanted = command_id(table, 2, "delete", "2025-06-16T08:30:00Z")
    commands = Commands(real_stack, run, worker)
    try:

        def sent_twice() -> list[dict[str, Any]] | None:
            found = [c for c in commands.of(table) if str(c["command_id"]) == wanted]
            return found if len(found) >= 2 else None

        sent = wait_for(f"command {wanted} on lethe.commands twice", sent_twice, worker)
    finally:
        commands.reader.close()
    assert {(c["action"], c["issued_at"], c["due_at"], c["record_key"]) for c in sent} == {
        ("delete", sent[0]["issued_at"], "2025-06-16T08:30:00Z", f"customer:{LOGGER}")
    }, "the same command, sent again"
    assert counter(worker, "lethe_commands_reissued_total", {table}).get((table, "delete"), 0) >= 1
    audit = Audit(real_stack, run, worker)
    try:
        reissued = wait_for(
            "a reissued record on lethe.audit",
            lambda: (
                [
                    r
                    for r in audit.mine()
                    if r["decision"] == "reissued" and str(r["command_id"]) == wanted
                ]
                or None
            ),
            worker,
        )
    finally:
        audit.close()
    first = instant(sent[0]["issued_at"])
    assert reissued[0]["issued_at"] == first
    assert reissued[0]["at"] >= first + timedelta(seconds=CONFIRM_TIMEOUT_S)
    audit = Audit(real_stack, run, worker)
    try:
        records = audit.mine()
    finally:
        audit.close()
    assert schedule_of(records, table, 2) == [
        ("tracked", f"customer:{LOGGER}", utc(2025, 6, 16, 8, 30), None, ["user_identification"]),
        ("scheduled", f"customer:{LOGGER}", None, utc(2025, 6, 16, 8, 30), []),
    ], "a re-issue moves no due"
