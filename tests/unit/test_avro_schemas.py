"""The Avro schemas in schemas/ describe what Lethe actually writes."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import orjson
import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

from lethe import topics

ROOT = Path(__file__).resolve().parents[2]
COMMAND_SCHEMA = parse_schema(json.loads((ROOT / "schemas/retention_command.avsc").read_text()))
DEAD_LETTER_SCHEMA = parse_schema(json.loads((ROOT / "schemas/dead_letter.avsc").read_text()))
SAMPLE_COMMANDS = ROOT / "docs/sample/hosting-6y.commands.jsonl"


def _as_avro_command(line: str) -> dict[str, object]:
    command = orjson.loads(line)
    return {**command, "fields": command.get("fields")}


def _round_trip(schema: object, record: dict[str, object]) -> object:
    buffer = io.BytesIO()
    schemaless_writer(buffer, schema, record)
    buffer.seek(0)
    return schemaless_reader(buffer, schema)


def test_every_command_of_the_sample_output_fits_the_command_schema() -> None:
    lines = SAMPLE_COMMANDS.read_text().splitlines()
    actions = set()
    for line in lines:
        record = _as_avro_command(line)
        assert set(orjson.loads(line)) <= {f["name"] for f in COMMAND_SCHEMA["fields"]}
        assert validate(record, COMMAND_SCHEMA, raise_errors=True)
        # a plain fastavro reader gives the id (logical type uuid) as a uuid.UUID
        assert _round_trip(COMMAND_SCHEMA, record) == {
            **record,
            "command_id": uuid.UUID(str(record["command_id"])),
        }
        actions.add(record["action"])
    assert actions == {"archive", "anonymise", "delete"}


def test_command_schema_rejects_an_unknown_action_and_a_missing_key() -> None:
    good = {
        "command_id": "4abced43-ac78-5e1f-a975-430d81e7aa10",
        "issued_at": "2026-03-01T10:00:00Z",
        "due_at": "2026-03-01T10:00:00Z",
        "action": "delete",
        "stage": "delete",
        "table": "public.support_tickets",
        "key": {"id": 7},
        "subject": "customer:42",
        "purposes": ["support"],
        "fields": None,
    }
    assert validate(good, COMMAND_SCHEMA, raise_errors=False)
    with pytest.raises(ValidationError):
        validate({**good, "action": "purge"}, COMMAND_SCHEMA, raise_errors=True)
    without_key = {k: v for k, v in good.items() if k != "key"}
    with pytest.raises(ValidationError):
        validate(without_key, COMMAND_SCHEMA, raise_errors=True)


def test_dead_letter_records_fit_the_dead_letter_schema() -> None:
    for key, value in ((b'{"id": 1}', b"\xff not json"), (None, None)):
        record = orjson.loads(
            topics.dead_letter_record(
                topic="hosting.public.info_requests",
                partition=0,
                offset=41,
                reason="not_json",
                detail="value is not JSON",
                key=key,
                value=value,
                timestamp_ms=1_700_000_000_000,
            )
        )
        assert validate(record, DEAD_LETTER_SCHEMA, raise_errors=True)
        assert _round_trip(DEAD_LETTER_SCHEMA, record) == record
