"""The sample's scripted story (`docs/sample/make_sample.py` writes it): the rows every rule
of the default policy acts on, as the snapshot, inserts, updates and deletes of the demo
tables, in the order docs/simulate.md tells them.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from make_sample import Stream


def days(text: str) -> int:
    return (date.fromisoformat(text) - date(1970, 1, 1)).days


def story(s: Stream) -> None:
    snap = "2020-01-06T08:00:00Z"
    # --- initial snapshot (op r) ----------------------------------------------------------
    s.put(
        snap,
        "customers",
        1,
        "r",
        nic_handle="ab1-ovh",
        first_name="Ada",
        last_name="Byron",
        email="ada@example.org",
        country="GB",
        created_at="2015-03-02T10:00:00Z",
    )
    s.put(
        snap,
        "customers",
        2,
        "r",
        nic_handle="bv2-ovh",
        first_name="Bram",
        email="bram@example.nl",
        country="NL",
        created_at="2014-05-05T09:00:00Z",
        closed_at="2019-03-31T17:00:00Z",
    )
    s.put(
        snap,
        "customers",
        3,
        "r",
        nic_handle="cd3-ovh",
        first_name="Chloé",
        email="chloe@example.fr",
        country="FR",
        created_at="2008-01-10T08:00:00Z",
        closed_at="2014-06-30T12:00:00Z",
    )
    s.put(
        snap,
        "customers",
        4,
        "r",
        nic_handle="dk4-ovh",
        first_name="Dirk",
        email="dirk@example.de",
        country="DE",
        created_at="2018-02-01T08:00:00Z",
    )
    s.put(
        snap,
        "customers",
        5,
        "r",
        nic_handle="ev5-ovh",
        first_name="Eva",
        email="eva@example.es",
        country="ES",
        created_at="2019-09-09T09:00:00Z",
    )
    s.put(
        snap,
        "orders",
        1,
        "r",
        customer_id=3,
        service="dedicated-2009",
        amount_cents=9900,
        ordered_at="2009-11-15T10:00:00Z",
    )
    s.put(
        snap,
        "orders",
        2,
        "r",
        customer_id=1,
        service="vps-s",
        amount_cents=599,
        ordered_at="2016-02-29T08:30:00Z",
    )
    s.put(
        snap,
        "orders",
        3,
        "r",
        customer_id=2,
        service="web-pro",
        amount_cents=2999,
        ordered_at="2015-06-01T11:00:00Z",
    )
    s.put(
        snap,
        "invoices",
        1,
        "r",
        customer_id=2,
        order_id=3,
        billing_name="B. V.",
        billing_address="Dam 1, Amsterdam",
        amount_cents=2999,
        issued_at="2015-06-02T00:00:00Z",
    )
    s.put(
        snap,
        "payment_methods",
        1,
        "r",
        customer_id=1,
        kind="card",
        holder_name="Ada Byron",
        pan_last4="4242",
        expires_on=days("2021-08-31"),
        keep_for_purchases=False,
    )
    s.put(
        snap,
        "payment_methods",
        2,
        "r",
        customer_id=4,
        kind="card",
        holder_name="Dirk K",
        pan_last4="1881",
        expires_on=days("2027-12-31"),
        keep_for_purchases=True,
        subscription_cancelled_at="2019-12-01T00:00:00Z",
    )
    s.put(
        snap,
        "job_applications",
        1,
        "r",
        first_name="Jo",
        email="Jo@Example.org",
        status="rejected",
        last_contact_at="2019-12-02T15:00:00Z",
        retention_consent=False,
    )
    s.put(
        snap,
        "job_applications",
        2,
        "r",
        first_name="Kim",
        email="kim@example.org",
        status="talent pool",
        last_contact_at="2020-01-03T10:00:00Z",
        retention_consent=True,
    )
    s.put(
        snap,
        "marketing_contacts",
        2,
        "r",
        customer_id=1,
        email="ada@example.org",
        basis="legitimate_interest",
        last_contact_at="2019-10-01T09:00:00Z",
    )
    s.put(
        snap,
        "identity_documents",
        1,
        "r",
        customer_id=1,
        kind="passport",
        document_ref="vault://id/1",
        verified_at="2020-01-31T13:00:00Z",
        fraud_suspected=False,
    )

    # --- support: sliding clocks, a late message after the archive, a deleted ticket ----
    s.put(
        "2020-02-10T09:15:00Z",
        "support_tickets",
        1,
        customer_id=1,
        subject_line="VPS down",
        created_at="2020-02-10T09:15:00Z",
        last_message_at="2020-02-10T09:15:00Z",
    )
    s.put("2020-05-20T14:00:00Z", "support_tickets", 1, "u", last_message_at="2020-05-20T14:00:00Z")
    s.put(
        "2020-02-15T10:00:00Z",
        "support_tickets",
        4,
        customer_id=2,
        subject_line="Invoice",
        created_at="2020-02-15T10:00:00Z",
        last_message_at="2020-02-15T10:00:00Z",
    )
    s.put("2021-04-01T08:00:00Z", "support_tickets", 4, "u", last_message_at="2021-04-01T08:00:00Z")
    s.put(
        "2020-08-01T12:00:00Z",
        "support_tickets",
        3,
        customer_id=4,
        subject_line="DNS",
        created_at="2020-08-01T12:00:00Z",
        last_message_at="2020-08-01T12:00:00Z",
    )
    s.delete("2020-12-01T12:00:00Z", "support_tickets", 3)

    # --- surveys: anonymised after a year; the sink's change comes back through CDC ------
    s.put(
        "2020-02-29T11:00:00Z",
        "satisfaction_surveys",
        1,
        customer_id=1,
        respondent_email="ada@example.org",
        score=9,
        comments="fast",
        submitted_at="2020-02-29T11:00:00Z",
    )
    s.put(
        "2021-02-28T11:00:04Z",
        "satisfaction_surveys",
        1,
        "u",
        customer_id=None,
        respondent_email=None,
        submitted_at="2020-02-01T00:00:00Z",
    )

    # --- events: 180 days, 90 after an objection, at the objection if later -------------
    for reg, email in ((1, "lou@example.org"), (2, "max@example.org"), (3, "noa@example.org")):
        s.put(
            "2020-03-01T10:00:00Z",
            "event_registrations",
            reg,
            event_name="Summit 2020",
            full_name=email.split("@")[0],
            email=email,
            event_ends_at="2020-03-12T18:00:00Z",
        )
    s.put("2020-04-01T09:00:00Z", "event_registrations", 2, "u", objected_at="2020-04-01T09:00:00Z")
    s.put("2020-07-20T16:00:00Z", "event_registrations", 3, "u", objected_at="2020-07-20T16:00:00Z")

    # --- marketing: consent withdrawn, objection, sliding on the customer's last contact --
    s.put(
        "2020-01-20T10:00:00Z",
        "marketing_contacts",
        1,
        email="Pat@Example.org",
        basis="consent",
        last_contact_at="2020-01-20T10:00:00Z",
    )
    s.put(
        "2021-07-07T12:00:00Z",
        "marketing_contacts",
        1,
        "u",
        consent_withdrawn_at="2021-07-07T12:00:00Z",
    )
    s.put(
        "2020-05-05T10:00:00Z",
        "marketing_contacts",
        3,
        email="sam@example.org",
        basis="legitimate_interest",
        last_contact_at="2020-05-05T10:00:00Z",
    )
    s.put("2022-02-02T08:00:00Z", "marketing_contacts", 3, "u", objected_at="2022-02-02T08:00:00Z")
    s.put(
        "2020-10-01T10:00:00Z",
        "marketing_contacts",
        5,
        email="uma@example.org",
        basis="consent",
        last_contact_at="2020-10-01T10:00:00Z",
    )
    s.put("2022-08-15T14:00:00Z", "marketing_contacts", 5, "u", objected_at="2022-08-15T14:00:00Z")
    s.put(
        "2020-06-01T10:00:00Z",
        "marketing_contacts",
        4,
        email="ola@example.org",
        basis="legitimate_interest",
        last_contact_at="2020-06-01T10:00:00Z",
    )
    s.put(
        "2020-11-03T10:00:00Z",
        "orders",
        10,
        customer_id=1,
        service="vps-m",
        amount_cents=1299,
        ordered_at="2020-11-03T10:00:00Z",
    )
    s.put(
        "2022-06-15T09:00:00Z",
        "orders",
        11,
        customer_id=1,
        service="vps-l",
        amount_cents=2599,
        ordered_at="2022-06-15T09:00:00Z",
    )

    # --- requests, recordings, defaults, fraud, proofs, DPO, breach ---------------------
    s.put(
        "2020-06-01T08:00:00Z",
        "info_requests",
        1,
        email="q@example.org",
        full_name="Quinn",
        content="price list?",
        received_at="2020-06-01T08:00:00Z",
    )
    s.put("2020-06-03T09:00:00Z", "info_requests", 1, "u", handled_at="2020-06-03T09:00:00Z")
    s.put(
        "2020-06-02T08:00:00Z",
        "info_requests",
        2,
        email="r@example.org",
        full_name="Rui",
        content="partnership?",
        received_at="2020-06-02T08:00:00Z",
    )
    s.put(
        "2021-01-15T10:00:00Z",
        "call_recordings",
        1,
        customer_id=1,
        agent_id=7,
        audio_ref="s3://calls/1",
        recorded_at="2021-01-15T10:00:00Z",
        objected=False,
    )
    s.put(
        "2021-02-01T10:00:00Z",
        "call_recordings",
        2,
        customer_id=2,
        agent_id=7,
        audio_ref="s3://calls/2",
        recorded_at="2021-02-01T10:00:00Z",
        objected=False,
    )
    s.put("2021-02-03T15:30:00Z", "call_recordings", 2, "u", objected=True)
    s.put(
        "2020-07-01T00:00:00Z",
        "payment_defaults",
        1,
        customer_id=2,
        amount_cents=2999,
        defaulted_at="2020-07-01T00:00:00Z",
    )
    s.put(
        "2021-03-10T07:00:00Z",
        "fraud_signals",
        1,
        customer_id=4,
        ip_address="203.0.113.9",
        geo="??",
        score="0.97",
        observed_at="2021-03-10T07:00:00Z",
    )
    s.put(
        "2021-03-10T07:05:00Z",
        "identity_documents",
        2,
        customer_id=4,
        kind="id card",
        document_ref="vault://id/2",
        verified_at="2021-03-10T07:05:00Z",
        fraud_suspected=True,
    )
    s.put(
        "2020-09-01T10:00:00Z",
        "dpo_requests",
        1,
        customer_id=5,
        request_text="access",
        id_proof_ref="vault://proof/1",
        received_at="2020-09-01T10:00:00Z",
    )
    s.put(
        "2020-09-15T10:00:00Z",
        "dpo_requests",
        1,
        "u",
        answer_text="sent",
        answered_at="2020-09-15T10:00:00Z",
    )
    s.put(
        "2020-04-20T22:00:00Z",
        "data_breaches",
        1,
        description="misrouted mail",
        affected_subjects=3,
        detected_at="2020-04-20T22:00:00Z",
    )

    # --- payment methods: expiry (date), withdrawal of the purchase consent (leap day) ---
    s.put(
        "2023-01-31T10:00:00Z",
        "payment_methods",
        2,
        "u",
        purchase_consent_withdrawn_at="2023-01-31T10:00:00Z",
    )
    # consent withdrawn while the subscription runs: the subscription keeps the method
    s.put(
        "2021-03-01T09:00:00Z",
        "payment_methods",
        3,
        customer_id=1,
        kind="sepa",
        holder_name="Ada Byron",
        iban="GB00BANK0000000000",
        expires_on=days("2029-04-30"),
        keep_for_purchases=True,
    )
    s.put(
        "2022-11-30T09:00:00Z",
        "payment_methods",
        3,
        "u",
        purchase_consent_withdrawn_at="2022-11-30T09:00:00Z",
    )
    s.put(
        "2024-01-31T12:00:00Z",
        "payment_methods",
        3,
        "u",
        subscription_cancelled_at="2024-01-31T12:00:00Z",
    )

    # --- a reopened account --------------------------------------------------------------
    s.put("2021-05-31T18:00:00Z", "customers", 4, "u", closed_at="2021-05-31T18:00:00Z")
    s.put("2021-11-15T09:00:00Z", "customers", 4, "u", closed_at=None)
    s.put("2023-10-31T18:00:00Z", "customers", 4, "u", closed_at="2023-10-31T18:00:00Z")

    # --- a legal hold on Eva (customer 5), placed then released ---------------------------
    s.put(
        "2021-01-20T11:00:00Z",
        "support_tickets",
        2,
        customer_id=5,
        subject_line="Refund",
        created_at="2021-01-05T11:00:00Z",
        last_message_at="2021-01-20T11:00:00Z",
    )
    s.put(
        "2021-12-01T10:00:00Z",
        "call_recordings",
        3,
        customer_id=5,
        agent_id=8,
        audio_ref="s3://calls/3",
        recorded_at="2021-12-01T10:00:00Z",
        objected=False,
    )
    s.put(
        "2022-01-10T09:00:00Z",
        "legal_holds",
        1,
        customer_id=5,
        case_ref="RG 22/0042",
        placed_at="2022-01-10T09:00:00Z",
    )
    s.put("2022-09-30T16:00:00Z", "legal_holds", 1, "u", released_at="2022-09-30T16:00:00Z")
