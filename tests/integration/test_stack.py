"""The local stack as other tests and the demo rely on it: change topics, Debezium events,
status reporting and an idempotent `up`. Needs `lethe stack up` first; fails when it is down.

The stack is shared: every test leaves it as it found it. Rows it adds are deleted, a part it
stops is started again (and waited for) in a fixture's teardown, a connector it registers is
removed with its consumer group, and `up` runs only on a stack it would not change.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import KafkaException, Message
from confluent_kafka.admin import AdminClient

from lethe import stack
from lethe.settings import Settings
from lethe.stack.connect import SourceConnector
from tests.demo_schema import DEMO_COLUMNS, DEMO_TABLES
from tests.integration.conftest import ConsumerFactory, json_value, poll_json_until, poll_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def lethe_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lethe", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_every_demo_table_has_its_change_topic(real_stack: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": real_stack.kafka_bootstrap})
    wanted = {f"hosting.public.{table}" for table in DEMO_TABLES}
    deadline = time.monotonic() + 60
    missing = wanted
    while time.monotonic() < deadline:
        missing = wanted - set(admin.list_topics(timeout=10).topics)
        if not missing:
            break
        time.sleep(1)
    assert not missing, f"change topics missing after the snapshot: {sorted(missing)}"


def test_every_demo_table_exists_with_its_fixed_columns(pg: psycopg.Connection[Any]) -> None:
    rows = pg.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'public'"
    ).fetchall()
    columns: dict[str, set[str]] = {}
    for table, column in rows:
        columns.setdefault(table, set()).add(column)
    assert set(DEMO_TABLES) <= set(columns)
    for table, fixed in DEMO_COLUMNS.items():
        assert columns[table] == {"id", *fixed}, f"{table}: columns differ from demo-schema.md"
    with pytest.raises(psycopg.errors.CheckViolation):
        pg.execute("INSERT INTO marketing_contacts (email, basis) VALUES ('x@example.com', 'whim')")


def test_insert_arrives_as_debezium_create_event(
    pg: psycopg.Connection[Any], kafka_consumer: ConsumerFactory
) -> None:
    consumer = kafka_consumer("hosting.public.customers")
    handle = f"it{uuid.uuid4().hex[:10]}-lth"
    row = pg.execute(
        "INSERT INTO customers (nic_handle, first_name, last_name, email, country, created_at)"
        " VALUES (%s, 'Test', 'Person', %s, 'FR', '2026-01-02 03:04:05+00') RETURNING id",
        (handle, f"{handle}@example.com"),
    ).fetchone()
    assert row is not None
    customer_id = row[0]
    try:
        event = poll_json_until(
            consumer,
            lambda value: (value.get("payload") or {}).get("after", {}).get("id") == customer_id,
            what=f"the create event of customers id={customer_id}",
        )
    finally:
        pg.execute("DELETE FROM customers WHERE id = %s", (customer_id,))
    assert "schema" in event, "JsonConverter must send schemas (the JDBC sink needs them)"
    payload = event["payload"]
    assert payload["op"] == "c"
    assert payload["source"]["table"] == "customers"
    assert payload["after"]["nic_handle"] == handle
    assert payload["after"]["closed_at"] is None
    created = dt.datetime.fromisoformat(payload["after"]["created_at"].replace("Z", "+00:00"))
    assert created == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_date_arrives_as_days_and_delete_carries_the_whole_row_then_a_tombstone(
    pg: psycopg.Connection[Any], kafka_consumer: ConsumerFactory
) -> None:
    consumer = kafka_consumer("hosting.public.payment_methods")
    row = pg.execute(
        "INSERT INTO payment_methods (customer_id, kind, holder_name, pan_last4, expires_on)"
        " VALUES (987654, 'card', 'TEST HOLDER', '1234', '2028-09-30') RETURNING id"
    ).fetchone()
    assert row is not None
    method_id = row[0]
    pg.execute("DELETE FROM payment_methods WHERE id = %s", (method_id,))

    created = poll_json_until(
        consumer,
        lambda v: (
            (v.get("payload") or {}).get("op") == "c" and v["payload"]["after"]["id"] == method_id
        ),
        what=f"the create event of payment_methods id={method_id}",
    )
    assert (
        created["payload"]["after"]["expires_on"]
        == (dt.date(2028, 9, 30) - dt.date(1970, 1, 1)).days
    )

    def is_delete(message: Message) -> bool:
        payload = (json_value(message) or {}).get("payload") or {}
        return payload.get("op") == "d" and (payload.get("before") or {}).get("id") == method_id

    delete = poll_until(
        consumer, is_delete, what=f"the delete event of payment_methods id={method_id}"
    )
    deleted = json_value(delete)
    assert deleted is not None
    before = deleted["payload"]["before"]
    assert before["customer_id"] == 987654, "REPLICA IDENTITY FULL: the subject must be there"
    assert before["holder_name"] == "TEST HOLDER"
    assert deleted["payload"]["after"] is None

    # Debezium's default (tombstones.on.delete=true): the next record with the delete's key
    # is a null value, so compaction can drop the row's records.
    follower = poll_until(
        consumer,
        lambda message: message.key() == delete.key(),
        what=f"the tombstone after the delete of payment_methods id={method_id}",
    )
    assert follower.value() is None, (
        f"expected a tombstone after the delete, got {follower.value()!r}"
    )


@pytest.fixture
def unchanged_by_up(real_stack: Settings) -> Settings:
    """The stack, when `up` would start, install or rewrite nothing on it; else the test fails
    before touching it (run the tests with the LETHE_* settings the stack was started with)."""
    changes = stack.pending(real_stack)
    if changes:
        pytest.fail(
            "`lethe stack up` would change the running stack, so this test does not run it:\n  "
            + "\n  ".join(changes),
            pytrace=False,
        )
    return real_stack


@pytest.fixture
def prometheus_stopped(unchanged_by_up: Settings) -> Iterator[Settings]:
    """Prometheus stopped for the test; started again and healthy afterwards, whatever happens."""
    assert stack.stop_part(unchanged_by_up, "prometheus") is True
    try:
        yield unchanged_by_up
    finally:
        stack.up(unchanged_by_up, only={"prometheus"}, say=lambda _line: None)


def test_status_reports_a_stopped_part(prometheus_stopped: Settings) -> None:
    result = lethe_cli("stack", "status")
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(li for li in result.stdout.splitlines() if li.startswith("prometheus"))
    assert "stopped" in line
    assert "prometheus.log" in line
    kafka_line = next(li for li in result.stdout.splitlines() if li.startswith("kafka"))
    assert "running" in kafka_line


def test_up_brings_a_stopped_part_back(prometheus_stopped: Settings) -> None:
    started = stack.up(prometheus_stopped, only={"prometheus"}, say=lambda _line: None)
    assert started == {"prometheus": True}
    result = lethe_cli("stack", "status")
    assert result.returncode == 0, result.stdout + result.stderr


def test_up_on_a_running_stack_changes_nothing(unchanged_by_up: Settings) -> None:
    """No part restarted, and the source connector's config was not written again."""
    real_stack = unchanged_by_up
    pids_before = {part.name: part.pid for part in stack.status(real_stack)}

    started = stack.up(real_stack, say=lambda _line: None)

    assert started == dict.fromkeys(stack.PART_NAMES, False)
    assert {part.name: part.pid for part in stack.status(real_stack)} == pids_before
    assert SourceConnector(real_stack).healthy()


def test_jdbc_sink_plugin_writes_change_events_into_postgres(
    real_stack: Settings, pg: psycopg.Connection[Any]
) -> None:
    """The Debezium JDBC sink folder is complete: a sink with the c3p0 pool copies a table."""
    from lethe.stack.process import http

    name = f"lethe-it-sink-{uuid.uuid4().hex[:8]}"
    target = f"lethe_it_sink_{uuid.uuid4().hex[:8]}"
    config = {
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": "1",
        "topics": "hosting.public.data_breaches",
        "connection.url": f"jdbc:postgresql://{real_stack.pg_host}:{real_stack.pg_port}/"
        f"{real_stack.pg_database}",
        "connection.username": real_stack.pg_user,
        "connection.password": real_stack.pg_password.reveal(),
        "connection.provider": "org.hibernate.c3p0.internal.C3P0ConnectionProvider",
        "insert.mode": "upsert",
        "primary.key.mode": "record_key",
        "schema.evolution": "basic",
        "collection.name.format": target,
        "consumer.override.auto.offset.reset": "earliest",
    }
    url = f"{real_stack.connect_url}/connectors/{name}"
    status, body = http("PUT", f"{url}/config", config, timeout=30)
    assert status == 201, body
    try:
        expected = pg.execute(
            "SELECT id, affected_subjects FROM data_breaches ORDER BY id"
        ).fetchall()
        copied: list[tuple[Any, ...]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not set(expected) <= set(copied):
            _, state = http("GET", f"{url}/status")
            failed = [t for t in (state or {}).get("tasks", []) if t.get("state") == "FAILED"]
            assert not failed, failed[0].get("trace", "")[:800]
            exists = pg.execute("SELECT to_regclass(%s)", (target,)).fetchone()
            if exists and exists[0] is not None:
                copied = pg.execute(
                    f'SELECT id, affected_subjects FROM "{target}" ORDER BY id'
                ).fetchall()
            time.sleep(1)
        assert expected, "the seed data has data_breaches rows"
        assert set(expected) <= set(copied), "every current row copied by the sink"
    finally:
        http("DELETE", url, timeout=30)
        pg.execute(f'DROP TABLE IF EXISTS "{target}"')
        forget_consumer_group(real_stack, f"connect-{name}")


def forget_consumer_group(settings: Settings, group: str) -> None:
    """Delete a sink's consumer group once its members have left (Connect stops the task)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    deadline = time.monotonic() + 60
    while True:
        try:
            admin.delete_consumer_groups([group])[group].result(timeout=30)
            return
        except KafkaException as exc:
            if "GROUP_ID_NOT_FOUND" in str(exc):
                return
            if time.monotonic() >= deadline:
                raise
            time.sleep(1)
