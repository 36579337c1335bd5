"""Confirmation from the change stream and re-issue of what stays unconfirmed (pure core).

Instants are worked out by hand from the demo policy: a connection log is deleted a year
after `logged_at` (connection_log_retention P1Y), a satisfaction survey anonymised a year
after `submitted_at` (customer_id, respondent_email, comments emptied, submitted_at to its
month), a support ticket archived a year after its last message and deleted five years after.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from policy.driver import Driver, HoldChange, Outcome
from policy.engine import Engine
from policy.events import ChangeEvent
from policy.model import Policy
from policy.simulation import decode_line, simulate
from policy.state import Command, RowState, StateFormatError, Unconfirmed
from policy.store import MemoryStore
from tests.unit.conftest import micros, record

HOUR = 3_600_000_000
DAY = 24 * HOUR
LOG = {"id": 1, "customer_id": 42, "ip_address": "192.0.2.41", "logged_at": "2024-06-15T08:30:00Z"}
SURVEY = {"id": 5, "customer_id": 42, "respondent_email": "ann@example.org", "score": 7,
          "comments": "fine", "submitted_at": "2024-03-17T10:20:30Z"}  # fmt: skip
ANONYMISED = {**SURVEY, "customer_id": None, "respondent_email": None, "comments": None,
              "submitted_at": "2024-03-01T00:00:00Z"}  # fmt: skip


def driver_of(policy: Policy, confirm_after: int | None) -> Driver:
    return Driver(Engine.compile(policy, confirm_after=confirm_after), MemoryStore())


def fed(driver: Driver, table: str, op: str, at: str, row: Any = None, **kw: Any) -> Outcome:
    event = decode_line(driver.engine, record(table, op, at, row, **kw))
    assert isinstance(event, ChangeEvent), event
    return driver.feed(event)


def sends(outcome: Outcome) -> list[tuple[str, str, int, int | None]]:
    """(action, command id, attempt, reissued_at) of each command sent."""
    return [(c.action.value, c.command_id, c.attempt, c.reissued_at) for c in outcome.commands]


def log_delete_issued(
    policy: Policy, sweep_at: str = "2025-06-15T08:30:00Z"
) -> tuple[Driver, Command]:
    """A driver (T an hour) fed LOG's create and swept at `sweep_at`: the delete it issued."""
    driver = driver_of(policy, HOUR)
    fed(driver, "connection_logs", "c", "2024-06-15T08:30:00Z", LOG)
    (delete,) = driver.advance(micros(sweep_at)).commands
    return driver, delete


def survey_anonymise_issued(policy: Policy) -> tuple[Driver, Command]:
    """A driver (T a day) fed SURVEY's create and swept at its due: the anonymise it issued."""
    driver = driver_of(policy, DAY)
    fed(driver, "satisfaction_surveys", "c", "2024-03-17T10:20:30Z", SURVEY)
    (anonymise,) = driver.advance(micros("2025-03-17T10:20:30Z")).commands
    return driver, anonymise


def test_a_delete_is_confirmed_by_the_rows_delete_event_and_never_sent_again(
    demo_policy: Policy,
):
    driver = driver_of(demo_policy, HOUR)
    fed(driver, "connection_logs", "c", "2024-06-15T08:30:00Z", LOG)
    issued = driver.advance(micros("2025-06-15T08:30:00Z")).commands
    assert [(c.action.value, c.issued_at, c.attempt) for c in issued] == [
        ("delete", micros("2025-06-15T08:30:00Z"), 1)
    ]
    outcome = fed(driver, "connection_logs", "d", "2025-06-15T08:30:05Z", before={"id": 1})
    assert [(c.command, c.at, c.attempts) for c in outcome.confirmations] == [
        (issued[0], micros("2025-06-15T08:30:05Z"), 1)
    ]
    assert driver.advance(10**17).commands == ()


def test_an_unconfirmed_delete_is_reissued_with_its_id_after_t_2t_4t_8t_then_every_16t(
    demo_policy: Policy,
):
    driver, first = log_delete_issued(demo_policy)
    delete = first.command_id
    assert driver.advance(micros("2025-06-15T09:29:59Z")).commands == ()
    expected = [
        ("2025-06-15T09:30:00Z", 2),  # issued + T
        ("2025-06-15T11:30:00Z", 3),  # + 2T
        ("2025-06-15T15:30:00Z", 4),  # + 4T
        ("2025-06-15T23:30:00Z", 5),  # + 8T
        ("2025-06-16T15:30:00Z", 6),  # + 16T
        ("2025-06-17T07:30:00Z", 7),  # + 16T
    ]
    for at, attempt in expected:
        assert driver.advance(micros(at) - 1).commands == ()
        reissue = driver.advance(micros(at))
        assert sends(reissue) == [("delete", delete, attempt, micros(at))]
        (command,) = reissue.commands
        assert (command.issued_at, command.due_at) == (first.issued_at, first.due_at)
        assert command.to_json()["attempt"] == attempt
    confirmed = fed(driver, "connection_logs", "d", "2025-06-17T08:00:00Z", before={"id": 1})
    assert [(c.command.command_id, c.attempts) for c in confirmed.confirmations] == [(delete, 7)]
    assert driver.advance(10**17).commands == ()


def test_a_sweep_over_a_long_stretch_reissues_once_and_backs_off_from_then(
    demo_policy: Policy,
):
    """A manual clock advanced by ten days at once (or a worker stopped that long)."""
    driver, first = log_delete_issued(demo_policy)
    caught_up = driver.advance(micros("2025-06-25T08:30:00Z"))
    assert sends(caught_up) == [("delete", first.command_id, 2, micros("2025-06-25T08:30:00Z"))]
    assert driver.advance(micros("2025-06-25T10:29:59Z")).commands == ()
    assert sends(driver.advance(micros("2025-06-25T10:30:00Z"))) == [  # + 2T
        ("delete", first.command_id, 3, micros("2025-06-25T10:30:00Z"))
    ]


def test_a_stage_found_due_late_is_resent_from_when_it_was_sent(demo_policy: Policy):
    """Issued at its due (issued_at) by a sweep that ran a day later: T counts from the sweep."""
    driver, first = log_delete_issued(demo_policy, sweep_at="2025-06-16T08:30:00Z")
    assert first.issued_at == micros("2025-06-15T08:30:00Z")
    assert driver.advance(micros("2025-06-16T09:29:59Z")).commands == ()
    assert sends(driver.advance(micros("2025-06-16T09:30:00Z"))) == [
        ("delete", first.command_id, 2, micros("2025-06-16T09:30:00Z"))
    ]


def test_without_confirm_after_nothing_is_reissued(demo_policy: Policy):
    driver = driver_of(demo_policy, None)
    fed(driver, "connection_logs", "c", "2024-06-15T08:30:00Z", LOG)
    assert len(driver.advance(micros("2025-06-15T08:30:00Z")).commands) == 1
    assert driver.advance(10**17).commands == ()


def test_an_anonymise_is_confirmed_by_an_update_holding_the_anonymised_values(
    demo_policy: Policy,
):
    driver, anonymise = survey_anonymise_issued(demo_policy)
    assert anonymise.fields == ("customer_id", "respondent_email", "comments", "submitted_at")
    outcome = fed(driver, "satisfaction_surveys", "u", "2025-03-17T10:21:00Z", ANONYMISED)
    assert [(c.command, c.at) for c in outcome.confirmations] == [
        (anonymise, micros("2025-03-17T10:21:00Z"))
    ]
    assert driver.advance(micros("2026-03-01T00:00:00Z")).commands == ()


@pytest.mark.parametrize(
    "other",
    [
        {"submitted_at": "2024-03-17T00:00:00Z"},  # coarsened to the day, not the month
        {"comments": "still here"},
        {"score": 6, "respondent_email": "ann@example.org"},
    ],
)
def test_an_update_with_other_values_confirms_nothing_and_the_anonymise_is_reissued(
    demo_policy: Policy, other: dict[str, Any]
):
    driver, anonymise = survey_anonymise_issued(demo_policy)
    update = {**ANONYMISED, **other}
    outcome = fed(driver, "satisfaction_surveys", "u", "2025-03-17T10:21:00Z", update)
    assert (outcome.commands, outcome.confirmations, outcome.holds) == ((), (), ())
    assert driver.advance(micros("2025-03-18T10:20:29Z")).commands == ()
    reissue = driver.advance(micros("2025-03-18T10:20:30Z"))  # issued + T (a day)
    assert sends(reissue) == [
        ("anonymise", anonymise.command_id, 2, micros("2025-03-18T10:20:30Z"))
    ]
    assert reissue.commands[0].fields == anonymise.fields
    confirmed = fed(driver, "satisfaction_surveys", "u", "2025-03-18T10:20:31Z", ANONYMISED)
    assert [(c.command.command_id, c.attempts) for c in confirmed.confirmations] == [
        (anonymise.command_id, 2)
    ]


def test_the_event_that_moves_a_row_away_confirms_at_its_departure(demo_policy: Policy):
    """An anonymise that empties customer_id moves the survey to no subject: in the worker
    its event goes to another partition, and the old one's driver confirms on the depart."""
    driver, anonymise = survey_anonymise_issued(demo_policy)
    moving = decode_line(
        driver.engine, record("satisfaction_surveys", "u", "2025-03-17T10:21:00Z", ANONYMISED)
    )
    assert isinstance(moving, ChangeEvent)
    key = (("id", 5),)
    outcome = driver.depart(
        "public.satisfaction_surveys", key, "customer:42", moving.ts, moved_by=moving
    )
    assert [(c.command, c.at) for c in outcome.confirmations] == [
        (anonymise, micros("2025-03-17T10:21:00Z"))
    ]
    assert driver.store.locate("public.satisfaction_surveys", key) is None


def test_an_archive_waits_for_no_confirmation(demo_policy: Policy):
    driver = driver_of(demo_policy, HOUR)
    ticket = {"id": 7, "customer_id": 42, "last_message_at": "2020-05-04T12:00:00Z"}
    fed(driver, "support_tickets", "c", "2020-05-04T12:00:00Z", ticket)
    (archive,) = driver.advance(micros("2021-05-04T12:00:00Z")).commands
    assert archive.action.value == "archive"
    row = driver.store.row(("customer:42", "public.support_tickets", (("id", 7),)))
    assert row is not None and row.unconfirmed == ()
    assert driver.advance(micros("2025-05-04T11:59:59Z")).commands == ()


def test_the_unconfirmed_commands_round_trip_through_compact_bytes(demo_policy: Policy):
    driver = driver_of(demo_policy, HOUR)
    fed(driver, "connection_logs", "c", "2024-06-15T08:30:00Z", LOG)
    row_id = ("customer:42", "public.connection_logs", (("id", 1),))
    before = driver.store.row(row_id)
    assert before is not None
    driver.advance(micros("2025-06-15T08:30:00Z"))  # issued at 08:30
    driver.advance(micros("2025-06-15T09:30:00Z"))  # re-issued at 09:30
    row = driver.store.row(row_id)
    assert row is not None
    issued, resent = micros("2025-06-15T08:30:00Z"), micros("2025-06-15T09:30:00Z")
    assert row.unconfirmed == (Unconfirmed("delete", issued, issued, 2, resent),)
    data = row.to_bytes()
    assert RowState.from_bytes(data) == row
    assert data.endswith(b',[["delete",1749976200000000,1749976200000000,2,1749979800000000,[]]]]')
    assert len(data) - len(before.to_bytes()) < 80  # "delete" issued, and one entry
    assert len(orjson.loads(before.to_bytes())) == 6  # nothing unconfirmed: no seventh item
    # a row state of format 2 (before confirmation was kept) reads as nothing unconfirmed
    old = b'[2,"public.connection_logs",[["id",1]],"customer:42",{},["delete"]]'
    assert RowState.from_bytes(old).unconfirmed == ()
    with pytest.raises(StateFormatError):
        RowState.from_bytes(b'[2,"t",[],null,{},[],[["delete",1,1,1,1,[]]]]')
    with pytest.raises(StateFormatError):
        RowState.from_bytes(b'[3,"t",[],null,{},[],[["delete","soon",1,1,1,[]]]]')


def test_a_hold_opened_and_released_is_reported(demo_policy: Policy):
    driver = driver_of(demo_policy, HOUR)
    hold = {"id": 9, "customer_id": 7, "case_ref": "X", "released_at": None}
    opened = fed(driver, "legal_holds", "c", "2024-01-01T00:00:00Z", hold)
    closed = {**hold, "released_at": "2024-02-01T00:00:00Z"}
    released = fed(driver, "legal_holds", "u", "2024-02-01T00:00:00Z", closed)
    key = (("id", 9),)
    assert opened.holds == (
        HoldChange("public.legal_holds", key, "customer:7", True, micros("2024-01-01T00:00:00Z")),
    )
    assert released.holds == (
        HoldChange("public.legal_holds", key, "customer:7", False, micros("2024-02-01T00:00:00Z")),
    )


def test_lethe_simulate_with_confirm_after_prints_the_reissues(demo_policy: Policy):
    lines = [record("connection_logs", "c", "2024-06-15T08:30:00Z", LOG)]
    engine = Engine.compile(demo_policy, confirm_after=HOUR)
    result = simulate(engine, lines, micros("2025-06-15T12:00:00Z"))
    printed = [
        (c["issued_at"], c.get("attempt"), c.get("reissued_at"))
        for c in (command.to_json() for command in result.commands)
    ]
    assert printed == [
        ("2025-06-15T08:30:00Z", None, None),
        ("2025-06-15T08:30:00Z", 2, "2025-06-15T09:30:00Z"),
        ("2025-06-15T08:30:00Z", 3, "2025-06-15T11:30:00Z"),
    ]
    assert len({command.command_id for command in result.commands}) == 1


def test_nothing_is_reissued_while_the_subject_is_held(demo_policy: Policy):
    driver, first = log_delete_issued(demo_policy)
    hold = {"id": 9, "customer_id": 42, "case_ref": "X", "released_at": None}
    fed(driver, "legal_holds", "c", "2025-06-15T09:00:00Z", hold)
    assert driver.advance(micros("2025-06-15T12:00:00Z")).commands == ()  # 09:30 passed, held
    closed = {**hold, "released_at": "2025-06-15T12:00:00Z"}
    fed(driver, "legal_holds", "u", "2025-06-15T12:00:00Z", closed)
    assert sends(driver.advance(micros("2025-06-15T12:00:00Z"))) == [
        ("delete", first.command_id, 2, micros("2025-06-15T12:00:00Z"))
    ]
