"""A retention command as the records `lethe.commands` carries, and every record it becomes.

`lethe.commands` carries each command once, keyed by its subject (`customer:42`,
`email:<address>`; for a row without a subject, its table and key as
`public.data_breaches:7`), so that one person's commands stay in order on one partition.
The value is the command in Avro's binary encoding, schemaless: no Confluent header and
no schema registry; read it with `schemas/retention_command.avsc` (`COMMAND_SCHEMA` is the
same schema without its docs). See docs/commands.md.

`records_for` is what an enforcer produces for a command that falls due: the command
record, plus its sink record (`policy.sink_records`) for anonymise and delete; or, when
the command would be unsafe to apply, a `Refusal` and nothing to produce.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping
from typing import Any, Final

from fastavro import parse_schema, schemaless_writer

from policy.instants import format_instant
from policy.model import Action, Policy
from policy.sink_records import OutboundRecord, Refusal, check_key, sink_record
from policy.state import Command, StateValue

COMMANDS_TOPIC: Final = "lethe.commands"

COMMAND_SCHEMA: Final[dict[str, Any]] = {
    "type": "record",
    "name": "RetentionCommand",
    "namespace": "lethe.commands",
    "fields": [
        {"name": "command_id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "issued_at", "type": "string"},
        {"name": "due_at", "type": "string"},
        {
            "name": "action",
            "type": {
                "type": "enum",
                "name": "Action",
                "symbols": ["archive", "anonymise", "delete"],
            },
        },
        {"name": "stage", "type": "string"},
        {"name": "table", "type": "string"},
        {"name": "key", "type": {"type": "map", "values": ["long", "string"]}},
        {"name": "subject", "type": ["null", "string"], "default": None},
        {"name": "purposes", "type": {"type": "array", "items": "string"}},
        {"name": "fields", "type": ["null", {"type": "array", "items": "string"}], "default": None},
    ],
}
"""`schemas/retention_command.avsc` without its docs (a test keeps the two the same)."""

_PARSED: Final = parse_schema(COMMAND_SCHEMA)


def command_key(command: Command) -> bytes:
    """The key on `lethe.commands`: the subject, or `<table>:<key values>` without one."""
    if command.subject is not None:
        return command.subject.encode()
    return (command.table + ":" + ",".join(str(value) for _, value in command.key)).encode()


def command_record(command: Command) -> dict[str, object]:
    """The command as the Avro record of `COMMAND_SCHEMA` (fields null unless anonymise)."""
    return {
        "command_id": command.command_id,
        "issued_at": format_instant(command.issued_at),
        "due_at": format_instant(command.due_at),
        "action": command.action.value,
        "stage": command.stage,
        "table": command.table,
        "key": dict(command.key),
        "subject": command.subject,
        "purposes": list(command.purposes),
        "fields": list(command.fields) if command.action is Action.ANONYMISE else None,
    }


def command_avro(command: Command) -> bytes:
    """The command's value on `lethe.commands`: schemaless Avro of `COMMAND_SCHEMA`."""
    buffer = io.BytesIO()
    record = command_record(command)
    record["command_id"] = uuid.UUID(command.command_id)
    schemaless_writer(buffer, _PARSED, record)
    return buffer.getvalue()


def records_for(
    policy: Policy, command: Command, values: Mapping[str, StateValue]
) -> tuple[OutboundRecord, ...] | Refusal:
    """What to produce for a command that falls due: its `lethe.commands` record, then its
    sink record for anonymise and delete (none for archive). A `Refusal` when its key is
    not exactly its table's primary key, or its anonymised values cannot be worked out:
    produce nothing then, and dead-letter the command with the refusal's reason.

    `values` are the row state's values (`RowState.values`).
    """
    refused = check_key(policy, command)
    if refused is not None:
        return refused
    sink = sink_record(policy, command, values)
    if isinstance(sink, Refusal):
        return sink
    commanded = OutboundRecord(COMMANDS_TOPIC, command_key(command), command_avro(command))
    return (commanded,) if sink is None else (commanded, sink)
