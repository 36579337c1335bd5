"""What the driver tells the audit of a row's next due: `tracked` when a row is stored,
`scheduled` when its next due moves (a clock column, its subject's activity, a hold, a stage
issued), nothing when it stays. The instants are worked out by hand from the demo policy."""

from __future__ import annotations

from policy.driver import Driver, DueChange, Outcome
from policy.engine import Engine
from policy.events import ChangeEvent
from policy.model import Policy
from policy.simulation import decode_line
from policy.store import MemoryStore
from tests.unit.conftest import micros, record

TICKET_KEY = (("id", 7),)
TICKETS = "public.support_tickets"
SUPPORT = ("support",)


def fed(driver: Driver, line: str) -> Outcome:
    event = decode_line(driver.engine, line)
    assert isinstance(event, ChangeEvent), event
    return driver.feed(event)


def ticket(last_message_at: str, customer_id: int = 42, **more: object) -> dict[str, object]:
    return {"id": 7, "customer_id": customer_id, "subject_line": "Invoice",
            "last_message_at": last_message_at, **more}  # fmt: skip


def opened_ticket(engine: Engine) -> Driver:
    driver = Driver(engine, MemoryStore())
    fed(
        driver,
        record("support_tickets", "c", "2020-05-20T14:00:00Z", ticket("2020-05-20T14:00:00Z")),
    )
    return driver


def test_a_row_first_seen_is_tracked_with_its_purposes_and_first_due(demo_engine: Engine):
    driver = Driver(demo_engine, MemoryStore())
    outcome = fed(
        driver,
        record("support_tickets", "c", "2020-05-20T14:00:00Z", ticket("2020-05-20T14:00:00Z")),
    )
    # archive one year after the last message
    assert outcome.dues == (
        DueChange(TICKETS, TICKET_KEY, "customer:42", micros("2021-05-20T14:00:00Z"),
                  micros("2020-05-20T14:00:00Z"), SUPPORT, None, first=True),
    )  # fmt: skip
    assert outcome.commands == ()


def test_a_new_message_moves_the_due_once(demo_engine: Engine):
    driver = opened_ticket(demo_engine)
    outcome = fed(
        driver,
        record("support_tickets", "u", "2020-08-01T09:00:00Z", ticket("2020-08-01T09:00:00Z")),
    )
    assert outcome.dues == (
        DueChange(TICKETS, TICKET_KEY, "customer:42", micros("2021-08-01T09:00:00Z"),
                  micros("2020-08-01T09:00:00Z"), SUPPORT, micros("2021-05-20T14:00:00Z")),
    )  # fmt: skip


def test_an_update_that_leaves_the_due_tells_nothing(demo_engine: Engine):
    driver = opened_ticket(demo_engine)
    renamed = ticket("2020-05-20T14:00:00Z", subject_line="Invoice 2020-17")
    assert fed(driver, record("support_tickets", "u", "2020-06-01T00:00:00Z", renamed)) == Outcome()


def test_an_issued_stage_schedules_the_next_and_the_last_one_nothing_more(demo_engine: Engine):
    driver = opened_ticket(demo_engine)
    archived = driver.advance(micros("2021-05-20T14:00:00Z"))
    assert [c.stage for c in archived.commands] == ["archive"]
    # delete five years after the last message
    assert archived.dues == (
        DueChange(TICKETS, TICKET_KEY, "customer:42", micros("2025-05-20T14:00:00Z"),
                  micros("2021-05-20T14:00:00Z"), SUPPORT, micros("2021-05-20T14:00:00Z")),
    )  # fmt: skip
    deleted = driver.advance(micros("2025-05-20T14:00:00Z"))
    assert [c.stage for c in deleted.commands] == ["delete"]
    assert deleted.dues == (
        DueChange(TICKETS, TICKET_KEY, "customer:42", None, micros("2025-05-20T14:00:00Z"),
                  (), micros("2025-05-20T14:00:00Z")),
    )  # fmt: skip
    gone = fed(
        driver,
        record("support_tickets", "d", "2025-05-20T14:00:02Z", before={"id": 7}),
    )
    assert gone.dues == ()  # the row's end is told by its confirmation, not as a due
    assert len(gone.confirmations) == 1


def test_a_hold_takes_the_due_away_and_its_release_gives_it_back(demo_engine: Engine):
    driver = opened_ticket(demo_engine)
    hold = {"id": 9, "customer_id": 42, "case_ref": "X", "released_at": None}
    placed = fed(driver, record("legal_holds", "c", "2021-01-04T00:00:00Z", hold))
    # the ticket's archive waits; the hold row itself has no rules: not tracked
    assert placed.dues == (
        DueChange(
            TICKETS,
            TICKET_KEY,
            "customer:42",
            None,
            micros("2021-01-04T00:00:00Z"),
            (),
            micros("2021-05-20T14:00:00Z"),
        ),
    )  # fmt: skip
    assert driver.advance(micros("2022-01-01T00:00:00Z")) == Outcome()
    released = {**hold, "released_at": "2022-02-01T00:00:00Z"}
    lifted = fed(driver, record("legal_holds", "u", "2022-02-01T00:00:00Z", released))
    assert lifted.dues == (
        DueChange(TICKETS, TICKET_KEY, "customer:42", micros("2021-05-20T14:00:00Z"),
                  micros("2022-02-01T00:00:00Z"), SUPPORT, None),
    )  # fmt: skip


def test_a_row_seen_under_a_new_subject_is_tracked_again(demo_engine: Engine):
    driver = opened_ticket(demo_engine)
    moved = fed(
        driver,
        record("support_tickets", "u", "2020-06-01T00:00:00Z", ticket("2020-05-20T14:00:00Z", 43)),
    )
    assert moved.dues == (
        DueChange(TICKETS, TICKET_KEY, "customer:43", micros("2021-05-20T14:00:00Z"),
                  micros("2020-06-01T00:00:00Z"), SUPPORT, None, first=True),
    )  # fmt: skip


def test_new_activity_moves_the_due_of_the_rows_whose_clock_reads_it(demo_engine: Engine):
    driver = Driver(demo_engine, MemoryStore())
    contact = {"id": 3, "customer_id": 42, "email": "ann@example.org",
               "basis": "legitimate_interest", "consent_withdrawn_at": None, "objected_at": None,
               "last_contact_at": "2024-01-10T09:00:00Z"}  # fmt: skip
    first = fed(driver, record("marketing_contacts", "c", "2024-01-10T09:00:00Z", contact))
    both = ("prospecting", "mailing_lists")
    contacts, key = "public.marketing_contacts", (("id", 3),)
    # legitimate interest: 36 months after the latest contact
    assert first.dues == (
        DueChange(contacts, key, "customer:42", micros("2027-01-10T09:00:00Z"),
                  micros("2024-01-10T09:00:00Z"), both, None, first=True),
    )  # fmt: skip
    message = fed(
        driver,
        record("support_tickets", "c", "2024-06-01T12:00:00Z", ticket("2024-06-01T12:00:00Z")),
    )
    assert message.dues == (
        DueChange(TICKETS, TICKET_KEY, "customer:42", micros("2025-06-01T12:00:00Z"),
                  micros("2024-06-01T12:00:00Z"), SUPPORT, None, first=True),
        DueChange(contacts, key, "customer:42", micros("2027-06-01T12:00:00Z"),
                  micros("2024-06-01T12:00:00Z"), both, micros("2027-01-10T09:00:00Z")),
    )  # fmt: skip


def test_a_hold_that_departs_gives_its_subjects_rows_their_due_back(demo_engine: Engine):
    """The worker's half of a move: the hold moved to a customer held in another partition."""
    driver = Driver(demo_engine, MemoryStore())
    hold = {"id": 9, "customer_id": 7, "case_ref": "X", "released_at": None}
    recording = {"id": 3, "customer_id": 7, "agent_id": 1, "audio_ref": "r",
                 "recorded_at": "2024-01-01T00:00:00Z", "objected": False}  # fmt: skip
    fed(driver, record("legal_holds", "c", "2024-01-01T00:00:00Z", hold))
    seen = fed(driver, record("call_recordings", "c", "2024-01-01T00:00:00Z", recording))
    recordings, key = "public.call_recordings", (("id", 3),)
    assert seen.dues == (
        DueChange(recordings, key, "customer:7", None, micros("2024-01-01T00:00:00Z"),
                  ("support_training",), None, first=True),
    )  # fmt: skip
    departed = driver.depart(
        "public.legal_holds", (("id", 9),), "customer:7", micros("2024-09-02T00:00:00Z")
    )
    # recorded + P6M
    assert departed.dues == (
        DueChange(recordings, key, "customer:7", micros("2024-07-01T00:00:00Z"),
                  micros("2024-09-02T00:00:00Z"), ("support_training",), None),
    )  # fmt: skip


def test_a_command_sent_again_moves_no_due(demo_policy: Policy):
    driver = Driver(Engine.compile(demo_policy, confirm_after=3_600_000_000), MemoryStore())
    log = {"id": 1, "customer_id": 5, "ip_address": "192.0.2.1",
           "logged_at": "2024-06-15T08:30:00Z"}  # fmt: skip
    fed(driver, record("connection_logs", "c", "2024-06-15T08:30:00Z", log))
    issued = driver.advance(micros("2025-06-15T08:30:00Z"))
    assert [c.stage for c in issued.commands] == ["delete"]
    assert [(d.due, d.previous) for d in issued.dues] == [(None, micros("2025-06-15T08:30:00Z"))]
    again = driver.advance(micros("2025-06-15T09:30:00Z"))  # an hour unconfirmed
    assert [c.attempt for c in again.commands] == [2]
    assert again.dues == ()
