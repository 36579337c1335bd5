"""The driver's bookkeeping: what it keeps of a subject, how it finds rows, command ids."""

from __future__ import annotations

from policy.driver import Driver, HoldChange
from policy.engine import Engine
from policy.events import ChangeEvent
from policy.simulation import decode_line
from policy.state import Command
from policy.store import MemoryStore
from tests.unit.conftest import micros, record


def feed(driver: Driver, *lines: str) -> list[Command]:
    commands: list[Command] = []
    for line in lines:
        event = decode_line(driver.engine, line)
        assert isinstance(event, ChangeEvent), event
        commands += driver.feed(event).commands
    return commands


def new_driver(engine: Engine) -> tuple[Driver, MemoryStore]:
    store = MemoryStore()
    return Driver(engine, store), store


APPLICANT = {"id": 4, "first_name": "A", "last_name": "B", "email": "Ann@Example.org",
             "last_contact_at": "2024-01-10T09:00:00Z", "retention_consent": False}  # fmt: skip


def test_an_email_subject_leaves_no_state_beyond_its_rows(demo_engine: Engine):
    driver, store = new_driver(demo_engine)
    feed(driver, record("job_applications", "c", "2024-01-10T09:00:00Z", APPLICANT))
    assert list(store.row_ids()) == [
        ("email:ann@example.org", "public.job_applications", (("id", 4),))
    ]
    assert list(store.subjects()) == []  # no activity, no hold: nothing to keep per person
    feed(driver, record("job_applications", "d", "2024-02-01T00:00:00Z", before=APPLICANT))
    assert list(store.row_ids()) == [] and list(store.subjects()) == []


def test_a_customers_activity_is_kept_while_a_row_remains_and_dropped_with_the_last(
    demo_engine: Engine,
):
    driver, store = new_driver(demo_engine)
    ticket = {"id": 1, "customer_id": 42, "last_message_at": "2024-01-10T09:00:00Z"}
    order = {"id": 2, "customer_id": 42, "ordered_at": "2024-01-11T09:00:00Z"}
    feed(
        driver,
        record("support_tickets", "c", "2024-01-10T09:00:00Z", ticket),
        record("orders", "c", "2024-01-11T09:00:00Z", order),
    )
    state = store.subject("customer:42")
    assert state is not None and set(state.activity) == {"contact"}
    feed(driver, record("support_tickets", "d", "2024-02-01T00:00:00Z", before={"id": 1}))
    assert store.subject("customer:42") is not None  # the order remains
    feed(driver, record("orders", "d", "2024-02-02T00:00:00Z", before={"id": 2}))
    assert list(store.subjects()) == [] and list(store.row_ids()) == []


def test_a_delete_with_only_the_primary_key_finds_the_row_and_its_subject(demo_engine: Engine):
    """REPLICA IDENTITY DEFAULT: the before image of a delete holds the key alone."""
    driver, store = new_driver(demo_engine)
    ticket = {"id": 1, "customer_id": 42, "last_message_at": "2024-01-10T09:00:00Z"}
    feed(driver, record("support_tickets", "c", "2024-01-10T09:00:00Z", ticket))
    commands = feed(
        driver,
        record("support_tickets", "d", "2024-03-01T00:00:00Z", before={"id": 1}),
    )
    assert commands == []
    assert list(store.row_ids()) == [] and list(store.subjects()) == []
    assert driver.advance(10**17).commands == ()  # its timer is gone with it


def test_a_held_subject_keeps_its_state_until_the_hold_goes(demo_engine: Engine):
    driver, store = new_driver(demo_engine)
    hold = {"id": 9, "customer_id": 7, "case_ref": "X", "released_at": None}
    feed(driver, record("legal_holds", "c", "2024-01-01T00:00:00Z", hold))
    state = store.subject("customer:7")
    assert state is not None and state.holds == {"public.legal_holds:9"}
    feed(driver, record("legal_holds", "d", "2024-02-01T00:00:00Z", before=hold))
    assert list(store.subjects()) == [] and list(store.row_ids()) == []


def test_command_ids_are_the_same_on_a_replay_and_differ_per_row_and_stage(demo_engine: Engine):
    ticket = {"id": 1, "customer_id": 42, "last_message_at": "2020-01-10T09:00:00Z"}
    other = {**ticket, "id": 2}
    lines = [
        record("support_tickets", "r", "2026-01-01T00:00:00Z", ticket),
        record("support_tickets", "r", "2026-01-01T00:00:00Z", other),
    ]
    first, _ = new_driver(demo_engine)
    second, _ = new_driver(demo_engine)
    once = feed(first, *lines) + list(first.advance(10**17).commands)
    again = feed(second, *lines) + list(second.advance(10**17).commands)
    # each ticket: archive (2021-01-10) and delete (2025-01-10) are overdue: only the delete
    assert [(c.table, c.key, c.stage) for c in once] == [
        ("public.support_tickets", (("id", 1),), "delete"),
        ("public.support_tickets", (("id", 2),), "delete"),
    ]
    assert [c.command_id for c in once] == [c.command_id for c in again]
    assert len({c.command_id for c in once}) == 2


def test_a_departed_hold_releases_its_subject_and_what_fell_due_is_issued(demo_engine: Engine):
    """The worker's half of a move: the hold moved to a customer held in another partition."""
    driver, store = new_driver(demo_engine)
    hold = {"id": 9, "customer_id": 7, "case_ref": "X", "released_at": None}
    recording = {"id": 3, "customer_id": 7, "agent_id": 1, "audio_ref": "r",
                 "recorded_at": "2024-01-01T00:00:00Z", "objected": False}  # fmt: skip
    feed(
        driver,
        record("legal_holds", "c", "2024-01-01T00:00:00Z", hold),
        record("call_recordings", "c", "2024-01-01T00:00:00Z", recording),
    )
    # recorded + P6M = 2024-07-01: held, nothing
    assert driver.advance(micros("2024-09-01T00:00:00Z")).commands == ()
    outcome = driver.depart(
        "public.legal_holds", (("id", 9),), "customer:7", micros("2024-09-02T00:00:00Z")
    )
    assert outcome.commands == ()
    assert outcome.holds == (
        HoldChange(
            "public.legal_holds", (("id", 9),), "customer:7", False, micros("2024-09-02T00:00:00Z")
        ),
    )
    assert store.locate("public.legal_holds", (("id", 9),)) is None
    assert list(store.subjects()) == []  # no hold left, no activity
    issued = driver.advance(micros("2024-09-02T00:00:00Z")).commands
    assert [(c.table, c.action.value, c.issued_at, c.due_at) for c in issued] == [
        ("public.call_recordings", "delete", micros("2024-09-02T00:00:00Z"),
         micros("2024-07-01T00:00:00Z")),
    ]  # fmt: skip


def test_departing_a_row_this_driver_does_not_hold_changes_nothing(demo_engine: Engine):
    driver, store = new_driver(demo_engine)
    feed(driver, record("job_applications", "c", "2024-01-10T09:00:00Z", APPLICANT))
    before = list(store.row_ids())
    assert driver.depart("public.legal_holds", (("id", 1),), "customer:1", 0).commands == ()
    assert list(store.row_ids()) == before
