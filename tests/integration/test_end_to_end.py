"""The whole chain on the real stack, agreeing with `lethe simulate`: rows inserted and
updated in the demo database `hosting` -> the Debezium connector `hosting` -> a
`lethe worker` (enforcing, manual clock) -> `lethe.commands` and `lethe.sink.public.*` ->
the JDBC sink `lethe-sink` -> rows deleted and anonymised in PostgreSQL.

The rows. The test writes rows of its own into every demo table the policy names (ids in
a block of 100 of its own inside 918,000,000-918,899,999, customer ids the same, e-mails
`e2e-...@example.org`), through SQL only: Debezium captures them, no change record is
written by hand. Held rows belong to customer c4 (a hold never released) and c5 (a hold
released in the second phase).

The clock. The worker runs under a manual clock (its own clock topic) that starts at
2010-01-01, is advanced to 2013-01-01 and then to 2016-01-01 (`lethe clock advance`'s
function). The test's rows fall due at one advance or the other, or after 2016, or never
(held); some fall due only because of an update written between the advances (a sliding
clock restarted, an objection, a revocation, a hold released), one row is inserted already
overdue.

The demo's own rows. The worker reads the demo change topics from their start, so it
sees the seeded rows and what other tests wrote (rows inserted and deleted again). The
clock never goes past 2016-01-01, and the earliest instant a demo row falls due under the
shipped policy is 2025-06-15 (customer 3's archive; customer 2's overdue rows are under a
hold never released), other tests' rows are dated 2024 or later: under this clock nothing
but the test's rows falls due, so the worker issues nothing that the shared sink would
apply to a demo row (the test checks it: no command for another row, every other row
unchanged). One rule would: a call recording whose `objected` is true is deleted
`at_once` (seeded call recording 3), whatever the clock. The worker's policy is therefore
config/policy.yaml with that one clock changed to `recorded_at` (an objected recording is
deleted at the instant it was recorded); everything else is the shipped policy. The
comparison still covers the whole tables: the test's rows must be as `lethe simulate`
says, and every other row that was there when the test started must be there unchanged at
the end (a concurrent test that changed a seeded row would fail this test too: the common
rules forbid it). Rows that other tests wrote and deleted before this one (a second run of
the suite on the same stack: the fault tests' rows are overdue under this clock) are in the
change topics too: their commands change nothing in the database and are left out of the
checks; a command for a row present when the test started, or for the test's own rows
before they fall due, fails it.

The comparison. The test reads every record of the demo change topics (what the worker
consumed), runs `lethe simulate` over them under the same clock (LETHE_CLOCK=manual, the
same start, `--clock-advances` with the advances read back from the clock topic), and
asserts, table by table, that PostgreSQL holds what the simulation's commands leave of the
rows the test wrote (a delete removes the row; an anonymise empties the columns or
coarsens them as the policy says), that the commands on `lethe.commands` are the
simulation's (same ids, for every row in the id range: earlier runs' too), and that the
outcome is the one worked out by hand (`fates`).

Confirmation: every delete and anonymise of the run's rows is counted confirmed
(`lethe_commands_confirmed_total`) from the change stream.

At the end the worker is stopped, the sink is let to catch up, the test's rows are
deleted, and the worker's topics, clock topic and consumer group are dropped. Fails (never
skips) when the stack is down.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
import pytest

from lethe.settings import Settings
from tests.integration.faults import (
    ChangeTopics,
    Run,
    at,
    check_confirmations,
    command_differences,
    commands_for_rows_in_place,
    database_state,
    differences,
    expected_state,
    forget_run,
    insert,
    live_commands,
    new_run,
    outcome,
    simulate,
    update,
    wait_for_debezium,
    wait_for_state,
    worker_caught_up,
    worker_serving,
)
from tests.integration.faults import advance as advance_clock
from tests.integration.workers import WorkerProcess, sink_caught_up

pytestmark = pytest.mark.integration

APP_ID_PREFIX = "lethe-it-e2e-"
PARTITIONS = 8
"""The worker's internal partitions: its default, so that a row moving between subjects
changes partitions as it does in production."""
RANGE_LOW, RANGE_HIGH = 918_000_000, 918_899_999
"""Ids of this test's rows (every run takes a block of 100 inside): no demo row has one."""

START = at("2010-01-01")
FIRST = at("2013-01-01")
SECOND = at("2016-01-01")
"""The manual clock: its start and the two instants it is advanced to."""


@dataclass
class Rows:
    """The ids, customer ids and e-mails of the rows the test writes (their values are kept in
    `Run.values`)."""

    base: int

    def customer(self, n: int) -> int:
        return self.base + n

    def id(self, n: int) -> int:
        return self.base + n

    def email(self, what: str) -> str:
        return f"e2e-{what}-{self.base}@example.org"


def first_rows(rows: Rows) -> dict[str, list[dict[str, Any]]]:
    """The rows inserted before the first advance, by table (legal holds go first)."""
    c, i, email = rows.customer, rows.id, rows.email

    def customer(n: int, closed_at: datetime | None) -> dict[str, Any]:
        return {
            "id": c(n),
            "nic_handle": f"e2e{n}-{rows.base}",
            "first_name": "Test",
            "last_name": f"Customer{n}",
            "email": email(f"c{n}"),
            "phone": None,
            "postal_address": "1 Example Road",
            "country": "FR",
            "created_at": at("2005-01-01"),
            "closed_at": closed_at,
        }

    def ticket(n: int, customer_id: int, last_message_at: datetime) -> dict[str, Any]:
        return {
            "id": i(n),
            "customer_id": customer_id,
            "subject_line": f"ticket {n}",
            "body": "body",
            "contact_email": email(f"t{n}"),
            "created_at": at("2005-01-01"),
            "last_message_at": last_message_at,
        }

    def survey(n: int, customer_id: int, submitted_at: datetime) -> dict[str, Any]:
        return {
            "id": i(n),
            "customer_id": customer_id,
            "respondent_email": email(f"s{n}"),
            "score": n,
            "comments": "the person's own words",
            "submitted_at": submitted_at,
        }

    def log(n: int, customer_id: int, logged_at: datetime) -> dict[str, Any]:
        ip = f"192.0.2.{n}"
        return {"id": i(n), "customer_id": customer_id, "ip_address": ip, "logged_at": logged_at}

    c3, c4, c5 = c(3), c(4), c(5)
    return {
        "customers": [
            customer(1, at("2011-06-01")),
            customer(2, at("2010-06-01")),
            customer(3, None),
            customer(4, at("2010-03-01")),
            customer(5, at("2010-02-01")),
            customer(6, at("2013-06-01")),
        ],
        "support_tickets": [
            ticket(1, c3, at("2009-02-01")),
            ticket(2, c3, at("2011-06-01")),
            ticket(3, c3, at("2009-06-01")),
            ticket(4, c4, at("2010-06-01")),
            ticket(5, c(5), at("2010-03-01")),
        ],
        "orders": [
            {
                "id": i(n),
                "customer_id": cust,
                "service": "vps",
                "amount_cents": 100 * n,
                "ordered_at": when,
            }
            for n, cust, when in (
                (1, c3, at("2002-05-01")),
                (2, c3, at("2004-05-01")),
                (3, c3, at("2008-05-01")),
                (4, c4, at("2001-06-01")),
            )
        ],
        "invoices": [
            {
                "id": i(n),
                "customer_id": cust,
                "order_id": None,
                "billing_name": f"Payer {n}",
                "billing_address": "1 Example Road",
                "amount_cents": 100 * n,
                "issued_at": when,
            }
            for n, cust, when in (
                (1, c3, at("2002-05-02")),
                (2, c3, at("2009-01-01")),
                (3, c5, at("2001-03-01")),
            )
        ],
        "payment_methods": [
            {
                "id": i(1),
                "customer_id": c3,
                "kind": "card",
                "holder_name": "TEST ONE",
                "pan_last4": "4242",
                "iban": None,
                "expires_on": date(2010, 10, 31),
                "subscription_cancelled_at": None,
                "revoked_at": None,
                "keep_for_purchases": False,
                "purchase_consent_withdrawn_at": None,
            },
            {
                "id": i(2),
                "customer_id": c3,
                "kind": "sepa_debit",
                "holder_name": "Test Two",
                "pan_last4": None,
                "iban": "DE89370400440532013000",
                "expires_on": None,
                "subscription_cancelled_at": None,
                "revoked_at": None,
                "keep_for_purchases": False,
                "purchase_consent_withdrawn_at": None,
            },
            {
                "id": i(3),
                "customer_id": c3,
                "kind": "card",
                "holder_name": "TEST THREE",
                "pan_last4": "1881",
                "iban": None,
                "expires_on": date(2030, 1, 31),
                "subscription_cancelled_at": at("2010-02-01"),
                "revoked_at": None,
                "keep_for_purchases": True,
                "purchase_consent_withdrawn_at": None,
            },
        ],
        "job_applications": [
            {
                "id": i(n),
                "first_name": "Test",
                "last_name": f"Candidate{n}",
                "email": email(f"j{n}"),
                "cv_text": "a CV",
                "status": "rejected",
                "last_contact_at": when,
                "retention_consent": consent,
            }
            for n, when, consent in (
                (1, at("2010-05-01"), False),
                (2, at("2010-05-01"), True),
                (3, at("2015-01-01"), False),
            )
        ],
        "event_registrations": [
            {
                "id": i(n),
                "event_name": "Summit",
                "full_name": f"Visitor {n}",
                "email": email(f"e{n}"),
                "company": None,
                "job_title": None,
                "event_ends_at": when,
                "objected_at": None,
            }
            for n, when in ((1, at("2012-03-01")), (2, at("2015-08-01")), (3, at("2015-08-01")))
        ],
        "marketing_contacts": [
            {
                "id": i(1),
                "customer_id": None,
                "email": email("m1"),
                "basis": "consent",
                "consent_withdrawn_at": at("2011-05-01"),
                "objected_at": None,
                "last_contact_at": at("2010-05-01"),
            },
            {
                "id": i(2),
                "customer_id": None,
                "email": email("m2"),
                "basis": "consent",
                "consent_withdrawn_at": None,
                "objected_at": None,
                "last_contact_at": at("2010-05-01"),
            },
            {
                "id": i(3),
                "customer_id": c3,
                "email": email("m3"),
                "basis": "legitimate_interest",
                "consent_withdrawn_at": None,
                "objected_at": None,
                "last_contact_at": at("2009-01-01"),
            },
            {
                "id": i(4),
                "customer_id": None,
                "email": email("m4"),
                "basis": "legitimate_interest",
                "consent_withdrawn_at": None,
                "objected_at": None,
                "last_contact_at": at("2011-06-01"),
            },
        ],
        "info_requests": [
            {
                "id": i(n),
                "email": email(f"r{n}"),
                "full_name": f"Asker {n}",
                "content": "a question",
                "received_at": at("2009-01-01"),
                "handled_at": when,
            }
            for n, when in ((1, at("2010-03-01")), (2, None), (3, at("2015-06-01")))
        ],
        "call_recordings": [
            {
                "id": i(n),
                "customer_id": c3,
                "agent_id": 7,
                "audio_ref": f"e2e/{n}.opus",
                "recorded_at": when,
                "objected": False,
            }
            for n, when in (
                (1, at("2012-01-01")),
                (2, at("2014-03-01")),
                (3, at("2015-11-01")),
                (4, at("2015-12-01")),
            )
        ],
        "satisfaction_surveys": [
            survey(1, c3, at("2011-04-17T10:20:30")),
            survey(2, c3, at("2013-09-09T08:00:00")),
            survey(3, c3, at("2015-06-01")),
            survey(4, c4, at("2010-02-01")),
            survey(5, c5, at("2010-09-01T12:00:00")),
        ],
        "payment_defaults": [
            {"id": i(n), "customer_id": cust, "amount_cents": 100 * n, "defaulted_at": when}
            for n, cust, when in (
                (1, c3, at("2007-01-01")),
                (2, c4, at("2006-06-01")),
                (3, c3, at("2012-01-01")),
            )
        ],
        "fraud_signals": [
            {
                "id": i(n),
                "customer_id": c3,
                "ip_address": f"198.51.100.{n}",
                "geo": None,
                "score": 0.5,
                "observed_at": when,
            }
            for n, when in ((1, at("2010-06-01")), (2, at("2012-06-01")), (3, at("2014-06-01")))
        ],
        "identity_documents": [
            {
                "id": i(n),
                "customer_id": c3,
                "kind": "passport",
                "document_ref": f"kyc/{n}",
                "verified_at": at("2012-11-01") if n < 3 else at("2015-12-15"),
                "fraud_suspected": n == 2,
            }
            for n in (1, 2, 3)
        ],
        "dpo_requests": [
            {
                "id": i(n),
                "customer_id": c3,
                "request_text": "what do you hold?",
                "answer_text": "this",
                "id_proof_ref": f"dpo/{n}.pdf",
                "received_at": at("2009-01-01"),
                "answered_at": when,
            }
            for n, when in (
                (1, at("2010-03-01")),
                (2, at("2011-06-01")),
                (3, None),
                (4, at("2015-06-01")),
            )
        ],
        "data_breaches": [
            {"id": i(n), "description": f"breach {n}", "affected_subjects": n, "detected_at": when}
            for n, when in ((1, at("2007-01-01")), (2, at("2012-01-01")))
        ],
        "connection_logs": [
            log(1, c3, at("2011-02-01")),
            log(2, c3, at("2013-05-01")),
            log(3, c3, at("2015-05-01")),
            log(4, c4, at("2011-01-01")),
            log(5, c5, at("2010-08-01")),
        ],
    }


def holds(rows: Rows) -> list[dict[str, Any]]:
    return [
        {
            "id": rows.id(n),
            "customer_id": rows.customer(n + 3),
            "case_ref": f"E2E-{n}",
            "placed_at": at("2009-12-01"),
            "released_at": None,
        }
        for n in (1, 2)
    ]


def second_writes(rows: Rows) -> list[tuple[str, int, dict[str, Any]]]:
    """(table, id, columns) written between the advances: an update of the row, or the
    insert of a new row when it does not exist yet."""
    i = rows.id
    return [
        ("customers", rows.customer(6), {"closed_at": None}),  # reopened: nothing due
        ("support_tickets", i(3), {"last_message_at": at("2013-02-01")}),  # restarts
        ("payment_methods", i(2), {"revoked_at": at("2013-03-01")}),
        ("event_registrations", i(2), {"objected_at": at("2015-08-05")}),
        ("marketing_contacts", i(2), {"objected_at": at("2014-02-01")}),
        ("info_requests", i(2), {"handled_at": at("2013-02-01")}),
        ("call_recordings", i(3), {"objected": True}),
        ("dpo_requests", i(3), {"answered_at": at("2013-05-01")}),
        ("legal_holds", i(2), {"released_at": at("2012-12-01")}),  # c5's hold
        (
            "info_requests",
            i(4),
            {
                "id": i(4),
                "email": rows.email("r4"),
                "full_name": "Asker 4",
                "content": "a question",
                "received_at": at("2010-01-01"),
                "handled_at": at("2011-01-01"),
            },
        ),  # overdue when first seen
    ]


def fates(rows: Rows, written: dict[str, dict[int, dict[str, Any]]]) -> dict[tuple[str, int], str]:
    """Worked out by hand from config/policy.yaml: what is left of each row at the end,
    `deleted`, `anonymised` or `kept` (archived rows are kept: archiving changes nothing in
    the database)."""
    c, i = rows.customer, rows.id
    deleted = {
        "customers": [c(2), c(5)],  # closed 2010-06-01 / 2010-02-01: + 5 years
        "support_tickets": [i(1), i(5)],  # last message 2009-02-01 / 2010-03-01 + 5 years
        "orders": [i(1), i(2)],
        "invoices": [i(1), i(3)],  # i(3): c5, once the hold is released
        "payment_methods": [i(1), i(2)],  # expired 2010-10-31 / revoked 2013-03-01 + 13M
        "job_applications": [i(1), i(2)],  # + 15 months / with consent + 36 months
        "event_registrations": [i(1), i(2)],  # i(2): objected, ends + 90 days
        "marketing_contacts": [i(1), i(2), i(4)],  # withdrawn, objected, contact + 36M
        "info_requests": [i(1), i(2), i(4)],
        "call_recordings": [i(1), i(2), i(3)],  # i(3): objected
        "payment_defaults": [i(1)],
        "fraud_signals": [i(1), i(2)],
        "identity_documents": [i(1), i(2)],  # i(2): fraud suspected, + 12 months
        "dpo_requests": [i(1)],  # anonymised 2011-03-01, deleted 2015-03-01
        "data_breaches": [i(1)],
        "connection_logs": [i(1), i(2), i(5)],
    }
    anonymised = {
        "satisfaction_surveys": [i(1), i(2), i(5)],
        "dpo_requests": [i(2), i(3)],
    }
    result = {}
    for table, table_rows in written.items():
        for row_id in table_rows:
            result[(table, row_id)] = "kept"
    for table, ids in deleted.items():
        for row_id in ids:
            result[(table, row_id)] = "deleted"
    for table, ids in anonymised.items():
        for row_id in ids:
            result[(table, row_id)] = "anonymised"
    return result


def other_rows(
    settings: Settings, tables: tuple[str, ...]
) -> dict[str, dict[int, tuple[Any, ...]]]:
    """Every row outside the test's id range, by table and id."""
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        return {
            table: {
                row[0]: tuple(row)
                for row in conn.execute(
                    f"SELECT * FROM {table} WHERE id NOT BETWEEN %s AND %s",
                    (RANGE_LOW, RANGE_HIGH),
                ).fetchall()
            }
            for table in tables
        }


@pytest.fixture(scope="module")
def run(real_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The run's ids, policy and clock; its rows are deleted and its topics dropped at the end."""
    hex_id = uuid.uuid4().hex[:8]
    run = new_run(
        real_stack,
        APP_ID_PREFIX + hex_id,
        tmp_path_factory.mktemp("e2e"),
        base=RANGE_LOW + (int(hex_id, 16) % 9000) * 100,
        span=100,
        id_range=(RANGE_LOW, RANGE_HIGH),
        start=START,
        advances=(FIRST, SECOND),
    )
    try:
        yield run
    finally:
        forget_run(real_stack, run)


@pytest.fixture(scope="module")
def others_before(real_stack: Settings, run: Run) -> dict[str, dict[int, tuple[Any, ...]]]:
    """Every row outside the test's id range when the test starts."""
    return other_rows(real_stack, run.tables)


@pytest.fixture(scope="module")
def worker(real_stack: Settings, run: Run) -> Iterator[WorkerProcess]:
    with worker_serving(run, PARTITIONS) as handle:
        yield handle


def test_live_enforcer_and_simulation_leave_every_demo_table_the_same(
    real_stack: Settings,
    run: Run,
    others_before: dict[str, dict[int, tuple[Any, ...]]],
    worker: WorkerProcess,
) -> None:
    rows = Rows(run.base)
    topics = ChangeTopics(real_stack, run)
    try:
        expected_events: Counter[str] = Counter()
        with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
            run.values["legal_holds"] = {}
            for hold in holds(rows):
                insert(conn, "legal_holds", hold)
                run.values["legal_holds"][hold["id"]] = dict(hold)
                expected_events["legal_holds"] += 1
        wait_for_debezium(topics, expected_events, worker)
        worker_caught_up(real_stack, run, worker)  # the holds are in force before their rows

        with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
            for table, written in first_rows(rows).items():
                run.values[table] = {}
                for row in written:
                    insert(conn, table, row)
                    run.values[table][row["id"]] = dict(row)
                    expected_events[table] += 1
        wait_for_debezium(topics, expected_events, worker)
        worker_caught_up(real_stack, run, worker)
        present = {table: set(before) for table, before in others_before.items()}
        early = commands_for_rows_in_place(real_stack, run, present)
        assert early == [], f"nothing is due at the clock's start: {early}"

        advance_clock(real_stack, run, FIRST)
        worker_caught_up(real_stack, run, worker)

        with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
            for table, row_id, columns in second_writes(rows):
                if row_id in run.values[table]:
                    update(conn, table, row_id, columns)
                    run.values[table][row_id].update(columns)
                else:
                    insert(conn, table, columns)
                    run.values[table][row_id] = dict(columns)
                expected_events[table] += 1
        wait_for_debezium(topics, expected_events, worker)
        worker_caught_up(real_stack, run, worker)

        advance_clock(real_stack, run, SECOND)
        worker_caught_up(real_stack, run, worker)
        sink_topics = [f"lethe.sink.public.{table}" for table in run.tables]
        assert sink_caught_up(real_stack, sink_topics), "the sink did not catch up within 60 s"

        simulated = simulate(run, topics.lines())
        expected = expected_state(run, simulated)
        wait_for_state(real_stack, run, expected)
        actual = database_state(real_stack, run)

        problems = [
            f"a command for a row the test did not write: {c['action']} {c['table']} key {c['key']}"
            for c in simulated
            if int(c["key"].get("id", -1)) in present.get(c["table"].removeprefix("public."), ())
        ]
        problems += [
            f"PostgreSQL differs from `lethe simulate`: {d}" for d in differences(expected, actual)
        ]
        hand, seen = fates(rows, run.values), outcome(run, actual)
        problems += [
            f"{table} id {row_id}: worked out by hand {hand.get((table, row_id))}, "
            f"found {seen.get((table, row_id))}"
            for table, row_id in sorted(set(hand) | set(seen))
            if hand.get((table, row_id)) != seen.get((table, row_id))
        ]
        ours = [c for c in simulated if run.in_range(int(c["key"].get("id", -1)))]
        problems += command_differences(live_commands(real_stack, run), ours)
        others_after = other_rows(real_stack, run.tables)
        problems += [
            f"{table} id {row_id}, a row the test did not write, was changed or deleted"
            for table, before in others_before.items()
            for row_id, values in before.items()
            if others_after[table].get(row_id) != values
        ]
        assert problems == [], "\n".join(problems)

        check_confirmations(worker, simulated, run)
        assert worker.sample("lethe_local_handoff_partitions") == PARTITIONS, (
            "a lone worker hands every change from its assign to its enforce stage in process"
        )
    finally:
        topics.close()
    assert f"-{rows.base}@example.org" not in worker.log(), "no row value in the worker's log"
