"""No personal value where Lethe must not write one: a canary run on the real stack.

The rows. The test writes rows of its own into every demo table the policy names (ids in a
block of 100 of its own inside 927,000,000-927,899,999, customer ids the same; the end-to-end
test uses 918,...), through SQL only: the real Debezium connector captures them. Every text
column that can hold personal data holds a canary that says where it came from:
`CANARY-<table>-<column>-<n>-<base>`, names with non-ASCII letters and quotes (so that their
JSON-escaped form differs from the value), e-mails `Canary-<table>-<n>-<base>@Example.org`
(mixed case: the policy lower-cases an e-mail subject), phone, IBAN and IP-like values with
`CANARY` in them. Dates, flags, scores and amounts are not canaries; `pan_last4` cannot be
one (four digits, a CHECK). One customer is under a legal hold; between the inserts and the
advance a phone and a ticket body are changed to new canaries (the update's before image
holds the old one) and one info request is deleted by the business (its delete's before
image holds the row).

The worker. `lethe worker` enforcing (LETHE_ENFORCE=on) at DEBUG, under a manual clock of its
own from 2010-01-01 advanced to 2016-01-01, with its own LETHE_AUDIT_HASH_KEY. No row falls
due before the advance (nothing due at 2010-01-01: a later worker that reads these rows'
insert and delete events from the change topics, as the end-to-end test's does, issues
nothing for them); at the advance the rows worked out by hand (`DELETED`, `ANONYMISED`) get
their commands, and the stack's JDBC sink `lethe-sink` applies them: the test waits until
PostgreSQL shows it, so the commands, the sink records, the audit's issued and confirmed
records and the debug logs of all that exist before the search.

The poison. Five records the worker cannot use, full of canaries (not JSON, truncated JSON,
text in a timestamp column, an unknown op, a key without `id`), are written by hand to the
change topic of a table of the run's own (`pii_<hex>`, under connection_logs' rules, no rows
in PostgreSQL; no other test reads it): each is dead-lettered (counted by
`lethe_dead_letters_total`), and `lethe.deadletter` holds their raw values, as documented.

The search. `PATTERNS`: `canary` in any case (every canary, the e-mails' local parts and
their upper, lower and JSON-escaped forms hold it), the run's base number (a leak of a
canary's tail), the names' last word (also JSON-escaped) and `CANARY-` in base64, in:
- what must hold none: the worker's output (stdout and stderr: its only log; at debug), its
  /metrics page, `lethe.audit` (an e-mail subject only as `email-hmac:<HMAC-SHA256 under the
  run's key>`, which the test computes and finds), `lethe.commands` (Avro decoded) outside
  the record key and the `subject` field (a command names its person: docs/commands.md),
  every other `lethe.*` topic (the sink topics: keys and anonymised values only) from where
  it ended when the test started, the worker's clock topic and every other topic of the app
  that is not its state, `lethe simulate`'s output (outside `subject`) and errors over the
  same change events; the audit hash key must not be in the worker's output either;
- the worker's state, where personal values are allowed and bounded (docs/reliability.md,
  "Personal data"): the tables' compacted changelogs may hold e-mail subjects and nothing
  else (the columns the rules read are no free text), `<app id>-subject-events` holds the
  Debezium values (it must: the test checks that they are there and that the topic is kept
  `SUBJECT_EVENTS_RETENTION_S`, not for good; the worker runs with LETHE_LOCAL_HANDOFF=off,
  so that every change goes through that topic, the most personal data Lethe's topics hold);
- `lethe.deadletter` is not searched: it keeps raw records by design (docs/dead-letters.md);
  the test checks that it is kept `DEADLETTER_RETENTION_S`.

At the end the test's rows are deleted and the run's topics and consumer group dropped.
Fails (never skips) when the stack is down.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import re
import subprocess
import sys
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import fastavro
import orjson
import psycopg
import pytest
import yaml
from confluent_kafka.admin import AdminClient, ConfigResource

from lethe.clock import advance_manual_clock
from lethe.settings import Settings
from lethe.topics import DEADLETTER_RETENTION_S, DEADLETTER_TOPIC, SUBJECT_EVENTS_RETENTION_S
from policy.instants import from_datetime
from tests.integration.faults import (
    AUDIT_SCHEMA,
    COMMAND_SCHEMA,
    ROOT,
    ChangeTopics,
    Run,
    at,
    commands_for_rows_in_place,
    database_state,
    forget_run,
    insert_rows,
    new_run,
    row_ids,
    start_worker,
    update,
    wait_for_debezium,
    worker_caught_up,
)
from tests.integration.workers import (
    Reader,
    WorkerProcess,
    produce,
    quiet,
    serving,
    sink_caught_up,
    topic_ends,
    wait_for,
)

pytestmark = pytest.mark.integration

APP_ID_PREFIX = "lethe-it-pii-"
"""Not `canary`: the app id is in topic names and log lines."""
RANGE_LOW, RANGE_HIGH = 927_000_000, 927_899_999
"""Ids of this test's rows (every run takes a block of 100 inside): no demo row has one."""
START = at("2010-01-01")
ADVANCE = at("2016-01-01")
HASH_KEY = "pii-test-audit-hash-key-7f3a9c1e5b2d4f6a8c0e"
PARTITIONS = 2
"""The worker's internal partitions: the integration workers' usual two."""


@dataclass(frozen=True)
class Canaries:
    """The canaries of the test's rows (ids `base + n`, customer ids the same); the rows
    written are kept in `Run.values`."""

    base: int

    def customer(self, n: int) -> int:
        return self.base + n

    def id(self, n: int) -> int:
        return self.base + n

    def text(self, table: str, column: str, n: int) -> str:
        return f"CANARY-{table}-{column}-{n}-{self.base}"

    def name(self, table: str, column: str, n: int) -> str:
        """A canary name whose JSON escape differs from it: non-ASCII letters and quotes."""
        return f'{self.text(table, column, n)} Zoë "Zo" Ñúñez'

    def mail(self, table: str, n: int) -> str:
        return f"Canary-{table}-{n}-{self.base}@Example.org"


def canary_rows(rows: Canaries) -> dict[str, list[dict[str, Any]]]:
    """The rows inserted, by table (the hold first). n=1 falls due before 2016 (deleted or
    anonymised), n=2 does not (kept); customer 3 is held."""
    c, i, t, name, mail = rows.customer, rows.id, rows.text, rows.name, rows.mail
    c2, c3 = c(2), c(3)

    def customer(n: int, closed_at: datetime | None) -> dict[str, Any]:
        return {
            "id": c(n),
            "nic_handle": t("customers", "nic_handle", n),
            "first_name": name("customers", "first_name", n),
            "last_name": name("customers", "last_name", n),
            "email": mail("customers", n),
            "phone": f"+33-6-{t('customers', 'phone', n)}",
            "postal_address": t("customers", "postal_address", n),
            "country": t("customers", "country", n),
            "created_at": at("2005-01-01"),
            "closed_at": closed_at,
        }

    return {
        "legal_holds": [
            {
                "id": i(1),
                "customer_id": c3,
                "case_ref": t("legal_holds", "case_ref", 1),
                "placed_at": at("2009-12-01"),
                "released_at": None,
            }
        ],
        "customers": [
            customer(1, at("2010-06-01")),  # archived at closing, deleted 2015-06-01
            customer(2, None),
            customer(3, at("2010-02-01")),  # held
        ],
        "support_tickets": [
            {
                "id": i(n),
                "customer_id": c2,
                "subject_line": t("support_tickets", "subject_line", n),
                "body": t("support_tickets", "body", n),
                "contact_email": mail("support_tickets", n),
                "created_at": at("2009-01-01"),
                "last_message_at": when,
            }
            for n, when in ((1, at("2010-02-01")), (2, at("2015-06-01")))
        ],
        "orders": [
            {
                "id": i(1),
                "customer_id": c3,
                "service": t("orders", "service", 1),
                "amount_cents": 100,
                "ordered_at": at("2010-02-01"),
            }
        ],
        "invoices": [
            {
                "id": i(1),
                "customer_id": c2,
                "order_id": None,
                "billing_name": name("invoices", "billing_name", 1),
                "billing_address": t("invoices", "billing_address", 1),
                "amount_cents": 100,
                "issued_at": at("2010-02-02"),
            }
        ],
        "payment_methods": [
            {
                "id": i(n),
                "customer_id": c2,
                "kind": "sepa_debit",
                "holder_name": name("payment_methods", "holder_name", n),
                "pan_last4": None,
                "iban": f"FR76CANARY{n}{rows.base}",
                "expires_on": expires,
                "subscription_cancelled_at": None,
                "revoked_at": None,
                "keep_for_purchases": False,
                "purchase_consent_withdrawn_at": None,
            }
            for n, expires in ((1, date(2010, 6, 30)), (2, date(2030, 1, 31)))
        ],
        "job_applications": [
            {
                "id": i(n),
                "first_name": name("job_applications", "first_name", n),
                "last_name": name("job_applications", "last_name", n),
                "email": mail("job_applications", n),
                "cv_text": t("job_applications", "cv_text", n),
                "status": "rejected",
                "last_contact_at": when,
                "retention_consent": False,
            }
            for n, when in ((1, at("2010-03-01")), (2, at("2015-06-01")))
        ],
        "event_registrations": [
            {
                "id": i(n),
                "event_name": t("event_registrations", "event_name", n),
                "full_name": name("event_registrations", "full_name", n),
                "email": mail("event_registrations", n),
                "company": t("event_registrations", "company", n),
                "job_title": t("event_registrations", "job_title", n),
                "event_ends_at": when,
                "objected_at": None,
            }
            for n, when in ((1, at("2010-03-01")), (2, at("2015-12-01")))
        ],
        "marketing_contacts": [
            {
                "id": i(1),
                "customer_id": None,
                "email": mail("marketing_contacts", 1),
                "basis": "consent",
                "consent_withdrawn_at": at("2011-01-01"),
                "objected_at": None,
                "last_contact_at": at("2010-05-01"),
            },
            {
                "id": i(2),
                "customer_id": None,
                "email": mail("marketing_contacts", 2),
                "basis": "legitimate_interest",
                "consent_withdrawn_at": None,
                "objected_at": None,
                "last_contact_at": at("2015-01-01"),
            },
        ],
        "info_requests": [
            {
                "id": i(n),
                "email": mail("info_requests", n),
                "full_name": name("info_requests", "full_name", n),
                "content": t("info_requests", "content", n),
                "received_at": at("2010-02-01"),
                "handled_at": handled,
            }
            for n, handled in ((1, at("2010-06-01")), (2, None), (3, None))
        ],
        "call_recordings": [
            {
                "id": i(n),
                "customer_id": c2,
                "agent_id": 7,
                "audio_ref": t("call_recordings", "audio_ref", n),
                "recorded_at": when,
                "objected": False,
            }
            for n, when in ((1, at("2010-03-01")), (2, at("2015-12-01")))
        ],
        "satisfaction_surveys": [
            {
                "id": i(n),
                "customer_id": c2,
                "respondent_email": mail("satisfaction_surveys", n),
                "score": 7,
                "comments": name("satisfaction_surveys", "comments", n),
                "submitted_at": when,
            }
            for n, when in ((1, at("2010-05-17T10:20:30")), (2, at("2015-06-01")))
        ],
        "payment_defaults": [
            {"id": i(1), "customer_id": c2, "amount_cents": 100, "defaulted_at": at("2010-02-01")}
        ],
        "fraud_signals": [
            {
                "id": i(n),
                "customer_id": c2,
                "ip_address": f"198.51.100.{n}-{t('fraud_signals', 'ip_address', n)}",
                "geo": t("fraud_signals", "geo", n),
                "score": 0.5,
                "observed_at": when,
            }
            for n, when in ((1, at("2010-03-01")), (2, at("2015-01-01")))
        ],
        "identity_documents": [
            {
                "id": i(1),
                "customer_id": c2,
                "kind": "passport",
                "document_ref": t("identity_documents", "document_ref", 1),
                "verified_at": at("2010-03-01"),
                "fraud_suspected": False,
            }
        ],
        "dpo_requests": [
            {
                "id": i(n),
                "customer_id": c2,
                "request_text": t("dpo_requests", "request_text", n),
                "answer_text": t("dpo_requests", "answer_text", n),
                "id_proof_ref": t("dpo_requests", "id_proof_ref", n),
                "received_at": at("2010-01-15"),
                "answered_at": when,
            }
            for n, when in ((1, at("2010-03-01")), (2, at("2014-06-01")))
        ],
        "data_breaches": [
            {
                "id": i(1),
                "description": t("data_breaches", "description", 1),
                "affected_subjects": 1,
                "detected_at": at("2010-02-01"),
            }
        ],
        "connection_logs": [
            {
                "id": i(n),
                "customer_id": c2,
                "ip_address": f"2001:db8::{n}-{t('connection_logs', 'ip_address', n)}",
                "logged_at": when,
            }
            for n, when in ((1, at("2010-03-01")), (2, at("2015-06-01")))
        ],
    }


def changes(rows: Canaries) -> list[tuple[str, int, dict[str, Any] | None]]:
    """(table, id, new columns or None for a delete) written after the inserts."""
    return [
        ("customers", rows.customer(2), {"phone": f"+33-7-{rows.text('customers', 'phone', 22)}"}),
        ("support_tickets", rows.id(2), {"body": rows.text("support_tickets", "body", 22)}),
        ("info_requests", rows.id(3), None),
    ]


DELETED = {
    "customers": [1],  # closed 2010-06-01 + 5 years
    "support_tickets": [1],  # last message 2010-02-01 + 5 years
    "payment_methods": [1],  # expired 2010-06-30 + 13 months
    "job_applications": [1],  # last contact 2010-03-01 + 15 months
    "event_registrations": [1],  # ended 2010-03-01 + 180 days
    "marketing_contacts": [1],  # consent withdrawn 2011-01-01
    "info_requests": [1, 3],  # handled 2010-06-01 + 1 year; 3: deleted by the business
    "call_recordings": [1],  # recorded 2010-03-01 + 6 months
    "payment_defaults": [1],  # defaulted 2010-02-01 + 5 years
    "fraud_signals": [1],  # observed 2010-03-01 + 2 years
    "identity_documents": [1],  # verified 2010-03-01 + 30 days
    "dpo_requests": [1],  # answered 2010-03-01 + 5 years
    "data_breaches": [1],  # detected 2010-02-01 + 5 years
    "connection_logs": [1],  # logged 2010-03-01 + 1 year
}
"""Worked out by hand from config/policy.yaml: the rows (by n) gone at 2016-01-01."""
ANONYMISED = {
    "satisfaction_surveys": (1, ("customer_id", "respondent_email", "comments")),
    "dpo_requests": (2, ("id_proof_ref",)),
}
"""The rows anonymised at 2016-01-01 (submitted 2010-05-17 + 1 year; answered 2014-06-01 +
1 year) and the columns then empty."""


def b64_forms(marker: bytes) -> list[bytes]:
    """The base64 text `marker` becomes at each of the three alignments, without the
    characters that depend on the bytes around it."""
    forms = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + marker)
        forms.append(encoded[(shift * 8 + 5) // 6 : (shift + len(marker)) // 3 * 4])
    return forms


PATTERNS = [
    (re.compile(rb"(?i)canary"), "text"),
    (re.compile(rb"(?<![0-9])927[0-9]{4}00(?![0-9])"), "a canary's number"),
    (re.compile("úñez".encode()), "a canary's name"),
    (re.compile(rb"(?i)\\u00fa\\u00f1ez"), "a canary's name, JSON-escaped"),
] + [
    (re.compile(re.escape(form)), "base64")
    for marker in (b"CANARY-", b"canary-", b"Canary-")
    for form in b64_forms(marker)
]
"""What a canary leaves wherever it goes: `canary` in any case (every canary, e-mails and
their local parts too), the run's base number (at the end of every canary; never an id: ids
are base + 1..95), the names' last word, and `CANARY-` in base64."""


def found_in(where: str, data: bytes | str | None) -> list[str]:
    """Each canary in `data` (`PATTERNS`), with its context."""
    if data is None:
        return []
    raw = data.encode() if isinstance(data, str) else data
    return [
        f"{where}: {kind} {raw[max(0, m.start() - 60) : m.start() + 80].decode(errors='replace')!r}"
        for pattern, kind in PATTERNS
        for m in pattern.finditer(raw)
    ]


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


def records(settings: Settings, topic: str, start: dict[int, int] | None = None) -> list[Record]:
    reader = Reader(settings, topic, start)
    try:
        return [Record(topic, m.key(), m.value(), tuple(m.headers() or ())) for m in reader.read()]
    finally:
        reader.close()


def raw_found(record: Record, where: str) -> list[str]:
    found = found_in(f"{where} key", record.key) + found_in(f"{where} value", record.value)
    for name, value in record.headers:
        found += found_in(f"{where} header {name}", value)
    return found


def subjects_out(record: Record, subject: re.Pattern[bytes]) -> Record:
    """`record` with every e-mail subject of the run (`email:<lower-cased address>`) cut out."""

    def cut(data: bytes | None) -> bytes | None:
        return None if data is None else subject.sub(b"email:<subject>", data)

    headers = tuple((name, cut(value)) for name, value in record.headers)
    return Record(record.topic, cut(record.key), cut(record.value), headers)


def command_found(record: Record) -> list[str]:
    """Canaries in a `lethe.commands` record outside its key and `subject` (which name the
    person: the record key is the subject)."""
    assert record.value is not None
    command = fastavro.schemaless_reader(io.BytesIO(record.value), COMMAND_SCHEMA)
    assert isinstance(command, dict)
    subject = command.pop("subject")
    where = f"lethe.commands {command['action']} {command['table']} {command['key']}"
    found = found_in(f"{where} (decoded)", orjson.dumps(command, default=str))
    if record.key != (subject or "").encode():
        found += found_in(f"{where} key", record.key)
    for name, value in record.headers:
        found += found_in(f"{where} header {name}", value)
    return found


def audit_subjects(record: Record) -> list[str]:
    assert record.value is not None
    audit = fastavro.schemaless_reader(io.BytesIO(record.value), AUDIT_SCHEMA)
    assert isinstance(audit, dict)
    return [str(audit["subject"])]


def email_hmac(address: str) -> str:
    digest = hmac.new(HASH_KEY.encode(), address.lower().encode(), hashlib.sha256).hexdigest()
    return f"email-hmac:{digest}"


@pytest.fixture(scope="module")
def run(real_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The run's block, policy (the poison table's source added) and clock; its rows are
    deleted and its topics dropped at the end."""
    hex_id = uuid.uuid4().hex[:8]
    app_id = APP_ID_PREFIX + hex_id
    run = new_run(
        real_stack,
        app_id,
        tmp_path_factory.mktemp("pii"),
        base=RANGE_LOW + (int(hex_id, 16) % 9000) * 100,
        span=100,
        id_range=(RANGE_LOW, RANGE_HIGH),
        start=START,
        advances=(ADVANCE,),
    )
    document = yaml.safe_load(run.policy.read_text(encoding="utf-8"))
    document["sources"][f"public.{poison_table(app_id)}"] = document["sources"][
        "public.connection_logs"
    ]
    run.policy.write_text(yaml.safe_dump(document, sort_keys=False), "utf-8")
    try:
        yield run
    finally:
        forget_run(real_stack, run, poison_table(run.app_id))


def poison_table(app_id: str) -> str:
    """The run's own table (under connection_logs' rules, no rows in PostgreSQL), whose change
    topic gets the hand-written records the worker cannot use."""
    return "pii_" + app_id.rsplit("-", 1)[1]


def poison(rows: Canaries, topic: str) -> list[tuple[bytes, bytes]]:
    """(key, value) of records the worker must dead-letter, each full of canaries: not JSON,
    truncated JSON, a timestamp column holding text, an unknown op, a key without the primary
    key's column."""
    t, base = rows.text, rows.base

    def envelope(n: int, op: str, **after: object) -> bytes:
        image = {"id": base + n, "customer_id": base + 2, "ip_address": t(topic, "ip", n)}
        return orjson.dumps(
            {"op": op, "ts_ms": 1_764_000_000_000, "before": None, "after": {**image, **after}}
        )

    def key(n: int) -> bytes:
        return orjson.dumps({"id": base + n})

    return [
        (key(91), t(topic, "not_json", 91).encode()),
        (key(92), envelope(92, "c", logged_at="2015-01-01T00:00:00Z")[:-9]),
        (key(93), envelope(93, "c", logged_at=t(topic, "logged_at", 93))),
        (key(94), envelope(94, t(topic, "op", 94), logged_at="2015-01-01T00:00:00Z")),
        (orjson.dumps({"uid": t(topic, "key", 95)}), envelope(95, "c", logged_at=None)),
    ]


def lethe_topics(settings: Settings) -> list[str]:
    """Every `lethe.*` topic now (the audit, the commands, the sink topics, the dead letters,
    the default clock, any added later)."""
    existing = AdminClient(quiet(settings)).list_topics(timeout=10).topics
    return sorted(topic for topic in existing if topic.startswith("lethe."))


def enforced(settings: Settings, run: Run) -> list[str]:
    """How PostgreSQL differs from the hand-worked outcome (empty: every command applied)."""
    rows, base = database_state(settings, run), run.base
    wrong = [
        f"{table} {n} not deleted"
        for table, ns in DELETED.items()
        for n in ns
        if base + n in rows[table]
    ]
    for table, (n, columns) in ANONYMISED.items():
        row = rows[table].get(base + n)
        if row is None or any(row[column] is not None for column in columns):
            wrong.append(f"{table} {n} not anonymised: {row}")
    return wrong


def simulate_output(run: Run, lines: list[dict[str, Any]]) -> list[str]:
    """`lethe simulate` over the run's change events (wall clock: all of them overdue):
    canaries in its stdout outside `subject`, and in its stderr."""
    events = run.workdir / "canary-events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    env = {name: value for name, value in os.environ.items() if not name.startswith("LETHE_")}
    result = subprocess.run(
        [
            *(sys.executable, "-m", "lethe", "simulate"),
            *("--policy", str(run.policy), "--events", str(events)),
        ],
        cwd=ROOT,
        env={**env, "LETHE_AUDIT_HASH_KEY": HASH_KEY},
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    commands = [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert any(c["action"] == "delete" for c in commands), "the simulation issued no delete"
    found = found_in("lethe simulate stderr", result.stderr)
    for command in commands:
        command.pop("subject")
        found += found_in("lethe simulate stdout", orjson.dumps(command))
    return found


def test_no_personal_value_in_logs_metrics_audit_commands_or_sink_records(
    real_stack: Settings, run: Run
) -> None:
    rows = Canaries(run.base)
    sink_topics = [f"lethe.sink.public.{table}" for table in run.tables]
    starts = {topic: topic_ends(real_stack, topic) for topic in lethe_topics(real_stack)}
    bad_topic = run.topic(poison_table(run.app_id))
    bad = poison(rows, poison_table(run.app_id))

    def dead_letters(worker: WorkerProcess) -> int:
        return int(
            sum(
                value
                for (name, labels), value in (worker.metrics() or {}).items()
                if name == "lethe_dead_letters_total" and dict(labels).get("topic") == bad_topic
            )
        )

    topics = ChangeTopics(real_stack, run)
    expected: Counter[str] = Counter()
    try:
        with serving(
            start_worker(
                run,
                PARTITIONS,
                loglevel="debug",
                LETHE_AUDIT_HASH_KEY=HASH_KEY,
                LETHE_LOCAL_HANDOFF="off",
            )
        ) as worker:
            insert_rows(real_stack, run, canary_rows(rows), expected)
            wait_for_debezium(topics, expected, worker)
            worker_caught_up(real_stack, run, worker)
            for key, value in bad:
                produce(real_stack, bad_topic, key, value)
            wait_for(
                lambda: f"{len(bad)} dead letters of {bad_topic}, {dead_letters(worker)} counted",
                lambda: True if dead_letters(worker) == len(bad) else None,
                worker,
            )
            with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
                for table, row_id, columns in changes(rows):
                    if columns is None:
                        conn.execute(f"DELETE FROM {table} WHERE id = %s", (row_id,))
                    else:
                        update(conn, table, row_id, columns)
                    expected[table] += 1
            wait_for_debezium(topics, expected, worker)
            worker_caught_up(real_stack, run, worker)
            issued = commands_for_rows_in_place(real_stack, run, row_ids(real_stack, run.tables))
            advance_manual_clock(run.clock, from_datetime(ADVANCE))
            wait_for(
                lambda: f"the commands applied in PostgreSQL: {enforced(real_stack, run)}",
                lambda: True if not enforced(real_stack, run) else None,
                worker,
            )
            worker_caught_up(real_stack, run, worker)
            with urllib.request.urlopen(worker.metrics_url, timeout=5) as response:
                metrics = response.read()
        assert issued == [], f"nothing is due at the clock's start: {issued}"
        assert sink_caught_up(real_stack, sink_topics), "the sink did not catch up within 60 s"
        log = worker.log()
        lines = [
            line
            for line in topics.lines()
            if run.owns((line["key"].get("payload") or line["key"])["id"])
        ]
    finally:
        topics.close()

    assert "[DEBUG]" in log, "the worker logged at debug"
    leaks = found_in("worker output", log) + found_in("/metrics", metrics)
    assert HASH_KEY not in log, "the audit hash key is in the worker's output"

    audit = records(real_stack, "lethe.audit", starts.get("lethe.audit"))
    for record in audit:
        leaks += raw_found(record, "lethe.audit")
    hashed = {s for record in audit for s in audit_subjects(record)}
    j1 = rows.mail("job_applications", 1)
    assert email_hmac(j1) in hashed, "an e-mail subject is in the audit as its HMAC"

    commands = records(real_stack, "lethe.commands", starts.get("lethe.commands"))
    for record in commands:
        leaks += command_found(record)
    subjects = {record.key for record in commands}
    assert f"email:{j1.lower()}".encode() in subjects, "the run's commands were read"

    for topic in lethe_topics(real_stack):
        if topic not in ("lethe.audit", "lethe.commands", DEADLETTER_TOPIC):
            for record in records(real_stack, topic, starts.get(topic)):
                leaks += raw_found(record, topic)
    assert any(topic.startswith("lethe.sink.") for topic in lethe_topics(real_stack))

    existing = AdminClient(quiet(real_stack)).list_topics(timeout=10).topics

    subject = re.compile(rb"email:canary-[a-z_]+-[0-9]+-[0-9]+@example\.org")
    state = 0
    for topic in sorted(t for t in existing if t.startswith(f"{run.app_id}-")):
        for record in records(real_stack, topic):
            if topic.endswith("-subject-events"):
                state += len(raw_found(record, topic))
            elif topic.endswith("-changelog"):
                leaks += raw_found(subjects_out(record, subject), f"{topic} (outside subjects)")
            else:
                leaks += raw_found(record, topic)
    leaks += simulate_output(run, lines)

    kept = [
        base64.b64decode(letter["value_b64"])
        for record in records(real_stack, DEADLETTER_TOPIC, starts.get(DEADLETTER_TOPIC))
        if (letter := orjson.loads(record.value or b"null"))["topic"] == bad_topic
    ]
    assert sorted(kept) == sorted(value for _, value in bad), (
        "lethe.deadletter keeps the raw records (docs/dead-letters.md)"
    )
    assert leaks == [], f"{len(leaks)} canaries found:\n" + "\n".join(leaks[:60])

    assert state, "the subject events hold the Debezium values"
    assert retention_ms(real_stack, f"{run.app_id}-subject-events") == str(
        SUBJECT_EVENTS_RETENTION_S * 1000
    ), "the subject events (personal data) are kept for a bounded time"
    assert retention_ms(real_stack, DEADLETTER_TOPIC) == str(DEADLETTER_RETENTION_S * 1000), (
        "the dead letters (raw records) are kept for a bounded time"
    )


def retention_ms(settings: Settings, topic: str) -> str:
    admin = AdminClient(quiet(settings))
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    return str(configs["retention.ms"].value)
