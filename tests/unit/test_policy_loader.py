"""The policy file loader: the shipped default policy, and every class of error with its line."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from lethe.policy_file import policy_schema
from policy.loader import PolicyError, PolicyInvalid, load_policy_text, parse_policy
from policy.model import (
    Action,
    ActivityFeed,
    After,
    AllOf,
    Bucket,
    ChangeTime,
    Clock,
    Coarsen,
    ColumnInstant,
    ColumnType,
    Earliest,
    Empty,
    Equals,
    FieldAnonymisation,
    IsSet,
    Latest,
    LegalBasis,
    PeriodRef,
    Policy,
    Stage,
    SubjectActivity,
    SubjectKey,
    TimeUnit,
    When,
)
from policy.periods import Period
from tests.demo_schema import DEMO_COLUMNS, DEMO_TABLES

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "policy.yaml"

# --- the shipped default policy against demo-schema.md (written out by hand) ---------------


# "All instants are timestamptz; expires_on is a date."
INSTANTS = {
    "created_at",
    "closed_at",
    "last_message_at",
    "ordered_at",
    "issued_at",
    "subscription_cancelled_at",
    "revoked_at",
    "purchase_consent_withdrawn_at",
    "last_contact_at",
    "event_ends_at",
    "objected_at",
    "consent_withdrawn_at",
    "received_at",
    "handled_at",
    "recorded_at",
    "submitted_at",
    "defaulted_at",
    "observed_at",
    "verified_at",
    "answered_at",
    "detected_at",
    "logged_at",
    "placed_at",
    "released_at",
}

# The seed rows each table serves (legal_holds: its holds serve row 23).
SCHEDULE_ROWS: dict[str, set[int]] = {
    "customers": {1, 3, 23},
    "support_tickets": {6},
    "orders": {12},
    "invoices": {12},
    "payment_methods": {2},
    "job_applications": {4},
    "event_registrations": {5},
    "marketing_contacts": {7, 10},
    "info_requests": {8},
    "call_recordings": {24},
    "satisfaction_surveys": {20},
    "payment_defaults": {21},
    "fraud_signals": {22},
    "identity_documents": {3, 22},
    "dpo_requests": {16},
    "data_breaches": {17},
    "connection_logs": {13},
}

CUSTOMER = (SubjectKey("customer", "customer_id"),)
EMAIL = (SubjectKey("email", "email", lower=True),)
SUBJECTS: dict[str, tuple[SubjectKey, ...]] = {
    "customers": (SubjectKey("customer", "id"),),
    "job_applications": EMAIL,
    "event_registrations": EMAIL,
    "info_requests": EMAIL,
    "marketing_contacts": (SubjectKey("customer", "customer_id"), *EMAIL),
    "data_breaches": (),
}


def col(name: str) -> ColumnInstant:
    return ColumnInstant(name)


def after(period: str, start: Clock) -> After:
    return After(start, Period.parse(period))


def delete(due: Clock) -> Stage:
    return Stage(Action.DELETE, due)


# Customers: rows 1 and 3 end with the contract (closed_at); row 23 then keeps the row,
# archived, as evidence for the limitation period (demo-schema.md: archive at closed_at,
# delete at closed_at + a limitation period of 5 years by default).
CONTRACT_ENDS = (delete(col("closed_at")),)
EXPECTED_CUSTOMER_RULES: dict[str, tuple[Stage, ...]] = {
    "business_management": CONTRACT_ENDS,
    "customer_account": CONTRACT_ENDS,
    "litigation_evidence": (
        Stage(Action.ARCHIVE, col("closed_at")),
        delete(After(col("closed_at"), PeriodRef("limitation_period"))),
    ),
}

# The lead's expression of every other demo rule (POLICY.md), written out by hand.
EXPECTED_STAGES: dict[str, tuple[Stage, ...]] = {
    "support_tickets": (
        Stage(Action.ARCHIVE, after("P1Y", col("last_message_at"))),
        delete(after("P5Y", col("last_message_at"))),
    ),
    "orders": (delete(after("P10Y", col("ordered_at"))),),
    "invoices": (delete(after("P10Y", col("issued_at"))),),
    "payment_methods": (
        delete(
            After(
                Earliest(
                    (
                        col("revoked_at"),
                        col("expires_on"),
                        When(
                            Equals("keep_for_purchases", True),
                            # the later of the two, only once both are set
                            When(
                                AllOf(
                                    (
                                        IsSet("subscription_cancelled_at"),
                                        IsSet("purchase_consent_withdrawn_at"),
                                    )
                                ),
                                Latest(
                                    (
                                        col("subscription_cancelled_at"),
                                        col("purchase_consent_withdrawn_at"),
                                    )
                                ),
                            ),
                            col("subscription_cancelled_at"),
                        ),
                    )
                ),
                PeriodRef("payment_dispute_period"),
            )
        ),
    ),
    "job_applications": (
        delete(
            When(
                Equals("retention_consent", True),
                After(col("last_contact_at"), PeriodRef("recruitment_consent_retention")),
                after("P15M", col("last_contact_at")),
            )
        ),
    ),
    "event_registrations": (
        delete(
            When(
                IsSet("objected_at"),
                Latest((after("P90D", col("event_ends_at")), col("objected_at"))),
                after("P180D", col("event_ends_at")),
            )
        ),
    ),
    "marketing_contacts": (
        delete(
            When(
                Equals("basis", "consent"),
                Earliest((col("consent_withdrawn_at"), col("objected_at"))),
                Earliest(
                    (
                        col("objected_at"),
                        after("P36M", Latest((col("last_contact_at"), SubjectActivity("contact")))),
                    )
                ),
            )
        ),
    ),
    "info_requests": (delete(after("P1Y", col("handled_at"))),),
    "call_recordings": (
        delete(When(Equals("objected", True), ChangeTime(), after("P6M", col("recorded_at")))),
    ),
    "satisfaction_surveys": (
        Stage(
            Action.ANONYMISE,
            after("P1Y", col("submitted_at")),
            (
                FieldAnonymisation("customer_id", Empty()),
                FieldAnonymisation("respondent_email", Empty()),
                FieldAnonymisation("comments", Empty()),
                FieldAnonymisation("submitted_at", Coarsen(TimeUnit.MONTH)),
            ),
        ),
    ),
    "payment_defaults": (delete(after("P5Y", col("defaulted_at"))),),
    "fraud_signals": (delete(After(col("observed_at"), PeriodRef("fraud_signal_retention"))),),
    "identity_documents": (
        delete(
            When(
                Equals("fraud_suspected", True),
                After(col("verified_at"), PeriodRef("fraud_proof_retention")),
                After(col("verified_at"), PeriodRef("identity_proof_retention")),
            )
        ),
    ),
    "dpo_requests": (
        Stage(Action.ARCHIVE, col("answered_at")),
        Stage(
            Action.ANONYMISE,
            after("P1Y", col("answered_at")),
            (FieldAnonymisation("id_proof_ref", Empty()),),
        ),
        delete(after("P5Y", col("answered_at"))),
    ),
    "data_breaches": (delete(after("P5Y", col("detected_at"))),),
    "connection_logs": (delete(After(col("logged_at"), PeriodRef("connection_log_retention"))),),
}


@pytest.fixture(scope="module")
def shipped() -> Policy:
    return load_policy_text(
        SHIPPED.read_text(encoding="utf-8"), "config/policy.yaml", policy_schema()
    )


def test_shipped_policy_has_every_demo_table_with_its_exact_columns(shipped: Policy) -> None:
    assert set(shipped.sources) == {f"public.{t}" for t in DEMO_TABLES}
    for table, columns in DEMO_COLUMNS.items():
        source = shipped.sources[f"public.{table}"]
        assert sorted(source.columns) == sorted(["id", *columns]), table
        assert source.primary_key == ("id",), table
        assert source.columns["id"] is ColumnType.BIGINT, table
        assert source.topic == f"hosting.public.{table}", table
        for column in columns:
            if column in INSTANTS:
                assert source.columns[column] is ColumnType.TIMESTAMPTZ, (table, column)
    assert shipped.sources["public.payment_methods"].columns["expires_on"] is ColumnType.DATE


def test_shipped_policy_subjects(shipped: Policy) -> None:
    for table in DEMO_TABLES:
        expected = SUBJECTS.get(table, CUSTOMER)
        assert shipped.sources[f"public.{table}"].subject == expected, table


def test_shipped_policy_declares_all_24_rows_of_the_schedule(shipped: Policy) -> None:
    assert len(shipped.purposes) == 24
    rows = sorted(p.schedule_row for p in shipped.purposes.values() if p.schedule_row)
    assert rows == list(range(1, 25))
    by_row = {p.schedule_row: p for p in shipped.purposes.values()}
    assert "communications" in by_row[1].data_categories
    assert "identity and contact data" in by_row[4].data_categories
    assert any("ID and address proofs" in c for c in by_row[13].data_categories)
    assert by_row[21].kept_for_legal_claims
    assert by_row[23].kept_for_legal_claims
    for row in (12, 13, 14, 15, 16, 17):  # seed section 4: legal obligations
        assert by_row[row].legal_basis == (LegalBasis.LEGAL_OBLIGATION,), row
    assert by_row[7].legal_basis == (LegalBasis.CONSENT, LegalBasis.LEGITIMATE_INTEREST)


def test_shipped_policy_maps_each_table_to_its_schedule_rows(shipped: Policy) -> None:
    for table, rows in SCHEDULE_ROWS.items():
        source = shipped.sources[f"public.{table}"]
        served = {shipped.purposes[r.purpose].schedule_row for r in source.rules}
        assert served == rows, table
    holds = shipped.sources["public.legal_holds"]
    assert holds.rules == ()
    assert holds.hold is not None and holds.hold.released_column == "released_at"
    assert holds.hold.purpose is not None
    assert shipped.purposes[holds.hold.purpose].schedule_row == 23


def test_legal_obligation_tables_are_6_1c_only(shipped: Policy) -> None:
    for table in ("orders", "invoices", "dpo_requests"):
        for rule in shipped.sources[f"public.{table}"].rules:
            assert shipped.purposes[rule.purpose].legal_basis == (LegalBasis.LEGAL_OBLIGATION,)
    (rule,) = shipped.sources["public.payment_defaults"].rules
    assert shipped.purposes[rule.purpose].kept_for_legal_claims


def test_shipped_rules_are_exactly_those_of_the_demo_schema(shipped: Policy) -> None:
    customers = shipped.sources["public.customers"].rules
    assert {rule.purpose: rule.stages for rule in customers} == EXPECTED_CUSTOMER_RULES
    assert all(rule.needs == () for rule in customers)
    for table, stages in EXPECTED_STAGES.items():
        source = shipped.sources[f"public.{table}"]
        assert source.rules, table
        for rule in source.rules:  # a second purpose on a table never changes its rule
            assert rule.stages == stages, (table, rule.purpose)
            assert rule.needs == (), (table, rule.purpose)


def test_shipped_parameters(shipped: Policy) -> None:
    def period(name: str) -> Period:
        return shipped.period(PeriodRef(name))

    assert period("payment_dispute_period") == Period.parse("P13M")
    assert period("fraud_signal_retention") == Period.parse("P2Y")
    assert shipped.parameters["fraud_signal_retention"].cap == Period.parse("P5Y")
    assert period("connection_log_retention") == Period.parse("P1Y")
    assert period("identity_proof_retention") == Period.parse("P30D")
    assert period("fraud_proof_retention") == Period.parse("P12M")
    assert shipped.parameters["fraud_proof_retention"].cap == Period.parse("P12M")
    assert period("limitation_period") == Period.parse("P5Y")
    # the seed says only "longer with consent": the figure is the business's
    assert period("recruitment_consent_retention") == Period.parse("P36M")
    assert "no figure" in shipped.parameters["recruitment_consent_retention"].description


def test_shipped_activity_feeds_and_anonymisation(shipped: Policy) -> None:
    feeds = {(table, feed) for table, source in shipped.sources.items() for feed in source.activity}
    assert feeds == {
        ("public.support_tickets", ActivityFeed("contact", "last_message_at")),
        ("public.orders", ActivityFeed("contact", "ordered_at")),
    }
    for source in shipped.sources.values():
        for field in source.anonymise:
            assert field.column not in source.primary_key


# --- errors, each with the line it is on ------------------------------------------------------

HEADER = """\
policy: test
topic_prefix: shop
parameters:
  grace: {default: P1M, max: P3M}
purposes:
  accounting:
    row: 12
    section: "4"
    title: accounting
    legal_basis: [6.1c]
    data_categories: [orders]
    recipients: [finance]
    retention: 10 years after the order
  support:
    row: 6
    section: "2"
    title: support
    legal_basis: [6.1b]
    data_categories: [communication]
    recipients: [support]
    retention: 1 year + 4 in archive
"""

ORDERS_HEAD = """\
sources:
  public.orders:
    primary_key: [id]
    subject: [{kind: customer, column: customer_id}]
    columns:
      id: bigint
      customer_id: bigint
      status: text
      paid: boolean
      amount_cents: bigint
      email: text
      ordered_at: timestamptz
      due_on: date
    activity: [{activity: contact, column: ordered_at}]
"""

GOOD_RULES = """\
    rules:
      - purpose: accounting
        stages:
          - {action: delete, due: {after: P10Y, from: ordered_at}}
"""

MARK = "#!"


def errors_of(text: str) -> list[PolicyError]:
    result = parse_policy(text, "p.yaml", policy_schema())
    assert not isinstance(result, Policy), "the broken policy was loaded"
    return result


def marked_lines(text: str) -> list[int]:
    """The 1-based lines carrying the `#!` marker: where the test expects an error."""
    return [n for n, line in enumerate(text.splitlines(), start=1) if MARK in line]


def assert_one_error(text: str, *words: str) -> PolicyError:
    errors = errors_of(text)
    assert len(errors) == 1, "\n".join(map(str, errors))
    (error,) = errors
    (line,) = marked_lines(text)
    assert error.line == line, str(error)
    assert error.file == "p.yaml"
    for word in words:
        assert word in str(error), str(error)
    return error


def test_the_test_base_policy_is_valid() -> None:
    policy = load_policy_text(HEADER + ORDERS_HEAD + GOOD_RULES, "p.yaml", policy_schema())
    assert policy.sources["public.orders"].topic == "shop.public.orders"


def test_unknown_purpose_in_a_rule() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: acounting  #!
        stages:
          - {action: delete, due: {after: P10Y, from: ordered_at}}
"""
    )
    error = assert_one_error(text, "public.orders", "'acounting'")
    assert "did you mean 'accounting'" in error.hint
    assert "accounting, support" in error.hint


def test_bad_iso_duration() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: accounting
        stages:
          - action: delete
            due:
              after: P10X  #!
              from: ordered_at
"""
    )
    assert_one_error(text, "'P10X'", "ISO-8601", "P15M")


def test_bad_duration_in_a_parameter() -> None:
    text = (
        HEADER.replace("  grace: {default: P1M, max: P3M}", "  grace: {default: 1 month}  #!")
        + ORDERS_HEAD
        + GOOD_RULES
    )
    assert_one_error(text, "'1 month'", "ISO-8601")


def test_clock_column_the_table_lacks() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: accounting
        stages:
          - {action: delete, due: {after: P10Y, from: orderd_at}}  #!
"""
    )
    error = assert_one_error(text, "'orderd_at'", "public.orders lacks")
    assert "did you mean 'ordered_at'" in error.hint


@pytest.mark.parametrize(
    ("snippet", "word"),
    [
        ("      - purpose: accounting\n        needs: [amount, status]  #!\n", "'amount'"),
        (
            "      - purpose: accounting\n"
            "        stages:\n"
            "          - action: delete\n"
            "            due:\n"
            "              when: {set: paid_at}  #!\n"
            "              then: {after: P10Y, from: ordered_at}\n",
            "'paid_at'",
        ),
        (
            "      - purpose: accounting\n"
            "        stages:\n"
            "          - action: delete\n"
            "            due:\n"
            "              when: {equals: {state: open}}  #!\n"
            "              then: {after: P10Y, from: ordered_at}\n",
            "'state'",
        ),
    ],
)
def test_rule_or_condition_naming_a_missing_column(snippet: str, word: str) -> None:
    stages = "        stages: [{action: delete, due: {after: P10Y, from: ordered_at}}]\n"
    if "stages" not in snippet:
        snippet += stages
    text = HEADER + ORDERS_HEAD + "    rules:\n" + snippet
    assert_one_error(text, word, "public.orders lacks")


def test_subject_activity_and_primary_key_columns_must_exist() -> None:
    text = (
        HEADER
        + """\
sources:
  public.orders:
    primary_key: [order_id]  #!
    subject: [{kind: customer, column: client_id}]  #!
    columns: {id: bigint, customer_id: bigint, ordered_at: timestamptz}
    activity: [{activity: contact, column: placed_at}]  #!
"""
        + GOOD_RULES
    )
    errors = errors_of(text)
    assert [e.line for e in errors] == marked_lines(text)
    assert "'order_id'" in errors[0].message
    assert "'client_id'" in errors[1].message
    assert "'placed_at'" in errors[2].message


def test_anonymising_a_primary_key() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: accounting
        stages:
          - action: anonymise
            due: {after: P1Y, from: ordered_at}
            fields: [email, id]  #!
          - {action: delete, due: {after: P10Y, from: ordered_at}}
"""
    )
    assert_one_error(text, "primary key", "'id'")


def test_anonymising_a_primary_key_in_the_source_methods() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    anonymise:
      email: empty
      id: {constant: 0}  #!
"""
        + GOOD_RULES
    )
    assert_one_error(text, "primary key", "'id'")


@pytest.mark.parametrize("field", ["value", "default"])
def test_parameter_longer_than_its_cap(field: str) -> None:
    text = (
        HEADER.replace(
            "  grace: {default: P1M, max: P3M}",
            f"  grace:\n    max: P3M\n    {field}: P100D  #!\n"
            + ("    default: P1M" if field == "value" else ""),
        )
        + ORDERS_HEAD
        + GOOD_RULES
    )
    error = assert_one_error(text, "grace", "P100D", "P3M")
    assert "at most P3M" in error.hint


def test_a_cap_in_other_units_that_is_surely_long_enough_passes() -> None:
    text = (
        HEADER.replace("  grace: {default: P1M, max: P3M}", "  grace: {default: P1Y, max: P400D}")
        + ORDERS_HEAD
        + GOOD_RULES
    )
    assert isinstance(parse_policy(text, "p.yaml", policy_schema()), Policy)


def test_table_without_subject() -> None:
    head = ORDERS_HEAD.replace("  public.orders:\n", "  public.orders:  #!\n").replace(
        "    subject: [{kind: customer, column: customer_id}]\n", ""
    )
    error = assert_one_error(HEADER + head + GOOD_RULES, "public.orders", "'subject'")
    assert "subject: none" in error.hint


def test_subject_none_is_accepted_and_means_no_subject() -> None:
    head = ORDERS_HEAD.replace(
        "    subject: [{kind: customer, column: customer_id}]\n", "    subject: none\n"
    )
    policy = load_policy_text(HEADER + head + GOOD_RULES, "p.yaml", policy_schema())
    assert policy.sources["public.orders"].subject == ()


def test_unknown_parameter_reference() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: accounting
        stages:
          - action: delete
            due:
              after: {parameter: grase}  #!
              from: ordered_at
"""
    )
    error = assert_one_error(text, "'grase'")
    assert "did you mean 'grace'" in error.hint


def test_anonymise_stage_without_fields() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: accounting
        stages:
          - {action: anonymise, due: {after: P1Y, from: ordered_at}}  #!
          - {action: delete, due: {after: P10Y, from: ordered_at}}
"""
    )
    assert_one_error(text, "anonymise", "no fields")


def test_fields_on_a_delete_stage() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: accounting
        stages:
          - action: delete
            due: {after: P10Y, from: ordered_at}
            fields: [email]  #!
"""
    )
    assert_one_error(text, "delete stage", "fields")


def test_instant_column_that_is_not_temporal() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: accounting
        stages:
          - {action: delete, due: {after: P10Y, from: status}}  #!
"""
    )
    error = assert_one_error(text, "'status'", "(text)", "instant")
    assert "due_on" in error.hint and "ordered_at" in error.hint


def test_a_date_column_is_an_instant() -> None:
    text = HEADER + ORDERS_HEAD + GOOD_RULES.replace("from: ordered_at", "from: due_on")
    policy = load_policy_text(text, "p.yaml", policy_schema())
    (stage,) = policy.sources["public.orders"].rules[0].stages
    assert stage.due == After(ColumnInstant("due_on"), Period.parse("P10Y"))


@pytest.mark.parametrize(
    ("method", "words"),
    [
        ("status: {coarsen: month}  #!", ("coarsens", "'status'")),
        ("ordered_at: {bucket: 10}  #!", ("buckets", "'ordered_at'")),
        ("paid: {constant: 'no'}  #!", ("'paid'", "'no'")),
    ],
)
def test_anonymisation_method_must_fit_the_column_type(method: str, words: tuple[str]) -> None:
    text = HEADER + ORDERS_HEAD + f"    anonymise:\n      {method}\n" + GOOD_RULES
    assert_one_error(text, *words)


def test_bucket_on_a_number_and_coarsen_on_a_date_are_accepted() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + "    anonymise: {amount_cents: {bucket: 1000}, due_on: {coarsen: year}}\n"
        + GOOD_RULES
    )
    policy = load_policy_text(text, "p.yaml", policy_schema())
    assert policy.sources["public.orders"].anonymise == (
        FieldAnonymisation("amount_cents", Bucket(1000)),
        FieldAnonymisation("due_on", Coarsen(TimeUnit.YEAR)),
    )


def test_duplicate_purpose_id() -> None:
    text = (
        HEADER
        + """\
  accounting:  #!
    row: 13
    section: "4"
    title: again
    legal_basis: [6.1c]
    data_categories: []
    recipients: []
    retention: forever
"""
        + ORDERS_HEAD
        + GOOD_RULES
    )
    error = assert_one_error(text, "duplicate", "'accounting'", "first at line 6")
    assert error.hint


def test_duplicate_table() -> None:
    second = ORDERS_HEAD.replace("sources:\n", "").replace(
        "  public.orders:\n", "  public.orders:  #!\n"
    )
    text = HEADER + ORDERS_HEAD + GOOD_RULES + second + GOOD_RULES
    assert_one_error(text, "duplicate", "'public.orders'")


def test_legal_basis_outside_6_1a_to_f() -> None:
    text = HEADER.replace("legal_basis: [6.1c]", "legal_basis: [6.1g]  #!") + ORDERS_HEAD
    text += GOOD_RULES
    error = assert_one_error(text, "'6.1g'", "legal_basis")
    assert "6.1c legal obligation" in error.hint


def test_hold_source_with_rules() -> None:
    text = (
        HEADER
        + """\
sources:
  public.legal_holds:
    primary_key: [id]
    subject: [{kind: customer, column: customer_id}]
    columns: {id: bigint, customer_id: bigint, released_at: timestamptz}
    hold: {released: released_at}
    rules:  #!
      - purpose: accounting
        stages: [{action: delete, due: {after: P1Y, from: released_at}}]
"""
    )
    assert_one_error(text, "hold source", "rules")


def test_hold_without_subject_and_with_a_missing_release_column() -> None:
    text = (
        HEADER
        + """\
sources:
  public.legal_holds:
    primary_key: [id]
    subject: none  #!
    columns: {id: bigint, customer_id: bigint, released_at: timestamptz}
    hold: {released: released}  #!
"""
    )
    errors = errors_of(text)
    assert [e.line for e in errors] == marked_lines(text)
    assert "suspend nobody" in errors[0].message
    assert "'released'" in errors[1].message


def test_activity_that_no_source_feeds() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: accounting
        stages:
          - action: delete
            due:
              after: P3Y
              from: {activity: kontakt}  #!
"""
    )
    error = assert_one_error(text, "'kontakt'", "no source feeds")
    assert "contact" in error.hint


def test_equals_compares_with_a_value_of_the_column_type() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: accounting
        stages:
          - action: delete
            due:
              when: {equals: {paid: "yes"}}  #!
              then: at_once
"""
    )
    assert_one_error(text, "'paid'", "boolean", "'yes'")


def test_unknown_key_is_reported_at_its_line_with_a_suggestion() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: accounting
        stages:
          - action: delete
            dues: {after: P10Y, from: ordered_at}  #!
"""
    )
    error = assert_one_error(text, "unknown key 'dues'")
    assert "did you mean 'due'" in error.hint


def test_a_misspelt_clock_kind_is_one_error() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: accounting
        stages:
          - action: delete
            due:
              afterr: P10Y  #!
              from: ordered_at
"""
    )
    error = assert_one_error(text, "unknown key 'afterr'")
    assert "did you mean 'after'" in error.hint


def test_duplicate_key_does_not_hide_other_errors() -> None:
    text = (
        HEADER
        + ORDERS_HEAD.replace(
            "      paid: boolean\n", "      paid: boolean\n      paid: text  #!\n"
        )
        + GOOD_RULES.replace("purpose: accounting", "purpose: acounting  #!")
    )
    errors = errors_of(text)
    assert [e.line for e in errors] == marked_lines(text)
    assert "duplicate key 'paid'" in errors[0].message


def test_a_clock_with_two_kinds_is_an_error() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: accounting
        stages:
          - action: delete
            due: {after: P1Y, from: ordered_at, latest: [ordered_at]}  #!
"""
    )
    assert_one_error(text, "clock expression")


def test_yaml_syntax_error_has_its_line() -> None:
    text = HEADER + ORDERS_HEAD + "    rules:\n      - purpose: accounting: x  #!\n"
    (error,) = errors_of(text)
    assert error.line == marked_lines(text)[0]
    assert "YAML syntax" in error.message


def test_unclosed_bracket_names_the_line_it_was_opened_on() -> None:
    text = HEADER + ORDERS_HEAD + "    rules:\n      - purpose: [accounting  #!\n"
    (error,) = errors_of(text)
    assert f"line {marked_lines(text)[0]}" in error.message


def test_several_errors_are_all_reported_in_line_order() -> None:
    text = (
        HEADER.replace("legal_basis: [6.1b]", "legal_basis: [6.1x]  #!")
        + ORDERS_HEAD.replace("      due_on: date\n", "      due_on: day  #!\n")
        + """\
    rules:
      - purpose: acounting  #!
        stages:
          - {action: delete, due: {after: P10Y, from: ordered}}  #!
          - {action: archive, due: {after: 1Y, from: ordered_at}}  #!
"""
    )
    errors = errors_of(text)
    assert [e.line for e in errors] == marked_lines(text)
    assert len(marked_lines(text)) == 5


def test_load_policy_text_raises_with_every_error() -> None:
    text = HEADER + ORDERS_HEAD.replace("ordered_at: timestamptz", "ordered_at: time") + GOOD_RULES
    with pytest.raises(PolicyInvalid) as raised:
        load_policy_text(text, "p.yaml", policy_schema())
    assert raised.value.errors
    assert all(e.file == "p.yaml" for e in raised.value.errors)
    assert str(raised.value).startswith("p.yaml:")


def test_empty_file() -> None:
    (error,) = errors_of("")
    assert error.line == 1 and "empty" in error.message


@pytest.mark.parametrize("value", ["P2Y", "P24M"])
def test_parameter_value_overrides_its_default(value: str) -> None:
    text = (
        HEADER.replace(
            "  grace: {default: P1M, max: P3M}",
            f"  grace: {{default: P1Y, value: {value}, max: P5Y}}",
        )
        + ORDERS_HEAD
        + GOOD_RULES
    )
    policy = load_policy_text(text, "p.yaml", policy_schema())
    assert policy.period(PeriodRef("grace")) == Period.parse(value)
    assert policy.parameters["grace"].default == Period.parse("P1Y")


# --- one mistake, one error: no echo from the checks that depend on the broken part -------


@pytest.mark.parametrize(
    "delete",
    [
        "{action: delete, due: {after: P5X, from: ordered_at}}  #!",
        "{action: delete, due: {after: P5Y, from: orderd_at}}  #!",
        "{action: delete, due: {after: {parameter: grce}, from: ordered_at}}  #!",
    ],
)
def test_a_broken_delete_stage_is_not_also_an_archive_only_rule(delete: str) -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + f"""\
    rules:
      - purpose: support
        stages:
          - {{action: archive, due: {{after: P1Y, from: ordered_at}}}}
          - {delete}
"""
    )
    error = assert_one_error(text)
    assert "only archives" not in error.message


def test_a_mistake_inside_a_yaml_anchor_is_one_error_at_the_anchor() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: support
        stages:
          - action: archive
            due: &late
              after: P1X  #!
              from: ordered_at
          - {action: delete, due: *late}
      - purpose: accounting
        stages:
          - {action: archive, due: *late}
          - {action: delete, due: *late}
"""
    )
    error = assert_one_error(text, "'P1X'", "ISO-8601")
    assert error.message.startswith("sources.public.orders.rules[0].stages[0].due.after:")


def test_a_wrong_value_in_an_anchor_is_one_schema_error_at_the_anchor() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: support
        stages:
          - {action: anonymise, due: &soon {after: P1Y, from: ordered_at}, fields: [email]}
          - {action: delete, due: &late {after: P5Y, frm: ordered_at}}  #!
      - purpose: accounting
        stages:
          - {action: delete, due: *late}
"""
    )
    assert_one_error(text, "'frm'", "did you mean 'from'")


def test_a_column_with_a_bad_type_still_exists_for_the_other_checks() -> None:
    head = ORDERS_HEAD.replace(
        "      ordered_at: timestamptz\n", "      ordered_at: timestamp  #!\n"
    )
    assert head != ORDERS_HEAD
    text = HEADER + head + GOOD_RULES
    error = assert_one_error(text, "'timestamp'", "timestamptz")
    assert "lacks" not in error.message


def test_a_broken_columns_section_is_one_error() -> None:
    start = ORDERS_HEAD.index("    columns:")
    end = ORDERS_HEAD.index("    activity:")
    head = (
        ORDERS_HEAD[:start] + "    columns: [id, customer_id, ordered_at]  #!\n" + ORDERS_HEAD[end:]
    )
    assert_one_error(HEADER + head + GOOD_RULES, "must be a mapping")


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("    primary_key: [id]\n", "    primary_key: [~]  #!\n", ("must be a string",)),
        (
            "    subject: [{kind: customer, column: customer_id}]\n",
            "    subject: [{}]  #!\n",
            ("lacks 'kind', 'column'", "add kind:"),
        ),
        (GOOD_RULES, "    rules:  #!\n", ("must be a list",)),
        (
            "          - {action: delete, due: {after: P10Y, from: ordered_at}}\n",
            "          - {action: anonymise, due: {after: P1Y, from: ordered_at}, fields: }  #!\n"
            "          - {action: delete, due: {after: P10Y, from: ordered_at}}\n",
            ("fields must be",),
        ),
    ],
)
def test_an_empty_or_broken_part_is_one_error(old: str, new: str, words: tuple[str]) -> None:
    text = HEADER + ORDERS_HEAD + GOOD_RULES
    assert old in text
    assert_one_error(text.replace(old, new), *words)


def test_an_empty_columns_section_is_one_error() -> None:
    start = ORDERS_HEAD.index("    columns:")
    end = ORDERS_HEAD.index("    activity:")
    head = ORDERS_HEAD[:start] + "    columns: {}  #!\n" + ORDERS_HEAD[end:]
    assert_one_error(HEADER + head + GOOD_RULES, "must not be empty")


# --- stages in an order the engine cannot carry out ------------------------------------------


@pytest.mark.parametrize(
    ("early", "late"),
    [
        ("{action: archive, due: {after: P6Y, from: ordered_at}}", "P5Y"),
        ("{action: archive, due: {after: P5Y, from: ordered_at}}", "P5Y"),
        ("{action: archive, due: {after: P60M, from: ordered_at}}", "P5Y"),
        ("{action: archive, due: {after: P1900D, from: ordered_at}}", "P5Y"),
        ("{action: archive, due: {after: P1Y, from: ordered_at}}", "P300D"),
        ("{action: anonymise, due: {after: P2Y, from: ordered_at}, fields: [email]}", "P1Y"),
        ("{action: anonymise, due: {after: P1Y, from: ordered_at}, fields: [email]}", "P12M"),
    ],
)
def test_a_stage_at_or_after_the_delete_of_its_rule_is_an_error(early: str, late: str) -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + f"""\
    rules:
      - purpose: support
        stages:
          - {early}  #!
          - {{action: delete, due: {{after: {late}, from: ordered_at}}}}
"""
    )
    action = "archive" if "archive" in early else "anonymise"
    shown = str(Period.parse(late))
    error = assert_one_error(text, f"the {action} stage falls due", f"({shown} after it)")
    assert f"shorter than the delete's {shown}" in error.hint


def test_a_stage_after_a_bare_column_delete_is_an_error() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: support
        stages:
          - {action: delete, due: ordered_at}
          - {action: archive, due: {after: P1D, from: ordered_at}}  #!
"""
    )
    assert_one_error(text, "P1D after ordered_at", "(PT0S after it)")


@pytest.mark.parametrize(
    ("archive", "delete"),
    [
        ("{after: P1Y, from: ordered_at}", "{after: P5Y, from: ordered_at}"),
        ("{after: P11M, from: ordered_at}", "{after: P1Y, from: ordered_at}"),
        ("{after: P27D, from: ordered_at}", "{after: P1M, from: ordered_at}"),
        ("ordered_at", "{after: PT1S, from: ordered_at}"),
        # different starts, or periods that the calendar may order either way: not decidable
        ("{after: P6Y, from: due_on}", "{after: P5Y, from: ordered_at}"),
        ("{after: P30D, from: ordered_at}", "{after: P1M, from: ordered_at}"),
        ("{after: {parameter: grace}, from: ordered_at}", "{after: P1Y, from: ordered_at}"),
    ],
)
def test_an_archive_before_the_delete_or_not_decidable_is_accepted(
    archive: str, delete: str
) -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + f"""\
    rules:
      - purpose: support
        stages:
          - {{action: archive, due: {archive}}}
          - {{action: delete, due: {delete}}}
"""
    )
    assert isinstance(parse_policy(text, "p.yaml", policy_schema()), Policy)


# --- the schema file, and robustness against any malformed file ---------------------------


def test_config_schema_is_the_packaged_schema_and_accepts_the_shipped_policy() -> None:
    config_file = REPO / "config" / "policy.schema.json"
    assert config_file.resolve() == (REPO / "policy" / "policy.schema.json").resolve()
    config_schema = json.loads(config_file.read_text())
    assert config_schema == policy_schema()
    Draft202012Validator.check_schema(config_schema)
    Draft202012Validator(config_schema).validate(yaml.safe_load(SHIPPED.read_text()))


def test_the_loader_checks_against_the_schema_its_caller_passes() -> None:
    stricter = copy.deepcopy(policy_schema())
    stricter["properties"]["policy"] = {"const": "hosting-default", "x-hint": "name it so"}
    text = HEADER.replace("policy: test", "policy: test  #!") + ORDERS_HEAD + GOOD_RULES
    assert isinstance(parse_policy(text, "p.yaml", policy_schema()), Policy)
    errors = parse_policy(text, "p.yaml", stricter)
    assert isinstance(errors, list)
    assert [(e.line, e.hint) for e in errors] == [(1, "name it so")]


_SHIPPED_DATA = yaml.safe_load(SHIPPED.read_text())


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


_PATHS = [p for p in _paths(_SHIPPED_DATA) if p]
_ODD_VALUES: list[Any] = [
    None,
    0,
    -1,
    True,
    1.5,
    "",
    "x",
    "P1Y",
    "none",
    "at_once",
    [],
    {},
    [None],
    {"after": "P1Y"},
    {"after": {"parameter": 5}, "from": ["x"]},
    {"when": {"equals": {"x": [1]}}, "then": 1},
    {"coarsen": "week"},
    {"bucket": 0},
    {"constant": None},
    {"earliest": []},
    {"activity": None},
    {"kind": 1, "column": []},
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(_PATHS), st.sampled_from(_ODD_VALUES)),
        min_size=1,
        max_size=3,
    )
)
def test_any_damaged_policy_gives_errors_with_lines_never_an_exception(
    damage: list[tuple[tuple[Any, ...], Any]],
) -> None:
    data = copy.deepcopy(_SHIPPED_DATA)
    for path, value in damage:
        parent = data
        for part in path[:-1]:
            if not isinstance(parent, dict | list):
                break
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            if isinstance(parent, dict) or (isinstance(parent, list) and path[-1] < len(parent)):
                parent[path[-1]] = copy.deepcopy(value)
    text = yaml.safe_dump(data, sort_keys=False)
    result = parse_policy(text, "p.yaml", policy_schema())
    if isinstance(result, list):
        assert result
        last_line = text.count("\n") + 1
        assert all(1 <= e.line <= last_line and e.message for e in result)


def test_a_value_of_the_wrong_type_is_one_error_saying_what_fits() -> None:
    text = (
        HEADER
        + ORDERS_HEAD
        + """\
    rules:
      - purpose: accounting
        stages:
          - {action: delete, due: 5}  #!
"""
    )
    assert_one_error(text, "must be a column name, at_once or a mapping, not a number")
