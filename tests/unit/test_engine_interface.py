"""The engine's driver interface (apply, due, next_due), state bytes, several rules per row."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from lethe.policy_file import policy_schema
from policy.anonymise import anonymise_value, anonymised_fields
from policy.driver import Driver
from policy.engine import Engine, apply, due, next_due
from policy.events import ChangeEvent, Op
from policy.instants import add_period, format_instant, parse_instant
from policy.loader import load_policy_text
from policy.model import Action, Bucket, Coarsen, Constant, Empty, Policy, TimeUnit
from policy.periods import Period
from policy.simulation import decode_line
from policy.state import Command, RowState, StateFormatError, SubjectState
from policy.store import MemoryStore
from tests.unit.conftest import cmd, record, run


def at(text: str) -> int:
    return parse_instant(text)


def _event(table: str, op: Op, ts: str, row: dict[str, object]) -> ChangeEvent:
    image = {k: _decode(v) for k, v in row.items()}
    before, after = (image, None) if op is Op.DELETE else (None, image)
    return ChangeEvent(f"public.{table}", (("id", row["id"]),), op, before, after, at(ts))


def _decode(value: object) -> object:
    if isinstance(value, str) and value.endswith("Z"):
        return datetime.fromisoformat(value)
    return value


def test_apply_then_due_over_the_driver_interface(demo_engine: Engine):
    step = apply(
        demo_engine,
        None,
        None,
        _event("support_tickets", Op.CREATE, "2024-01-31T09:00:00Z",
               {"id": 7, "customer_id": 42, "body": "my password is hunter2",
                "last_message_at": "2024-01-31T09:00:00Z"}),
    )  # fmt: skip
    assert step.subject_key == "customer:42"
    assert step.reevaluate_subject  # the ticket fed the customer's contact activity
    assert step.subject is not None
    assert step.subject.activity == {"contact": at("2024-01-31T09:00:00Z")}
    assert step.row is not None
    assert "body" not in step.row.values  # personal text is not kept
    assert step.next_due == at("2025-01-31T09:00:00Z")

    commands, row, later = due(demo_engine, step.row, step.subject, at("2025-01-31T08:59:59Z"))
    assert commands == [] and row == step.row and later == at("2025-01-31T09:00:00Z")

    commands, row, later = due(demo_engine, step.row, step.subject, at("2025-01-31T09:00:00Z"))
    assert commands == [
        Command(at("2025-01-31T09:00:00Z"), at("2025-01-31T09:00:00Z"), Action.ARCHIVE,
                "archive", "public.support_tickets", (("id", 7),), "customer:42", ("support",)),
    ]  # fmt: skip
    assert later == at("2029-01-31T09:00:00Z")
    # once issued, never again
    again, _, _ = due(demo_engine, row, step.subject, at("2025-06-01T00:00:00Z"))
    assert again == []


def test_due_issues_nothing_while_held_and_next_due_rearms_after(demo_engine: Engine):
    step = apply(
        demo_engine,
        None,
        None,
        _event("orders", Op.READ, "2030-01-01T00:00:00Z",
               {"id": 1, "customer_id": 5, "ordered_at": "2015-01-01T00:00:00Z"}),
    )  # fmt: skip
    assert step.row is not None
    held = SubjectState(holds=frozenset({"public.legal_holds:1"}))
    assert due(demo_engine, step.row, held, at("2030-01-01T00:00:00Z")) == ([], step.row, None)
    assert next_due(demo_engine, step.row, held) is None
    assert next_due(demo_engine, step.row, SubjectState()) == at("2025-01-01T00:00:00Z")


def test_issued_at_is_when_due_runs_not_an_earlier_change(demo_engine: Engine):
    """A late timer (after downtime) stamps the time the command is really sent."""
    ticket = {"id": 8, "customer_id": 42, "last_message_at": "2024-01-31T09:00:00Z"}
    step = apply(demo_engine, None, None,
                 _event("support_tickets", Op.CREATE, "2024-01-31T09:00:00Z", ticket))  # fmt: skip
    assert step.row is not None
    # the customer's activity changed later, by another row: not the archive's issue time
    busy = SubjectState(activity={"contact": at("2025-01-20T00:00:00Z")})
    commands, _, _ = due(demo_engine, step.row, busy, at("2025-02-03T07:00:00Z"))
    assert [(format_instant(c.issued_at), format_instant(c.due_at)) for c in commands] == [
        ("2025-02-03T07:00:00Z", "2025-01-31T09:00:00Z")
    ]


def test_a_hold_moved_to_another_customer_says_which_subject_it_left(demo_engine: Engine):
    hold = {"id": 3, "customer_id": 8, "released_at": None}
    placed = apply(demo_engine, None, None,
                   _event("legal_holds", Op.CREATE, "2022-02-01T00:00:00Z", hold))  # fmt: skip
    assert placed.subject_key == "customer:8" and not placed.moved and placed.left_subject is None
    assert placed.subject is not None and placed.subject.holds == {"public.legal_holds:3"}
    eight = SubjectState({"contact": at("2021-01-01T00:00:00Z")}, placed.subject.holds)
    moved = apply(
        demo_engine,
        placed.row,
        None,
        _event("legal_holds", Op.UPDATE, "2022-03-01T00:00:00Z", {**hold, "customer_id": 9}),
        eight,
    )
    assert moved.moved and moved.subject_key == "customer:9"
    assert moved.subject == SubjectState(holds=frozenset({"public.legal_holds:3"}))
    assert moved.left_subject == "customer:8"
    # released there; the activity stays
    assert moved.left_state == SubjectState({"contact": at("2021-01-01T00:00:00Z")})
    assert moved.reevaluate_left
    assert moved.row is not None and moved.row.subject == "customer:9"


def test_a_contact_that_gains_a_customer_id_leaves_its_email_subject(demo_engine: Engine):
    contact = {"id": 5, "customer_id": None, "email": "Gus@Example.org",
               "basis": "legitimate_interest",
               "last_contact_at": "2020-03-01T00:00:00Z"}  # fmt: skip
    created = _event("marketing_contacts", Op.CREATE, "2020-03-01T00:00:00Z", contact)
    first = apply(demo_engine, None, None, created)
    assert first.subject_key == "email:gus@example.org"
    assert first.next_due == at("2023-03-01T00:00:00Z")
    customer = SubjectState({"contact": at("2021-06-30T08:00:00Z")})
    linked = apply(
        demo_engine,
        first.row,
        customer,
        _event("marketing_contacts", Op.UPDATE, "2022-01-01T00:00:00Z",
               {**contact, "customer_id": 11}),
        first.subject,
    )  # fmt: skip
    assert (linked.left_subject, linked.subject_key) == ("email:gus@example.org", "customer:11")
    assert linked.left_state == first.subject and not linked.reevaluate_left
    assert linked.row is not None and linked.row.subject == "customer:11"
    assert linked.next_due == at("2024-06-30T08:00:00Z")  # the customer's last order + P36M


def test_an_anonymised_survey_keeps_its_state_under_no_subject(demo_engine: Engine):
    survey = {"id": 9, "customer_id": 42, "respondent_email": "s@example.org",
              "submitted_at": "2024-02-29T11:00:00Z"}  # fmt: skip
    created = _event("satisfaction_surveys", Op.CREATE, "2024-02-29T11:00:00Z", survey)
    first = apply(demo_engine, None, None, created)
    assert first.row is not None
    commands, row, _ = due(demo_engine, first.row, first.subject, at("2025-02-28T11:00:00Z"))
    assert [c.action for c in commands] == [Action.ANONYMISE]
    anonymised = {**survey, "customer_id": None, "respondent_email": None,
                  "submitted_at": "2024-02-01T00:00:00Z"}  # fmt: skip
    back = apply(
        demo_engine,
        row,
        None,
        _event("satisfaction_surveys", Op.UPDATE, "2025-02-28T11:00:03Z", anonymised),
        first.subject,
    )
    assert back.moved
    assert (back.left_subject, back.subject_key, back.subject) == ("customer:42", None, None)
    assert back.row is not None and back.row.issued == row.issued  # nothing to issue again
    assert back.next_due is None
    assert due(demo_engine, back.row, None, at("2030-01-01T00:00:00Z"))[0] == []


def test_deleted_row_leaves_no_state(demo_engine: Engine):
    row = {"id": 3, "customer_id": 1, "logged_at": "2024-01-01T00:00:00Z"}
    first = apply(demo_engine, None, None, _event("connection_logs", Op.CREATE,
                                                  "2024-01-01T00:00:00Z", row))  # fmt: skip
    deleted = _event("connection_logs", Op.DELETE, "2024-02-01T00:00:00Z", {"id": 3})
    gone = apply(demo_engine, first.row, first.subject, deleted)
    assert gone.row is None and gone.next_due is None
    assert gone.subject_key == "customer:1"


def test_states_round_trip_through_compact_bytes(demo_engine: Engine):
    step = apply(
        demo_engine,
        None,
        None,
        _event("payment_methods", Op.CREATE, "2024-01-01T00:00:00Z",
               {"id": 3, "customer_id": 42, "expires_on": date(2026, 1, 31),
                "keep_for_purchases": True, "iban": "NL00BANK0123456789"}),
    )  # fmt: skip
    assert step.row is not None and step.subject is not None
    issued = RowState(**{**_fields(step.row), "issued": frozenset({"archive"})})
    for state in (step.row, issued):
        data = state.to_bytes()
        assert RowState.from_bytes(data) == state
        assert b"NL00BANK" not in data
        assert len(data) < 128  # table, key, subject, two values, issued stages
    subject = SubjectState(activity={"contact": 5}, holds=frozenset({"public.legal_holds:1"}))
    assert SubjectState.from_bytes(subject.to_bytes()) == subject
    # bytes of format 1 (with change and release times) are refused, not misread
    with pytest.raises(StateFormatError):
        SubjectState.from_bytes(b'[1,{"contact":5},[],3,5]')
    with pytest.raises(StateFormatError):
        RowState.from_bytes(b"[2]")
    with pytest.raises(StateFormatError):
        SubjectState.from_bytes(b"not json")


def _fields(row: RowState) -> dict[str, object]:
    return {name: getattr(row, name) for name in RowState.__slots__}


# --- several rules per row ---------------------------------------------------------------

SMALL = """
policy: small
topic_prefix: shop
purposes:
  newsletter: {row: 10, section: "3", title: mailing lists, legal_basis: [6.1a],
               data_categories: [identity], recipients: [marketing], retention: 1 year}
  billing: {row: 12, section: "4", title: accounting, legal_basis: [6.1c],
            data_categories: [accounting], recipients: [finance], retention: 10 years}
  support: {row: 6, section: "2", title: support, legal_basis: [6.1b],
            data_categories: [communication], recipients: [support], retention: 3 years}
sources:
  public.accounts:
    primary_key: [id]
    subject: [{kind: customer, column: id}]
    columns: {id: bigint, email: text, phone: text, birth_date: date, billing_address: text,
              opened_at: timestamptz, score: integer}
    anonymise: {birth_date: {coarsen: year}, score: {bucket: 10}, phone: {constant: "n/a"}}
    rules:
      - purpose: newsletter
        needs: [email, phone, birth_date, score]
        stages:
          - {action: archive, due: {after: P6M, from: opened_at}}
          - {action: delete, due: {after: P1M, from: {after: P1Y, from: opened_at}}}
      - purpose: support
        needs: [email, phone]
        stages:
          - {action: archive, due: {after: P1Y, from: opened_at}}
          - {action: delete, due: {after: P3Y, from: opened_at}}
      - purpose: billing
        needs: [billing_address, email]
        stages:
          - {action: archive, due: {after: P2Y, from: opened_at}}
          - {action: delete, due: {after: P10Y, from: opened_at}}
"""


@pytest.fixture(scope="module")
def small_policy() -> Policy:
    return load_policy_text(SMALL, "small.yaml", policy_schema())


def test_several_rules_anonymise_fields_of_ended_purposes_early(small_policy: Policy):
    lines = [
        record("accounts", "c", "2024-01-31T00:00:00Z",
               {"id": 1, "email": "e@example.org", "opened_at": "2024-01-31T00:00:00Z"},
               prefix="shop"),
    ]  # fmt: skip
    every = ["newsletter", "support", "billing"]
    assert run(small_policy, lines, until="2040-01-01T00:00:00Z") == [
        # newsletter ends at 2024-01-31 + P1Y + P1M = 2025-02-28: only it needed
        # birth_date and score (phone is still needed by support)
        cmd("2025-02-28T00:00:00Z", "2025-02-28T00:00:00Z", "anonymise", "accounts", 1,
            "customer:1", ["newsletter"], ["birth_date", "score"]),
        # every rule past its active phase at the latest archive: 2026-01-31
        cmd("2026-01-31T00:00:00Z", "2026-01-31T00:00:00Z", "archive", "accounts", 1,
            "customer:1", every),
        # support ends 2027-01-31: phone was needed by newsletter and support only
        cmd("2027-01-31T00:00:00Z", "2027-01-31T00:00:00Z", "anonymise", "accounts", 1,
            "customer:1", ["support"], ["phone"]),
        # the row goes when the last purpose (billing, 10 years) is over
        cmd("2034-01-31T00:00:00Z", "2034-01-31T00:00:00Z", "delete", "accounts", 1,
            "customer:1", every),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("birth_date", "score", "confirmed"),
    [
        ("1990-01-01", 30, True),  # the year of 1990-05-17, the bucket of 37
        ("1990-05-01", 30, False),  # coarsened to the month, not the year
        ("1990-01-01", 37, False),  # score not bucketed
    ],
)
def test_an_early_anonymise_is_reissued_as_issued_and_confirmed_by_its_coarsened_values(
    small_policy: Policy, birth_date: str, score: int, confirmed: bool
):
    day = 24 * 3_600_000_000
    driver = Driver(Engine.compile(small_policy, confirm_after=day), MemoryStore())
    account = {"id": 1, "email": "e@example.org", "phone": "555", "birth_date": 7441,
               "score": 37, "opened_at": "2024-01-31T00:00:00Z"}  # fmt: skip
    created = decode_line(
        driver.engine, record("accounts", "c", "2024-01-31T00:00:00Z", account, prefix="shop")
    )  # birth_date 7441 days after 1970-01-01: 1990-05-17
    assert isinstance(created, ChangeEvent)
    driver.feed(created)
    (first,) = driver.advance(parse_instant("2025-02-28T00:00:00Z")).commands
    assert (first.stage, first.purposes, first.fields) == (
        "ended:newsletter",
        ("newsletter",),
        ("birth_date", "score"),
    )
    (again,) = driver.advance(parse_instant("2025-03-01T00:00:00Z")).commands
    assert again == replace(first, attempt=2, reissued_at=parse_instant("2025-03-01T00:00:00Z"))
    days = (date.fromisoformat(birth_date) - date(1970, 1, 1)).days
    update = record("accounts", "u", "2025-03-01T01:00:00Z",
                    {**account, "birth_date": days, "score": score}, prefix="shop")  # fmt: skip
    applied = decode_line(driver.engine, update)
    assert isinstance(applied, ChangeEvent)
    outcome = driver.feed(applied)
    assert [(c.command, c.attempts) for c in outcome.confirmations] == (
        [(first, 2)] if confirmed else []
    )


def test_anonymised_values_use_the_source_methods(small_policy: Policy):
    command = Command(0, 0, Action.ANONYMISE, "ended:newsletter", "public.accounts",
                      (("id", 1),), "customer:1", ("newsletter",),
                      ("birth_date", "score", "phone", "email"))  # fmt: skip
    row = {"birth_date": date(1990, 7, 14), "score": 47, "phone": "+31 6", "email": "e@x.org"}
    assert anonymised_fields(small_policy, command, row) == {
        "birth_date": date(1990, 1, 1),
        "score": 40,
        "phone": "n/a",
        "email": None,  # no method declared: emptied
    }


def test_survey_stage_methods(demo_policy: Policy):
    command = Command(0, 0, Action.ANONYMISE, "anonymise:satisfaction_surveys:0",
                      "public.satisfaction_surveys", (("id", 1),),
                      "customer:1", ("satisfaction_surveys",),
                      ("customer_id", "respondent_email", "submitted_at"))  # fmt: skip
    row = {
        "customer_id": 42,
        "respondent_email": "s@example.org",
        "submitted_at": datetime(2024, 2, 29, 11, 5, tzinfo=UTC),
    }
    assert anonymised_fields(demo_policy, command, row) == {
        "customer_id": None,
        "respondent_email": None,
        "submitted_at": datetime(2024, 2, 1, tzinfo=UTC),
    }


@pytest.mark.parametrize(
    ("method", "value", "expected"),
    [
        (Empty(), "x", None),
        (Constant("XX"), "NL", "XX"),
        (Coarsen(TimeUnit.DAY), datetime(2024, 2, 29, 23, 59, tzinfo=UTC),
         datetime(2024, 2, 29, tzinfo=UTC)),
        (Coarsen(TimeUnit.YEAR), datetime(2024, 2, 29, 23, 59, tzinfo=UTC),
         datetime(2024, 1, 1, tzinfo=UTC)),
        (Coarsen(TimeUnit.MONTH), "not a date", None),
        (Bucket(5), 42, 40),
        (Bucket(5), -1, -5),
        (Bucket(10), 42.5, 40.0),
        (Bucket(10), Decimal("99.9"), Decimal("90")),
        (Bucket(10), "42", None),
    ],
)  # fmt: skip
def test_anonymisers(method: object, value: object, expected: object):
    assert anonymise_value(method, value) == expected  # type: ignore[arg-type]


# --- calendar arithmetic on instants -------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "period", "expected"),
    [
        ("2024-02-29T10:00:00Z", "P1Y", "2025-02-28T10:00:00Z"),
        ("2025-01-31T00:00:00Z", "P1M", "2025-02-28T00:00:00Z"),
        ("2024-01-31T00:00:00Z", "P1M", "2024-02-29T00:00:00Z"),
        ("2024-02-29T00:00:00Z", "P4Y", "2028-02-29T00:00:00Z"),
        ("2023-11-30T10:00:00Z", "P15M", "2025-02-28T10:00:00Z"),
        ("2024-06-30T18:00:00Z", "P180D", "2024-12-27T18:00:00Z"),
        ("2024-12-31T23:00:00Z", "PT2H", "2025-01-01T01:00:00Z"),
        ("1969-12-31T12:00:00Z", "P1M", "1970-01-31T12:00:00Z"),
    ],
)
def test_calendar_periods(start: str, period: str, expected: str):
    assert format_instant(add_period(at(start), Period.parse(period))) == expected


def test_driver_keeps_one_state_per_row_under_its_current_subject(demo_engine: Engine):
    """A driver deletes a moved row's old key, also when it had no subject before."""
    store = MemoryStore()
    simulator = Driver(demo_engine, store)
    hold = {"id": 1, "customer_id": None, "released_at": None}
    for ts, customer in (
        ("2022-01-01T00:00:00Z", None),
        ("2022-02-01T00:00:00Z", 12),
        ("2022-03-01T00:00:00Z", 13),
        ("2022-04-01T00:00:00Z", None),
    ):
        op = Op.CREATE if customer is None and ts.startswith("2022-01") else Op.UPDATE
        simulator.feed(_event("legal_holds", op, ts, {**hold, "customer_id": customer}))
        subject = None if customer is None else f"customer:{customer}"
        assert list(store.row_ids()) == [(subject, "public.legal_holds", (("id", 1),))]
        assert list(store.subjects()) == ([] if subject is None else [subject])
