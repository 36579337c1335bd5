"""The census behind the worker's gauges: rows tracked, backlog, forecast, unconfirmed
commands and legal holds, counted over a driver's state (the demo policy; instants by hand)."""

from __future__ import annotations

from policy.census import Census, take_census
from policy.driver import Driver
from policy.engine import Engine
from policy.events import ChangeEvent
from policy.simulation import decode_line
from policy.store import MemoryStore
from tests.unit.conftest import micros, record

LOG = "connection_logs"


def fed(engine: Engine, *lines: str) -> tuple[Driver, MemoryStore]:
    store = MemoryStore()
    driver = Driver(engine, store)
    for line in lines:
        event = decode_line(engine, line)
        assert isinstance(event, ChangeEvent), event
        driver.feed(event)
    return driver, store


def census(engine: Engine, store: MemoryStore, now: str) -> Census:
    rows = []
    for row_id in store.row_ids():
        row = store.row(row_id)
        assert row is not None
        rows.append((row, store.subject(row.subject) if row.subject is not None else None))
    subjects = [store.subject(key) for key in store.subjects()]
    return take_census(engine, rows, [s for s in subjects if s is not None], micros(now))


def logs(*rows: tuple[int, int, str]) -> list[str]:
    """Connection logs (id, customer, logged_at), inserted on 2024-12-01: each is deleted a
    year after logged_at."""
    return [
        record(LOG, "c", "2024-12-01T00:00:00Z",
               {"id": id_, "customer_id": customer, "ip_address": "x", "logged_at": at})
        for id_, customer, at in rows
    ]  # fmt: skip


CLOSED_CUSTOMER = record("customers", "c", "2024-12-01T00:00:00Z", {
    "id": 5, "nic_handle": "n", "first_name": "f", "last_name": "l", "email": "e", "phone": "p",
    "postal_address": "a", "country": "FR", "created_at": "2020-01-01T00:00:00Z",
    "closed_at": "2025-01-10T00:00:00Z"})  # fmt: skip
"""Archived at closed_at (2025-01-10), deleted five years later."""


def test_a_row_due_and_not_issued_is_backlog_and_the_oldest_due_is_kept(demo_engine: Engine):
    _, store = fed(
        demo_engine,
        *logs((1, 1, "2024-01-01T00:00:00Z"), (2, 1, "2024-06-01T00:00:00Z")),
        *logs((3, 2, "2023-12-20T00:00:00Z")),
        CLOSED_CUSTOMER,
    )
    found = census(demo_engine, store, "2025-01-05T00:00:00Z")
    assert found.tracked == {
        ("public.connection_logs", "user_identification"): 3,
        ("public.customers", "business_management"): 1,
        ("public.customers", "customer_account"): 1,
        ("public.customers", "litigation_evidence"): 1,
    }
    # logs 1 and 3 fell due on 2025-01-01 and 2024-12-20; log 2 falls due on 2025-06-01
    assert found.backlog == {("public.connection_logs", "delete"): 2}
    assert found.oldest_overdue == {"public.connection_logs": micros("2024-12-20T00:00:00Z")}
    # the customer is archived on 2025-01-10: within 7 and 30 days, not within 1
    assert found.forecast == {
        ("public.customers", "archive", 7): 1,
        ("public.customers", "archive", 30): 1,
    }
    assert found.unconfirmed == {} and found.holds == {}


def test_issued_commands_leave_the_backlog_and_stay_unconfirmed_until_applied(
    demo_engine: Engine,
):
    driver, store = fed(demo_engine, *logs((1, 1, "2024-01-01T00:00:00Z")))
    assert len(driver.advance(micros("2025-01-02T00:00:00Z")).commands) == 1
    found = census(demo_engine, store, "2025-01-05T00:00:00Z")
    assert found.backlog == {} and found.oldest_overdue == {}
    assert found.unconfirmed == {("public.connection_logs", "delete"): 1}
    # issued at its due: the driver's clock (the last event, 2024-12-01) was before it
    assert found.oldest_unconfirmed == {"public.connection_logs": micros("2025-01-01T00:00:00Z")}


def test_a_held_subjects_rows_owe_nothing_and_the_hold_is_counted(demo_engine: Engine):
    hold = record("legal_holds", "c", "2024-12-01T00:00:00Z",
                  {"id": 9, "customer_id": 1, "case_ref": "X", "placed_at": None,
                   "released_at": None})  # fmt: skip
    _, store = fed(demo_engine, *logs((1, 1, "2024-01-01T00:00:00Z")), hold)
    found = census(demo_engine, store, "2025-01-05T00:00:00Z")
    assert found.backlog == {} and found.forecast == {}
    assert found.holds == {"public.legal_holds": 1}
    assert found.tracked[("public.connection_logs", "user_identification")] == 1


def test_the_censuses_of_two_partitions_add_up():
    first = Census(backlog={("t", "delete"): 2}, oldest_overdue={"t": 50}, holds={"h": 1})
    second = Census(
        backlog={("t", "delete"): 1, ("u", "archive"): 4}, oldest_overdue={"t": 20, "u": 7}
    )
    total = first.merge(second)
    assert total.backlog == {("t", "delete"): 3, ("u", "archive"): 4}
    assert total.oldest_overdue == {"t": 20, "u": 7}
    assert total.holds == {"h": 1}
