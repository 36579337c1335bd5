"""The contract every driver store must keep (`policy.store.Store`).

Each store is listed in `STORES`; every test here runs against each. A store that
passes can sit behind `policy.driver.Driver`, and the driver then behaves the same
over it as `lethe simulate` does over the in-memory store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from policy.state import RowState, SubjectState
from policy.store import MemoryStore, RowId, Store

StoreFactory = Callable[[], Store]

STORES: dict[str, StoreFactory] = {"memory": MemoryStore}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    yield STORES[request.param]()


def rid(subject: str | None, table: str, key: int) -> RowId:
    return (subject, f"public.{table}", (("id", key),))


def state(row_id: RowId, **values: int) -> RowState:
    subject, table, key = row_id
    return RowState(table, key, subject, values)


def drain(store: Store, until: int) -> list[tuple[int, RowId]]:
    popped = []
    while (timer := store.pop_due(until)) is not None:
        popped.append(timer)
    return popped


def test_a_row_is_read_back_and_located_by_table_and_key(store: Store):
    ticket = rid("customer:1", "support_tickets", 7)
    assert store.row(ticket) is None and store.locate("public.support_tickets", ticket[2]) is None
    store.put_row(ticket, state(ticket, last_message_at=5))
    assert store.row(ticket) == state(ticket, last_message_at=5)
    assert store.locate("public.support_tickets", (("id", 7),)) == ticket
    assert store.locate("public.support_tickets", (("id", 8),)) is None
    assert store.locate("public.orders", (("id", 7),)) is None
    store.put_row(ticket, state(ticket, last_message_at=9))
    assert store.row(ticket) == state(ticket, last_message_at=9)


def test_a_row_without_subject_is_located_too(store: Store):
    breach = rid(None, "data_breaches", 1)
    store.put_row(breach, state(breach))
    assert store.locate("public.data_breaches", (("id", 1),)) == breach
    assert store.rows_of(None) == [breach]
    assert store.has_rows(None)


def test_a_subjects_rows_are_listed_and_forgotten_with_them(store: Store):
    ticket, order = rid("customer:1", "support_tickets", 7), rid("customer:1", "orders", 7)
    other = rid("customer:2", "orders", 8)
    for row_id in (ticket, order, other):
        store.put_row(row_id, state(row_id))
    assert sorted(store.rows_of("customer:1")) == sorted([ticket, order])
    assert store.rows_of("customer:3") == [] and not store.has_rows("customer:3")
    store.delete_row(ticket)
    assert store.rows_of("customer:1") == [order]
    assert store.row(ticket) is None
    assert store.locate("public.support_tickets", (("id", 7),)) is None
    store.delete_row(order)
    assert store.rows_of("customer:1") == [] and not store.has_rows("customer:1")
    assert store.has_rows("customer:2")
    store.delete_row(order)  # forgetting twice is harmless
    assert store.row(other) == state(other)


def test_a_row_moved_to_another_subject_is_found_under_the_new_one(store: Store):
    old, new = rid(None, "legal_holds", 1), rid("customer:12", "legal_holds", 1)
    store.put_row(old, state(old))
    store.delete_row(old)
    store.put_row(new, state(new))
    assert store.locate("public.legal_holds", (("id", 1),)) == new
    assert store.rows_of(None) == [] and store.rows_of("customer:12") == [new]


def test_a_likely_subject_never_changes_where_a_row_is_located(store: Store):
    """`locate` may look under the likely subject first; right, wrong or None, the answer
    is where the row is stored (or None), as without it."""
    table, key = "public.support_tickets", (("id", 7),)
    ticket, breach = rid("customer:1", "support_tickets", 7), rid(None, "data_breaches", 1)
    for likely in ("customer:1", "customer:2", None):
        assert store.locate(table, key, likely) is None
    store.put_row(ticket, state(ticket))
    store.put_row(breach, state(breach))
    for likely in ("customer:1", "customer:2", None):
        assert store.locate(table, key, likely) == ticket
        assert store.locate("public.data_breaches", (("id", 1),), likely) == breach
        assert store.locate(table, (("id", 8),), likely) is None
    store.delete_row(ticket)
    store.put_row(moved := rid("customer:2", "support_tickets", 7), state(moved))
    for likely in ("customer:1", "customer:2", None):
        assert store.locate(table, key, likely) == moved
    assert store.row(moved) == state(moved) and store.row(ticket) is None


def test_subject_states_are_stored_and_deleted(store: Store):
    held = SubjectState({"contact": 5}, frozenset({"public.legal_holds:1"}))
    assert store.subject("customer:1") is None
    store.put_subject("customer:1", held)
    assert store.subject("customer:1") == held
    store.delete_subject("customer:1")
    assert store.subject("customer:1") is None
    store.delete_subject("customer:1")


def test_timers_pop_in_due_order_up_to_the_bound(store: Store):
    rows = [rid("customer:1", "orders", n) for n in range(5)]
    for row_id, at in zip(rows, (50, 10, 40, 20, 30), strict=True):
        store.put_row(row_id, state(row_id))
        store.arm(row_id, at)
    assert drain(store, 35) == [(10, rows[1]), (20, rows[3]), (30, rows[4])]
    assert drain(store, 35) == []
    assert drain(store, 100) == [(40, rows[2]), (50, rows[0])]


def test_rearming_replaces_the_timer_and_none_disarms_it(store: Store):
    a, b, c = (rid("customer:1", "orders", n) for n in (1, 2, 3))
    for row_id in (a, b, c):
        store.put_row(row_id, state(row_id))
    store.arm(a, 10)
    store.arm(a, 30)  # later: the old one must not fire
    store.arm(b, 20)
    store.arm(b, 5)  # earlier
    store.arm(c, 15)
    store.arm(c, None)
    assert drain(store, 100) == [(5, b), (30, a)]


def test_rearming_back_to_an_earlier_instant_fires_once(store: Store):
    a = rid("customer:1", "orders", 1)
    store.put_row(a, state(a))
    store.arm(a, 10)
    store.arm(a, 20)
    store.arm(a, 10)
    store.arm(a, 10)
    assert drain(store, 100) == [(10, a)]


def test_a_deleted_row_never_fires(store: Store):
    a, b = rid("customer:1", "orders", 1), rid("customer:1", "orders", 2)
    for row_id in (a, b):
        store.put_row(row_id, state(row_id))
        store.arm(row_id, 10)
    store.delete_row(a)
    assert drain(store, 100) == [(10, b)]


def test_timers_at_the_same_instant_all_fire(store: Store):
    rows = [rid(f"customer:{n}", "orders", n) for n in range(20)]
    for row_id in rows:
        store.put_row(row_id, state(row_id))
        store.arm(row_id, 7)
    popped = drain(store, 7)
    assert sorted(popped) == sorted((7, row_id) for row_id in rows)


def test_a_popped_timer_is_gone_until_armed_again(store: Store):
    a = rid("customer:1", "orders", 1)
    store.put_row(a, state(a))
    store.arm(a, 10)
    assert drain(store, 10) == [(10, a)]
    store.arm(a, 10)
    assert drain(store, 10) == [(10, a)]
