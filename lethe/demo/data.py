"""The demo rows: invented customers of a hosting provider and everything about them.

`generate(seed, as_of)` returns the same rows for the same arguments, every instant before
`as_of`: customers since 2014 (a third of them closed, some long ago), their orders and
invoices, tickets, payment methods, calls, surveys, connection logs, payment defaults,
fraud signals, ID documents, DPO requests, marketing contacts and legal holds (a few still
open), and people who are not customers (applicants, event guests, prospects, senders of
information requests). Every table of the demo database gets rows; ids start at
`FIRST_ID` in each table, far above the hand-written rows of `config/demo/hosting-data.sql`,
and every `customer_id` and `order_id` names a generated row. Names, addresses and numbers
are invented (reserved example domains, documentation IP ranges).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

FIRST_ID: Final = 100_001
"""The first id of the generated rows in every table."""
DEFAULT_SEED: Final = 2026
DEFAULT_CUSTOMERS: Final = 300
HISTORY_START: Final = datetime(2014, 1, 1, tzinfo=UTC)

Value = str | int | float | bool | date | datetime | None

COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    "customers": (
        "id", "nic_handle", "first_name", "last_name", "email", "phone", "postal_address",
        "country", "created_at", "closed_at",
    ),
    "support_tickets": (
        "id", "customer_id", "subject_line", "body", "contact_email", "created_at",
        "last_message_at",
    ),
    "orders": ("id", "customer_id", "service", "amount_cents", "ordered_at"),
    "invoices": (
        "id", "customer_id", "order_id", "billing_name", "billing_address", "amount_cents",
        "issued_at",
    ),
    "payment_methods": (
        "id", "customer_id", "kind", "holder_name", "pan_last4", "iban", "expires_on",
        "subscription_cancelled_at", "revoked_at", "keep_for_purchases",
        "purchase_consent_withdrawn_at",
    ),
    "job_applications": (
        "id", "first_name", "last_name", "email", "cv_text", "status", "last_contact_at",
        "retention_consent",
    ),
    "event_registrations": (
        "id", "event_name", "full_name", "email", "company", "job_title", "event_ends_at",
        "objected_at",
    ),
    "marketing_contacts": (
        "id", "customer_id", "email", "basis", "consent_withdrawn_at", "objected_at",
        "last_contact_at",
    ),
    "info_requests": ("id", "email", "full_name", "content", "received_at", "handled_at"),
    "call_recordings": ("id", "customer_id", "agent_id", "audio_ref", "recorded_at", "objected"),
    "satisfaction_surveys": (
        "id", "customer_id", "respondent_email", "score", "comments", "submitted_at",
    ),
    "payment_defaults": ("id", "customer_id", "amount_cents", "defaulted_at"),
    "fraud_signals": ("id", "customer_id", "ip_address", "geo", "score", "observed_at"),
    "identity_documents": (
        "id", "customer_id", "kind", "document_ref", "verified_at", "fraud_suspected",
    ),
    "dpo_requests": (
        "id", "customer_id", "request_text", "answer_text", "id_proof_ref", "received_at",
        "answered_at",
    ),
    "data_breaches": ("id", "description", "affected_subjects", "detected_at"),
    "connection_logs": ("id", "customer_id", "ip_address", "logged_at"),
    "legal_holds": ("id", "customer_id", "case_ref", "placed_at", "released_at"),
}  # fmt: skip
"""Every table of the demo database (schema `public`) and its columns, in insert order."""

Row = dict[str, Value]


@dataclass(frozen=True, slots=True)
class DemoData:
    """Rows by table (every table of `COLUMNS`, in that order), each row keyed by column."""

    tables: Mapping[str, Sequence[Row]]

    def count(self) -> int:
        return sum(len(rows) for rows in self.tables.values())


FIRST_NAMES = (
    "Alba", "Bruno", "Chiara", "Dmitri", "Elif", "Fabien", "Gwen", "Hamid", "Ilse", "Jorge",
    "Katja", "Lucas", "Maren", "Nils", "Olga", "Pavel", "Quentin", "Rosa", "Sami", "Tove",
    "Ugo", "Vera", "Wim", "Xenia", "Yann", "Zofia",
)  # fmt: skip
LAST_NAMES = (
    "Abbott", "Brandt", "Castell", "Dufour", "Eriksen", "Falk", "Greco", "Horvat", "Ivanova",
    "Jansen", "Kowalski", "Laine", "Meyer", "Novak", "Olsen", "Perrin", "Quist", "Roux",
    "Santos", "Thorsen", "Urban", "Vidal", "Weber", "Young", "Zeller",
)  # fmt: skip
COUNTRIES = (
    ("FR", "+33 1 99 00", "rue des Exemples, 59100 Roubaix"),
    ("DE", "+49 30 9900", "Musterweg, 10115 Berlin"),
    ("GB", "+44 20 7946", "Sample Street, London E1 6AN"),
    ("NL", "+31 20 990", "Voorbeeldstraat, 1012 AB Amsterdam"),
    ("ES", "+34 91 990", "Calle Ejemplo, 28001 Madrid"),
    ("PL", "+48 22 990", "ul. Przykladowa, 00-001 Warszawa"),
)
DOMAINS = ("example.com", "example.net", "example.org")
SERVICES = (
    ("vps-essential-2", 1199), ("web-hosting-pro", 7188), ("dedicated-advance-1", 89900),
    ("object-storage-1tb", 1080), ("domain-renewal", 999), ("managed-postgres-s", 2400),
    ("kubernetes-node-b2", 3600), ("public-ip-block", 300),
)  # fmt: skip
TICKET_SUBJECTS = (
    "VPS unreachable after reboot", "Invoice address change", "DNS zone not propagating",
    "Backup restore request", "SSL certificate renewal failed", "Raise my vCPU quota",
    "Disk almost full on dedicated server", "Cannot log in to the control panel",
)  # fmt: skip
EVENTS = (
    ("Cloud Summit 2019", datetime(2019, 11, 21, 18, tzinfo=UTC)),
    ("Cloud Summit 2021", datetime(2021, 11, 18, 18, tzinfo=UTC)),
    ("Kubernetes Day 2023", datetime(2023, 10, 5, 17, tzinfo=UTC)),
    ("Cloud Summit 2024", datetime(2024, 11, 21, 18, tzinfo=UTC)),
    ("Data Week 2025", datetime(2025, 6, 12, 17, tzinfo=UTC)),
    ("Kubernetes Day 2026", datetime(2026, 10, 8, 17, tzinfo=UTC)),
)
JOB_PROFILES = (
    "Site reliability engineer, Linux operations.",
    "Network engineer, BGP and data-centre fabrics.",
    "Junior developer, Python and Go.",
    "Support engineer, five years of hosting support.",
    "Data-centre technician, hardware and cabling.",
)


class _Generator:
    def __init__(self, seed: int, as_of: datetime, customers: int) -> None:
        self.random = random.Random(seed)
        self.as_of = as_of
        self.customers = customers
        self.tables: dict[str, list[Row]] = {table: [] for table in COLUMNS}

    def add(self, table: str, **values: Value) -> Row:
        rows = self.tables[table]
        row: Row = {"id": FIRST_ID + len(rows), **values}
        rows.append(row)
        return row

    def between(self, start: datetime, end: datetime) -> datetime:
        """A random instant in [start, end), whole seconds; `start` when the span is empty."""
        span = int((end - start).total_seconds())
        return start + timedelta(seconds=self.random.randrange(span)) if span > 0 else start

    def past(self, moment: datetime) -> datetime:
        """`moment`, or a minute before `as_of` when it is not earlier."""
        return min(moment, self.as_of - timedelta(minutes=1))

    def recent(self, days: int) -> datetime:
        return self.between(self.as_of - timedelta(days=days), self.as_of)

    def chance(self, probability: float) -> bool:
        return self.random.random() < probability

    def person(self) -> tuple[str, str, str]:
        first = self.random.choice(FIRST_NAMES)
        last = self.random.choice(LAST_NAMES)
        number = self.random.randrange(10_000)
        email = f"{first}.{last}{number}@{self.random.choice(DOMAINS)}".lower()
        return first, last, email

    def ip(self) -> str:
        block = self.random.choice(("192.0.2", "198.51.100", "203.0.113"))
        return f"{block}.{self.random.randrange(1, 255)}"

    def run(self) -> DemoData:
        for number in range(self.customers):
            self.customer(number)
        self.prospects()
        self.applicants()
        self.event_guests()
        self.info_requests()
        self.breaches()
        return DemoData({table: tuple(rows) for table, rows in self.tables.items()})

    def customer(self, number: int) -> None:
        first, last, email = self.person()
        country, phone, street = self.random.choice(COUNTRIES)
        created = self.between(HISTORY_START, self.as_of - timedelta(days=30))
        closed = None
        if self.chance(0.35):
            closed = self.between(created + timedelta(days=90), self.as_of)
            closed = min(closed, self.as_of - timedelta(hours=1))
        end = closed or self.as_of
        customer = self.add(
            "customers",
            nic_handle=f"{first[:1]}{last[:1]}{number:05d}-demo".lower(),
            first_name=first,
            last_name=last,
            email=email,
            phone=f"{phone} {self.random.randrange(100, 999)}" if self.chance(0.8) else None,
            postal_address=f"{self.random.randrange(1, 99)} {street}",
            country=country,
            created_at=created,
            closed_at=closed,
        )
        customer_id = customer["id"]
        billing = f"{first} {last}"
        address = customer["postal_address"]
        for _ in range(self.random.randint(1, 4)):
            service, cents = self.random.choice(SERVICES)
            ordered = self.between(created, end)
            order = self.add(
                "orders",
                customer_id=customer_id,
                service=service,
                amount_cents=cents,
                ordered_at=ordered,
            )
            self.add(
                "invoices",
                customer_id=customer_id,
                order_id=order["id"],
                billing_name=billing,
                billing_address=address,
                amount_cents=cents,
                issued_at=self.past(ordered + timedelta(minutes=1)),
            )
        for _ in range(self.random.choice((0, 0, 1, 1, 2, 3))):
            opened = self.between(created, end)
            self.add(
                "support_tickets",
                customer_id=customer_id,
                subject_line=self.random.choice(TICKET_SUBJECTS),
                body="Please have a look, details in the control panel.",
                contact_email=email,
                created_at=opened,
                last_message_at=self.past(opened + timedelta(hours=self.random.randrange(1, 240))),
            )
        self.payment_method(customer_id, billing, created, closed)
        self.marketing_contact(customer_id, email, created, end)
        for _ in range(self.random.choice((0, 0, 1, 2))):
            recorded = self.between(max(created, self.as_of - timedelta(days=730)), end)
            self.add(
                "call_recordings",
                customer_id=customer_id,
                agent_id=self.random.randrange(101, 121),
                audio_ref=f"recordings/{recorded:%Y/%m}/call-{customer_id}-{recorded:%d%H%M}.opus",
                recorded_at=recorded,
                objected=self.chance(0.1),
            )
        for _ in range(self.random.choice((0, 0, 1, 2))):
            self.add(
                "satisfaction_surveys",
                customer_id=customer_id,
                respondent_email=email,
                score=self.random.randint(0, 10),
                comments=self.random.choice((None, "Fast support answer.", "Console unclear.")),
                submitted_at=self.between(created, end),
            )
        if not closed or self.chance(0.3):
            for _ in range(self.random.randint(2, 5)):
                self.add(
                    "connection_logs",
                    customer_id=customer_id,
                    ip_address=self.ip(),
                    logged_at=self.between(max(created, end - timedelta(days=730)), end),
                )
        if self.chance(0.3):
            suspected = self.chance(0.15)
            verified = created + timedelta(hours=self.random.randrange(1, 72))
            if self.chance(0.2):
                verified = self.recent(60)
            self.add(
                "identity_documents",
                customer_id=customer_id,
                kind=self.random.choice(("passport", "id_card", "proof_of_address")),
                document_ref=f"kyc/{verified:%Y/%m}/doc-{customer_id}.pdf",
                verified_at=verified,
                fraud_suspected=suspected,
            )
        if self.chance(0.08):
            self.add(
                "fraud_signals",
                customer_id=customer_id,
                ip_address=self.ip(),
                geo=f"{country}-X",
                score=round(self.random.random(), 2),
                observed_at=self.between(created, end),
            )
        defaulted = None
        if self.chance(0.05):
            defaulted = self.between(created, end)
            self.add(
                "payment_defaults",
                customer_id=customer_id,
                amount_cents=self.random.choice(SERVICES)[1],
                defaulted_at=defaulted,
            )
        if self.chance(0.05):
            received = self.between(created, self.as_of)
            answered = received + timedelta(days=self.random.randrange(1, 30))
            open_request = answered >= self.as_of or self.chance(0.2)
            self.add(
                "dpo_requests",
                customer_id=customer_id,
                request_text="Please send me a copy of my personal data.",
                answer_text=None if open_request else "Export sent by secure link.",
                id_proof_ref=f"dpo/{received:%Y/%m}/idproof-{customer_id}.pdf",
                received_at=received,
                answered_at=None if open_request else answered,
            )
        if closed is not None and (defaulted is not None or self.chance(0.03)):
            placed = self.between(closed, self.as_of)
            released = None
            if self.chance(0.4):
                released = self.between(placed, self.as_of)
            self.add(
                "legal_holds",
                customer_id=customer_id,
                case_ref=f"CASE-{placed:%Y}-{customer_id} unpaid invoices",
                placed_at=placed,
                released_at=released,
            )

    def payment_method(
        self, customer_id: Value, holder: str, created: datetime, closed: datetime | None
    ) -> None:
        kind = self.random.choice(("card", "card", "sepa_debit", "paypal"))
        keep = self.chance(0.3)
        expires = None
        if kind == "card":
            expiry = self.between(created + timedelta(days=365), self.as_of + timedelta(days=1500))
            expires = date(expiry.year, expiry.month, 1)
        self.add(
            "payment_methods",
            customer_id=customer_id,
            kind=kind,
            holder_name=holder.upper(),
            pan_last4=f"{self.random.randrange(10_000):04d}" if kind == "card" else None,
            iban="DE89370400440532013000" if kind == "sepa_debit" else None,
            expires_on=expires,
            subscription_cancelled_at=closed,
            revoked_at=self.between(created, self.as_of) if self.chance(0.1) else None,
            keep_for_purchases=keep,
            purchase_consent_withdrawn_at=(
                self.between(created, self.as_of) if keep and self.chance(0.4) else None
            ),
        )

    def marketing_contact(
        self, customer_id: Value, email: str, created: datetime, end: datetime
    ) -> None:
        if not self.chance(0.5):
            return
        self.add(
            "marketing_contacts",
            customer_id=customer_id,
            email=email,
            basis="legitimate_interest",
            consent_withdrawn_at=None,
            objected_at=self.between(created, self.as_of) if self.chance(0.1) else None,
            last_contact_at=self.between(created, end),
        )

    def prospects(self) -> None:
        for _ in range(self.customers // 3):
            _first, _last, email = self.person()
            subscribed = self.between(HISTORY_START, self.as_of)
            self.add(
                "marketing_contacts",
                customer_id=None,
                email=email,
                basis="consent",
                consent_withdrawn_at=(
                    self.between(subscribed, self.as_of) if self.chance(0.3) else None
                ),
                objected_at=None,
                last_contact_at=self.between(subscribed, self.as_of),
            )

    def applicants(self) -> None:
        for _ in range(self.customers // 2):
            first, last, email = self.person()
            contact = self.between(self.as_of - timedelta(days=6 * 365), self.as_of)
            statuses: tuple[str, ...] = ("rejected", "withdrawn", "hired")
            if contact > self.as_of - timedelta(days=60):
                statuses = ("received", "interviewing")
            self.add(
                "job_applications",
                first_name=first,
                last_name=last,
                email=email,
                cv_text=self.random.choice(JOB_PROFILES),
                status=self.random.choice(statuses),
                last_contact_at=contact,
                retention_consent=self.chance(0.3),
            )

    def event_guests(self) -> None:
        events = [(name, ends) for name, ends in EVENTS if ends < self.as_of]
        for _ in range(self.customers * 2 // 3):
            name, ends = self.random.choice(events)
            first, last, email = self.person()
            self.add(
                "event_registrations",
                event_name=name,
                full_name=f"{first} {last}",
                email=email,
                company=self.random.choice((None, "Example Analytics", "Sample Retail")),
                job_title=self.random.choice(("CTO", "Platform lead", "DevOps engineer")),
                event_ends_at=ends,
                objected_at=(
                    self.between(ends, min(ends + timedelta(days=200), self.as_of))
                    if self.chance(0.15)
                    else None
                ),
            )

    def info_requests(self) -> None:
        for _ in range(self.customers // 2):
            first, last, email = self.person()
            received = self.between(self.as_of - timedelta(days=4 * 365), self.as_of)
            handled = received + timedelta(hours=self.random.randrange(2, 96))
            self.add(
                "info_requests",
                email=email,
                full_name=f"{first} {last}" if self.chance(0.7) else None,
                content="Pricing for managed databases?",
                received_at=received,
                handled_at=handled if handled < self.as_of and self.chance(0.9) else None,
            )

    def breaches(self) -> None:
        for year in (2016, 2018, 2020, 2022, 2024, 2026):
            detected = datetime(year, 1, 1, tzinfo=UTC) + timedelta(days=self.random.randrange(300))
            if detected < self.as_of:
                self.add(
                    "data_breaches",
                    description=f"Misconfigured bucket found in {year}",
                    affected_subjects=self.random.randrange(0, 200),
                    detected_at=detected,
                )


def generate(
    seed: int = DEFAULT_SEED, as_of: datetime | None = None, customers: int = DEFAULT_CUSTOMERS
) -> DemoData:
    """The demo rows for `seed`, every instant before `as_of` (default: `default_as_of()`)."""
    if customers < 3:
        raise ValueError(f"customers={customers}: the demo needs at least 3 customers")
    return _Generator(seed, as_of or default_as_of(), customers).run()


def default_as_of(now: datetime | None = None) -> datetime:
    """The first day of the current month (UTC), 00:00: the rows stay the same for a month,
    so seeding again within it changes nothing."""
    now = now or datetime.now(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)
