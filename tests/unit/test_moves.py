"""A row that moves to another subject, as the worker sees it: its event arrives at the new
subject's partition (another driver, another store) as a row never seen, and its old
partition forgets it (`Driver.depart`). `lethe simulate` moves it in one driver, keeping
its issued stages. What is already anonymous is not anonymised again; a delete is never
skipped.

Instants worked out by hand from the demo policy: a satisfaction survey is anonymised a
year after `submitted_at` (customer_id, respondent_email, comments emptied, submitted_at
to the start of its month); a DPO request is archived at `answered_at`, its id_proof_ref
emptied a year after, the request deleted five years after.
"""

from __future__ import annotations

from typing import Any

import pytest

from policy.driver import Driver, Outcome
from policy.engine import Engine
from policy.events import ChangeEvent
from policy.model import Policy
from policy.simulation import decode_line
from policy.store import MemoryStore
from tests.unit.conftest import micros, record

SURVEYS = "public.satisfaction_surveys"
SURVEY_STAGE = "anonymise:satisfaction_surveys:0"
SURVEY = {"id": 5, "customer_id": 42, "respondent_email": "ann@example.org", "score": 7,
          "comments": "fine", "submitted_at": "2024-03-17T10:20:30Z"}  # fmt: skip
ANONYMISED = {**SURVEY, "customer_id": None, "respondent_email": None, "comments": None,
              "submitted_at": "2024-03-01T00:00:00Z"}  # fmt: skip
FAR = micros("2100-01-01T00:00:00Z")


def driver_of(policy: Policy) -> Driver:
    return Driver(Engine.compile(policy), MemoryStore())


def event_of(driver: Driver, table: str, op: str, at: str, row: Any) -> ChangeEvent:
    event = decode_line(driver.engine, record(table, op, at, row))
    assert isinstance(event, ChangeEvent), event
    return event


def fed(driver: Driver, table: str, op: str, at: str, row: Any) -> Outcome:
    return driver.feed(event_of(driver, table, op, at, row))


def sent(*outcomes: Outcome) -> list[tuple[str, str, int]]:
    """(action, stage, due) of each command."""
    return [(c.action.value, c.stage, c.due_at) for o in outcomes for c in o.commands]


def test_a_survey_its_anonymise_moved_to_no_subject_is_not_anonymised_again(
    demo_policy: Policy,
):
    """The anonymise empties customer_id: the survey leaves `customer:42` for no subject, in
    another partition, with submitted_at coarsened to 2024-03-01, so the stage would fall
    due again at 2025-03-01 (another due, another command id). It is taken as done."""
    old, new = driver_of(demo_policy), driver_of(demo_policy)
    fed(old, "satisfaction_surveys", "c", "2024-03-17T10:20:30Z", SURVEY)
    issued = old.advance(micros("2025-03-17T10:20:30Z"))
    assert sent(issued) == [("anonymise", SURVEY_STAGE, micros("2025-03-17T10:20:30Z"))]

    moving = event_of(new, "satisfaction_surveys", "u", "2025-03-17T10:21:00Z", ANONYMISED)
    arrived = new.feed(moving)
    departed = old.depart(SURVEYS, (("id", 5),), "customer:42", moving.ts, moved_by=moving)

    assert sent(arrived, new.advance(FAR), old.advance(FAR)) == []
    assert [c.command for c in departed.confirmations] == list(issued.commands)
    row = new.store.row((None, SURVEYS, (("id", 5),)))
    assert row is not None and row.issued == {SURVEY_STAGE} and row.unconfirmed == ()
    assert arrived.confirmations == ()


def test_lethe_simulate_moves_the_survey_with_its_anonymise_and_agrees(demo_policy: Policy):
    driver = driver_of(demo_policy)
    fed(driver, "satisfaction_surveys", "c", "2024-03-17T10:20:30Z", SURVEY)
    issued = driver.advance(micros("2025-03-17T10:20:30Z"))
    moved = fed(driver, "satisfaction_surveys", "u", "2025-03-17T10:21:00Z", ANONYMISED)
    assert sent(issued, moved, driver.advance(FAR)) == [
        ("anonymise", SURVEY_STAGE, micros("2025-03-17T10:20:30Z"))
    ]


@pytest.mark.parametrize(
    "left",
    [
        {"submitted_at": "2024-03-17T00:00:00Z"},  # coarsened to the day, not the month
        {"comments": "still here"},
        {"respondent_email": "ann@example.org"},
    ],
)
def test_a_row_first_seen_with_personal_data_left_is_anonymised(
    demo_policy: Policy, left: dict[str, Any]
):
    """customer_id emptied by hand after the survey was due: anonymised at once, as any
    overdue row first seen (due a year after the submission it holds)."""
    driver = driver_of(demo_policy)
    row = {**ANONYMISED, **left}
    due = "2025-03-17T00:00:00Z" if "submitted_at" in left else "2025-03-01T00:00:00Z"
    fed(driver, "satisfaction_surveys", "c", "2025-04-02T09:00:00Z", row)
    outcome = driver.advance(micros("2025-04-02T09:00:00Z"))
    assert sent(outcome) == [("anonymise", SURVEY_STAGE, micros(due))]
    assert [c.issued_at for c in outcome.commands] == [micros("2025-04-02T09:00:00Z")]


def test_an_anonymous_row_not_due_yet_is_anonymised_at_its_due_if_it_changed(
    demo_policy: Policy,
):
    """Already anonymous when first seen, but due only on 2025-03-01: nothing is taken as
    done before its due, so comments written meanwhile are emptied then."""
    driver = driver_of(demo_policy)
    fed(driver, "satisfaction_surveys", "c", "2024-03-05T09:00:00Z", ANONYMISED)
    changed = {**ANONYMISED, "comments": "written later"}
    fed(driver, "satisfaction_surveys", "u", "2024-06-01T09:00:00Z", changed)
    assert sent(driver.advance(FAR)) == [
        ("anonymise", SURVEY_STAGE, micros("2025-03-01T00:00:00Z"))
    ]


DPO = {"id": 3, "customer_id": 42, "request_text": "what do you hold?", "answer_text": "this",
       "id_proof_ref": None, "received_at": "2010-01-10T00:00:00Z",
       "answered_at": "2010-03-01T00:00:00Z"}  # fmt: skip


def test_an_id_proof_emptied_before_first_sight_is_not_emptied_again_the_rest_runs(
    demo_policy: Policy,
):
    """A DPO request first seen on 2013-01-01 with its ID proof already emptied: archive
    (due 2010-03-01) issued at once, the anonymise (due 2011-03-01) taken as done, the
    delete at 2015-03-01."""
    driver = driver_of(demo_policy)
    first = fed(driver, "dpo_requests", "c", "2013-01-01T00:00:00Z", DPO)
    assert sent(first, driver.advance(FAR)) == [
        ("archive", "archive", micros("2010-03-01T00:00:00Z")),
        ("delete", "delete", micros("2015-03-01T00:00:00Z")),
    ]


def test_a_row_first_seen_past_its_delete_is_deleted_whatever_it_holds(demo_policy: Policy):
    driver = driver_of(demo_policy)
    fed(driver, "dpo_requests", "c", "2016-01-01T00:00:00Z", DPO)
    assert sent(driver.advance(FAR)) == [("delete", "delete", micros("2015-03-01T00:00:00Z"))]
