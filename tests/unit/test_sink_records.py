"""What a due command becomes on `lethe.commands` and on its table's sink topic, as the
JDBC sink connector and a plain Avro consumer read them; and the commands refused because
their sink record would hit rows other than their own.

Expected records are written out by hand in Kafka Connect's JSON-with-schema form.
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastavro import parse_schema, schemaless_reader

from policy.command_records import COMMAND_SCHEMA, command_key, records_for
from policy.model import (
    Action,
    Bucket,
    Coarsen,
    Constant,
    FieldAnonymisation,
    Policy,
    TimeUnit,
)
from policy.sink_records import OutboundRecord, Refusal, RefusalReason, sink_record
from policy.state import Command
from tests.unit.conftest import micros

ROOT = Path(__file__).resolve().parents[2]
AVSC = json.loads((ROOT / "schemas" / "retention_command.avsc").read_text())

ID_KEY_SCHEMA = {
    "type": "struct",
    "fields": [{"field": "id", "type": "int64", "optional": False}],
    "optional": False,
}


def command(
    table: str,
    action: Action,
    key: tuple[tuple[str, Any], ...],
    *,
    stage: str | None = None,
    fields: tuple[str, ...] = (),
    subject: str | None = "customer:42",
    due: str = "2025-03-17T10:20:30Z",
) -> Command:
    return Command(
        issued_at=micros(due),
        due_at=micros(due),
        action=action,
        stage=stage or action.value,
        table=table,
        key=key,
        subject=subject,
        purposes=("some_purpose",),
        fields=fields,
    )


def document(raw: bytes | None) -> object:
    return None if raw is None else orjson.loads(raw)


def sink_of(records: tuple[OutboundRecord, ...] | Refusal) -> OutboundRecord:
    assert not isinstance(records, Refusal), records
    sinks = [record for record in records if record.topic.startswith("lethe.sink.")]
    assert len(sinks) == 1
    return sinks[0]


def with_anonymise(policy: Policy, table: str, *fields: FieldAnonymisation) -> Policy:
    source = replace(policy.sources[table], anonymise=fields)
    return replace(policy, sources={**policy.sources, table: source})


# --- anonymise ------------------------------------------------------------------------------


def test_satisfaction_survey_anonymise_empties_identifiers_and_coarsens_the_month(
    demo_policy: Policy,
) -> None:
    survey = command(
        "public.satisfaction_surveys",
        Action.ANONYMISE,
        (("id", 5),),
        stage="anonymise:satisfaction_surveys:0",
        fields=("customer_id", "respondent_email", "comments", "submitted_at"),
    )
    records = records_for(demo_policy, survey, {"submitted_at": micros("2024-03-17T10:20:30Z")})
    sink = sink_of(records)
    assert sink.topic == "lethe.sink.public.satisfaction_surveys"
    assert document(sink.key) == {"schema": ID_KEY_SCHEMA, "payload": {"id": 5}}
    assert document(sink.value) == {
        "schema": {
            "type": "struct",
            "fields": [
                {"field": "customer_id", "type": "int64", "optional": True},
                {"field": "respondent_email", "type": "string", "optional": True},
                {"field": "comments", "type": "string", "optional": True},
                {
                    "field": "submitted_at",
                    "type": "string",
                    "name": "io.debezium.time.ZonedTimestamp",
                    "version": 1,
                    "optional": True,
                },
            ],
            "optional": False,
        },
        "payload": {
            "customer_id": None,
            "respondent_email": None,
            "comments": None,
            "submitted_at": "2024-03-01T00:00:00Z",
        },
    }


def test_dpo_request_anonymise_empties_only_the_id_proof(demo_policy: Policy) -> None:
    request = command(
        "public.dpo_requests",
        Action.ANONYMISE,
        (("id", 12),),
        stage="anonymise:dpo_requests:1",
        fields=("id_proof_ref",),
    )
    sink = sink_of(
        records_for(demo_policy, request, {"answered_at": micros("2024-01-05T00:00:00Z")})
    )
    assert sink.topic == "lethe.sink.public.dpo_requests"
    assert document(sink.key) == {"schema": ID_KEY_SCHEMA, "payload": {"id": 12}}
    assert document(sink.value) == {
        "schema": {
            "type": "struct",
            "fields": [{"field": "id_proof_ref", "type": "string", "optional": True}],
            "optional": False,
        },
        "payload": {"id_proof_ref": None},
    }


def test_a_null_timestamp_stays_null_when_coarsened(demo_policy: Policy) -> None:
    """The row state leaves null columns out: coarsening nothing gives null, not a refusal."""
    survey = command(
        "public.satisfaction_surveys", Action.ANONYMISE, (("id", 5),), fields=("submitted_at",)
    )
    sink = sink_of(records_for(demo_policy, survey, {}))
    assert document(sink.value) == {
        "schema": {
            "type": "struct",
            "fields": [
                {
                    "field": "submitted_at",
                    "type": "string",
                    "name": "io.debezium.time.ZonedTimestamp",
                    "version": 1,
                    "optional": True,
                }
            ],
            "optional": False,
        },
        "payload": {"submitted_at": None},
    }


def test_a_date_goes_as_connect_date_days(demo_policy: Policy) -> None:
    """payment_methods.expires_on (read by its clock, so kept as µs of 00:00 UTC) coarsened
    to its year: 2028-01-01 is 21184 days after 1970-01-01."""
    policy = with_anonymise(
        demo_policy,
        "public.payment_methods",
        FieldAnonymisation("expires_on", Coarsen(TimeUnit.YEAR)),
    )
    method = command(
        "public.payment_methods", Action.ANONYMISE, (("id", 3),), fields=("expires_on",)
    )
    sink = sink_of(records_for(policy, method, {"expires_on": micros("2028-09-30T00:00:00Z")}))
    assert document(sink.value) == {
        "schema": {
            "type": "struct",
            "fields": [
                {
                    "field": "expires_on",
                    "type": "int32",
                    "name": "org.apache.kafka.connect.data.Date",
                    "version": 1,
                    "optional": True,
                }
            ],
            "optional": False,
        },
        "payload": {"expires_on": 21184},
    }


def test_a_numeric_goes_as_connect_decimal_with_its_scale(demo_policy: Policy) -> None:
    policy = with_anonymise(
        demo_policy, "public.fraud_signals", FieldAnonymisation("score", Constant(0))
    )
    signal = command("public.fraud_signals", Action.ANONYMISE, (("id", 8),), fields=("score",))
    sink = sink_of(records_for(policy, signal, {}))
    assert document(sink.value) == {
        "schema": {
            "type": "struct",
            "fields": [
                {
                    "field": "score",
                    "type": "bytes",
                    "name": "org.apache.kafka.connect.data.Decimal",
                    "version": 1,
                    "optional": True,
                    "parameters": {"scale": "0"},
                }
            ],
            "optional": False,
        },
        "payload": {"score": "AA=="},
    }


# --- delete and archive ---------------------------------------------------------------------

DELETED_TABLES = [
    ("public.customers", "lethe.sink.public.customers"),
    ("public.support_tickets", "lethe.sink.public.support_tickets"),
    ("public.orders", "lethe.sink.public.orders"),
    ("public.invoices", "lethe.sink.public.invoices"),
    ("public.payment_methods", "lethe.sink.public.payment_methods"),
    ("public.job_applications", "lethe.sink.public.job_applications"),
    ("public.event_registrations", "lethe.sink.public.event_registrations"),
    ("public.marketing_contacts", "lethe.sink.public.marketing_contacts"),
    ("public.info_requests", "lethe.sink.public.info_requests"),
    ("public.call_recordings", "lethe.sink.public.call_recordings"),
    ("public.payment_defaults", "lethe.sink.public.payment_defaults"),
    ("public.fraud_signals", "lethe.sink.public.fraud_signals"),
    ("public.identity_documents", "lethe.sink.public.identity_documents"),
    ("public.dpo_requests", "lethe.sink.public.dpo_requests"),
    ("public.data_breaches", "lethe.sink.public.data_breaches"),
    ("public.connection_logs", "lethe.sink.public.connection_logs"),
]


@pytest.mark.parametrize(("table", "topic"), DELETED_TABLES)
def test_delete_is_a_tombstone_keyed_by_the_primary_key(
    demo_policy: Policy, table: str, topic: str
) -> None:
    delete = command(table, Action.DELETE, (("id", 77),))
    sink = sink_of(records_for(demo_policy, delete, {}))
    assert sink.topic == topic
    assert sink.key == (
        b'{"schema":{"type":"struct","fields":[{"field":"id","type":"int64","optional":false}],'
        b'"optional":false},"payload":{"id":77}}'
    )
    assert sink.value is None


def test_every_demo_table_with_a_delete_rule_is_listed_above(demo_policy: Policy) -> None:
    deleting = {
        table
        for table, source in demo_policy.sources.items()
        if any(stage.action is Action.DELETE for rule in source.rules for stage in rule.stages)
    }
    assert deleting == {table for table, _ in DELETED_TABLES}


def test_archive_goes_to_lethe_commands_only(demo_policy: Policy) -> None:
    archive = command("public.support_tickets", Action.ARCHIVE, (("id", 2),))
    assert sink_record(demo_policy, archive, {}) is None
    records = records_for(demo_policy, archive, {})
    assert not isinstance(records, Refusal)
    assert [record.topic for record in records] == ["lethe.commands"]


# --- refusals: a sink record that would hit other rows is never built ------------------------


def composite_policy(policy: Policy) -> Policy:
    """connection_logs keyed by (customer_id, id), to check composite keys."""
    source = replace(policy.sources["public.connection_logs"], primary_key=("customer_id", "id"))
    return replace(policy, sources={**policy.sources, "public.connection_logs": source})


@pytest.mark.parametrize("action", [Action.DELETE, Action.ANONYMISE, Action.ARCHIVE])
@pytest.mark.parametrize(
    ("key", "reason", "named"),
    [
        ((), RefusalReason.KEY_MISSING_COLUMN, "id"),
        ((("customer_id", 42),), RefusalReason.KEY_MISSING_COLUMN, "id"),
        ((("id", None),), RefusalReason.KEY_NULL_VALUE, "id"),
        ((("id", 5), ("customer_id", 42)), RefusalReason.KEY_EXTRA_COLUMN, "customer_id"),
        ((("id", 5), ("id", 6)), RefusalReason.KEY_EXTRA_COLUMN, "id"),
        ((("id", "bob@example.com"),), RefusalReason.KEY_BAD_TYPE, "id"),
        ((("id", True),), RefusalReason.KEY_BAD_TYPE, "id"),
        ((("id", 2**63),), RefusalReason.KEY_BAD_TYPE, "id"),
    ],
)
def test_a_key_that_is_not_exactly_the_primary_key_is_refused(
    demo_policy: Policy,
    action: Action,
    key: tuple[tuple[str, Any], ...],
    reason: RefusalReason,
    named: str,
) -> None:
    bad = command(
        "public.satisfaction_surveys",
        action,
        key,
        fields=("comments",) if action is Action.ANONYMISE else (),
    )
    refused = records_for(demo_policy, bad, {})
    assert isinstance(refused, Refusal)
    assert refused.reason is reason
    assert refused.command == bad
    assert named in refused.detail
    assert "public.satisfaction_surveys" in refused.detail
    assert "bob" not in refused.detail and "42" not in refused.detail


def test_a_composite_key_with_one_column_missing_is_refused(demo_policy: Policy) -> None:
    policy = composite_policy(demo_policy)
    refused = records_for(
        policy, command("public.connection_logs", Action.DELETE, (("id", 9),)), {}
    )
    assert isinstance(refused, Refusal)
    assert refused.reason is RefusalReason.KEY_MISSING_COLUMN
    assert "customer_id" in refused.detail


def test_a_composite_key_goes_whole_in_primary_key_order(demo_policy: Policy) -> None:
    policy = composite_policy(demo_policy)
    delete = command("public.connection_logs", Action.DELETE, (("id", 9), ("customer_id", 42)))
    sink = sink_of(records_for(policy, delete, {}))
    assert document(sink.key) == {
        "schema": {
            "type": "struct",
            "fields": [
                {"field": "customer_id", "type": "int64", "optional": False},
                {"field": "id", "type": "int64", "optional": False},
            ],
            "optional": False,
        },
        "payload": {"customer_id": 42, "id": 9},
    }


def test_a_table_without_primary_key_is_refused(demo_policy: Policy) -> None:
    source = replace(demo_policy.sources["public.data_breaches"], primary_key=())
    policy = replace(demo_policy, sources={**demo_policy.sources, "public.data_breaches": source})
    refused = records_for(policy, command("public.data_breaches", Action.DELETE, ()), {})
    assert isinstance(refused, Refusal)
    assert refused.reason is RefusalReason.NO_PRIMARY_KEY


def test_a_table_the_policy_does_not_name_is_refused(demo_policy: Policy) -> None:
    refused = records_for(demo_policy, command("public.unknown", Action.DELETE, (("id", 1),)), {})
    assert isinstance(refused, Refusal)
    assert refused.reason is RefusalReason.UNKNOWN_TABLE


@pytest.mark.parametrize(
    ("fields", "reason", "named"),
    [
        ((), RefusalReason.NO_FIELDS, "no column"),
        (("nickname",), RefusalReason.UNKNOWN_COLUMN, "nickname"),
        (("id",), RefusalReason.KEY_COLUMN_FIELD, "id"),
    ],
)
def test_an_anonymise_the_sink_cannot_apply_is_refused(
    demo_policy: Policy, fields: tuple[str, ...], reason: RefusalReason, named: str
) -> None:
    bad = command("public.dpo_requests", Action.ANONYMISE, (("id", 3),), fields=fields)
    refused = records_for(demo_policy, bad, {})
    assert isinstance(refused, Refusal)
    assert refused.reason is reason
    assert named in refused.detail


def test_a_value_the_row_state_does_not_keep_cannot_be_coarsened(demo_policy: Policy) -> None:
    """dpo_requests' clocks read answered_at only: received_at is not in the row state."""
    policy = with_anonymise(
        demo_policy,
        "public.dpo_requests",
        FieldAnonymisation("received_at", Coarsen(TimeUnit.MONTH)),
        FieldAnonymisation("customer_id", Bucket(10)),
    )
    for column in ("received_at", "customer_id"):
        request = command("public.dpo_requests", Action.ANONYMISE, (("id", 3),), fields=(column,))
        refused = records_for(policy, request, {"answered_at": micros("2024-01-05T00:00:00Z")})
        assert isinstance(refused, Refusal)
        assert refused.reason is RefusalReason.VALUE_NOT_KEPT
        assert f"{column} of public.dpo_requests" in refused.detail


def test_a_constant_of_the_wrong_type_is_refused(demo_policy: Policy) -> None:
    policy = with_anonymise(
        demo_policy, "public.dpo_requests", FieldAnonymisation("customer_id", Constant("n/a"))
    )
    request = command(
        "public.dpo_requests", Action.ANONYMISE, (("id", 3),), fields=("customer_id",)
    )
    refused = records_for(policy, request, {})
    assert isinstance(refused, Refusal)
    assert refused.reason is RefusalReason.VALUE_UNFIT
    assert "customer_id" in refused.detail
    assert "n/a" not in refused.detail


# --- lethe.commands: Avro a plain fastavro reader decodes ------------------------------------


def plain_read(raw: bytes) -> object:
    """What a consumer does: the schema file, fastavro, nothing of Lethe."""
    return schemaless_reader(io.BytesIO(raw), parse_schema(AVSC))


def test_a_plain_fastavro_reader_decodes_the_command(demo_policy: Policy) -> None:
    """The archive of docs/commands.md's example: its id is the one worked out there."""
    archive = Command(
        issued_at=micros("2022-01-20T11:00:00Z"),
        due_at=micros("2022-01-20T11:00:00Z"),
        action=Action.ARCHIVE,
        stage="archive",
        table="public.support_tickets",
        key=(("id", 2),),
        subject="customer:42",
        purposes=("support",),
    )
    records = records_for(demo_policy, archive, {})
    assert not isinstance(records, Refusal)
    (commanded,) = records
    assert commanded.topic == "lethe.commands"
    assert commanded.key == b"customer:42"
    assert commanded.value is not None
    assert plain_read(commanded.value) == {
        "command_id": uuid.UUID("ae26f9b3-498d-5435-835e-0122d07bb658"),
        "issued_at": "2022-01-20T11:00:00Z",
        "due_at": "2022-01-20T11:00:00Z",
        "action": "archive",
        "stage": "archive",
        "table": "public.support_tickets",
        "key": {"id": 2},
        "subject": "customer:42",
        "purposes": ["support"],
        "fields": None,
    }


def test_a_plain_fastavro_reader_decodes_an_anonymise_with_its_fields(
    demo_policy: Policy,
) -> None:
    anonymise = command(
        "public.dpo_requests",
        Action.ANONYMISE,
        (("id", 12),),
        stage="anonymise:dpo_requests:1",
        fields=("id_proof_ref",),
        due="2025-01-05T00:00:00Z",
    )
    records = records_for(demo_policy, anonymise, {})
    assert not isinstance(records, Refusal)
    commanded = records[0]
    assert commanded.value is not None
    decoded = plain_read(commanded.value)
    assert isinstance(decoded, dict)
    assert isinstance(decoded.pop("command_id"), uuid.UUID)
    assert decoded == {
        "issued_at": "2025-01-05T00:00:00Z",
        "due_at": "2025-01-05T00:00:00Z",
        "action": "anonymise",
        "stage": "anonymise:dpo_requests:1",
        "table": "public.dpo_requests",
        "key": {"id": 12},
        "subject": "customer:42",
        "purposes": ["some_purpose"],
        "fields": ["id_proof_ref"],
    }


def test_a_command_without_subject_is_keyed_by_its_table_and_key() -> None:
    breach = command("public.data_breaches", Action.DELETE, (("id", 7),), subject=None)
    assert command_key(breach) == b"public.data_breaches:7"


def test_the_encoding_schema_is_the_published_schema_file() -> None:
    def without_docs(node: object) -> object:
        if isinstance(node, dict):
            return {k: without_docs(v) for k, v in node.items() if k != "doc"}
        if isinstance(node, list):
            return [without_docs(v) for v in node]
        return node

    assert without_docs(AVSC) == COMMAND_SCHEMA
