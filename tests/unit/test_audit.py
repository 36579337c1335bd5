"""Audit records say what the enforcer decided, when and why, and never who by address.

Expected records are written out by hand; the keyed hashes were worked out with
`printf 'ann@example.org' | openssl dgst -sha256 -hmac <key>`, outside Lethe.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import pytest
from fastavro import parse_schema, schemaless_reader
from hypothesis import given
from hypothesis import strategies as st

from lethe import topics
from lethe.errors import ConfigError
from lethe.settings import Settings
from policy import audit
from policy.audit import AuditRecord, Decision
from policy.audit_avro import audit_avro, fastavro_audit_avro
from policy.model import Action
from policy.state import Command

from .conftest import micros

ROOT = Path(__file__).resolve().parents[2]
AVSC = json.loads((ROOT / "schemas" / "audit_record.avsc").read_text())

KEY = b"audit-test-key-0123456789abcdef-0123"
OTHER_KEY = b"audit-test-key-0123456789abcdef-9999"
ADDRESS = "ann@example.org"
ANN = "email-hmac:82b552bfb4fec17f3fad095a843c4080b1f06c6c6b8c28ef37dfe3f695eacf94"
ANN_UNDER_OTHER_KEY = "email-hmac:0cda373c962367462ff1e98f2bcbb4c518e90ede50e0ef2821984cb6912585d2"
ANN_UNDER_DEMO_KEY = "email-hmac:94d391764e48b99775879f76128aa20a95b6cb39600b7cc76d9b17f80fd8b35b"

ARCHIVE = Command(
    issued_at=micros("2022-01-20T11:00:00+00:00"),
    due_at=micros("2022-01-20T11:00:00+00:00"),
    action=Action.ARCHIVE,
    stage="archive",
    table="public.support_tickets",
    key=(("id", 2),),
    subject="customer:42",
    purposes=("support",),
)
"""docs/commands.md's example: its id is ae26f9b3-498d-5435-835e-0122d07bb658."""
ARCHIVE_ID = "ae26f9b3-498d-5435-835e-0122d07bb658"


def plain_read(raw: bytes) -> dict[str, Any]:
    """What an officer's script does: the schema file, fastavro, nothing of Lethe."""
    decoded = schemaless_reader(io.BytesIO(raw), parse_schema(AVSC))
    assert isinstance(decoded, dict)
    return decoded


# --- each decision ------------------------------------------------------------------------


def test_a_row_first_seen_is_tracked_with_its_purposes_and_next_due() -> None:
    record = audit.tracked(
        table="public.customers",
        key=(("id", 42),),
        subject="customer:42",
        purposes=("business_management", "customer_account", "litigation_evidence"),
        next_due=micros("2026-06-30T00:00:00+00:00"),
        at=micros("2026-03-01T10:00:00+00:00"),
        hash_key=KEY,
    )
    assert record == AuditRecord(
        Decision.TRACKED,
        1772359200000000,
        table="public.customers",
        key=(("id", 42),),
        subject="customer:42",
        purposes=("business_management", "customer_account", "litigation_evidence"),
        due_at=1782777600000000,
    )
    assert audit.audit_json(record) == {
        "decision": "tracked",
        "at": "2026-03-01T10:00:00Z",
        "table": "public.customers",
        "key": {"id": 42},
        "subject": "customer:42",
        "purposes": ["business_management", "customer_account", "litigation_evidence"],
        "stage": None,
        "action": None,
        "command_id": None,
        "due_at": "2026-06-30T00:00:00Z",
        "previous_due_at": None,
        "issued_at": None,
        "topic": None,
        "partition": None,
        "offset": None,
        "reason": None,
    }


def test_a_new_next_due_is_scheduled_with_the_one_it_replaces() -> None:
    record = audit.scheduled(
        table="public.customers",
        key=(("id", 42),),
        subject="customer:42",
        next_due=None,
        previous_due=micros("2026-06-30T00:00:00+00:00"),
        at=micros("2026-04-01T00:00:00+00:00"),
        hash_key=KEY,
    )
    assert record == AuditRecord(
        Decision.SCHEDULED,
        1775001600000000,
        table="public.customers",
        key=(("id", 42),),
        subject="customer:42",
        due_at=None,
        previous_due_at=1782777600000000,
    )


def test_a_hold_placed_and_released_names_the_hold_row_and_its_subject() -> None:
    hold = "public.legal_holds", (("id", 7),)
    placed = audit.held(
        table=hold[0],
        key=hold[1],
        subject="customer:42",
        at=micros("2026-05-01T09:00:00+00:00"),
        hash_key=KEY,
    )
    lifted = audit.released(
        table=hold[0],
        key=hold[1],
        subject="customer:42",
        at=micros("2026-09-01T09:00:00+00:00"),
        hash_key=KEY,
    )
    assert placed == AuditRecord(
        Decision.HELD,
        1777626000000000,
        table="public.legal_holds",
        key=(("id", 7),),
        subject="customer:42",
    )
    assert lifted == AuditRecord(
        Decision.RELEASED,
        1788253200000000,
        table="public.legal_holds",
        key=(("id", 7),),
        subject="customer:42",
    )


def test_an_issued_command_keeps_its_id_stage_action_purposes_and_times() -> None:
    assert audit.issued(ARCHIVE, hash_key=KEY) == AuditRecord(
        Decision.ISSUED,
        1642676400000000,
        table="public.support_tickets",
        key=(("id", 2),),
        subject="customer:42",
        purposes=("support",),
        stage="archive",
        action=Action.ARCHIVE,
        command_id=ARCHIVE_ID,
        due_at=1642676400000000,
        issued_at=1642676400000000,
    )


def test_a_reissue_is_at_its_own_time_and_keeps_the_first_issue_time() -> None:
    record = audit.reissued(ARCHIVE, at=micros("2022-01-21T11:00:00+00:00"), hash_key=KEY)
    assert record.decision is Decision.REISSUED
    assert record.at == 1642762800000000
    assert record.issued_at == 1642676400000000
    assert record.command_id == ARCHIVE_ID


def test_a_confirmation_names_the_command_and_the_change_record_that_proves_it() -> None:
    record = audit.confirmed(
        command_id="4abced43-ac78-5e1f-a975-430d81e7aa10",
        table="public.support_tickets",
        key=(("id", 7),),
        subject="customer:42",
        at=micros("2026-03-01T10:00:05+00:00"),
        hash_key=KEY,
        stage="delete",
        action=Action.DELETE,
        topic="hosting.public.support_tickets",
        partition=0,
        offset=1234,
    )
    assert record == AuditRecord(
        Decision.CONFIRMED,
        1772359205000000,
        table="public.support_tickets",
        key=(("id", 7),),
        subject="customer:42",
        stage="delete",
        action=Action.DELETE,
        command_id="4abced43-ac78-5e1f-a975-430d81e7aa10",
        topic="hosting.public.support_tickets",
        partition=0,
        offset=1234,
    )


def test_a_dead_letter_is_named_by_where_it_is_and_its_reason_code_only() -> None:
    record = audit.dead_lettered(
        topic="hosting.public.info_requests",
        partition=3,
        offset=41,
        reason="not_json",
        at=micros("2026-03-01T10:00:00+00:00"),
        table="public.info_requests",
    )
    assert record == AuditRecord(
        Decision.DEAD_LETTERED,
        1772359200000000,
        table="public.info_requests",
        topic="hosting.public.info_requests",
        partition=3,
        offset=41,
        reason="not_json",
    )
    assert audit.audit_record_key(record) == b"hosting.public.info_requests:3"


def test_records_are_keyed_by_their_row() -> None:
    assert audit.audit_record_key(audit.issued(ARCHIVE, hash_key=KEY)) == (
        b'public.support_tickets:{"id":2}'
    )


# --- no address, ever ---------------------------------------------------------------------


def marketing_delete(subject: str, key_value: int | str = 3) -> Command:
    return Command(
        issued_at=micros("2027-01-01T00:00:00+00:00"),
        due_at=micros("2027-01-01T00:00:00+00:00"),
        action=Action.DELETE,
        stage="delete",
        table="public.marketing_contacts",
        key=(("id", key_value),),
        subject=subject,
        purposes=("marketing",),
    )


def test_an_email_subject_is_kept_only_as_its_keyed_hash() -> None:
    record = audit.issued(marketing_delete("email:" + ADDRESS), hash_key=KEY)
    assert record.subject == ANN
    avro = audit_avro(record)
    for shown in (repr(record), json.dumps(audit.audit_json(record)), avro.decode("latin-1")):
        assert "ann" not in shown
        assert "example" not in shown
    assert plain_read(avro)["subject"] == ANN


def test_every_builder_hashes_an_email_subject() -> None:
    at = micros("2026-03-01T10:00:00+00:00")
    subject = "email:" + ADDRESS
    table, key = "public.marketing_contacts", (("id", 3),)
    records = [
        audit.tracked(
            table=table,
            key=key,
            subject=subject,
            purposes=("marketing",),
            next_due=None,
            at=at,
            hash_key=KEY,
        ),
        audit.scheduled(
            table=table,
            key=key,
            subject=subject,
            next_due=None,
            previous_due=None,
            at=at,
            hash_key=KEY,
        ),
        audit.held(table=table, key=key, subject=subject, at=at, hash_key=KEY),
        audit.released(table=table, key=key, subject=subject, at=at, hash_key=KEY),
        audit.issued(marketing_delete(subject), hash_key=KEY),
        audit.reissued(marketing_delete(subject), at=at, hash_key=KEY),
        audit.confirmed(
            command_id=ARCHIVE_ID, table=table, key=key, subject=subject, at=at, hash_key=KEY
        ),
    ]
    assert [record.subject for record in records] == [ANN] * 7


def test_the_same_address_and_key_give_the_same_hash_another_key_another() -> None:
    def hashed(subject: str, key: bytes) -> str | None:
        return audit.issued(marketing_delete(subject), hash_key=key).subject

    assert hashed("email:" + ADDRESS, KEY) == hashed("email:" + ADDRESS, KEY) == ANN
    assert hashed("email:" + ADDRESS, OTHER_KEY) == ANN_UNDER_OTHER_KEY
    assert hashed("email:bob@example.org", KEY) != ANN


def test_a_key_that_is_the_address_itself_is_hashed_too() -> None:
    record = audit.issued(marketing_delete("email:" + ADDRESS, "Ann@Example.org"), hash_key=KEY)
    assert record.key == (("id", ANN),)
    assert "example" not in audit_avro(record).decode("latin-1")


def test_a_customer_subject_stays_as_it_is_and_any_other_kind_is_hashed() -> None:
    assert audit.audit_subject("customer:42", KEY) == "customer:42"
    phone = audit.audit_subject("phone:+33612345678", KEY)
    assert phone is not None and phone.startswith("phone-hmac:")
    assert "3361" not in phone


def test_a_record_refuses_an_address_given_by_hand() -> None:
    at = micros("2026-03-01T10:00:00+00:00")
    with pytest.raises(ValueError, match="'email' subject only as its keyed hash"):
        AuditRecord(Decision.HELD, at, subject="email:" + ADDRESS)
    with pytest.raises(ValueError):
        AuditRecord(Decision.HELD, at, subject="email-hmac:" + ADDRESS)


def test_an_empty_hash_key_is_refused() -> None:
    with pytest.raises(ValueError, match="LETHE_AUDIT_HASH_KEY"):
        audit.issued(marketing_delete("email:" + ADDRESS), hash_key=b"")


# --- Avro ---------------------------------------------------------------------------------


def test_a_plain_fastavro_reader_decodes_an_issued_command() -> None:
    assert plain_read(audit_avro(audit.issued(ARCHIVE, hash_key=KEY))) == {
        "decision": "issued",
        "at": datetime(2022, 1, 20, 11, 0, tzinfo=UTC),
        "table": "public.support_tickets",
        "key": {"id": 2},
        "subject": "customer:42",
        "purposes": ["support"],
        "stage": "archive",
        "action": "archive",
        "command_id": uuid.UUID(ARCHIVE_ID),
        "due_at": datetime(2022, 1, 20, 11, 0, tzinfo=UTC),
        "previous_due_at": None,
        "issued_at": datetime(2022, 1, 20, 11, 0, tzinfo=UTC),
        "topic": None,
        "partition": None,
        "offset": None,
        "reason": None,
    }


def test_a_plain_fastavro_reader_decodes_a_dead_letter_and_keys_of_every_type() -> None:
    letter = audit.dead_lettered(
        topic="hosting.public.info_requests",
        partition=3,
        offset=41,
        reason="not_json",
        at=micros("2026-03-01T10:00:00.5+00:00"),
    )
    assert plain_read(audit_avro(letter)) == {
        "decision": "dead_lettered",
        "at": datetime(2026, 3, 1, 10, 0, 0, 500000, tzinfo=UTC),
        "table": None,
        "key": None,
        "subject": None,
        "purposes": [],
        "stage": None,
        "action": None,
        "command_id": None,
        "due_at": None,
        "previous_due_at": None,
        "issued_at": None,
        "topic": "hosting.public.info_requests",
        "partition": 3,
        "offset": 41,
        "reason": "not_json",
    }
    mixed = audit.held(
        table="public.ledger",
        key=(("day", "2026-03-01"), ("n", 7), ("open", True), ("rate", 0.5), ("x", None)),
        subject="customer:42",
        at=micros("2026-03-01T10:00:00+00:00"),
        hash_key=KEY,
    )
    decoded = plain_read(audit_avro(mixed))
    assert decoded["key"] == {"day": "2026-03-01", "n": 7, "open": True, "rate": 0.5, "x": None}
    assert type(decoded["key"]["open"]) is bool


def test_the_encoding_schema_is_the_published_schema_file() -> None:
    def without_docs(node: object) -> object:
        if isinstance(node, dict):
            return {k: without_docs(v) for k, v in node.items() if k != "doc"}
        if isinstance(node, list):
            return [without_docs(v) for v in node]
        return node

    assert without_docs(AVSC) == audit.AUDIT_SCHEMA


# --- the key setting and the topic --------------------------------------------------------


def test_the_audit_hash_key_is_read_from_its_variable_and_never_printed() -> None:
    secret = "an-audit-key-of-our-own-0123456789-s3cret"
    settings = Settings.from_env({"LETHE_AUDIT_HASH_KEY": secret})
    for text in (repr(settings), str(settings), f"{settings}", f"{settings.audit_hash_key}"):
        assert "s3cret" not in text
    assert settings.audit_hash_key_bytes == secret.encode()
    assert not settings.audit_hash_key_is_demo


def test_without_the_variable_the_key_is_the_public_demo_key_and_says_so() -> None:
    settings = Settings.from_env({})
    assert settings.audit_hash_key_is_demo
    assert "demo" not in repr(settings)
    hashed = audit.audit_subject("email:" + ADDRESS, settings.audit_hash_key_bytes)
    assert hashed == ANN_UNDER_DEMO_KEY


def test_a_short_audit_hash_key_stops_start_up_without_showing_it() -> None:
    with pytest.raises(ConfigError, match="LETHE_AUDIT_HASH_KEY has 9 characters") as error:
        Settings.from_env({"LETHE_AUDIT_HASH_KEY": "tooshort!"})
    assert "tooshort" not in str(error.value)


def test_the_audit_topic_keeps_its_records_for_good() -> None:
    app = faust.App("lethe-audit-unit", store="memory://", web_enabled=False)
    topic = topics.audit_topic(app)
    assert topic.get_topic_name() == "lethe.audit"
    assert topic.config == {"cleanup.policy": "delete", "retention.ms": "-1"}


_texts = st.text(max_size=12)
_optional_longs = st.none() | st.integers(-(2**63), 2**63 - 1)
_key_values = (
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats(allow_nan=False) | _texts
)
_subjects = st.none() | st.integers(0, 10**9).map(lambda n: f"customer:{n}")
_subjects |= st.from_regex(r"[a-z]{1,8}-hmac:[0-9a-f]{64}", fullmatch=True)
_records = st.builds(
    AuditRecord,
    decision=st.sampled_from(list(Decision)),
    at=st.integers(-(2**63), 2**63 - 1),
    table=st.none() | _texts,
    key=st.none() | st.lists(st.tuples(_texts, _key_values), max_size=3).map(tuple),
    subject=_subjects,
    purposes=st.lists(_texts, max_size=3).map(tuple),
    stage=st.none() | _texts,
    action=st.none() | st.sampled_from(list(Action)),
    command_id=st.none() | st.uuids().map(str),
    due_at=_optional_longs,
    previous_due_at=_optional_longs,
    issued_at=_optional_longs,
    topic=st.none() | _texts,
    partition=st.none() | st.integers(-(2**31), 2**31 - 1),
    offset=_optional_longs,
    reason=st.none() | _texts,
)


@given(_records)
def test_the_audit_encoding_is_fastavros_byte_for_byte(record: AuditRecord) -> None:
    assert audit_avro(record) == fastavro_audit_avro(record)


def test_a_value_the_audit_schema_cannot_hold_is_refused_as_fastavro_refuses_it() -> None:
    for record in (
        AuditRecord(Decision.TRACKED, 2**63),
        AuditRecord(Decision.DEAD_LETTERED, 0, topic="t", partition=2**31, offset=1),
    ):
        with pytest.raises((ValueError, OverflowError)):
            fastavro_audit_avro(record)
        with pytest.raises(ValueError):
            audit_avro(record)
