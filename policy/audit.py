"""Audit records: every decision the enforcer takes, as `lethe.audit` carries it.

A privacy officer must show what was deleted, when and why, long after the data is gone.
One `AuditRecord` per decision, built by the function of its kind:

| decision | when | what it names |
|---|---|---|
| `tracked` | a row is first seen (or moved) | table, key, subject, its rules' purposes, next due |
| `scheduled` | a row's next due changed | table, key, subject, the next due and the one before |
| `held` / `released` | a legal hold on a subject opened / closed | hold row's table, key; subject |
| `issued` | a command is sent | its id, stage, action, purposes, due and issue times |
| `reissued` | a command unconfirmed too long is sent again | the same, and when it was sent again |
| `confirmed` | the change stream shows a command applied | its id, the confirming event's time |
| `dead_lettered` | an input record could not be used | its topic, partition, offset, reason code |

A rule is named by its table and purpose, so `table` with `purposes` (and `stage`, which
stage of those rules) say which rule a decision carries out.

What a record holds, because it outlives the data it proves gone: tables, keys, purposes,
stages, ids, reason codes and times; never a row value, never a direct identifier.
- Subjects of kind `customer` (`customer:42`) are kept as they are: a customer id is a key
  of the business database, meaningless once the customer's rows are gone.
- Every other subject kind is a direct identifier (`email:ann@example.com`) and is kept
  only as a keyed hash: `<kind>-hmac:<hex>`, the HMAC-SHA256, under the caller's secret
  key (LETHE_AUDIT_HASH_KEY), of the text after `<kind>:` in UTF-8, as the policy names the
  subject (lower-cased where the policy says `lower`). The same address and key give the
  same hash, so an officer who knows an address and the key finds its records; without
  the key the hash cannot be tested against a list of addresses.
- Keys are primary keys, kept as they are (the demo's tables are all keyed by `id`). A key
  value equal to a hashed subject's identifier (a table keyed by the address itself) is
  replaced by that subject's hash.
- A dead letter is named by where it is (topic, partition, offset) and its reason code,
  never its key, value or detail text, which may quote row values.

`AuditRecord` refuses a subject of another kind that is not hashed, so a record built by
hand cannot carry an address either. Builders read no clock: every time is passed in.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import StrEnum
from hashlib import sha256
from typing import Any, Final

import orjson

from policy.events import Key
from policy.instants import Instant, format_instant
from policy.model import Action
from policy.state import Command

KEPT_SUBJECT_KINDS: Final = frozenset({"customer"})
"""Subject kinds the audit keeps as they are (keys of the business database)."""
HASH_SUFFIX: Final = "-hmac"
"""A hashed subject is `<kind>-hmac:<64 hex digits>`."""


class Decision(StrEnum):
    """What the enforcer decided (see the module docstring's table)."""

    TRACKED = "tracked"
    SCHEDULED = "scheduled"
    HELD = "held"
    RELEASED = "released"
    ISSUED = "issued"
    REISSUED = "reissued"
    CONFIRMED = "confirmed"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One decision; fields a decision does not name are None (or no purposes)."""

    decision: Decision
    at: Instant
    """When the decision was taken, on the enforcement clock (µs since the epoch)."""
    table: str | None = None
    """The row's schema-qualified table (held/released: the hold row's)."""
    key: Key | None = None
    """The row's primary key, column by column."""
    subject: str | None = None
    """`customer:<id>`, or `<kind>-hmac:<hex>` for any other kind; None: no subject."""
    purposes: tuple[str, ...] = ()
    stage: str | None = None
    action: Action | None = None
    command_id: str | None = None
    due_at: Instant | None = None
    """tracked/scheduled: the row's next due (None: nothing pending, or held); commands:
    when the stage fell due."""
    previous_due_at: Instant | None = None
    """scheduled: the next due before this change (None: nothing was pending)."""
    issued_at: Instant | None = None
    """issued/reissued: when the command was first sent."""
    topic: str | None = None
    """dead_lettered: the record's topic; confirmed: the confirming change record's."""
    partition: int | None = None
    offset: int | None = None
    reason: str | None = None
    """dead_lettered: the reason code (`policy.envelope.DecodeReason`, a refusal's)."""

    def __post_init__(self) -> None:
        if self.subject is not None and not is_audit_subject(self.subject):
            kind = self.subject.partition(":")[0]
            raise ValueError(
                f"an audit record keeps a {kind!r} subject only as its keyed hash; "
                "build it with the policy.audit builders"
            )


def audit_subject(subject: str | None, hash_key: bytes) -> str | None:
    """The subject as the audit keeps it: `customer:<id>` as is, any other kind hashed."""
    if subject is None:
        return None
    kind, identifier = _split(subject)
    if kind in KEPT_SUBJECT_KINDS:
        return subject
    return f"{kind}{HASH_SUFFIX}:{_hmac(hash_key, identifier)}"


def _split(subject: str) -> tuple[str, str]:
    """(kind, identifier); a subject without `<kind>:` is all identifier, of kind `subject`."""
    kind, separator, identifier = subject.partition(":")
    return (kind, identifier) if separator else ("subject", subject)


def is_audit_subject(subject: str) -> bool:
    """Whether the audit may keep this subject text: a kept kind, or a hashed one."""
    kind, _, rest = subject.partition(":")
    if kind in KEPT_SUBJECT_KINDS:
        return True
    return (
        kind.endswith(HASH_SUFFIX)
        and len(rest) == 64
        and all(c in "0123456789abcdef" for c in rest)
    )


def _hmac(hash_key: bytes, text: str) -> str:
    if not hash_key:
        raise ValueError("the audit hash key is empty; set LETHE_AUDIT_HASH_KEY")
    return hmac.new(hash_key, text.encode(), sha256).hexdigest()


def _audit_key(key: Key, subject: str | None, hash_key: bytes) -> Key:
    """The key, with any value that is the (hashed) subject's identifier replaced by its hash."""
    if subject is None:
        return key
    kind, identifier = _split(subject)
    if kind in KEPT_SUBJECT_KINDS:
        return key
    hashed = f"{kind}{HASH_SUFFIX}:{_hmac(hash_key, identifier)}"
    folded = identifier.casefold()
    return tuple(
        (column, hashed if isinstance(value, str) and value.casefold() == folded else value)
        for column, value in key
    )


# --- builders -------------------------------------------------------------------------------


def tracked(
    *,
    table: str,
    key: Key,
    subject: str | None,
    purposes: tuple[str, ...],
    next_due: Instant | None,
    at: Instant,
    hash_key: bytes,
) -> AuditRecord:
    """A row first seen at `at`: its rules' purposes and its next due (None: nothing pending
    or held)."""
    return AuditRecord(
        Decision.TRACKED,
        at,
        table=table,
        key=_audit_key(key, subject, hash_key),
        subject=audit_subject(subject, hash_key),
        purposes=purposes,
        due_at=next_due,
    )


def scheduled(
    *,
    table: str,
    key: Key,
    subject: str | None,
    next_due: Instant | None,
    previous_due: Instant | None,
    at: Instant,
    hash_key: bytes,
    purposes: tuple[str, ...] = (),
) -> AuditRecord:
    """A row's next due changed at `at` from `previous_due` to `next_due` (None: nothing
    pending, or held); `purposes`: those of the stage now next, when the caller knows them."""
    return AuditRecord(
        Decision.SCHEDULED,
        at,
        table=table,
        key=_audit_key(key, subject, hash_key),
        subject=audit_subject(subject, hash_key),
        purposes=purposes,
        due_at=next_due,
        previous_due_at=previous_due,
    )


def held(*, table: str, key: Key, subject: str, at: Instant, hash_key: bytes) -> AuditRecord:
    """The hold row (table, key) opened a legal hold on `subject` at `at`: every command of
    the subject waits until its last hold is released."""
    return _hold(Decision.HELD, table, key, subject, at, hash_key)


def released(*, table: str, key: Key, subject: str, at: Instant, hash_key: bytes) -> AuditRecord:
    """The hold row (table, key) on `subject` was released (or deleted, or moved) at `at`."""
    return _hold(Decision.RELEASED, table, key, subject, at, hash_key)


def _hold(
    decision: Decision, table: str, key: Key, subject: str, at: Instant, hash_key: bytes
) -> AuditRecord:
    return AuditRecord(
        decision,
        at,
        table=table,
        key=_audit_key(key, subject, hash_key),
        subject=audit_subject(subject, hash_key),
    )


def issued(command: Command, *, hash_key: bytes) -> AuditRecord:
    """The command was sent, at its `issued_at`."""
    return _command(Decision.ISSUED, command, command.issued_at, hash_key)


def reissued(command: Command, *, at: Instant, hash_key: bytes) -> AuditRecord:
    """The command, first sent at its `issued_at` and not confirmed since, was sent again at
    `at` (same id)."""
    return _command(Decision.REISSUED, command, at, hash_key)


def _command(decision: Decision, command: Command, at: Instant, hash_key: bytes) -> AuditRecord:
    return AuditRecord(
        decision,
        at,
        table=command.table,
        key=_audit_key(command.key, command.subject, hash_key),
        subject=audit_subject(command.subject, hash_key),
        purposes=command.purposes,
        stage=command.stage,
        action=command.action,
        command_id=command.command_id,
        due_at=command.due_at,
        issued_at=command.issued_at,
    )


def confirmed(
    *,
    command_id: str,
    table: str,
    key: Key,
    subject: str | None,
    at: Instant,
    hash_key: bytes,
    stage: str | None = None,
    action: Action | None = None,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> AuditRecord:
    """The change stream showed command `command_id` applied to the row: `at` is the
    confirming change event's time; topic, partition and offset say where that event is."""
    return AuditRecord(
        Decision.CONFIRMED,
        at,
        table=table,
        key=_audit_key(key, subject, hash_key),
        subject=audit_subject(subject, hash_key),
        stage=stage,
        action=action,
        command_id=command_id,
        topic=topic,
        partition=partition,
        offset=offset,
    )


def dead_lettered(
    *,
    topic: str,
    partition: int,
    offset: int,
    reason: str,
    at: Instant,
    table: str | None = None,
) -> AuditRecord:
    """The record at (topic, partition, offset) went to `lethe.deadletter` at `at` for
    `reason` (a code); `table`: the policy's table of that topic, when known."""
    return AuditRecord(
        Decision.DEAD_LETTERED,
        at,
        table=table,
        topic=topic,
        partition=partition,
        offset=offset,
        reason=reason,
    )


# --- on lethe.audit -------------------------------------------------------------------------

_TIME: Final = {"type": "long", "logicalType": "timestamp-micros"}

AUDIT_SCHEMA: Final[dict[str, Any]] = {
    "type": "record",
    "name": "AuditRecord",
    "namespace": "lethe.audit",
    "fields": [
        {
            "name": "decision",
            "type": {
                "type": "enum",
                "name": "Decision",
                "symbols": [decision.value for decision in Decision],
            },
        },
        {"name": "at", "type": _TIME},
        {"name": "table", "type": ["null", "string"], "default": None},
        {
            "name": "key",
            "type": [
                "null",
                {
                    "type": "map",
                    "values": ["null", "boolean", "long", "double", "string"],
                },
            ],
            "default": None,
        },
        {"name": "subject", "type": ["null", "string"], "default": None},
        {"name": "purposes", "type": {"type": "array", "items": "string"}, "default": []},
        {"name": "stage", "type": ["null", "string"], "default": None},
        {
            "name": "action",
            "type": [
                "null",
                {"type": "enum", "name": "Action", "symbols": ["archive", "anonymise", "delete"]},
            ],
            "default": None,
        },
        {
            "name": "command_id",
            "type": ["null", {"type": "string", "logicalType": "uuid"}],
            "default": None,
        },
        {"name": "due_at", "type": ["null", _TIME], "default": None},
        {"name": "previous_due_at", "type": ["null", _TIME], "default": None},
        {"name": "issued_at", "type": ["null", _TIME], "default": None},
        {"name": "topic", "type": ["null", "string"], "default": None},
        {"name": "partition", "type": ["null", "int"], "default": None},
        {"name": "offset", "type": ["null", "long"], "default": None},
        {"name": "reason", "type": ["null", "string"], "default": None},
    ],
}
"""`schemas/audit_record.avsc` without its docs (a test keeps the two the same)."""


def audit_record_key(record: AuditRecord) -> bytes:
    """The key on `lethe.audit`: `<table>:<key JSON>` (`public.customers:{"id":42}`), so one
    row's decisions stay in order on one partition; a dead letter: `<topic>:<partition>`."""
    if record.table is not None and record.key is not None:
        return record.table.encode() + b":" + orjson.dumps(dict(record.key))
    return f"{record.topic}:{record.partition}".encode()


def audit_datum(record: AuditRecord) -> dict[str, object]:
    """The record as the Avro datum of `AUDIT_SCHEMA` (times as µs since the epoch)."""
    return {
        "decision": record.decision.value,
        "at": record.at,
        "table": record.table,
        "key": None if record.key is None else dict(record.key),
        "subject": record.subject,
        "purposes": list(record.purposes),
        "stage": record.stage,
        "action": None if record.action is None else record.action.value,
        "command_id": record.command_id,
        "due_at": record.due_at,
        "previous_due_at": record.previous_due_at,
        "issued_at": record.issued_at,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "reason": record.reason,
    }


def audit_json(record: AuditRecord) -> dict[str, object]:
    """The record's JSON form: the Avro datum with times as ISO-8601 UTC text (`...Z`)."""
    document = audit_datum(record)
    for name in ("at", "due_at", "previous_due_at", "issued_at"):
        instant = document[name]
        if isinstance(instant, int):
            document[name] = format_instant(instant)
    return document
