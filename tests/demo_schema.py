"""The demo database as demo-schema.md fixes it, written out by hand.

The tests' independent oracle of the table and column names: neither the SQL in
config/demo nor the policy is read to build it.
"""

from __future__ import annotations

DEMO_COLUMNS: dict[str, list[str]] = {
    "customers": [
        "nic_handle",
        "first_name",
        "last_name",
        "email",
        "phone",
        "postal_address",
        "country",
        "created_at",
        "closed_at",
    ],
    "support_tickets": [
        "customer_id",
        "subject_line",
        "body",
        "contact_email",
        "created_at",
        "last_message_at",
    ],
    "orders": ["customer_id", "service", "amount_cents", "ordered_at"],
    "invoices": [
        "customer_id",
        "order_id",
        "billing_name",
        "billing_address",
        "amount_cents",
        "issued_at",
    ],
    "payment_methods": [
        "customer_id",
        "kind",
        "holder_name",
        "pan_last4",
        "iban",
        "expires_on",
        "subscription_cancelled_at",
        "revoked_at",
        "keep_for_purchases",
        "purchase_consent_withdrawn_at",
    ],
    "job_applications": [
        "first_name",
        "last_name",
        "email",
        "cv_text",
        "status",
        "last_contact_at",
        "retention_consent",
    ],
    "event_registrations": [
        "event_name",
        "full_name",
        "email",
        "company",
        "job_title",
        "event_ends_at",
        "objected_at",
    ],
    "marketing_contacts": [
        "customer_id",
        "email",
        "basis",
        "consent_withdrawn_at",
        "objected_at",
        "last_contact_at",
    ],
    "info_requests": ["email", "full_name", "content", "received_at", "handled_at"],
    "call_recordings": ["customer_id", "agent_id", "audio_ref", "recorded_at", "objected"],
    "satisfaction_surveys": [
        "customer_id",
        "respondent_email",
        "score",
        "comments",
        "submitted_at",
    ],
    "payment_defaults": ["customer_id", "amount_cents", "defaulted_at"],
    "fraud_signals": ["customer_id", "ip_address", "geo", "score", "observed_at"],
    "identity_documents": ["customer_id", "kind", "document_ref", "verified_at", "fraud_suspected"],
    "dpo_requests": [
        "customer_id",
        "request_text",
        "answer_text",
        "id_proof_ref",
        "received_at",
        "answered_at",
    ],
    "data_breaches": ["description", "affected_subjects", "detected_at"],
    "connection_logs": ["customer_id", "ip_address", "logged_at"],
    "legal_holds": ["customer_id", "case_ref", "placed_at", "released_at"],
}
"""Every table of the demo database and its columns besides the bigint primary key `id`."""

DEMO_TABLES: tuple[str, ...] = tuple(DEMO_COLUMNS)
