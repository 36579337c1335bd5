"""Retention commands applied to the demo database by the JDBC sink connector `lethe-sink`.

Each test inserts its own rows, sends what `policy.command_records.records_for` gives for a
command (its `lethe.sink.public.<table>` record; the `lethe.commands` record is left out, this
test owns the sink topics only) and watches PostgreSQL. Rows it inserted are deleted
afterwards; no other row is touched. Needs `lethe stack up` (which registers the sink).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from lethe.settings import Settings
from lethe.stack.connect import SinkConnector
from policy.command_records import records_for
from policy.model import Action, Policy
from policy.sink_records import Refusal, RefusalReason
from policy.state import Command, StateValue
from tests.unit.conftest import load_demo_policy, micros

pytestmark = pytest.mark.integration

SURVEY_FIELDS = ("customer_id", "respondent_email", "comments", "submitted_at")
SURVEY_COLUMNS = "customer_id, respondent_email, score, comments, submitted_at"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_demo_policy()


@pytest.fixture
def sink(real_stack: Settings) -> Settings:
    """The stack, with `lethe-sink` registered as the settings configure it and running."""
    connector = SinkConnector(real_stack)
    if not (connector.registered_as_configured() and connector.healthy()):
        pytest.fail(
            f"the sink connector is not running as configured at {connector.url}; "
            "register it with `lethe stack up`",
            pytrace=False,
        )
    return real_stack


@pytest.fixture
def send(sink: Settings) -> Iterator[Callable[[Policy, Command, dict[str, StateValue]], Any]]:
    """Produce the sink records `records_for` gives for a command (nothing for a refusal)."""
    producer = Producer({"bootstrap.servers": sink.kafka_bootstrap, "enable.idempotence": True})

    def send_command(
        policy: Policy, command: Command, values: dict[str, StateValue]
    ) -> tuple[Any, ...] | Refusal:
        records = records_for(policy, command, values)
        if isinstance(records, Refusal):
            return records
        for record in records:
            if record.topic.startswith("lethe.sink."):
                producer.produce(record.topic, key=record.key, value=record.value)
        assert producer.flush(30) == 0, "records not delivered"
        return records

    yield send_command
    producer.flush(30)


@pytest.fixture
def own_rows(pg: psycopg.Connection[Any]) -> Iterator[list[tuple[str, int]]]:
    """(table, id) of the rows a test inserts; deleted afterwards if still there."""
    rows: list[tuple[str, int]] = []
    yield rows
    for table, row_id in rows:
        pg.execute(f"DELETE FROM {table} WHERE id = %s", (row_id,))


def insert_survey(pg: psycopg.Connection[Any], own_rows: list[tuple[str, int]]) -> int:
    row = pg.execute(
        "INSERT INTO satisfaction_surveys (customer_id, respondent_email, score, comments,"
        " submitted_at) VALUES (987001, %s, 7, 'slow support, says Ann', "
        "'2024-03-17 10:20:30+00') RETURNING id",
        (f"it-{uuid.uuid4().hex[:8]}@example.com",),
    ).fetchone()
    assert row is not None
    own_rows.append(("satisfaction_surveys", row[0]))
    return int(row[0])


def anonymise_survey(row_id: int) -> Command:
    return Command(
        issued_at=micros("2025-03-17T10:20:30Z"),
        due_at=micros("2025-03-17T10:20:30Z"),
        action=Action.ANONYMISE,
        stage="anonymise:satisfaction_surveys:0",
        table="public.satisfaction_surveys",
        key=(("id", row_id),),
        subject="customer:987001",
        purposes=("satisfaction_surveys",),
        fields=SURVEY_FIELDS,
    )


def delete(table: str, row_id: int, subject: str) -> Command:
    return Command(
        issued_at=micros("2029-03-17T10:20:30Z"),
        due_at=micros("2029-03-17T10:20:30Z"),
        action=Action.DELETE,
        stage="delete",
        table=table,
        key=(("id", row_id),),
        subject=subject,
        purposes=("some_purpose",),
    )


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    pytest.fail(f"{what} not seen within {timeout:.0f}s (see the sink's task in Connect)")


def survey(pg: psycopg.Connection[Any], row_id: int) -> tuple[Any, ...] | None:
    return pg.execute(
        f"SELECT {SURVEY_COLUMNS} FROM satisfaction_surveys WHERE id = %s", (row_id,)
    ).fetchone()


def test_survey_anonymised_then_deleted(
    policy: Policy,
    send: Callable[..., Any],
    pg: psycopg.Connection[Any],
    own_rows: list[tuple[str, int]],
) -> None:
    row_id = insert_survey(pg, own_rows)
    neighbour = insert_survey(pg, own_rows)
    neighbour_before = survey(pg, neighbour)

    send(policy, anonymise_survey(row_id), {"submitted_at": micros("2024-03-17T10:20:30Z")})
    wait_for(lambda: (survey(pg, row_id) or (1,))[0] is None, "the anonymised survey")
    assert survey(pg, row_id) == (None, None, 7, None, datetime(2024, 3, 1, tzinfo=UTC))
    assert survey(pg, neighbour) == neighbour_before

    send(policy, delete("public.satisfaction_surveys", row_id, "customer:987001"), {})
    wait_for(lambda: survey(pg, row_id) is None, "the deleted survey")
    assert survey(pg, neighbour) == neighbour_before


def test_dpo_request_id_proof_emptied_then_request_deleted(
    policy: Policy,
    send: Callable[..., Any],
    pg: psycopg.Connection[Any],
    own_rows: list[tuple[str, int]],
) -> None:
    row = pg.execute(
        "INSERT INTO dpo_requests (customer_id, request_text, answer_text, id_proof_ref,"
        " received_at, answered_at) VALUES (987002, 'erase me', 'done', 'proof-it-1',"
        " '2024-01-02 09:00:00+00', '2024-01-05 00:00:00+00') RETURNING id"
    ).fetchone()
    assert row is not None
    row_id = int(row[0])
    own_rows.append(("dpo_requests", row_id))

    def request() -> tuple[Any, ...] | None:
        return pg.execute(
            "SELECT customer_id, request_text, answer_text, id_proof_ref, received_at,"
            " answered_at FROM dpo_requests WHERE id = %s",
            (row_id,),
        ).fetchone()

    anonymise = Command(
        issued_at=micros("2025-01-05T00:00:00Z"),
        due_at=micros("2025-01-05T00:00:00Z"),
        action=Action.ANONYMISE,
        stage="anonymise:dpo_requests:1",
        table="public.dpo_requests",
        key=(("id", row_id),),
        subject="customer:987002",
        purposes=("dpo_requests",),
        fields=("id_proof_ref",),
    )
    send(policy, anonymise, {"answered_at": micros("2024-01-05T00:00:00Z")})
    wait_for(lambda: (request() or (0, 0, 0, "x"))[3] is None, "the emptied ID proof")
    assert request() == (
        987002,
        "erase me",
        "done",
        None,
        datetime(2024, 1, 2, 9, tzinfo=UTC),
        datetime(2024, 1, 5, tzinfo=UTC),
    )

    send(policy, delete("public.dpo_requests", row_id, "customer:987002"), {})
    wait_for(lambda: request() is None, "the deleted DPO request")


def test_anonymise_and_delete_sent_together_leave_the_row_deleted(
    policy: Policy,
    send: Callable[..., Any],
    pg: psycopg.Connection[Any],
    own_rows: list[tuple[str, int]],
) -> None:
    """One topic per table, one key per row: the delete after the anonymise stays after it."""
    row_id = insert_survey(pg, own_rows)
    send(policy, anonymise_survey(row_id), {"submitted_at": micros("2024-03-17T10:20:30Z")})
    send(policy, delete("public.satisfaction_surveys", row_id, "customer:987001"), {})
    wait_for(lambda: survey(pg, row_id) is None, "the deleted survey")
    time.sleep(2)
    assert survey(pg, row_id) is None


def test_a_command_applied_again_changes_nothing(
    policy: Policy,
    sink: Settings,
    send: Callable[..., Any],
    pg: psycopg.Connection[Any],
    own_rows: list[tuple[str, int]],
) -> None:
    """At least once: after a worker restart the same commands come again (same command id,
    same sink records). Applied a second time by the sink, an anonymise or a delete leaves the
    table as the first left it, and an anonymise that comes again after its row's delete does
    not bring the row back (the sink updates, never inserts)."""
    row_id = insert_survey(pg, own_rows)
    marker = insert_survey(pg, own_rows)
    later_marker = insert_survey(pg, own_rows)

    def table() -> list[tuple[Any, ...]]:
        return pg.execute(
            f"SELECT id, {SURVEY_COLUMNS} FROM satisfaction_surveys ORDER BY id"
        ).fetchall()

    kept = {"submitted_at": micros("2024-03-17T10:20:30Z")}
    send(policy, anonymise_survey(row_id), kept)
    wait_for(lambda: (survey(pg, row_id) or (1,))[0] is None, "the anonymised survey")
    anonymised = table()

    send(policy, anonymise_survey(row_id), kept)
    send(policy, anonymise_survey(marker), kept)
    wait_for(lambda: (survey(pg, marker) or (1,))[0] is None, "the marker's anonymise")
    assert survey(pg, row_id) == (None, None, 7, None, datetime(2024, 3, 1, tzinfo=UTC))
    assert [row for row in table() if row[0] != marker] == [
        row for row in anonymised if row[0] != marker
    ], "the anonymise applied again changed a row"

    send(policy, delete("public.satisfaction_surveys", row_id, "customer:987001"), {})
    wait_for(lambda: survey(pg, row_id) is None, "the deleted survey")
    deleted = table()

    send(policy, delete("public.satisfaction_surveys", row_id, "customer:987001"), {})
    send(policy, anonymise_survey(row_id), kept)
    send(policy, anonymise_survey(later_marker), kept)
    wait_for(lambda: (survey(pg, later_marker) or (1,))[0] is None, "the later marker's anonymise")
    assert survey(pg, row_id) is None, "an anonymise after the delete brought the row back"
    assert [row for row in table() if row[0] != later_marker] == [
        row for row in deleted if row[0] != later_marker
    ], "the delete or anonymise applied again changed a row"
    assert SinkConnector(sink).healthy(), "the sink failed on a command applied again"


def end_offset(settings: Settings, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "unused"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in metadata.partitions
        )
    finally:
        consumer.close()


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ((), RefusalReason.KEY_MISSING_COLUMN),
        ((("customer_id", 987001),), RefusalReason.KEY_MISSING_COLUMN),
        ((("id", None),), RefusalReason.KEY_NULL_VALUE),
    ],
    ids=["empty key", "key without the primary key", "null primary key"],
)
@pytest.mark.parametrize("action", [Action.DELETE, Action.ANONYMISE])
def test_a_command_without_its_primary_key_is_refused_and_the_table_is_untouched(
    policy: Policy,
    sink: Settings,
    send: Callable[..., Any],
    pg: psycopg.Connection[Any],
    own_rows: list[tuple[str, int]],
    key: tuple[tuple[str, Any], ...],
    reason: RefusalReason,
    action: Action,
) -> None:
    """The sink would apply such a record to every row of the table; Lethe never sends it."""
    topic = "lethe.sink.public.satisfaction_surveys"
    mine = insert_survey(pg, own_rows)
    marker = insert_survey(pg, own_rows)
    # the topic exists before the offsets are read: an anonymise of the test's own row
    send(policy, anonymise_survey(mine), {"submitted_at": micros("2024-03-17T10:20:30Z")})
    wait_for(lambda: (survey(pg, mine) or (1,))[0] is None, "the test's own anonymise")
    rows_before = pg.execute(
        f"SELECT id, {SURVEY_COLUMNS} FROM satisfaction_surveys ORDER BY id"
    ).fetchall()
    offset_before = end_offset(sink, topic)

    bad = Command(
        issued_at=micros("2029-03-17T10:20:30Z"),
        due_at=micros("2029-03-17T10:20:30Z"),
        action=action,
        stage="delete" if action is Action.DELETE else "anonymise:satisfaction_surveys:0",
        table="public.satisfaction_surveys",
        key=key,
        subject="customer:987001",
        purposes=("satisfaction_surveys",),
        fields=SURVEY_FIELDS if action is Action.ANONYMISE else (),
    )
    refused = send(policy, bad, {"submitted_at": micros("2024-03-17T10:20:30Z")})
    assert isinstance(refused, Refusal)
    assert refused.reason is reason
    assert end_offset(sink, topic) == offset_before, "a refused command produced a record"

    # A later record of the same topic applied: the sink has read past the refused command.
    send(policy, anonymise_survey(marker), {"submitted_at": micros("2024-03-17T10:20:30Z")})
    wait_for(lambda: (survey(pg, marker) or (1,))[0] is None, "the marker's anonymise")
    rows_after = pg.execute(
        f"SELECT id, {SURVEY_COLUMNS} FROM satisfaction_surveys WHERE id <> %s ORDER BY id",
        (marker,),
    ).fetchall()
    assert len(rows_after) == len(rows_before) - 1
    assert rows_after == [row for row in rows_before if row[0] != marker]
