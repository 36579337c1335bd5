"""Where the assign agent sends a change and what it writes to `locations` (`route`), and the
headers of what it sends (`wire_headers`), over the shipped policy.

Expected keys, writes and headers are written out by hand from the policy's subject ways
(`customer:<customer_id>`, `email:<lower-cased email>`) and the wire format in
docs/design/enforcer.md.
"""

from __future__ import annotations

from collections.abc import Mapping

from lethe.agents.routing import (
    NO_SUBJECT,
    UNKNOWN,
    Kind,
    Outgoing,
    Routing,
    located_by_event,
    route,
    wire_headers,
)
from policy.engine import Engine
from policy.events import ChangeEvent, Op, Value

TS = 1_700_000_000_000_000
REQUEST = 'public.info_requests:{"id":5}'
CONTACT = 'public.marketing_contacts:{"id":8}'
SURVEY = 'public.satisfaction_surveys:{"id":3}'


def event(
    table: str,
    row_id: int,
    op: Op,
    *,
    before: Mapping[str, Value] | None = None,
    after: Mapping[str, Value] | None = None,
) -> ChangeEvent:
    return ChangeEvent(f"public.{table}", (("id", row_id),), op, before, after, TS)


def request(op: Op, **image: Value) -> ChangeEvent:
    row = {"id": 5, **image}
    if op is Op.DELETE:
        return event("info_requests", 5, op, before=row)
    return event("info_requests", 5, op, after=row)


def forward(key: str, subject: str | None) -> Outgoing:
    return Outgoing(Kind.EVENT, key, subject)


def test_a_new_request_goes_to_its_lower_cased_email_and_is_located(demo_engine: Engine) -> None:
    created = request(Op.CREATE, email="Ada.L@Example.ORG", full_name="Ada")
    assert route(demo_engine, None, created) == Routing(
        writes=((REQUEST, "email:ada.l@example.org"),),
        records=(forward("email:ada.l@example.org", "email:ada.l@example.org"),),
    )


def test_a_snapshot_read_of_a_row_seen_before_with_the_same_subject_writes_nothing(
    demo_engine: Engine,
) -> None:
    read = request(Op.READ, email="ada.l@example.org")
    assert route(demo_engine, "email:ada.l@example.org", read) == Routing(
        writes=(), records=(forward("email:ada.l@example.org", "email:ada.l@example.org"),)
    )


def test_an_update_keeps_its_subject_and_writes_nothing(demo_engine: Engine) -> None:
    updated = request(Op.UPDATE, email="ada.l@example.org", handled_at=None)
    assert route(demo_engine, "email:ada.l@example.org", updated) == Routing(
        writes=(), records=(forward("email:ada.l@example.org", "email:ada.l@example.org"),)
    )


def test_an_update_first_seen_is_located(demo_engine: Engine) -> None:
    updated = request(Op.UPDATE, email="ada.l@example.org")
    assert route(demo_engine, None, updated).writes == ((REQUEST, "email:ada.l@example.org"),)


def test_a_delete_with_its_whole_before_image_goes_to_its_subject_and_is_forgotten(
    demo_engine: Engine,
) -> None:
    deleted = request(Op.DELETE, email="ada.l@example.org")
    assert route(demo_engine, "email:ada.l@example.org", deleted) == Routing(
        writes=((REQUEST, None),),
        records=(forward("email:ada.l@example.org", "email:ada.l@example.org"),),
    )


def test_a_delete_whose_before_image_holds_only_the_key_goes_to_the_located_subject(
    demo_engine: Engine,
) -> None:
    deleted = request(Op.DELETE)
    assert route(demo_engine, "email:ada.l@example.org", deleted) == Routing(
        writes=((REQUEST, None),),
        records=(forward("email:ada.l@example.org", "email:ada.l@example.org"),),
    )


def test_a_delete_with_null_columns_outside_the_key_goes_to_the_located_subject(
    demo_engine: Engine,
) -> None:
    """REPLICA IDENTITY DEFAULT as Debezium sends it with a schema: every column, null
    outside the primary key."""
    deleted = request(Op.DELETE, email=None, full_name=None)
    assert route(demo_engine, "email:ada.l@example.org", deleted).records == (
        forward("email:ada.l@example.org", "email:ada.l@example.org"),
    )


def test_a_delete_of_a_row_never_seen_with_only_its_key_goes_to_the_row(
    demo_engine: Engine,
) -> None:
    assert route(demo_engine, None, request(Op.DELETE)) == Routing(
        writes=(), records=(forward(REQUEST, None),)
    )


def test_an_image_without_the_subject_column_keeps_the_located_subject(
    demo_engine: Engine,
) -> None:
    updated = request(Op.UPDATE, handled_at="2026-01-01T00:00:00Z")
    assert route(demo_engine, "email:ada.l@example.org", updated) == Routing(
        writes=(), records=(forward("email:ada.l@example.org", "email:ada.l@example.org"),)
    )
    assert route(demo_engine, None, updated) == Routing(
        writes=((REQUEST, NO_SUBJECT),), records=(forward(REQUEST, None),)
    )


def test_a_contact_gaining_a_customer_id_moves_and_departs_from_its_email(
    demo_engine: Engine,
) -> None:
    gained = event(
        "marketing_contacts",
        8,
        Op.UPDATE,
        after={"id": 8, "customer_id": 42, "email": "Bob@Example.org"},
    )
    assert route(demo_engine, "email:bob@example.org", gained) == Routing(
        writes=((CONTACT, "customer:42"),),
        records=(
            Outgoing(Kind.EVENT, "customer:42", "customer:42", moved="email:bob@example.org"),
            Outgoing(
                Kind.DEPART, "email:bob@example.org", "email:bob@example.org", moved="customer:42"
            ),
        ),
    )


def test_an_update_with_its_whole_before_image_is_located_by_it_without_the_table(
    demo_engine: Engine,
) -> None:
    gained = event(
        "marketing_contacts",
        8,
        Op.UPDATE,
        before={"id": 8, "customer_id": None, "email": "Bob@Example.org"},
        after={"id": 8, "customer_id": 42, "email": "Bob@Example.org"},
    )
    located = located_by_event(demo_engine, gained)
    assert located == "email:bob@example.org"
    assert route(demo_engine, located, gained).records == (
        Outgoing(Kind.EVENT, "customer:42", "customer:42", moved="email:bob@example.org"),
        Outgoing(
            Kind.DEPART, "email:bob@example.org", "email:bob@example.org", moved="customer:42"
        ),
    )
    kept = event(
        "marketing_contacts",
        8,
        Op.UPDATE,
        before={"id": 8, "customer_id": 42, "email": "Bob@Example.org"},
        after={"id": 8, "customer_id": 42, "email": "bob@example.org"},
    )
    assert route(demo_engine, located_by_event(demo_engine, kept), kept) == Routing(
        writes=(), records=(forward("customer:42", "customer:42"),)
    )


def test_a_row_without_subject_in_its_before_image_is_located_as_such(
    demo_engine: Engine,
) -> None:
    unsubscribed = event(
        "marketing_contacts",
        8,
        Op.UPDATE,
        before={"id": 8, "customer_id": None, "email": None},
        after={"id": 8, "customer_id": None, "email": None},
    )
    assert located_by_event(demo_engine, unsubscribed) == NO_SUBJECT


def test_locations_must_be_read_without_a_before_image_that_names_the_subject(
    demo_engine: Engine,
) -> None:
    assert located_by_event(demo_engine, request(Op.UPDATE, email="a@example.org")) is UNKNOWN
    assert located_by_event(demo_engine, request(Op.CREATE, email="a@example.org")) is UNKNOWN
    assert located_by_event(demo_engine, request(Op.DELETE, email="a@example.org")) is UNKNOWN
    key_only = event("marketing_contacts", 8, Op.UPDATE, before={"id": 8}, after={"id": 8})
    assert located_by_event(demo_engine, key_only) is UNKNOWN


def test_a_survey_whose_customer_id_is_emptied_goes_to_the_row_and_departs(
    demo_engine: Engine,
) -> None:
    emptied = event("satisfaction_surveys", 3, Op.UPDATE, after={"id": 3, "customer_id": None})
    assert route(demo_engine, "customer:42", emptied) == Routing(
        writes=((SURVEY, NO_SUBJECT),),
        records=(
            Outgoing(Kind.EVENT, SURVEY, None, moved="customer:42"),
            Outgoing(Kind.DEPART, "customer:42", "customer:42", moved=SURVEY),
        ),
    )
    regained = event("satisfaction_surveys", 3, Op.UPDATE, after={"id": 3, "customer_id": 7})
    assert route(demo_engine, NO_SUBJECT, regained) == Routing(
        writes=((SURVEY, "customer:7"),),
        records=(
            Outgoing(Kind.EVENT, "customer:7", "customer:7", moved=SURVEY),
            Outgoing(Kind.DEPART, SURVEY, None, moved="customer:7"),
        ),
    )


def test_a_delete_whose_before_image_names_another_subject_departs_from_the_located_one(
    demo_engine: Engine,
) -> None:
    deleted = event("support_tickets", 4, Op.DELETE, before={"id": 4, "customer_id": 43})
    assert route(demo_engine, "customer:42", deleted) == Routing(
        writes=(('public.support_tickets:{"id":4}', None),),
        records=(
            Outgoing(Kind.EVENT, "customer:43", "customer:43", moved="customer:42"),
            Outgoing(Kind.DEPART, "customer:42", "customer:42", moved="customer:43"),
        ),
    )


def test_a_table_without_subject_is_keyed_by_its_row_and_never_located(
    demo_engine: Engine,
) -> None:
    breach = event("data_breaches", 2, Op.CREATE, after={"id": 2})
    assert route(demo_engine, None, breach) == Routing(
        writes=(), records=(forward('public.data_breaches:{"id":2}', None),)
    )


def test_headers_of_an_event_without_subject_and_of_a_depart() -> None:
    emptied = event("satisfaction_surveys", 3, Op.UPDATE, after={"id": 3, "customer_id": None})
    topic = "hosting.public.satisfaction_surveys"
    moved = Outgoing(Kind.EVENT, SURVEY, None, moved="customer:42")
    assert wire_headers(moved, emptied, topic, 0, 17) == [
        ("lethe-kind", b"event"),
        ("lethe-table", b"public.satisfaction_surveys"),
        ("lethe-key", b'{"id":3}'),
        ("lethe-op", b"u"),
        ("lethe-ts", b"1700000000000000"),
        ("lethe-source-topic", b"hosting.public.satisfaction_surveys"),
        ("lethe-source-partition", b"0"),
        ("lethe-source-offset", b"17"),
        ("lethe-moved-from", b"customer:42"),
    ]
    depart = Outgoing(Kind.DEPART, "customer:42", "customer:42", moved=SURVEY)
    assert wire_headers(depart, emptied, topic, 0, 17) == [
        ("lethe-kind", b"depart"),
        ("lethe-table", b"public.satisfaction_surveys"),
        ("lethe-key", b'{"id":3}'),
        ("lethe-ts", b"1700000000000000"),
        ("lethe-source-topic", b"hosting.public.satisfaction_surveys"),
        ("lethe-source-partition", b"0"),
        ("lethe-source-offset", b"17"),
        ("lethe-subject", b"customer:42"),
        ("lethe-moved-to", SURVEY.encode()),
    ]
