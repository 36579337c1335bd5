"""Properties of the engine over generated streams (hypothesis).

- later activity never brings a sliding deadline earlier;
- no command is ever issued for a held subject;
- after a hold's release (by update, delete or a move to another customer), no subject
  stays held without an open hold row naming it;
- legal-obligation rules never fire early;
- the audit's story of each row's next due (`tracked`, then `scheduled` from the due told
  last) is always the due the row really has.

(That `lethe simulate` prints the same bytes whatever the hash seed is checked in
test_sample_output.py, with two processes.)
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.driver import Driver, Outcome
from policy.due_changes import stage_due
from policy.engine import Engine, next_due
from policy.events import ChangeEvent, Key
from policy.simulation import decode_line, simulate
from policy.state import Command, SubjectState
from policy.store import MemoryStore, RowId
from tests.unit.conftest import load_demo_policy, record

ENGINE: Engine = Engine.compile(load_demo_policy())
START = datetime(2020, 1, 1, tzinfo=UTC)
FAR = int(datetime(2045, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def plus_years(moment: datetime, years: int) -> datetime:
    """An oracle for `+ PnY`: same month and day, 29 February falling back to the 28th."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)


# --- generated streams --------------------------------------------------------------------

seconds = st.integers(min_value=0, max_value=400 * 86400)
past = st.one_of(st.none(), st.integers(min_value=0, max_value=4 * 365 * 86400))


@st.composite
def streams(draw: st.DrawFn, holds: bool = True) -> list[str]:
    """A stream of creates, updates and deletes over the demo tables, clock moving forward."""
    now = START
    lines: list[str] = []
    for _ in range(draw(st.integers(min_value=1, max_value=25))):
        now += timedelta(seconds=draw(seconds))
        table = draw(st.sampled_from(TABLES if holds else TABLES[:-1]))
        row_id = draw(st.integers(min_value=1, max_value=4))
        customer = draw(st.integers(min_value=1, max_value=3))

        def instant(offset: int | None, now: datetime = now) -> str | None:
            return None if offset is None else iso(now - timedelta(seconds=offset))

        row = ROWS[table](row_id, customer, instant, draw)
        op = draw(st.sampled_from(["c", "u", "r", "r", "d"] if table != "legal_holds" else "cu"))
        if op == "d":
            lines.append(record(table, "d", iso(now), before={"id": row_id}))
        else:
            lines.append(record(table, op, iso(now), row))
    return lines


def _row(columns: dict[str, object]) -> dict[str, object]:
    return columns


ROWS = {
    "customers": lambda i, c, t, d: {"id": c, "closed_at": t(d(past))},
    "support_tickets": lambda i, c, t, d: {
        "id": i,
        "customer_id": c,
        "last_message_at": t(d(past)) or t(0),
    },
    "orders": lambda i, c, t, d: {"id": i, "customer_id": c, "ordered_at": t(d(past)) or t(0)},
    "invoices": lambda i, c, t, d: {"id": i, "customer_id": c, "issued_at": t(d(past)) or t(0)},
    "dpo_requests": lambda i, c, t, d: {"id": i, "customer_id": c, "answered_at": t(d(past))},
    "payment_defaults": lambda i, c, t, d: {
        "id": i,
        "customer_id": c,
        "defaulted_at": t(d(past)) or t(0),
    },
    "marketing_contacts": lambda i, c, t, d: {
        "id": i,
        "customer_id": c,
        "email": f"m{i}@example.org",
        "basis": d(st.sampled_from(["consent", "legitimate_interest"])),
        "consent_withdrawn_at": t(d(past)),
        "objected_at": t(d(past)),
        "last_contact_at": t(d(past)),
    },
    "call_recordings": lambda i, c, t, d: {
        "id": i,
        "customer_id": c,
        "recorded_at": t(d(past)) or t(0),
        "objected": d(st.booleans()),
    },
    "legal_holds": lambda i, c, t, d: {
        "id": i,
        "customer_id": c,
        "released_at": d(st.sampled_from([None, t(0)])),
    },
}
TABLES = list(ROWS)


# --- properties ----------------------------------------------------------------------------


@SETTINGS
@given(
    last_contact=past,
    messages=st.lists(st.tuples(seconds, past), min_size=1, max_size=12),
    table=st.sampled_from(["support_tickets", "orders"]),
)
def test_later_activity_never_brings_a_sliding_deadline_earlier(
    last_contact: int | None, messages: list[tuple[int, int | None]], table: str
):
    simulator = Driver(ENGINE, MemoryStore())
    now = START + timedelta(days=5 * 365)
    own_contact = None if last_contact is None else iso(now - timedelta(seconds=last_contact))
    contact = {
        "id": 1, "customer_id": 42, "email": "m@example.org", "basis": "legitimate_interest",
        "last_contact_at": own_contact,
    }  # fmt: skip
    ticket_id = 1
    simulator_feed(simulator, record("marketing_contacts", "c", iso(now), contact))
    contact_id = ("customer:42", "public.marketing_contacts", (("id", 1),))
    ticket_key = ("customer:42", "public.support_tickets", (("id", ticket_id),))
    deadline = deadline_of(simulator, contact_id)
    ticket_deadline = None
    column = "last_message_at" if table == "support_tickets" else "ordered_at"
    for step, offset in messages:
        now += timedelta(seconds=step)
        moment = iso(now - timedelta(seconds=offset or 0))
        row = {"id": ticket_id, "customer_id": 42, column: moment}
        simulator_feed(simulator, record(table, "u", iso(now), row))
        later = deadline_of(simulator, contact_id)
        if deadline is not None:
            assert later is not None and later >= deadline
        deadline = later
        if table == "support_tickets" and offset is None:
            # the ticket's own clock slides forward with each newer message
            own = deadline_of(simulator, ticket_key)
            assert own is not None
            if ticket_deadline is not None:
                assert own >= ticket_deadline
            ticket_deadline = own


def simulator_feed(simulator: Driver, line: str) -> list[Command]:
    event = decode_line(ENGINE, line)
    assert isinstance(event, ChangeEvent), event
    return list(simulator.feed(event).commands)


def deadline_of(simulator: Driver, row_id: RowId) -> int | None:
    """The row's next deadline as if nothing had been issued yet."""
    stored = simulator.store.row(row_id)
    assert stored is not None
    return next_due(
        ENGINE, replace(stored, issued=frozenset()), simulator.store.subject("customer:42")
    )


@SETTINGS
@given(stream=streams(holds=False), release=st.booleans())
def test_no_command_is_issued_for_a_held_subject(stream: list[str], release: bool):
    hold = record("legal_holds", "c", iso(START),
                  {"id": 99, "customer_id": 2, "released_at": None})  # fmt: skip
    lines = [hold, *stream]
    released_at = None
    if release:
        released_at = datetime(2030, 6, 1, tzinfo=UTC)
        released = {"id": 99, "customer_id": 2, "released_at": iso(released_at)}
        lines.append(record("legal_holds", "u", iso(released_at), released))
    commands = simulate(ENGINE, lines, FAR).commands
    held = [c for c in commands if c.subject == "customer:2"]
    if released_at is None:
        assert held == []
    else:
        assert all(c.issued_at >= int(released_at.timestamp()) * 1_000_000 for c in held)


@SETTINGS
@given(data=st.data())
def test_no_subject_stays_held_without_an_open_hold_row_naming_it(data: st.DataObject):
    simulator = Driver(ENGINE, MemoryStore())
    customers = (1, 2, 3)
    commands: list[Command] = []
    for customer in customers:  # each has a recording due 2020-07-01 (recorded + P6M)
        simulator_feed(simulator, record("call_recordings", "c", iso(START),
                       {"id": customer, "customer_id": customer, "recorded_at": iso(START),
                        "objected": False}))  # fmt: skip
    holds: dict[int, tuple[int | None, bool]] = {}  # the database's: id -> (customer_id, open)
    held_since: dict[int, datetime] = {}
    now = START
    for _ in range(data.draw(st.integers(min_value=1, max_value=20))):
        now += timedelta(seconds=data.draw(seconds))
        hold = data.draw(st.integers(min_value=1, max_value=3))
        if hold in holds and data.draw(st.integers(min_value=0, max_value=3)) == 0:
            commands += simulator_feed(
                simulator, record("legal_holds", "d", iso(now), before={"id": hold})
            )
            del holds[hold]
        else:
            customer = data.draw(st.sampled_from([*customers, None]))
            is_open = data.draw(st.booleans())
            row = {"id": hold, "customer_id": customer,
                   "released_at": None if is_open else iso(now)}  # fmt: skip
            commands += simulator_feed(
                simulator, record("legal_holds", "u" if hold in holds else "c", iso(now), row)
            )
            holds[hold] = (customer, is_open)
        for customer in customers:
            naming = {
                f"public.legal_holds:{h}" for h, (c, o) in holds.items() if o and c == customer
            }
            state = simulator.store.subject(f"customer:{customer}") or SubjectState()
            assert state.holds == naming, (customer, holds)
            if not naming:
                held_since.pop(customer, None)
            else:
                held_since.setdefault(customer, now)
    commands += simulator.advance(FAR).commands
    deleted = {c.subject: c.issued_at for c in commands}
    for customer in customers:
        subject = f"customer:{customer}"
        if customer in held_since:  # held to the end: deleted only before this hold began
            since = int(held_since[customer].timestamp()) * 1_000_000
            assert subject not in deleted or deleted[subject] <= since
        else:
            assert subject in deleted


LEGAL = {
    "public.orders": ("ordered_at", 10),
    "public.invoices": ("issued_at", 10),
    "public.payment_defaults": ("defaulted_at", 5),
    "public.dpo_requests": ("answered_at", 5),
}


@SETTINGS
@given(stream=streams())
def test_legal_obligation_rules_never_fire_early(stream: list[str]):
    starts: dict[tuple[str, object], set[int]] = {}
    started: dict[tuple[str, object], set[int]] = {}  # the instants the clocks run from
    for line in stream:
        document = json.loads(line)
        table = "public." + document["topic"].split(".")[-1]
        if table in LEGAL and document["value"]["op"] != "d":
            column, years = LEGAL[table]
            start = document["value"]["after"][column]
            if start is not None:
                end = plus_years(datetime.fromisoformat(start), years)
                starts.setdefault((table, document["key"]["id"]), set()).add(
                    int(end.timestamp()) * 1_000_000
                )
                started.setdefault((table, document["key"]["id"]), set()).add(
                    int(datetime.fromisoformat(start).timestamp()) * 1_000_000
                )
    for command in simulate(ENGINE, stream, FAR).commands:
        if command.table in LEGAL:
            assert command.action.value in ("archive", "delete", "anonymise")
            if command.action.value == "archive":
                # only "5 years in archive after handling": archived at the answer
                assert command.table == "public.dpo_requests"
                assert command.due_at in started[(command.table, command.key[0][1])]
                assert command.issued_at >= command.due_at
            if command.action.value == "delete":
                # due exactly at one of the row's start + period, issued no earlier
                assert command.due_at in starts[(command.table, command.key[0][1])]
                assert command.issued_at >= command.due_at


RESENDING: Engine = Engine.compile(load_demo_policy(), confirm_after=86_400_000_000)
"""The demo policy re-issuing a command unconfirmed for a day."""


@SETTINGS
@given(stream=streams(), engine=st.sampled_from([ENGINE, RESENDING]), lagging=st.booleans())
def test_the_dues_told_follow_each_row_from_its_first_sight_to_its_end(
    stream: list[str], engine: Engine, lagging: bool
):
    """Every row stored with rules was told `first`; every later change starts from the due
    told last and differs from it; the due told last is the one the row has (no change
    missed, none told twice, re-issues aside): a privacy officer can replay a row's schedule
    from the audit. `lagging`: as the worker, whose inputs are processed up to the event
    before (a stage waits for its bound)."""
    driver = Driver(engine, MemoryStore())
    store = driver.store
    assert isinstance(store, MemoryStore)
    told: dict[tuple[str, Key], tuple[str | None, int | None]] = {}

    def follow(outcome: Outcome) -> None:
        for change in outcome.dues:
            where = (change.table, change.key)
            if change.first:
                assert change.previous is None
            else:
                assert where in told, change
                assert told[where] == (change.subject, change.previous), change
                assert change.previous != change.due, change
            told[where] = (change.subject, change.due)
        for subject, table, key in list(store.row_ids()):
            if not engine.plans[table].purposes:
                continue
            row = store.row((subject, table, key))
            assert row is not None
            state = store.subject(subject) if subject is not None else None
            assert told.get((table, key)) == (subject, stage_due(engine, row, state)), key
        stored = {(table, key) for _, table, key in store.row_ids()}
        for where in [where for where in told if where not in stored]:
            del told[where]  # deleted: a row seen again is told `first` again

    processed: int | None = None
    for line in stream:
        event = decode_line(engine, line)
        assert isinstance(event, ChangeEvent), event
        bounds = None
        if lagging:
            bounds = {} if processed is None else dict.fromkeys(engine.plans, processed)
        follow(driver.feed(event, bounds))
        processed = event.ts
    follow(driver.advance(FAR, dict.fromkeys(engine.plans, FAR) if lagging else None))
