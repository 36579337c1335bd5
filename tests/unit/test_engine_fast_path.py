"""The engine's shortcut to a row's next due equals the earliest due of its full stages.

`apply` works out a row's next due without building its stages (`SourcePlan.upcoming`)
and carries it in the row state; `due` and `next_due` trust it and build the stages only
once that due has come. A shortcut later than the earliest stage would delay a command
without a trace, an earlier one would wake the row for nothing. Policies here are random
(several rules per source; archive, anonymise and delete stages; clocks from columns, at
once and the subject's activity, `after` periods, earliest/latest, when/else conditions;
rules that need only some columns), written as policy files and built by the real loader.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from itertools import combinations
from typing import Any

from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from lethe.policy_file import policy_schema
from policy.engine import Engine, apply, due, next_due
from policy.events import ChangeEvent, Op, Value
from policy.instants import from_datetime, to_datetime
from policy.loader import load_policy_text, parse_policy
from policy.model import Policy
from policy.plans import SourcePlan
from policy.state import RowState, StateValue, SubjectState
from tests.unit.conftest import cmd, record, run

SCHEMA = policy_schema()
TABLE = "public.rows"
HOLD = "public.holds:1"
PURPOSES = ("p0", "p1", "p2", "p3")
COLUMNS = {
    "id": "bigint",
    "customer_id": "bigint",
    "t1": "timestamptz",
    "t2": "timestamptz",
    "t3": "timestamptz",
    "d1": "date",
    "flag": "boolean",
    "kind": "text",
    "n": "integer",
    "note": "text",
    "email": "text",
    "score": "integer",
}
INSTANT_COLUMNS = ("t1", "t2", "t3", "d1")
FIELDS = ("note", "email", "score", "kind", "t2")
NEEDS = ("t1", "t2", "t3", "d1", "flag", "kind", "n", "note", "email", "score")
ACTIONS = (
    ("archive", "delete"), ("delete",), ("archive", "anonymise", "delete"), ("anonymise", "delete"),
    ("archive", "delete"), ("anonymise",), ("archive", "anonymise"),
)  # fmt: skip
"""The stages a rule may have (one that only archives keeps its rows forever: refused)."""
PERIODS = ("PT12H", "P1D", "P30D", "P1M", "P6M", "P12M", "P1Y", "P13M", "P365D", "P2Y", "P5Y")
ORDERED_PERIODS = (
    "PT12H", "P1D", "P30D", "P1M", "P6M", "P365D", "P1Y", "P1YT1S", "P1YT12H", "P13M", "P2Y", "P5Y",
)  # fmt: skip
BASE = datetime(2020, 1, 1, tzinfo=UTC)
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# --- random policies -----------------------------------------------------------------------

periods = st.one_of(st.sampled_from(PERIODS), st.just({"parameter": "limitation"}))

conditions = st.recursive(
    st.one_of(
        st.builds(lambda c: {"set": c}, st.sampled_from(NEEDS)),
        st.builds(lambda v: {"equals": {"flag": v}}, st.booleans()),
        st.builds(lambda v: {"equals": {"kind": v}}, st.sampled_from(["a", "b"])),
        st.builds(lambda v: {"equals": {"n": v}}, st.integers(0, 2)),
    ),
    lambda inner: st.one_of(
        st.builds(lambda c: {"not": c}, inner),
        st.builds(lambda cs: {"all": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda cs: {"any": cs}, st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=4,
)


def _when(condition: Any, then: Any, otherwise: Any) -> dict[str, Any]:
    clock = {"when": condition, "then": then}
    if otherwise is not None:
        clock["else"] = otherwise
    return clock


clocks = st.recursive(
    st.one_of(
        st.sampled_from(INSTANT_COLUMNS),
        st.just("at_once"),
        st.builds(lambda a: {"activity": a}, st.sampled_from(["contact", "order"])),
    ),
    lambda inner: st.one_of(
        st.builds(lambda p, c: {"after": p, "from": c}, periods, inner),
        st.builds(lambda cs: {"earliest": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda cs: {"latest": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(_when, conditions, inner, st.none() | inner),
    ),
    max_leaves=5,
)
# most stages in practice: a period after a column, so dues of different rules often tie
simple_clocks = st.builds(
    lambda p, c: {"after": p, "from": c}, st.sampled_from(PERIODS), st.sampled_from(INSTANT_COLUMNS)
)
stage_clocks = st.one_of(simple_clocks, clocks)


@st.composite
def rules(draw: st.DrawFn, purpose: str, common: Any) -> dict[str, Any]:
    """A rule; often, as in real policies, its stages count periods from one start (often
    the one `common` to several rules), the shorter ones before the delete."""
    actions = draw(st.sampled_from(ACTIONS))
    start = draw(st.one_of(st.none(), st.just(common), st.sampled_from(INSTANT_COLUMNS), clocks))
    lengths = draw(st.lists(st.sampled_from(ORDERED_PERIODS), min_size=3, max_size=3, unique=True))
    shorter, short, longest = sorted(lengths, key=ORDERED_PERIODS.index)
    stages: list[dict[str, Any]] = []
    for action in draw(st.permutations(actions)):
        clock = draw(stage_clocks)
        if start is not None:
            period = longest if action == "delete" else (shorter, short)[len(stages) % 2]
            clock = {"after": period, "from": start}
        stage: dict[str, Any] = {"action": action, "due": clock}
        if action == "anonymise":
            stage["fields"] = draw(st.lists(st.sampled_from(FIELDS), min_size=1, unique=True))
        stages.append(stage)
    rule: dict[str, Any] = {"purpose": purpose, "stages": stages}
    needs = draw(_maybe(st.lists(st.sampled_from(NEEDS), min_size=1, max_size=3, unique=True)))
    if needs:
        rule["needs"] = needs
    return rule


@st.composite
def policy_files(draw: st.DrawFn) -> dict[str, Any]:
    """A policy file: `public.rows` with 1-4 random rules, a source feeding the subject's
    activities `contact` and `order`, and a hold source."""
    purposes = draw(st.lists(st.sampled_from(PURPOSES), min_size=1, max_size=4, unique=True))
    common = draw(st.one_of(st.sampled_from(INSTANT_COLUMNS), clocks))
    rows: dict[str, Any] = {
        "primary_key": ["id"],
        "subject": [{"kind": "customer", "column": "customer_id"}],
        "columns": COLUMNS,
        "rules": [draw(rules(purpose, common)) for purpose in purposes],
    }
    if draw(st.booleans()):  # the row's own clock column also feeds its subject's activity
        rows["activity"] = [{"activity": "contact", "column": "t3"}]
    customer = [{"kind": "customer", "column": "customer_id"}]
    return {
        "policy": "random",
        "topic_prefix": "shop",
        "parameters": {"limitation": {"default": draw(st.sampled_from(PERIODS))}},
        "purposes": {
            purpose: {
                "row": row,
                "section": "1",
                "title": purpose,
                "legal_basis": ["6.1b"],
                "data_categories": [],
                "recipients": [],
                "retention": "random",
            }
            for row, purpose in enumerate(PURPOSES, start=1)
        },
        "sources": {
            TABLE: rows,
            "public.contacts": {
                "primary_key": ["id"],
                "subject": customer,
                "columns": {"id": "bigint", "customer_id": "bigint", "at": "timestamptz"},
                "activity": [
                    {"activity": "contact", "column": "at"},
                    {"activity": "order", "column": "at"},
                ],
                "rules": [
                    {
                        "purpose": "p0",
                        "stages": [{"action": "delete", "due": {"after": "P1Y", "from": "at"}}],
                    }
                ],
            },
            "public.holds": {
                "primary_key": ["id"],
                "subject": customer,
                "columns": {"id": "bigint", "customer_id": "bigint", "released_at": "timestamptz"},
                "hold": {"released": "released_at"},
            },
        },
    }


def load(document: dict[str, Any]) -> Policy:
    """The generated policy through the real loader; only the stage-order check may refuse it
    (an archive or anonymise stage that surely falls due at or after the delete)."""
    text = json.dumps(document, indent=1)
    note(text)
    result = parse_policy(text, "random.yaml", SCHEMA)
    if not isinstance(result, Policy):
        assert all("not before the delete stage" in e.message for e in result), result
        assume(False)
    assert isinstance(result, Policy)
    return result


# --- random rows ---------------------------------------------------------------------------

# dues of different rules often fall at the same instant or close to each other
days = st.one_of(st.sampled_from([0, 1, 30, 31, 365, 366]), st.integers(0, 6 * 365))
seconds = st.one_of(st.sampled_from([0, 1, 43_200, 86_399]), st.integers(0, 86_399))
instants = st.builds(lambda d, s: BASE + timedelta(days=d, seconds=s), days, seconds)
NEAR = tuple(timedelta(seconds=s) for s in (0, 1, 43_200, 86_399, 86_400, -43_200, -86_400))


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Null a quarter of the time."""
    return st.integers(0, 3).flatmap(lambda n: st.none() if n == 0 else strategy)


@st.composite
def images(draw: st.DrawFn, key: int) -> dict[str, Value]:
    """A row image of `public.rows` as `decode_record` gives it; its instants are often
    close to each other."""
    base = draw(instants)
    moments = st.one_of(instants, st.sampled_from(NEAR).map(lambda offset: base + offset))
    image: dict[str, Value] = {
        "id": key,
        "customer_id": draw(_maybe(st.sampled_from([1, 2]))),
        "t1": draw(_maybe(moments)),
        "t2": draw(_maybe(moments)),
        "t3": draw(_maybe(moments)),
        "d1": draw(_maybe(moments.map(lambda moment: moment.date()))),
        "flag": draw(_maybe(st.booleans())),
        "kind": draw(_maybe(st.sampled_from(["a", "b", "c"]))),
        "n": draw(_maybe(st.integers(0, 2))),
        "note": draw(_maybe(st.just("personal text"))),
        "email": draw(_maybe(st.just("jo@example.org"))),
        "score": draw(_maybe(st.integers(0, 100))),
    }
    return image


def _state_value(value: Value) -> StateValue:
    """A column value as a row state keeps it (instants as µs), written out for the oracle."""
    if isinstance(value, datetime):
        return from_datetime(value)
    if isinstance(value, date):
        return from_datetime(datetime(value.year, value.month, value.day, tzinfo=UTC))
    assert value is None or isinstance(value, str | int | bool)
    return value


activities = st.dictionaries(
    st.sampled_from(["contact", "order"]), instants.map(from_datetime), max_size=2
)


def stage_ids(plan: SourcePlan) -> list[str]:
    """Every id a stage of this source can be issued under (see `policy.engine`)."""
    ids = ["archive", "delete"]
    for rule in plan.source.rules:
        ids += [f"anonymise:{rule.purpose}:{i}" for i, s in enumerate(rule.stages)
                if s.action.value == "anonymise"]  # fmt: skip
    purposes = sorted(plan.purposes)
    for size in range(1, len(purposes) + 1):
        ids += ["ended:" + ",".join(group) for group in combinations(purposes, size)]
    return ids


def issued_sets(plan: SourcePlan) -> st.SearchStrategy[frozenset[str]]:
    """Any stages already issued: each id half the time, `delete` (which ends the row's
    stages) a quarter."""
    ids = stage_ids(plan)
    return st.tuples(*(st.integers(0, 3) for _ in ids)).map(
        lambda draws: frozenset(
            i for i, d in zip(ids, draws, strict=True) if d == 0 or (d == 1 and i != "delete")
        )
    )


def earliest_stage(
    plan: SourcePlan,
    values: Mapping[str, StateValue],
    activity: Mapping[str, int],
    issued: frozenset[str],
) -> int | None:
    """The oracle: the earliest due among the row's full stages not issued yet."""
    pending, _ = plan.stages(values, activity, issued)
    return min((stage[0] for stage in pending), default=None)


# --- properties ----------------------------------------------------------------------------


@SETTINGS
@given(document=policy_files(), data=st.data())
def test_the_shortcut_equals_the_earliest_of_the_full_stages(
    document: dict[str, Any], data: st.DataObject
) -> None:
    """Any values (at-once marks included), activity and set of already issued stages."""
    plan = Engine.compile(load(document)).plans[TABLE]
    for case in range(data.draw(st.integers(1, 8), "rows")):
        image = data.draw(images(1), f"image {case}")
        values = {c: _state_value(image[c]) for c in plan.reads if image[c] is not None}
        for slot, _ in plan.at_once:
            since = data.draw(_maybe(instants), f"{slot} {case}")
            if since is not None:
                values[slot] = from_datetime(since)
        activity = data.draw(activities, f"activity {case}")
        issued = data.draw(issued_sets(plan), f"issued {case}")
        expected = earliest_stage(plan, values, activity, issued)
        assert plan.stages(values, activity, issued)[1] == expected
        assert plan.upcoming(values, activity, issued) == expected


@SETTINGS
@given(document=policy_files(), data=st.data())
def test_due_issues_each_stage_at_its_due_after_any_change(
    document: dict[str, Any], data: st.DataObject
) -> None:
    """A row created, woken at its dues, updated, woken again...: after every event, what
    `apply` says (or, while held, `next_due` once the hold is released) is the earliest due of
    the full stages, and `due` issues nothing a microsecond before it and a command at it."""
    engine = Engine.compile(load(document))
    plan = engine.plans[TABLE]
    row: RowState | None = None
    subject: SubjectState | None = None
    now = BASE
    for index in range(data.draw(st.integers(1, 4), "events")):
        now += timedelta(days=data.draw(st.integers(0, 900), f"days before event {index}"))
        image = data.draw(images(7), f"image {index}")
        held = data.draw(st.booleans(), f"held at event {index}")
        given_subject = SubjectState(
            data.draw(activities, f"activity at event {index}"),
            frozenset({HOLD}) if held else frozenset(),
        )
        event = ChangeEvent(TABLE, (("id", 7),), Op.CREATE if row is None else Op.UPDATE,
                            None, image, from_datetime(now))  # fmt: skip
        step = apply(engine, row, given_subject if image["customer_id"] else None, event)
        assert step.row is not None
        row, subject = step.row, step.subject
        released = None if subject is None else SubjectState(subject.activity, frozenset())
        activity = {} if released is None else released.activity
        expected = earliest_stage(plan, row.values, activity, row.issued)
        assert step.next_due == (None if held and subject is not None else expected)
        assert next_due(engine, row, released) == expected
        if released is not None and plan.reads_activity:  # another row moved the activity
            newer = data.draw(activities, f"newer activity {index}")
            later_contact = SubjectState(
                {**activity, **{k: max(t, activity.get(k, t)) for k, t in newer.items()}}
            )
            assert next_due(engine, row, later_contact) == earliest_stage(
                plan, row.values, later_contact.activity, row.issued
            )
        for _ in range(data.draw(st.integers(0, 3), f"wake-ups after event {index}")):
            if expected is None:
                break
            commands, same, later = due(engine, row, released, expected - 1)
            assert (commands, same, later) == ([], row, expected)
            commands, row, later = due(engine, row, released, expected)
            assert commands
            assert min(command.due_at for command in commands) == expected
            expected = earliest_stage(plan, row.values, activity, row.issued)
            assert later == expected
            if expected is not None:
                now = max(now, to_datetime(expected))


CLOSE = """\
policy: close
topic_prefix: shop
purposes:
  newsletter: {row: 10, section: "3", title: mailing lists, legal_basis: [6.1a],
               data_categories: [identity], recipients: [marketing], retention: 1 year}
  support: {row: 6, section: "2", title: support, legal_basis: [6.1b],
            data_categories: [communication], recipients: [support], retention: 2 years}
sources:
  public.accounts:
    primary_key: [id]
    subject: [{kind: customer, column: id}]
    columns: {id: bigint, email: text, phone: text, notes: text, opened_at: timestamptz}
    rules:
      - purpose: newsletter
        stages:
          - {action: delete, due: {after: P1Y, from: opened_at}}
      - purpose: support
        needs: [phone, notes]
        stages:
          - {action: anonymise, due: {after: P1YT12H, from: opened_at}, fields: [notes]}
          - {action: delete, due: {after: P2Y, from: opened_at}}
"""


def test_an_ended_purpose_is_anonymised_half_a_day_before_another_rules_stage() -> None:
    """The shortcut must see a rule ending just before the next stage of another (random
    policies rarely place two stages of different rules this close)."""
    lines = [record("accounts", "c", "2024-03-01T00:00:00Z",
                    {"id": 1, "email": "e@example.org", "opened_at": "2024-03-01T00:00:00Z"},
                    prefix="shop")]  # fmt: skip
    assert run(load_policy_text(CLOSE, "close.yaml", SCHEMA), lines, "2030-01-01T00:00:00Z") == [
        # newsletter ends 2024-03-01 + P1Y; support needs phone and notes: email goes
        cmd("2025-03-01T00:00:00Z", "2025-03-01T00:00:00Z", "anonymise", "accounts", 1,
            "customer:1", ["newsletter"], ["email"]),
        # support's own stage, 12 hours later
        cmd("2025-03-01T12:00:00Z", "2025-03-01T12:00:00Z", "anonymise", "accounts", 1,
            "customer:1", ["support"], ["notes"]),
        cmd("2026-03-01T00:00:00Z", "2026-03-01T00:00:00Z", "delete", "accounts", 1,
            "customer:1", ["newsletter", "support"]),
    ]  # fmt: skip
