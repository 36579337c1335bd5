"""The demo rows (`lethe demo seed`): the same for the same seed, in the past, in every table,
consistent, and with rows the policy finds overdue at once."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from fractions import Fraction
from pathlib import Path

import pytest

from lethe.demo.data import COLUMNS, FIRST_ID, DemoData, default_as_of, generate
from lethe.demo.schedule import schedule
from lethe.policy_file import load_policy
from policy.enforcement_clock import AcceleratedClock
from policy.engine import Engine
from policy.instants import from_datetime

REPO = Path(__file__).resolve().parents[2]
SCHEMA_SQL = REPO / "config" / "demo" / "hosting-schema.sql"
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
CUSTOMER_TABLES = {table for table, columns in COLUMNS.items() if "customer_id" in columns} - {
    "marketing_contacts"
}


@pytest.fixture(scope="module")
def data() -> DemoData:
    return generate(seed=7, as_of=AS_OF, customers=300)


def schema_columns() -> dict[str, list[str]]:
    """Table -> columns, read from the demo schema's CREATE TABLE statements."""
    found: dict[str, list[str]] = {}
    for table, body in re.findall(
        r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", SCHEMA_SQL.read_text(), re.S
    ):
        found[table] = re.findall(r"^    (\w+) ", body, re.M)
    return found


def test_the_same_seed_gives_the_same_rows_and_another_seed_others() -> None:
    assert generate(seed=7, as_of=AS_OF) == generate(seed=7, as_of=AS_OF)
    assert generate(seed=7, as_of=AS_OF) != generate(seed=8, as_of=AS_OF)


def test_every_table_of_the_demo_schema_gets_rows_with_all_its_columns(data: DemoData) -> None:
    schema = schema_columns()
    assert len(schema) == 18
    assert {table: list(columns) for table, columns in COLUMNS.items()} == schema
    for table in schema:
        rows = data.tables[table]
        assert rows, f"no demo rows in {table}"
        assert all(list(row) == schema[table] for row in rows), table


def test_a_few_thousand_rows_for_300_customers(data: DemoData) -> None:
    assert len(data.tables["customers"]) == 300
    assert 2_000 <= data.count() <= 8_000


def test_ids_are_unique_and_start_at_the_first_demo_id(data: DemoData) -> None:
    for table, rows in data.tables.items():
        ids = [row["id"] for row in rows]
        assert ids == list(range(FIRST_ID, FIRST_ID + len(rows))), table


def test_every_instant_is_in_the_past_and_only_card_expiries_may_be_later(
    data: DemoData,
) -> None:
    for table, rows in data.tables.items():
        for row in rows:
            for column, value in row.items():
                if isinstance(value, datetime):
                    assert value < AS_OF, (table, row["id"], column, value)
                    assert value.tzinfo is not None
                elif isinstance(value, date) and column != "expires_on":
                    pytest.fail(f"{table}.{column} is a date")


def test_references_name_generated_rows_of_the_same_customer(data: DemoData) -> None:
    customers = {row["id"]: row for row in data.tables["customers"]}
    for table in CUSTOMER_TABLES:
        for row in data.tables[table]:
            assert row["customer_id"] in customers, (table, row["id"])
    for row in data.tables["marketing_contacts"]:
        if row["customer_id"] is not None:
            assert row["email"] == customers[row["customer_id"]]["email"]
    orders = {row["id"]: row for row in data.tables["orders"]}
    for invoice in data.tables["invoices"]:
        assert orders[invoice["order_id"]]["customer_id"] == invoice["customer_id"]
    for row in data.tables["legal_holds"]:
        assert customers[row["customer_id"]]["closed_at"] is not None


def test_the_story_has_long_closed_customers_open_holds_and_withdrawn_consents(
    data: DemoData,
) -> None:
    closed = [row["closed_at"] for row in data.tables["customers"] if row["closed_at"]]
    long_ago = [at for at in closed if isinstance(at, datetime) and at.year < AS_OF.year - 5]
    assert len(long_ago) >= 10
    assert any(row["released_at"] is None for row in data.tables["legal_holds"])
    assert any(row["released_at"] is not None for row in data.tables["legal_holds"])
    assert any(row["consent_withdrawn_at"] for row in data.tables["marketing_contacts"])
    assert any(row["objected"] for row in data.tables["call_recordings"])
    assert any(row["fraud_suspected"] for row in data.tables["identity_documents"])


def test_every_table_the_policy_changes_has_rows_overdue_at_the_start(data: DemoData) -> None:
    """Snapshotted at AS_OF, the engine issues commands at once for every table with a stage,
    and more as the clock runs on."""
    policy = load_policy(REPO / "config" / "policy.yaml")
    start = from_datetime(AS_OF)
    year = 365 * 86_400 * 1_000_000
    rows = ((f"public.{table}", row) for table, rows in data.tables.items() for row in rows)
    plan = schedule(
        Engine.compile(policy),
        rows,
        AcceleratedClock(start, start, Fraction(1)),
        start // 1000,
        start + 20 * year,
    )
    at_start = plan.due_by(start)
    staged = {table for table, source in policy.sources.items() if source.rules}
    assert staged == set(policy.sources) - {"public.legal_holds"}
    for table in staged:
        assert at_start[table] > 0, f"nothing overdue in {table}"
    assert sum(plan.due_by(start + 5 * year).values()) > sum(at_start.values())


def test_the_default_as_of_is_the_first_of_the_month() -> None:
    now = datetime(2026, 11, 30, 10, 29, tzinfo=UTC)
    assert default_as_of(now) == datetime(2026, 11, 1, tzinfo=UTC)
