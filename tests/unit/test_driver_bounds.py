"""Never early because an input lags: the driver issues a stage due at T only once every input
that can change the row's fate has been processed up to T (its table's bound).

The ticket (demo policy, customer 42) was last answered 2020-05-04T12:00Z: archived a year
later (2021-05-04T12:00Z), deleted five years later (2025-05-04T12:00Z). Its inputs are its
own table and `public.legal_holds` (its clocks read no subject activity).
"""

from __future__ import annotations

from collections.abc import Sequence

from policy.driver import Driver, row_bounds
from policy.engine import Engine
from policy.events import ChangeEvent
from policy.simulation import decode_line
from policy.state import Command
from policy.store import MemoryStore
from tests.unit.conftest import micros, record

TICKETS, HOLDS, ORDERS = "public.support_tickets", "public.legal_holds", "public.orders"
TICKET = {"id": 1, "customer_id": 42, "last_message_at": "2020-05-04T12:00:00Z"}
HOLD = {"id": 9, "customer_id": 42, "case_ref": "X", "released_at": None}
ARCHIVE_DUE, DELETE_DUE = micros("2021-05-04T12:00:00Z"), micros("2025-05-04T12:00:00Z")


def event(engine: Engine, line: str) -> ChangeEvent:
    decoded = decode_line(engine, line)
    assert isinstance(decoded, ChangeEvent), decoded
    return decoded


def stages(commands: Sequence[Command]) -> list[tuple[str, str, int]]:
    return [(c.table, c.stage, c.due_at) for c in commands]


def bounds(engine: Engine, instant: str, **late: str) -> dict[str, int]:
    """The rows' bounds when tickets, holds and orders are processed up to `instant`, except
    those in `late` (holds=..., orders=...); the other tables have not reported."""
    tables = {"holds": HOLDS, "orders": ORDERS, "tickets": TICKETS}
    processed = {table: micros(instant) for table in tables.values()}
    processed.update({tables[name]: micros(at) for name, at in late.items()})
    return row_bounds(engine, processed)


def swept_caught_up(driver: Driver, instant: str) -> tuple[Command, ...]:
    """What a sweep at `instant` issues with every input processed up to `instant`."""
    return driver.advance(micros(instant), bounds(driver.engine, instant)).commands


def ticket_driver(engine: Engine) -> Driver:
    driver = Driver(engine, MemoryStore())
    ticket = record("support_tickets", "c", "2020-05-04T12:00:00Z", TICKET)
    assert driver.feed(event(engine, ticket), bounds(engine, "2020-05-04T12:00:00Z")).commands == ()
    return driver


def test_a_delete_due_while_the_holds_lag_waits_and_is_issued_once_they_pass_its_due(
    demo_engine: Engine,
):
    driver = ticket_driver(demo_engine)
    lagging = bounds(demo_engine, "2025-06-01T00:00:00Z", holds="2025-05-01T00:00:00Z")
    assert stages(driver.advance(micros("2025-06-01T00:00:00Z"), lagging).commands) == [
        (TICKETS, "archive", ARCHIVE_DUE)
    ], "the archive was due before the holds' bound; the delete after it"
    assert driver.held() == 1
    still = bounds(demo_engine, "2025-06-02T00:00:00Z", holds="2025-05-04T11:59:59Z")
    assert driver.advance(micros("2025-06-02T00:00:00Z"), still).commands == ()
    passed = bounds(demo_engine, "2025-06-03T00:00:00Z", holds="2025-05-04T12:00:00Z")
    issued = driver.advance(micros("2025-06-03T00:00:00Z"), passed).commands
    assert stages(issued) == [(TICKETS, "delete", DELETE_DUE)]
    assert driver.held() == 0
    assert swept_caught_up(driver, "2025-07-01T00:00:00Z") == ()


def test_a_hold_that_arrives_while_the_delete_waits_stops_it(demo_engine: Engine):
    driver = ticket_driver(demo_engine)
    lagging = bounds(demo_engine, "2025-06-01T00:00:00Z", holds="2025-05-01T00:00:00Z")
    driver.advance(micros("2025-06-01T00:00:00Z"), lagging)
    # placed 2025-05-02, before the delete fell due, read only now
    hold = event(demo_engine, record("legal_holds", "c", "2025-05-02T00:00:00Z", HOLD))
    assert driver.feed(hold, lagging).commands == ()
    assert swept_caught_up(driver, "2025-07-01T00:00:00Z") == ()
    assert driver.held() == 0


def test_nothing_is_issued_for_a_table_whose_inputs_have_not_all_reported(demo_engine: Engine):
    driver = ticket_driver(demo_engine)
    unreported = row_bounds(demo_engine, {TICKETS: micros("2025-06-01T00:00:00Z")})
    assert unreported.get(TICKETS) is None, "the holds have not reported"
    assert driver.advance(micros("2025-06-01T00:00:00Z"), unreported).commands == ()
    issued = swept_caught_up(driver, "2025-06-01T00:00:01Z")
    assert stages(issued) == [(TICKETS, "delete", DELETE_DUE)], "overdue: the delete alone"


def test_a_lagging_table_the_row_does_not_read_holds_nothing_back(demo_engine: Engine):
    """Tickets read no activity: orders (which feed the contact activity) do not matter."""
    driver = ticket_driver(demo_engine)
    lagging_orders = bounds(demo_engine, "2025-06-01T00:00:00Z", orders="2020-01-01T00:00:00Z")
    issued = driver.advance(micros("2025-06-01T00:00:00Z"), lagging_orders).commands
    assert stages(issued) == [(TICKETS, "archive", ARCHIVE_DUE), (TICKETS, "delete", DELETE_DUE)]


def test_a_rows_bound_is_the_earliest_of_the_inputs_that_can_change_its_fate(
    demo_engine: Engine,
):
    reported = {TICKETS: 700, HOLDS: 500, ORDERS: 300, "public.job_applications": 900}
    found = row_bounds(demo_engine, reported)
    assert found[TICKETS] == 500  # its own table and the holds
    assert found[ORDERS] == 300
    assert found[HOLDS] == 500
    assert found["public.job_applications"] == 900  # email subjects: no customer hold
    # contacts read the contact activity (tickets, orders) and a customer's holds; their own
    # table has not reported
    assert "public.marketing_contacts" not in found
    found = row_bounds(demo_engine, {**reported, "public.marketing_contacts": 800})
    assert found["public.marketing_contacts"] == 300


def test_an_update_that_moves_the_due_while_the_delete_waits_is_what_counts(demo_engine: Engine):
    driver = ticket_driver(demo_engine)
    lagging = bounds(demo_engine, "2025-06-01T00:00:00Z", holds="2025-05-01T00:00:00Z")
    driver.advance(micros("2025-06-01T00:00:00Z"), lagging)
    # a new message on 2025-05-03 (read now): deleted 2030-05-03, no longer due
    answered = {**TICKET, "last_message_at": "2025-05-03T00:00:00Z"}
    update = event(demo_engine, record("support_tickets", "u", "2025-05-03T00:00:00Z", answered))
    assert driver.feed(update, lagging).commands == ()
    assert driver.held() == 0
    assert swept_caught_up(driver, "2025-07-01T00:00:00Z") == ()


CONTACTS = "public.marketing_contacts"
CONTACT = {"id": 3, "customer_id": 42, "email": "ann@example.org", "basis": "legitimate_interest",
           "consent_withdrawn_at": None, "objected_at": None,
           "last_contact_at": "2019-01-01T00:00:00Z"}  # fmt: skip
ORDER = {"id": 8, "customer_id": 42, "service": "vps", "amount_cents": 500,
         "ordered_at": "2024-01-01T00:00:00Z"}  # fmt: skip
SEEDED = "2025-06-01T00:00:00Z"
"""When the contact and its customer's order were written, in one transaction."""


def contact_bounds(engine: Engine, instant: str, orders: str) -> dict[str, int]:
    """Contacts, tickets and holds processed up to `instant`, orders up to `orders`."""
    processed = {table: micros(instant) for table in (CONTACTS, TICKETS, HOLDS)}
    return row_bounds(engine, {**processed, ORDERS: micros(orders)})


def test_a_row_first_seen_overdue_waits_until_its_inputs_reach_the_time_it_was_seen(
    demo_engine: Engine,
):
    """Seen alone, the contact is due 2022-01-01 (its own last contact + 36 months); its
    customer's order of 2024-01-01, written at the same time but read later, makes it
    2027-01-01. The orders were read only up to 2025-05-01 when the contact came: past
    the 2022 due, not past the time the contact was seen, so nothing is deleted yet."""
    driver = Driver(demo_engine, MemoryStore())
    contact = event(demo_engine, record("marketing_contacts", "c", SEEDED, CONTACT))
    lagging = contact_bounds(demo_engine, SEEDED, orders="2025-05-01T00:00:00Z")
    assert driver.feed(contact, lagging).commands == ()
    assert driver.advance(micros("2025-06-01T00:00:05Z"), lagging).commands == ()
    assert driver.held() == 1
    order = event(demo_engine, record("orders", "c", SEEDED, ORDER))
    assert driver.feed(order, lagging).commands == ()  # the ticks saying so come after it
    caught_up = contact_bounds(demo_engine, "2025-06-01T00:00:06Z", "2025-06-01T00:00:06Z")
    assert driver.advance(micros("2026-12-31T23:59:59Z"), caught_up).commands == ()
    later = contact_bounds(demo_engine, "2027-01-02T00:00:00Z", "2027-01-02T00:00:00Z")
    issued = driver.advance(micros("2027-01-02T00:00:00Z"), later).commands
    assert stages(issued) == [(CONTACTS, "delete", micros("2027-01-01T00:00:00Z"))]


def test_a_row_first_seen_overdue_is_issued_once_its_inputs_pass_that_time(
    demo_engine: Engine,
):
    """No order came: the delete (due 2022-01-01) is issued once every input of the contact
    has been read past the time it was seen, as issued then (`lethe simulate` too)."""
    driver = Driver(demo_engine, MemoryStore())
    contact = event(demo_engine, record("marketing_contacts", "c", SEEDED, CONTACT))
    lagging = contact_bounds(demo_engine, SEEDED, orders="2025-05-01T00:00:00Z")
    driver.feed(contact, lagging)
    passed = contact_bounds(demo_engine, "2025-06-01T00:00:04Z", "2025-06-01T00:00:02Z")
    issued = driver.advance(micros("2025-06-01T00:00:05Z"), passed).commands
    assert [(c.stage, c.due_at, c.issued_at) for c in issued] == [
        ("delete", micros("2022-01-01T00:00:00Z"), micros(SEEDED))
    ]
    assert driver.held() == 0
