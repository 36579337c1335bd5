"""The assign stage through the real stack: PostgreSQL -> Debezium -> Kafka -> `lethe worker`
-> `<app id>-subject-events`.

Runs `lethe worker` as a subprocess with its own app id (`lethe-it-route-<run>`), data dir,
web port, LETHE_INTERNAL_PARTITIONS=3 and a policy: config/policy.yaml plus one source of
the run's own, `public.lethe_it_route_<run>` (subject `customer:<customer_id>`), whose change
topic no connector writes: the test produces hand-made Debezium records into it. Then reads
the worker's `<app id>-subject-events` and checks what a later stage sees:
- an info request inserted, updated and deleted in PostgreSQL arrives three times keyed by
  `email:<its lower-cased email>`, with the Debezium value unchanged;
- a support ticket moved from one customer to another arrives keyed by the first, then by
  the second with a `depart` keyed by the first, and its delete keyed by the second;
- a delete whose before image holds only the key (REPLICA IDENTITY DEFAULT) arrives keyed
  by the subject of the row's create;
and a worker stops at start, saying what to do, when the change topics its policy names have
different partition counts, or when its subject events topic exists with another count.

Rows inserted here are the test's own (a marker in their text) and deleted by it; the run's
topics and consumer group are deleted at the end. Fails (never skips) when the stack is down.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from lethe.settings import Settings
from tests.integration import workers
from tests.integration.workers import (
    WorkerProcess,
    forget_topics,
    forwards,
    produce,
    quiet,
    serving,
    stop,
    wait_for,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
APP_ID_PREFIX = "lethe-it-route-"
PARTITIONS = 3
"""LETHE_INTERNAL_PARTITIONS of the test's worker: the subject events topic gets this many."""
TEST_CUSTOMERS = (987_650_001, 987_650_002, 987_650_003)
"""Customer ids no demo row has: the test's tickets and own rows belong to them."""


def run_id(app_id: str) -> str:
    return app_id.rsplit("-", 1)[-1]


def own_table(app_id: str, kind: str = "rows") -> str:
    """`public.lethe_it_route_<kind>_<run>`: a table of the run's own (no such table exists)."""
    return f"public.lethe_it_route_{kind}_{run_id(app_id)}"


def write_policy(path: Path, tables: list[str]) -> Path:
    """config/policy.yaml plus a source for each of `tables` (subject `customer:<customer_id>`)."""
    document = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
    for table in tables:
        document["sources"][table] = {
            "primary_key": ["id"],
            "subject": [{"kind": "customer", "column": "customer_id"}],
            "columns": {"id": "bigint", "customer_id": "bigint", "handled_at": "timestamptz"},
            "rules": [
                {
                    "purpose": "information_requests",
                    "stages": [{"action": "delete", "due": {"after": "P1Y", "from": "handled_at"}}],
                }
            ],
        }
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def start_worker(app_id: str, workdir: Path, policy: Path) -> WorkerProcess:
    return workers.start_worker(
        app_id,
        workdir,
        policy,
        env={
            "LETHE_INTERNAL_PARTITIONS": str(PARTITIONS),
            "LETHE_ENFORCE": "off",  # its policy names the demo's tables: never change their rows
        },
    )


@pytest.fixture(scope="module")
def worker(
    real_stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    app_id = APP_ID_PREFIX + uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("route")
    table = own_table(app_id)
    try:
        policy = write_policy(workdir / "policy.yaml", [table])
        with serving(start_worker(app_id, workdir, policy)) as handle:
            yield handle
    finally:
        forget_topics(real_stack, app_id, topics={f"hosting.{table}"})


class SubjectEvents:
    """Reads `<app id>-subject-events` from its start, every partition."""

    def __init__(self, settings: Settings, app_id: str) -> None:
        self.topic = f"{app_id}-subject-events"
        self.consumer = Consumer(
            {
                **quiet(settings),
                "group.id": f"lethe-it-route-reader-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
            }
        )
        self.partitions = sorted(
            self.consumer.list_topics(self.topic, timeout=10).topics[self.topic].partitions
        )
        self.consumer.assign(
            [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self.partitions]
        )
        self.records: list[dict[str, Any]] = []

    def close(self) -> None:
        self.consumer.close()

    def read(self) -> list[dict[str, Any]]:
        while messages := self.consumer.consume(500, timeout=1.0):
            for message in messages:
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, str(error)
            read = [message for message in messages if message.error() is None]
            for forward in forwards(read):
                assert forward.key is not None
                record = {
                    "key": forward.key.decode(),
                    "value": forward.value,
                    "partition": forward.partition,
                    **{name: value.decode() for name, value in forward.headers.items()},
                }
                if (decoded := forward.event) is not None:
                    event, where = decoded
                    assert where is not None, "a change says where it was read"
                    record |= {
                        "event": event,
                        "lethe-table": event.table,
                        "lethe-key": orjson.dumps(dict(event.key)).decode(),
                        "lethe-op": event.op.value,
                        "lethe-ts": str(event.ts),
                        "lethe-source-topic": where[0],
                        "lethe-source-offset": str(where[2]),
                    }
                self.records.append(record)
        return self.records

    def of_row(self, table: str, row_id: int) -> list[dict[str, Any]]:
        key = orjson.dumps({"id": row_id}).decode()
        return [r for r in self.read() if r["lethe-table"] == table and r["lethe-key"] == key]


@pytest.fixture
def subject_events(real_stack: Settings, worker: WorkerProcess) -> Iterator[SubjectEvents]:
    reader = SubjectEvents(real_stack, worker.app_id)
    try:
        yield reader
    finally:
        reader.close()


def by_key(records: list[dict[str, Any]]) -> dict[str, list[tuple[str, str | None]]]:
    """Per record key, in order, (kind, op) of each record: a key's records share a partition,
    so their order is the order they were sent in."""
    keyed: dict[str, list[tuple[str, str | None]]] = {}
    for record in records:
        keyed.setdefault(record["key"], []).append((record["lethe-kind"], record.get("lethe-op")))
    return keyed


def wait_for_records(
    subject_events: SubjectEvents, table: str, row_id: int, count: int, worker: WorkerProcess
) -> list[dict[str, Any]]:
    return wait_for(
        lambda: (
            f"{count} records of {table} id={row_id} on {subject_events.topic}; seen "
            f"{by_key(subject_events.of_row(table, row_id))}"
        ),
        lambda: found if len(found := subject_events.of_row(table, row_id)) >= count else None,
        worker,
    )


def test_the_subject_events_topic_has_the_configured_partitions(
    real_stack: Settings, subject_events: SubjectEvents
) -> None:
    assert subject_events.partitions == list(range(PARTITIONS))


def test_an_info_request_arrives_keyed_by_its_lower_cased_email(
    real_stack: Settings, worker: WorkerProcess, subject_events: SubjectEvents
) -> None:
    marker = uuid.uuid4().hex[:12]
    email = f"It-Route-{marker}@Example.ORG"
    with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO info_requests (email, full_name, content, received_at) "
            "VALUES (%s, %s, %s, now()) RETURNING id",
            (email, "Integration Test", f"route {marker}"),
        ).fetchone()
        assert row is not None
        row_id = int(row[0])
        try:
            conn.execute("UPDATE info_requests SET handled_at = now() WHERE id = %s", (row_id,))
        finally:
            conn.execute("DELETE FROM info_requests WHERE id = %s", (row_id,))

    records = wait_for_records(subject_events, "public.info_requests", row_id, 3, worker)
    subject = f"email:it-route-{marker}@example.org"
    assert by_key(records) == {subject: [("change", "c"), ("change", "u"), ("change", "d")]}
    for record in records:
        assert record["lethe-source-topic"] == "hosting.public.info_requests"
        image = record["event"].before if record["lethe-op"] == "d" else record["event"].after
        assert image["email"] == email, "the event as decoded, its values unchanged"
    assert marker.lower() not in worker.log().lower(), "no subject or row value in the log"


def test_a_ticket_moved_to_another_customer_departs_from_the_first(
    real_stack: Settings, worker: WorkerProcess, subject_events: SubjectEvents
) -> None:
    first, second, _ = TEST_CUSTOMERS
    marker = uuid.uuid4().hex[:12]
    with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO support_tickets (customer_id, subject_line, body) "
            "VALUES (%s, %s, %s) RETURNING id",
            (first, f"route test {marker}", "moved between customers"),
        ).fetchone()
        assert row is not None
        row_id = int(row[0])
        try:
            conn.execute(
                "UPDATE support_tickets SET customer_id = %s WHERE id = %s", (second, row_id)
            )
        finally:
            conn.execute("DELETE FROM support_tickets WHERE id = %s", (row_id,))

    records = wait_for_records(subject_events, "public.support_tickets", row_id, 4, worker)
    assert by_key(records) == {
        f"customer:{first}": [("change", "c"), ("depart", None)],
        f"customer:{second}": [("change", "u"), ("change", "d")],
    }
    moved = next(r for r in records if r.get("lethe-op") == "u")
    depart = next(r for r in records if r["lethe-kind"] == "depart")
    payload = orjson.loads(depart["value"])
    payload = payload.get("payload", payload)
    assert payload["op"] == "u", "the depart carries the change that moved the row"
    assert payload["after"]["customer_id"] == second
    assert depart["lethe-subject"] == f"customer:{first}"
    assert depart["lethe-moved-to"] == f"customer:{second}"
    assert depart["lethe-ts"] == moved["lethe-ts"]
    assert depart["lethe-source-offset"] == moved["lethe-source-offset"]


def test_a_delete_whose_before_image_holds_only_the_key_keeps_its_subject(
    real_stack: Settings, worker: WorkerProcess, subject_events: SubjectEvents
) -> None:
    _, _, customer = TEST_CUSTOMERS
    table = own_table(worker.app_id)
    topic = f"hosting.{table}"
    row_id = 31
    key = orjson.dumps({"id": row_id})

    def record(op: str, before: object, after: object) -> bytes:
        return orjson.dumps(
            {"op": op, "before": before, "after": after, "source": {"ts_ms": 1_764_000_000_000}}
        )

    produce(real_stack, topic, key, record("c", None, {"id": row_id, "customer_id": customer}))
    produce(real_stack, topic, key, record("d", {"id": row_id}, None))

    records = wait_for_records(subject_events, table, row_id, 2, worker)
    assert by_key(records) == {f"customer:{customer}": [("change", "c"), ("change", "d")]}
    assert all(r["lethe-ts"] == "1764000000000000" for r in records)


def test_change_topics_of_different_partition_counts_stop_the_worker(
    real_stack: Settings, tmp_path: Path
) -> None:
    app_id = APP_ID_PREFIX + uuid.uuid4().hex[:8]
    wide = own_table(app_id, "wide")
    topic = f"hosting.{wide}"
    admin = AdminClient(quiet(real_stack))
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(
        timeout=30
    )
    try:
        handle = start_worker(app_id, tmp_path, write_policy(tmp_path / "policy.yaml", [wide]))
        try:
            handle.process.wait(timeout=60)
        finally:
            stop(handle)
        assert handle.process.returncode != 0
        log = handle.log()
        assert "different partition counts" in log
        assert f"2 partitions: {topic}" in log
        assert "1 partition: hosting.public.call_recordings" in log
        assert not [t for t in admin.list_topics(timeout=10).topics if t.startswith(app_id)]
    finally:
        forget_topics(real_stack, app_id, topics={topic})


def test_a_subject_events_topic_of_another_partition_count_stops_the_worker(
    real_stack: Settings, tmp_path: Path
) -> None:
    app_id = APP_ID_PREFIX + uuid.uuid4().hex[:8]
    topic = f"{app_id}-subject-events"
    admin = AdminClient(quiet(real_stack))
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(
        timeout=30
    )
    try:
        handle = start_worker(app_id, tmp_path, write_policy(tmp_path / "policy.yaml", []))
        try:
            handle.process.wait(timeout=60)
        finally:
            stop(handle)
        assert handle.process.returncode != 0
        assert (
            f"topic {topic} has 2 partitions but LETHE_INTERNAL_PARTITIONS={PARTITIONS}; "
            "set LETHE_INTERNAL_PARTITIONS=2"
        ) in handle.log()
    finally:
        forget_topics(real_stack, app_id)
