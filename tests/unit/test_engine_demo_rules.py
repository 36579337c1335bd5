"""Every rule of the demo policy (config/policy.yaml), with instants worked out by hand.

Each test feeds Debezium records through the simulation and compares the exact
commands `lethe simulate` would print. Calendar facts used below: 2024 is a leap
year; one year after 2024-02-29 is 2025-02-28; a month after a 31st clamps to the
end of a shorter month.
"""

from __future__ import annotations

from policy.model import Policy
from tests.unit.conftest import cmd, days, load_demo_policy, record, run

CUSTOMER = ["business_management", "customer_account", "litigation_evidence"]
MARKETING = ["prospecting", "mailing_lists"]


# --- customers: the contract's duration, then evidence for the limitation period -----------


def test_closed_customer_is_archived_at_closing_and_deleted_after_the_limitation_period(
    demo_policy: Policy,
):
    lines = [
        record("customers", "c", "2019-05-01T08:00:00Z", {"id": 42, "closed_at": None}),
        record(
            "customers",
            "u",
            "2024-02-29T10:00:00Z",
            {"id": 42, "email": "A@B.example", "closed_at": "2024-02-29T10:00:00Z"},
        ),
    ]
    # archived at closed_at (the update's own time); 2024-02-29 + 5 years = 2029-02-28
    assert run(demo_policy, lines, until="2031-01-01T00:00:00Z") == [
        cmd("2024-02-29T10:00:00Z", "2024-02-29T10:00:00Z", "archive", "customers", 42,
            "customer:42", CUSTOMER),
        cmd("2029-02-28T10:00:00Z", "2029-02-28T10:00:00Z", "delete", "customers", 42,
            "customer:42", CUSTOMER),
    ]  # fmt: skip


def test_open_customer_is_kept(demo_policy: Policy):
    lines = [record("customers", "r", "2020-01-01T00:00:00Z", {"id": 1, "closed_at": None})]
    assert run(demo_policy, lines, until="2060-01-01T00:00:00Z") == []


def test_reopened_account_cancels_the_delete(demo_policy: Policy):
    lines = [
        record("customers", "c", "2024-03-01T00:00:00Z",
               {"id": 5, "closed_at": "2024-03-01T00:00:00Z"}),
        record("customers", "u", "2024-06-01T00:00:00Z", {"id": 5, "closed_at": None}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2040-01-01T00:00:00Z") == [
        cmd("2024-03-01T00:00:00Z", "2024-03-01T00:00:00Z", "archive", "customers", 5,
            "customer:5", CUSTOMER),
    ]  # fmt: skip


def test_account_closed_reopened_and_closed_again_is_archived_again(demo_policy: Policy):
    lines = [
        record("customers", "c", "2020-01-15T00:00:00Z",
               {"id": 6, "closed_at": "2020-01-15T00:00:00Z"}),
        # archived at once, reopened (the 2025-01-15 delete is cancelled), closed again on
        # a month end
        record("customers", "u", "2021-06-01T00:00:00Z", {"id": 6, "closed_at": None}),
        record("customers", "u", "2022-01-31T12:00:00Z",
               {"id": 6, "closed_at": "2022-01-31T12:00:00Z"}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2030-01-01T00:00:00Z") == [
        cmd("2020-01-15T00:00:00Z", "2020-01-15T00:00:00Z", "archive", "customers", 6,
            "customer:6", CUSTOMER),
        # a new archive command at the new closed_at
        cmd("2022-01-31T12:00:00Z", "2022-01-31T12:00:00Z", "archive", "customers", 6,
            "customer:6", CUSTOMER),
        # 2022-01-31 12:00 + 5 years
        cmd("2027-01-31T12:00:00Z", "2027-01-31T12:00:00Z", "delete", "customers", 6,
            "customer:6", CUSTOMER),
    ]  # fmt: skip


def test_limitation_period_is_configurable():
    text = load_demo_policy_text().replace(
        "  limitation_period:\n", "  limitation_period:\n    value: P3Y\n", 1
    )
    lines = [
        record("customers", "c", "2020-02-29T16:00:00Z",
               {"id": 11, "closed_at": "2020-02-29T16:00:00Z"}),
    ]  # fmt: skip
    # 2020-02-29 + 3 years = 2023-02-28
    assert run(load_demo_policy(text), lines, until="2030-01-01T00:00:00Z") == [
        cmd("2020-02-29T16:00:00Z", "2020-02-29T16:00:00Z", "archive", "customers", 11,
            "customer:11", CUSTOMER),
        cmd("2023-02-28T16:00:00Z", "2023-02-28T16:00:00Z", "delete", "customers", 11,
            "customer:11", CUSTOMER),
    ]  # fmt: skip


def test_snapshot_rows_already_overdue_are_issued_at_first_sight(demo_policy: Policy):
    lines = [
        # archive (2024-06-01) overdue at the snapshot, delete (2029-06-01) still ahead
        record("customers", "r", "2026-05-05T12:00:00Z",
               {"id": 7, "closed_at": "2024-06-01T00:00:00Z"}),
        # archive and delete (2024-01-15) both overdue: only the delete is sent (the row goes)
        record("customers", "r", "2026-05-05T12:00:00Z",
               {"id": 8, "closed_at": "2019-01-15T00:00:00Z"}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2030-01-01T00:00:00Z") == [
        cmd("2026-05-05T12:00:00Z", "2024-06-01T00:00:00Z", "archive", "customers", 7,
            "customer:7", CUSTOMER),
        cmd("2026-05-05T12:00:00Z", "2024-01-15T00:00:00Z", "delete", "customers", 8,
            "customer:8", CUSTOMER),
        cmd("2029-06-01T00:00:00Z", "2029-06-01T00:00:00Z", "delete", "customers", 7,
            "customer:7", CUSTOMER),
    ]  # fmt: skip


def test_row_deleted_by_the_business_before_due_gets_no_command(demo_policy: Policy):
    row = {"id": 9, "customer_id": 42, "last_message_at": "2024-01-01T00:00:00Z"}
    lines = [
        record("support_tickets", "c", "2024-01-01T00:00:00Z", row),
        record("support_tickets", "d", "2024-12-31T00:00:00Z", before=row),
        '{"topic": "hosting.public.support_tickets", "key": {"id": 9}, "value": null}',
    ]
    assert run(demo_policy, lines, until="2035-01-01T00:00:00Z") == []


def test_delete_after_archive_stops_the_remaining_stages(demo_policy: Policy):
    row = {"id": 10, "closed_at": "2024-01-01T00:00:00Z"}
    lines = [
        record("customers", "c", "2024-01-01T00:00:00Z", row),
        record("customers", "d", "2025-03-01T00:00:00Z", before={"id": 10}),
    ]
    assert run(demo_policy, lines, until="2035-01-01T00:00:00Z") == [
        cmd("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "archive", "customers", 10,
            "customer:10", CUSTOMER),
    ]  # fmt: skip


# --- support_tickets: sliding on last_message_at -----------------------------------------


def test_support_ticket_archive_and_delete_on_last_message(demo_policy: Policy):
    lines = [
        record("support_tickets", "c", "2024-01-31T09:00:00Z",
               {"id": 70, "customer_id": 42, "last_message_at": "2024-01-31T09:00:00Z"}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2030-01-01T00:00:00Z") == [
        cmd("2025-01-31T09:00:00Z", "2025-01-31T09:00:00Z", "archive", "support_tickets", 70,
            "customer:42", ["support"]),
        cmd("2029-01-31T09:00:00Z", "2029-01-31T09:00:00Z", "delete", "support_tickets", 70,
            "customer:42", ["support"]),
    ]  # fmt: skip


def test_later_support_message_restarts_the_clock(demo_policy: Policy):
    lines = [
        record("support_tickets", "c", "2024-01-10T00:00:00Z",
               {"id": 71, "customer_id": 42, "last_message_at": "2024-01-10T00:00:00Z"}),
        record("support_tickets", "u", "2024-12-01T15:30:00Z",
               {"id": 71, "customer_id": 42, "last_message_at": "2024-12-01T15:30:00Z"}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2030-01-01T00:00:00Z") == [
        cmd("2025-12-01T15:30:00Z", "2025-12-01T15:30:00Z", "archive", "support_tickets", 71,
            "customer:42", ["support"]),
        cmd("2029-12-01T15:30:00Z", "2029-12-01T15:30:00Z", "delete", "support_tickets", 71,
            "customer:42", ["support"]),
    ]  # fmt: skip


def test_message_after_archive_moves_the_delete_only(demo_policy: Policy):
    lines = [
        record("support_tickets", "c", "2024-01-10T00:00:00Z",
               {"id": 72, "customer_id": 42, "last_message_at": "2024-01-10T00:00:00Z"}),
        record("support_tickets", "u", "2025-03-03T00:00:00Z",
               {"id": 72, "customer_id": 42, "last_message_at": "2025-03-03T00:00:00Z"}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2031-01-01T00:00:00Z") == [
        cmd("2025-01-10T00:00:00Z", "2025-01-10T00:00:00Z", "archive", "support_tickets", 72,
            "customer:42", ["support"]),
        cmd("2030-03-03T00:00:00Z", "2030-03-03T00:00:00Z", "delete", "support_tickets", 72,
            "customer:42", ["support"]),
    ]  # fmt: skip


# --- orders and invoices: legal obligation, 10 years --------------------------------------


def test_orders_and_invoices_are_kept_ten_years_even_after_the_customer_goes(
    demo_policy: Policy,
):
    lines = [
        record("customers", "c", "2016-01-01T00:00:00Z",
               {"id": 43, "closed_at": "2016-03-01T00:00:00Z"}),
        record("orders", "c", "2016-02-29T08:00:00Z",
               {"id": 120, "customer_id": 43, "ordered_at": "2016-02-29T08:00:00Z"}),
        record("invoices", "c", "2016-03-31T00:00:00Z",
               {"id": 121, "customer_id": 43, "order_id": 120,
                "issued_at": "2016-03-31T00:00:00Z"}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2027-01-01T00:00:00Z") == [
        cmd("2016-03-01T00:00:00Z", "2016-03-01T00:00:00Z", "archive", "customers", 43,
            "customer:43", CUSTOMER),
        cmd("2021-03-01T00:00:00Z", "2021-03-01T00:00:00Z", "delete", "customers", 43,
            "customer:43", CUSTOMER),
        cmd("2026-02-28T08:00:00Z", "2026-02-28T08:00:00Z", "delete", "orders", 120,
            "customer:43", ["accounting"]),
        cmd("2026-03-31T00:00:00Z", "2026-03-31T00:00:00Z", "delete", "invoices", 121,
            "customer:43", ["accounting"]),
    ]  # fmt: skip


# --- payment_methods: lifecycle + configurable dispute period (P13M) ------------------------


def test_payment_method_revoked_on_a_month_end(demo_policy: Policy):
    lines = [
        record("payment_methods", "c", "2023-06-01T00:00:00Z",
               {"id": 20, "customer_id": 42, "expires_on": days("2027-12-31"),
                "revoked_at": None, "keep_for_purchases": False,
                "subscription_cancelled_at": None, "purchase_consent_withdrawn_at": None}),
        record("payment_methods", "u", "2024-01-31T00:00:00Z",
               {"id": 20, "customer_id": 42, "expires_on": days("2027-12-31"),
                "revoked_at": "2024-01-31T00:00:00Z", "keep_for_purchases": False,
                "subscription_cancelled_at": None, "purchase_consent_withdrawn_at": None}),
    ]  # fmt: skip
    # 2024-01-31 + 13 months = 2025-02-31 -> clamped to 2025-02-28
    assert run(demo_policy, lines, until="2030-01-01T00:00:00Z") == [
        cmd("2025-02-28T00:00:00Z", "2025-02-28T00:00:00Z", "delete", "payment_methods", 20,
            "customer:42", ["payment_management"]),
    ]  # fmt: skip


def test_payment_method_expiry_date_is_midnight_utc(demo_policy: Policy):
    lines = [
        record("payment_methods", "c", "2023-06-01T00:00:00Z",
               {"id": 21, "customer_id": 42, "expires_on": days("2025-06-30"),
                "keep_for_purchases": False}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2030-01-01T00:00:00Z") == [
        cmd("2026-07-30T00:00:00Z", "2026-07-30T00:00:00Z", "delete", "payment_methods", 21,
            "customer:42", ["payment_management"]),
    ]  # fmt: skip


def test_payment_method_ends_with_the_subscription_unless_kept_for_purchases(
    demo_policy: Policy,
):
    lines = [
        record("payment_methods", "c", "2024-05-15T12:00:00Z",
               {"id": 22, "customer_id": 42, "expires_on": days("2028-01-01"),
                "keep_for_purchases": False,
                "subscription_cancelled_at": "2024-05-15T12:00:00Z"}),
        # kept for purchases: the cancelled subscription does not end it, the withdrawal does
        record("payment_methods", "c", "2024-05-15T12:00:00Z",
               {"id": 23, "customer_id": 44, "expires_on": days("2028-01-01"),
                "keep_for_purchases": True,
                "subscription_cancelled_at": "2024-05-15T12:00:00Z",
                "purchase_consent_withdrawn_at": None}),
        record("payment_methods", "u", "2025-01-10T08:00:00Z",
               {"id": 23, "customer_id": 44, "expires_on": days("2028-01-01"),
                "keep_for_purchases": True,
                "subscription_cancelled_at": "2024-05-15T12:00:00Z",
                "purchase_consent_withdrawn_at": "2025-01-10T08:00:00Z"}),
        # kept for purchases, nothing withdrawn: ends when it expires
        record("payment_methods", "c", "2024-05-15T12:00:00Z",
               {"id": 24, "customer_id": 45, "expires_on": days("2026-01-01"),
                "keep_for_purchases": True, "subscription_cancelled_at": None,
                "purchase_consent_withdrawn_at": None}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2030-01-01T00:00:00Z") == [
        cmd("2025-06-15T12:00:00Z", "2025-06-15T12:00:00Z", "delete", "payment_methods", 22,
            "customer:42", ["payment_management"]),
        cmd("2026-02-10T08:00:00Z", "2026-02-10T08:00:00Z", "delete", "payment_methods", 23,
            "customer:44", ["payment_management"]),
        cmd("2027-02-01T00:00:00Z", "2027-02-01T00:00:00Z", "delete", "payment_methods", 24,
            "customer:45", ["payment_management"]),
    ]  # fmt: skip


def test_purchase_consent_withdrawn_while_the_subscription_runs_keeps_the_method(
    demo_policy: Policy,
):
    kept = {"keep_for_purchases": True, "subscription_cancelled_at": None,
            "purchase_consent_withdrawn_at": None, "revoked_at": None}  # fmt: skip
    lines = [
        record("payment_methods", "c", "2023-01-10T00:00:00Z",
               {"id": 26, "customer_id": 42, "expires_on": days("2028-12-31"), **kept}),
        record("payment_methods", "c", "2023-01-10T00:00:00Z",
               {"id": 27, "customer_id": 43, "expires_on": days("2027-05-31"), **kept}),
        record("payment_methods", "c", "2023-01-10T00:00:00Z",
               {"id": 28, "customer_id": 44, "expires_on": days("2028-12-31"), **kept}),
        # the holder withdraws the purchase consent; the subscriptions still run
        record("payment_methods", "u", "2024-03-31T09:00:00Z",
               {"id": 26, "customer_id": 42, "expires_on": days("2028-12-31"),
                **kept, "purchase_consent_withdrawn_at": "2024-03-31T09:00:00Z"}),
        record("payment_methods", "u", "2024-03-31T09:00:00Z",
               {"id": 27, "customer_id": 43, "expires_on": days("2027-05-31"),
                **kept, "purchase_consent_withdrawn_at": "2024-03-31T09:00:00Z"}),
        # 28: consent kept, revoked by the holder: revocation ends it whatever keeps it
        record("payment_methods", "u", "2024-07-31T00:00:00Z",
               {"id": 28, "customer_id": 44, "expires_on": days("2028-12-31"),
                **kept, "revoked_at": "2024-07-31T00:00:00Z"}),
        # 26: the subscription ends later: that ends the method
        record("payment_methods", "u", "2025-08-31T17:00:00Z",
               {"id": 26, "customer_id": 42, "expires_on": days("2028-12-31"),
                **kept, "purchase_consent_withdrawn_at": "2024-03-31T09:00:00Z",
                "subscription_cancelled_at": "2025-08-31T17:00:00Z"}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2030-01-01T00:00:00Z") == [
        # 2024-07-31 + 13 months = 2025-08-31
        cmd("2025-08-31T00:00:00Z", "2025-08-31T00:00:00Z", "delete", "payment_methods", 28,
            "customer:44", ["payment_management"]),
        # not 2024-03-31 + 13 months: 2025-08-31 17:00 + 13 months = 2026-09-31 -> 09-30
        cmd("2026-09-30T17:00:00Z", "2026-09-30T17:00:00Z", "delete", "payment_methods", 26,
            "customer:42", ["payment_management"]),
        # subscription never cancelled: expires 2027-05-31 + 13 months = 2028-06-31 -> 06-30
        cmd("2028-06-30T00:00:00Z", "2028-06-30T00:00:00Z", "delete", "payment_methods", 27,
            "customer:43", ["payment_management"]),
    ]  # fmt: skip


def test_dispute_period_is_configurable():
    text = load_demo_policy_text().replace(
        "  payment_dispute_period:\n", "  payment_dispute_period:\n    value: P2M\n", 1
    )
    policy = load_demo_policy(text)
    lines = [
        record("payment_methods", "c", "2024-01-01T00:00:00Z",
               {"id": 25, "customer_id": 42, "revoked_at": "2024-12-31T00:00:00Z",
                "expires_on": days("2027-01-01"), "keep_for_purchases": False}),
    ]  # fmt: skip
    # 2024-12-31 + 2 months = 2025-02-31 -> 2025-02-28
    assert run(policy, lines, until="2030-01-01T00:00:00Z") == [
        cmd("2025-02-28T00:00:00Z", "2025-02-28T00:00:00Z", "delete", "payment_methods", 25,
            "customer:42", ["payment_management"]),
    ]  # fmt: skip


def load_demo_policy_text() -> str:
    from tests.unit.conftest import DEMO_POLICY

    return DEMO_POLICY.read_text(encoding="utf-8")


# --- job_applications: 15 months, 36 with consent ---------------------------------------


def test_job_application_fifteen_months_after_last_contact(demo_policy: Policy):
    lines = [
        record("job_applications", "c", "2023-11-30T10:00:00Z",
               {"id": 40, "email": "Jo@Example.org", "last_contact_at": "2023-11-30T10:00:00Z",
                "retention_consent": False}),
    ]  # fmt: skip
    # 2023-11-30 + 15 months = 2025-02-30 -> 2025-02-28
    assert run(demo_policy, lines, until="2030-01-01T00:00:00Z") == [
        cmd("2025-02-28T10:00:00Z", "2025-02-28T10:00:00Z", "delete", "job_applications", 40,
            "email:jo@example.org", ["recruitment"]),
    ]  # fmt: skip


def test_job_application_consent_extends_then_withdrawal_deletes_at_once(demo_policy: Policy):
    lines = [
        record("job_applications", "c", "2023-11-30T10:00:00Z",
               {"id": 41, "email": "kim@example.org", "last_contact_at": "2023-11-30T10:00:00Z",
                "retention_consent": True}),
        record("job_applications", "c", "2023-11-30T10:00:00Z",
               {"id": 42, "email": "lee@example.org", "last_contact_at": "2023-11-30T10:00:00Z",
                "retention_consent": True}),
        # Lee withdraws consent after the 15 months have passed: overdue, issued at once
        record("job_applications", "u", "2025-03-15T16:00:00Z",
               {"id": 42, "email": "lee@example.org", "last_contact_at": "2023-11-30T10:00:00Z",
                "retention_consent": False}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2030-01-01T00:00:00Z") == [
        cmd("2025-03-15T16:00:00Z", "2025-02-28T10:00:00Z", "delete", "job_applications", 42,
            "email:lee@example.org", ["recruitment"]),
        cmd("2026-11-30T10:00:00Z", "2026-11-30T10:00:00Z", "delete", "job_applications", 41,
            "email:kim@example.org", ["recruitment"]),
    ]  # fmt: skip


def test_job_application_consent_period_is_the_business_choice():
    text = load_demo_policy_text().replace(
        "  recruitment_consent_retention:\n",
        "  recruitment_consent_retention:\n    value: P24M\n",
        1,
    )
    lines = [
        record("job_applications", "c", "2024-02-29T10:00:00Z",
               {"id": 43, "email": "max@example.org", "last_contact_at": "2024-02-29T10:00:00Z",
                "retention_consent": True}),
    ]  # fmt: skip
    # 2024-02-29 + 24 months = 2026-02-28 (with the default 36: 2027-02-28)
    assert run(load_demo_policy(text), lines, until="2030-01-01T00:00:00Z") == [
        cmd("2026-02-28T10:00:00Z", "2026-02-28T10:00:00Z", "delete", "job_applications", 43,
            "email:max@example.org", ["recruitment"]),
    ]  # fmt: skip


# --- event_registrations: 180 days, 90 after an objection ---------------------------------


def test_event_registration_deadlines(demo_policy: Policy):
    ends = "2024-06-30T18:00:00Z"
    lines = [
        record("event_registrations", "c", "2024-06-01T00:00:00Z",
               {"id": 50, "email": "a@example.org", "event_ends_at": ends, "objected_at": None}),
        record("event_registrations", "c", "2024-06-01T00:00:00Z",
               {"id": 51, "email": "b@example.org", "event_ends_at": ends, "objected_at": None}),
        record("event_registrations", "c", "2024-06-01T00:00:00Z",
               {"id": 52, "email": "c@example.org", "event_ends_at": ends, "objected_at": None}),
        # b objects early: 90 days after the event
        record("event_registrations", "u", "2024-07-10T09:00:00Z",
               {"id": 51, "email": "b@example.org", "event_ends_at": ends,
                "objected_at": "2024-07-10T09:00:00Z"}),
        # c objects after those 90 days: deleted at the objection
        record("event_registrations", "u", "2024-11-02T09:00:00Z",
               {"id": 52, "email": "c@example.org", "event_ends_at": ends,
                "objected_at": "2024-11-02T09:00:00Z"}),
    ]  # fmt: skip
    # +90 days: 2024-09-28T18:00; +180 days: 2024-12-27T18:00
    assert run(demo_policy, lines, until="2026-01-01T00:00:00Z") == [
        cmd("2024-09-28T18:00:00Z", "2024-09-28T18:00:00Z", "delete", "event_registrations", 51,
            "email:b@example.org", ["events"]),
        cmd("2024-11-02T09:00:00Z", "2024-11-02T09:00:00Z", "delete", "event_registrations", 52,
            "email:c@example.org", ["events"]),
        cmd("2024-12-27T18:00:00Z", "2024-12-27T18:00:00Z", "delete", "event_registrations", 50,
            "email:a@example.org", ["events"]),
    ]  # fmt: skip


# --- marketing_contacts: consent, objection, sliding on the subject's contact ---------------


def test_marketing_consent_withdrawn_deletes_at_once(demo_policy: Policy):
    lines = [
        record("marketing_contacts", "c", "2022-01-01T00:00:00Z",
               {"id": 60, "customer_id": None, "email": "Pat@Example.org", "basis": "consent",
                "consent_withdrawn_at": None, "last_contact_at": "2022-01-01T00:00:00Z"}),
        record("marketing_contacts", "c", "2022-01-01T00:00:00Z",
               {"id": 61, "customer_id": None, "email": "sam@example.org", "basis": "consent",
                "consent_withdrawn_at": None, "last_contact_at": "2022-01-01T00:00:00Z"}),
        record("marketing_contacts", "u", "2025-04-01T12:00:00Z",
               {"id": 60, "customer_id": None, "email": "Pat@Example.org", "basis": "consent",
                "consent_withdrawn_at": "2025-04-01T12:00:00Z",
                "last_contact_at": "2022-01-01T00:00:00Z"}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2040-01-01T00:00:00Z") == [
        cmd("2025-04-01T12:00:00Z", "2025-04-01T12:00:00Z", "delete", "marketing_contacts", 60,
            "email:pat@example.org", MARKETING),
    ]  # fmt: skip


def test_marketing_consent_contact_that_objects_is_deleted_at_the_objection(
    demo_policy: Policy,
):
    consent = {"customer_id": None, "basis": "consent", "consent_withdrawn_at": None,
               "objected_at": None, "last_contact_at": "2022-01-01T00:00:00Z"}  # fmt: skip
    lines = [
        record("marketing_contacts", "c", "2022-01-01T00:00:00Z",
               {"id": 66, "email": "kai@example.org", **consent}),
        record("marketing_contacts", "c", "2022-01-01T00:00:00Z",
               {"id": 67, "email": "lin@example.org", **consent}),
        # both recorded in one late update: the earlier, the objection, is the due time
        record("marketing_contacts", "u", "2023-03-01T00:00:00Z",
               {"id": 67, "email": "lin@example.org", **consent,
                "objected_at": "2023-02-01T00:00:00Z",
                "consent_withdrawn_at": "2023-03-01T00:00:00Z"}),
        # objects, consent never withdrawn
        record("marketing_contacts", "u", "2024-05-01T08:00:00Z",
               {"id": 66, "email": "kai@example.org", **consent,
                "objected_at": "2024-05-01T08:00:00Z"}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2030-01-01T00:00:00Z") == [
        cmd("2023-03-01T00:00:00Z", "2023-02-01T00:00:00Z", "delete", "marketing_contacts", 67,
            "email:lin@example.org", MARKETING),
        cmd("2024-05-01T08:00:00Z", "2024-05-01T08:00:00Z", "delete", "marketing_contacts", 66,
            "email:kai@example.org", MARKETING),
    ]  # fmt: skip


def test_marketing_objection_deletes_at_the_objection(demo_policy: Policy):
    lines = [
        record("marketing_contacts", "c", "2023-01-01T00:00:00Z",
               {"id": 62, "email": "x@example.org", "basis": "legitimate_interest",
                "objected_at": None, "last_contact_at": "2023-01-01T00:00:00Z"}),
        record("marketing_contacts", "u", "2024-02-02T14:00:00Z",
               {"id": 62, "email": "x@example.org", "basis": "legitimate_interest",
                "objected_at": "2024-02-02T14:00:00Z", "last_contact_at": "2023-01-01T00:00:00Z"}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2030-01-01T00:00:00Z") == [
        cmd("2024-02-02T14:00:00Z", "2024-02-02T14:00:00Z", "delete", "marketing_contacts", 62,
            "email:x@example.org", MARKETING),
    ]  # fmt: skip


def test_marketing_legitimate_interest_slides_on_the_customers_last_contact(
    demo_policy: Policy,
):
    lines = [
        record("marketing_contacts", "c", "2021-03-01T00:00:00Z",
               {"id": 63, "customer_id": 42, "email": "c42@example.org",
                "basis": "legitimate_interest", "objected_at": None,
                "last_contact_at": "2021-03-01T00:00:00Z"}),
        record("orders", "c", "2022-01-01T00:00:00Z",
               {"id": 122, "customer_id": 42, "ordered_at": "2022-01-01T00:00:00Z"}),
        record("support_tickets", "c", "2023-05-10T07:00:00Z",
               {"id": 73, "customer_id": 42, "last_message_at": "2023-05-10T07:00:00Z"}),
        # a ticket of another customer does not count
        record("support_tickets", "c", "2023-08-01T00:00:00Z",
               {"id": 74, "customer_id": 99, "last_message_at": "2023-08-01T00:00:00Z"}),
        # an email-only contact has no customer activity: its own last contact, 2022-08-31
        record("marketing_contacts", "c", "2022-08-31T00:00:00Z",
               {"id": 64, "customer_id": None, "email": "y@example.org",
                "basis": "legitimate_interest", "objected_at": None,
                "last_contact_at": "2022-08-31T00:00:00Z"}),
    ]  # fmt: skip
    commands = [
        c for c in run(demo_policy, lines, until="2027-01-01T00:00:00Z")
        if c["table"] == "public.marketing_contacts"
    ]  # fmt: skip
    assert commands == [
        cmd("2025-08-31T00:00:00Z", "2025-08-31T00:00:00Z", "delete", "marketing_contacts", 64,
            "email:y@example.org", MARKETING),
        cmd("2026-05-10T07:00:00Z", "2026-05-10T07:00:00Z", "delete", "marketing_contacts", 63,
            "customer:42", MARKETING),
    ]  # fmt: skip


def test_marketing_contact_seen_after_the_activity_snapshot(demo_policy: Policy):
    """Activity read before the contact row still counts (subject state outlives rows)."""
    lines = [
        record("support_tickets", "r", "2025-01-01T00:00:00Z",
               {"id": 75, "customer_id": 46, "last_message_at": "2024-10-31T00:00:00Z"}),
        record("marketing_contacts", "r", "2025-01-01T00:00:00Z",
               {"id": 65, "customer_id": 46, "email": "z@example.org",
                "basis": "legitimate_interest", "objected_at": None,
                "last_contact_at": "2020-01-01T00:00:00Z"}),
    ]  # fmt: skip
    commands = [
        c for c in run(demo_policy, lines, until="2028-01-01T00:00:00Z")
        if c["table"] == "public.marketing_contacts"
    ]  # fmt: skip
    assert commands == [
        cmd("2027-10-31T00:00:00Z", "2027-10-31T00:00:00Z", "delete", "marketing_contacts", 65,
            "customer:46", MARKETING),
    ]  # fmt: skip


# --- info_requests: after handling ---------------------------------------------------------


def test_info_request_one_year_after_handling(demo_policy: Policy):
    lines = [
        record("info_requests", "c", "2024-02-20T00:00:00Z",
               {"id": 80, "email": "q@example.org", "received_at": "2024-02-20T00:00:00Z",
                "handled_at": None}),
        record("info_requests", "c", "2024-02-20T00:00:00Z",
               {"id": 81, "email": "r@example.org", "received_at": "2024-02-20T00:00:00Z",
                "handled_at": None}),
        record("info_requests", "u", "2024-02-29T15:00:00Z",
               {"id": 80, "email": "q@example.org", "received_at": "2024-02-20T00:00:00Z",
                "handled_at": "2024-02-29T15:00:00Z"}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2035-01-01T00:00:00Z") == [
        cmd("2025-02-28T15:00:00Z", "2025-02-28T15:00:00Z", "delete", "info_requests", 80,
            "email:q@example.org", ["information_requests"]),
    ]  # fmt: skip


# --- call_recordings: 6 months, at once after an objection -------------------------------


def test_call_recordings(demo_policy: Policy):
    lines = [
        record("call_recordings", "c", "2024-08-31T10:00:00Z",
               {"id": 240, "customer_id": 42, "recorded_at": "2024-08-31T10:00:00Z",
                "objected": False}),
        record("call_recordings", "c", "2024-09-01T10:00:00Z",
               {"id": 241, "customer_id": 47, "recorded_at": "2024-09-01T10:00:00Z",
                "objected": False}),
        record("call_recordings", "u", "2024-09-05T14:30:00Z",
               {"id": 241, "customer_id": 47, "recorded_at": "2024-09-01T10:00:00Z",
                "objected": True}),
    ]  # fmt: skip
    # 2024-08-31 + 6 months = 2025-02-31 -> 2025-02-28
    assert run(demo_policy, lines, until="2026-01-01T00:00:00Z") == [
        cmd("2024-09-05T14:30:00Z", "2024-09-05T14:30:00Z", "delete", "call_recordings", 241,
            "customer:47", ["support_training"]),
        cmd("2025-02-28T10:00:00Z", "2025-02-28T10:00:00Z", "delete", "call_recordings", 240,
            "customer:42", ["support_training"]),
    ]  # fmt: skip


# --- satisfaction_surveys: anonymise only, the score stays --------------------------------

SURVEY_FIELDS = ["customer_id", "respondent_email", "comments", "submitted_at"]


def test_satisfaction_survey_is_anonymised_after_a_year_and_never_deleted(demo_policy: Policy):
    lines = [
        record("satisfaction_surveys", "c", "2024-02-29T11:00:00Z",
               {"id": 200, "customer_id": 42, "respondent_email": "s@example.org", "score": 8,
                "comments": "Sam from Leiden helped me", "submitted_at": "2024-02-29T11:00:00Z"}),
        # the sink's anonymisation comes back through CDC: no new command
        record("satisfaction_surveys", "u", "2025-02-28T11:00:05Z",
               {"id": 200, "customer_id": None, "respondent_email": None, "score": 8,
                "comments": None, "submitted_at": "2025-02-01T00:00:00Z"}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2040-01-01T00:00:00Z") == [
        cmd("2025-02-28T11:00:00Z", "2025-02-28T11:00:00Z", "anonymise", "satisfaction_surveys",
            200, "customer:42", ["satisfaction_surveys"], SURVEY_FIELDS),
    ]  # fmt: skip


# --- payment_defaults, fraud_signals, identity_documents ---------------------------------


def test_payment_default_five_years(demo_policy: Policy):
    lines = [
        record("payment_defaults", "c", "2020-02-29T00:00:00Z",
               {"id": 210, "customer_id": 42, "defaulted_at": "2020-02-29T00:00:00Z"}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2026-01-01T00:00:00Z") == [
        cmd("2025-02-28T00:00:00Z", "2025-02-28T00:00:00Z", "delete", "payment_defaults", 210,
            "customer:42", ["payment_defaults"]),
    ]  # fmt: skip


def test_fraud_signal_default_two_years_and_configured_value(demo_policy: Policy):
    row = {"id": 220, "customer_id": 42, "observed_at": "2024-02-29T06:00:00Z", "score": "0.93"}
    lines = [record("fraud_signals", "c", "2024-02-29T06:00:00Z", row)]
    assert run(demo_policy, lines, until="2030-01-01T00:00:00Z") == [
        cmd("2026-02-28T06:00:00Z", "2026-02-28T06:00:00Z", "delete", "fraud_signals", 220,
            "customer:42", ["fraud_prevention"]),
    ]  # fmt: skip
    text = load_demo_policy_text().replace(
        "  fraud_signal_retention:\n", "  fraud_signal_retention:\n    value: P4Y\n", 1
    )
    assert run(load_demo_policy(text), lines, until="2030-01-01T00:00:00Z") == [
        cmd("2028-02-29T06:00:00Z", "2028-02-29T06:00:00Z", "delete", "fraud_signals", 220,
            "customer:42", ["fraud_prevention"]),
    ]  # fmt: skip


def test_identity_documents_thirty_days_or_twelve_months_on_fraud(demo_policy: Policy):
    both = ["customer_account", "fraud_prevention"]
    lines = [
        record("identity_documents", "c", "2024-01-15T10:00:00Z",
               {"id": 230, "customer_id": 42, "verified_at": "2024-01-15T10:00:00Z",
                "fraud_suspected": False}),
        record("identity_documents", "c", "2024-01-15T10:00:00Z",
               {"id": 231, "customer_id": 48, "verified_at": "2024-01-15T10:00:00Z",
                "fraud_suspected": True}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2026-01-01T00:00:00Z") == [
        cmd("2024-02-14T10:00:00Z", "2024-02-14T10:00:00Z", "delete", "identity_documents", 230,
            "customer:42", both),
        cmd("2025-01-15T10:00:00Z", "2025-01-15T10:00:00Z", "delete", "identity_documents", 231,
            "customer:48", both),
    ]  # fmt: skip


# --- dpo_requests: archived at the answer, the proof anonymised, the request deleted ------


def test_dpo_request_archived_at_answer_proof_anonymised_after_one_year_deleted_after_five(
    demo_policy: Policy,
):
    lines = [
        record("dpo_requests", "c", "2024-02-01T00:00:00Z",
               {"id": 160, "customer_id": 42, "received_at": "2024-02-01T00:00:00Z",
                "answered_at": None}),
        record("dpo_requests", "u", "2024-02-29T09:00:00Z",
               {"id": 160, "customer_id": 42, "received_at": "2024-02-01T00:00:00Z",
                "answered_at": "2024-02-29T09:00:00Z"}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2030-01-01T00:00:00Z") == [
        cmd("2024-02-29T09:00:00Z", "2024-02-29T09:00:00Z", "archive", "dpo_requests", 160,
            "customer:42", ["dpo_requests"]),
        # 2024-02-29 + 1 year = 2025-02-28; + 5 years = 2029-02-28
        cmd("2025-02-28T09:00:00Z", "2025-02-28T09:00:00Z", "anonymise", "dpo_requests", 160,
            "customer:42", ["dpo_requests"], ["id_proof_ref"]),
        cmd("2029-02-28T09:00:00Z", "2029-02-28T09:00:00Z", "delete", "dpo_requests", 160,
            "customer:42", ["dpo_requests"]),
    ]  # fmt: skip


# --- data_breaches (no subject), connection_logs (configurable) ----------------------------


def test_data_breach_has_no_subject(demo_policy: Policy):
    lines = [
        record("data_breaches", "c", "2020-02-29T00:00:00Z",
               {"id": 170, "detected_at": "2020-02-29T00:00:00Z"}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2026-01-01T00:00:00Z") == [
        cmd("2025-02-28T00:00:00Z", "2025-02-28T00:00:00Z", "delete", "data_breaches", 170,
            None, ["breach_handling"]),
    ]  # fmt: skip


def test_connection_log_one_year(demo_policy: Policy):
    lines = [
        record("connection_logs", "c", "2024-02-29T23:59:59Z",
               {"id": 130, "customer_id": 42, "logged_at": "2024-02-29T23:59:59Z"}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2026-01-01T00:00:00Z") == [
        cmd("2025-02-28T23:59:59Z", "2025-02-28T23:59:59Z", "delete", "connection_logs", 130,
            "customer:42", ["user_identification"]),
    ]  # fmt: skip


# --- legal_holds ---------------------------------------------------------------------------


def _hold(op: str, at: str, hold_id: int, customer: int, released: str | None) -> str:
    return record("legal_holds", op, at, {"id": hold_id, "customer_id": customer,
                  "case_ref": "C-1", "placed_at": at, "released_at": released})  # fmt: skip


def test_hold_suspends_commands_until_released(demo_policy: Policy):
    lines = [
        record(
            "support_tickets",
            "c",
            "2024-01-31T00:00:00Z",
            {"id": 76, "customer_id": 42, "last_message_at": "2024-01-31T00:00:00Z"},
        ),
        record(
            "support_tickets",
            "c",
            "2024-01-31T00:00:00Z",
            {"id": 77, "customer_id": 49, "last_message_at": "2024-01-31T00:00:00Z"},
        ),
        _hold("c", "2025-01-01T00:00:00Z", 1, 42, None),
        _hold("u", "2025-06-01T09:00:00Z", 1, 42, "2025-06-01T09:00:00Z"),
    ]
    assert run(demo_policy, lines, until="2026-01-01T00:00:00Z") == [
        # another customer is not held
        cmd("2025-01-31T00:00:00Z", "2025-01-31T00:00:00Z", "archive", "support_tickets", 77,
            "customer:49", ["support"]),
        # due during the hold: issued when it is released
        cmd("2025-06-01T09:00:00Z", "2025-01-31T00:00:00Z", "archive", "support_tickets", 76,
            "customer:42", ["support"]),
    ]  # fmt: skip


def test_subject_stays_held_until_the_last_hold_goes(demo_policy: Policy):
    lines = [
        record("call_recordings", "c", "2024-01-01T00:00:00Z",
               {"id": 242, "customer_id": 42, "recorded_at": "2024-01-01T00:00:00Z",
                "objected": False}),
        _hold("c", "2024-03-01T00:00:00Z", 1, 42, None),
        _hold("c", "2024-04-01T00:00:00Z", 2, 42, None),
        _hold("u", "2024-08-01T00:00:00Z", 1, 42, "2024-08-01T00:00:00Z"),
        # the second hold row is deleted: that releases the subject too
        record("legal_holds", "d", "2024-10-15T08:00:00Z", None, before={"id": 2}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2025-01-01T00:00:00Z") == [
        cmd("2024-10-15T08:00:00Z", "2024-07-01T00:00:00Z", "delete", "call_recordings", 242,
            "customer:42", ["support_training"]),
    ]  # fmt: skip


def test_hold_placed_after_due_does_not_recall_issued_commands(demo_policy: Policy):
    lines = [
        record("call_recordings", "c", "2024-01-01T00:00:00Z",
               {"id": 243, "customer_id": 42, "recorded_at": "2024-01-01T00:00:00Z",
                "objected": False}),
        record("call_recordings", "c", "2024-01-01T00:00:00Z",
               {"id": 244, "customer_id": 42, "recorded_at": "2024-06-01T00:00:00Z",
                "objected": False}),
        _hold("c", "2024-07-01T00:00:00Z", 3, 42, None),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2030-01-01T00:00:00Z") == [
        cmd("2024-07-01T00:00:00Z", "2024-07-01T00:00:00Z", "delete", "call_recordings", 243,
            "customer:42", ["support_training"]),
    ]  # fmt: skip


def test_hold_moved_to_another_customer_releases_the_first(demo_policy: Policy):
    """A hold row whose customer_id changes is released on the old customer at that time."""
    lines = [
        # customer 8: due 2022-01-01 + P6M = 2022-07-01, after the hold has moved away
        record("call_recordings", "c", "2022-01-01T00:00:00Z",
               {"id": 2, "customer_id": 8, "recorded_at": "2022-01-01T00:00:00Z",
                "objected": False}),
        # customer 8: due 2021-08-15 + P6M = 2022-02-15 10:00, while the hold is on 8
        record("call_recordings", "c", "2021-08-15T10:00:00Z",
               {"id": 5, "customer_id": 8, "recorded_at": "2021-08-15T10:00:00Z",
                "objected": False}),
        # customer 9: due 2021-09-20 + P6M = 2022-03-20 12:00, while the hold is on 9
        record("call_recordings", "c", "2021-09-20T12:00:00Z",
               {"id": 6, "customer_id": 9, "recorded_at": "2021-09-20T12:00:00Z",
                "objected": False}),
        _hold("c", "2022-02-01T00:00:00Z", 3, 8, None),
        _hold("u", "2022-03-01T00:00:00Z", 3, 9, None),
        _hold("u", "2022-04-01T00:00:00Z", 3, 9, "2022-04-01T00:00:00Z"),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2031-01-01T00:00:00Z") == [
        cmd("2022-03-01T00:00:00Z", "2022-02-15T10:00:00Z", "delete", "call_recordings", 5,
            "customer:8", ["support_training"]),
        cmd("2022-04-01T00:00:00Z", "2022-03-20T12:00:00Z", "delete", "call_recordings", 6,
            "customer:9", ["support_training"]),
        cmd("2022-07-01T00:00:00Z", "2022-07-01T00:00:00Z", "delete", "call_recordings", 2,
            "customer:8", ["support_training"]),
    ]  # fmt: skip


def test_hold_whose_customer_is_emptied_releases_that_customer(demo_policy: Policy):
    lines = [
        # due 2021-10-10 + P6M = 2022-04-10
        record("call_recordings", "c", "2021-10-10T00:00:00Z",
               {"id": 7, "customer_id": 10, "recorded_at": "2021-10-10T00:00:00Z",
                "objected": False}),
        _hold("c", "2022-02-01T00:00:00Z", 4, 10, None),
        # still open, but on nobody: customer 10 is free from this event's time
        record("legal_holds", "u", "2022-05-01T06:00:00Z",
               {"id": 4, "customer_id": None, "case_ref": "C-1", "released_at": None}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2023-01-01T00:00:00Z") == [
        cmd("2022-05-01T06:00:00Z", "2022-04-10T00:00:00Z", "delete", "call_recordings", 7,
            "customer:10", ["support_training"]),
    ]  # fmt: skip


def test_ticket_moved_to_another_customer_feeds_the_new_one_and_the_old_keeps_it(
    demo_policy: Policy,
):
    """The old customer's latest contact stays: that contact happened (and the subject
    state keeps only the latest instant per activity, not which row brought it)."""
    contact = {"basis": "legitimate_interest", "objected_at": None,
               "last_contact_at": "2020-01-01T00:00:00Z"}  # fmt: skip
    ticket = {"id": 90, "last_message_at": "2022-01-10T00:00:00Z"}
    lines = [
        record("marketing_contacts", "c", "2020-01-01T00:00:00Z",
               {"id": 91, "customer_id": 8, "email": "c8@example.org", **contact}),
        record("marketing_contacts", "c", "2020-01-01T00:00:00Z",
               {"id": 92, "customer_id": 9, "email": "c9@example.org", **contact}),
        record("support_tickets", "c", "2022-01-10T00:00:00Z", {**ticket, "customer_id": 8}),
        record("support_tickets", "u", "2022-02-01T00:00:00Z", {**ticket, "customer_id": 9}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2028-01-01T00:00:00Z") == [
        # the ticket's own clock, now under customer 9: 2022-01-10 + P1Y, + P5Y
        cmd("2023-01-10T00:00:00Z", "2023-01-10T00:00:00Z", "archive", "support_tickets", 90,
            "customer:9", ["support"]),
        # both customers' last contact is the ticket's message: 2022-01-10 + P36M (customer
        # 9 alone would have been 2020-01-01 + P36M = 2023-01-01)
        cmd("2025-01-10T00:00:00Z", "2025-01-10T00:00:00Z", "delete", "marketing_contacts", 91,
            "customer:8", MARKETING),
        cmd("2025-01-10T00:00:00Z", "2025-01-10T00:00:00Z", "delete", "marketing_contacts", 92,
            "customer:9", MARKETING),
        cmd("2027-01-10T00:00:00Z", "2027-01-10T00:00:00Z", "delete", "support_tickets", 90,
            "customer:9", ["support"]),
    ]  # fmt: skip


def test_marketing_contact_that_gains_a_customer_id_slides_on_that_customers_contact(
    demo_policy: Policy,
):
    contact = {"id": 93, "email": "Gus@Example.org", "basis": "legitimate_interest",
               "objected_at": None, "last_contact_at": "2020-03-01T00:00:00Z"}  # fmt: skip
    lines = [
        record("orders", "c", "2021-06-30T08:00:00Z",
               {"id": 130, "customer_id": 11, "ordered_at": "2021-06-30T08:00:00Z"}),
        # email only: own last contact 2020-03-01 + P36M = 2023-03-01
        record("marketing_contacts", "c", "2020-03-01T00:00:00Z", {**contact, "customer_id": None}),
        # linked to customer 11 whose last order is 2021-06-30 08:00: + P36M = 2024-06-30 08:00
        record("marketing_contacts", "u", "2022-01-01T00:00:00Z", {**contact, "customer_id": 11}),
    ]  # fmt: skip
    commands = [
        c for c in run(demo_policy, lines, until="2025-01-01T00:00:00Z")
        if c["table"] == "public.marketing_contacts"
    ]  # fmt: skip
    assert commands == [
        cmd("2024-06-30T08:00:00Z", "2024-06-30T08:00:00Z", "delete", "marketing_contacts", 93,
            "customer:11", MARKETING),
    ]  # fmt: skip


def test_at_once_is_the_objection_time_even_after_later_updates_during_a_hold(
    demo_policy: Policy,
):
    recording = {"customer_id": 50, "recorded_at": "2024-01-20T00:00:00Z"}
    lines = [
        _hold("c", "2024-01-01T00:00:00Z", 5, 50, None),
        record("call_recordings", "c", "2024-01-20T00:00:00Z",
               {"id": 250, **recording, "objected": False}),
        record("call_recordings", "c", "2024-01-20T00:00:00Z",
               {"id": 252, **recording, "objected": False}),
        # T1: the customer objects; T2: another update of the row while held
        record("call_recordings", "u", "2024-02-10T09:30:00Z",
               {"id": 250, **recording, "objected": True}),
        record("call_recordings", "u", "2024-03-05T12:00:00Z",
               {"id": 250, **recording, "agent_id": 4, "objected": True}),
        # an objection withdrawn and made again counts from the new objection
        record("call_recordings", "u", "2024-02-01T00:00:00Z",
               {"id": 252, **recording, "objected": True}),
        record("call_recordings", "u", "2024-02-20T00:00:00Z",
               {"id": 252, **recording, "objected": False}),
        record("call_recordings", "u", "2024-03-10T15:00:00Z",
               {"id": 252, **recording, "objected": True}),
        # T3: released
        _hold("u", "2024-04-01T08:00:00Z", 5, 50, "2024-04-01T08:00:00Z"),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2025-01-01T00:00:00Z") == [
        cmd("2024-04-01T08:00:00Z", "2024-02-10T09:30:00Z", "delete", "call_recordings", 250,
            "customer:50", ["support_training"]),
        cmd("2024-04-01T08:00:00Z", "2024-03-10T15:00:00Z", "delete", "call_recordings", 252,
            "customer:50", ["support_training"]),
    ]  # fmt: skip


def test_update_of_an_already_anonymised_survey_issues_nothing_more(demo_policy: Policy):
    anonymised = {"id": 201, "customer_id": None, "respondent_email": None, "score": 7,
                  "comments": None, "submitted_at": "2024-02-01T00:00:00Z"}  # fmt: skip
    lines = [
        record("satisfaction_surveys", "c", "2024-02-29T11:00:00Z",
               {"id": 201, "customer_id": 42, "respondent_email": "s@example.org", "score": 7,
                "submitted_at": "2024-02-29T11:00:00Z"}),
        # the sink's anonymisation comes back (submitted_at coarsened to its month: its own
        # clock now says 2025-02-01, in the past), then the business edits the score
        record("satisfaction_surveys", "u", "2025-02-28T11:00:02Z", anonymised),
        record("satisfaction_surveys", "u", "2025-06-01T00:00:00Z", {**anonymised, "score": 8}),
    ]  # fmt: skip
    assert run(demo_policy, lines, until="2030-01-01T00:00:00Z") == [
        cmd("2025-02-28T11:00:00Z", "2025-02-28T11:00:00Z", "anonymise", "satisfaction_surveys",
            201, "customer:42", ["satisfaction_surveys"], SURVEY_FIELDS),
    ]  # fmt: skip
