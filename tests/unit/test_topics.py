"""Which change topics the worker reads (those the policy names) and which it reports."""

from __future__ import annotations

import asyncio
import logging

import faust
import pytest
from faust.types import TP, Message

from lethe import topics
from lethe.app import UnclassifiedWatch, same_partition_count
from lethe.errors import ConfigError
from lethe.metrics import WorkerMetrics
from lethe.settings import Settings
from policy.model import Policy, Source

NAMED = ("hosting.public.customers", "hosting.public.orders")

ON_THE_BROKER = [
    "hosting.public.orders",
    "hosting.public.customers",
    "hosting.public.leads",  # a table the policy does not name
    "hosting.billing.ledger",  # another schema, not named either
    "hosting",  # Debezium's schema-change topic
    "hosting.transaction",  # Debezium's transaction metadata
    "hostingXpublic.orders",
    "shop.public.orders",
    "lethe.deadletter",
    "lethe-change_counter-changelog",
    "__consumer_offsets",
]


def policy_reading(*topic_names: str) -> Policy:
    sources = {
        name.split(".", 1)[1]: Source(
            table=name.split(".", 1)[1], topic=name, primary_key=("id",), columns={}
        )
        for name in topic_names
    }
    return Policy(name="test", purposes={}, parameters={}, sources=sources)


def test_the_worker_reads_the_change_topic_of_every_source_of_the_policy() -> None:
    policy = policy_reading("hosting.public.orders", "hosting.public.customers")
    assert topics.policy_change_topics(policy, "hosting") == NAMED


def test_a_policy_reading_outside_the_cdc_prefix_stops_the_worker_naming_both() -> None:
    policy = policy_reading("shop.public.orders", "hosting.public.customers")
    with pytest.raises(ConfigError) as error:
        topics.policy_change_topics(policy, "hosting")
    message = str(error.value)
    assert "public.orders -> shop.public.orders" in message
    assert "LETHE_CDC_TOPIC_PREFIX='hosting'" in message
    assert "customers" not in message


def test_unclassified_are_the_prefix_schema_table_topics_the_policy_does_not_name() -> None:
    assert topics.unclassified_change_topics(ON_THE_BROKER, "hosting", NAMED) == [
        "hosting.billing.ledger",
        "hosting.public.leads",
    ]
    assert topics.unclassified_change_topics(ON_THE_BROKER, "shop", NAMED) == ["shop.public.orders"]
    assert topics.unclassified_change_topics(NAMED, "hosting", NAMED) == []


def test_a_prefix_with_dots_is_matched_literally() -> None:
    names = ["eu.hosting.public.leads", "euXhosting.public.leads", "eu.hosting.public.orders"]
    named = ["eu.hosting.public.orders"]
    assert topics.unclassified_change_topics(names, "eu.hosting", named) == [
        "eu.hosting.public.leads"
    ]


def gauge(metrics: WorkerMetrics) -> dict[str, float]:
    return {
        sample.labels["topic"]: sample.value
        for family in metrics.registry.collect()
        if family.name == "lethe_unclassified_tables"
        for sample in family.samples
    }


def test_unclassified_topics_show_in_the_gauge_and_are_logged_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = WorkerMetrics.create()
    watch = UnclassifiedWatch("hosting", NAMED, metrics.unclassified_tables)
    caplog.set_level(logging.WARNING, logger="lethe.app")

    watch.update(ON_THE_BROKER)
    watch.update(ON_THE_BROKER)
    assert gauge(metrics) == {"hosting.public.leads": 1.0, "hosting.billing.ledger": 1.0}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert any("hosting.public.leads" in w and "Add the table to the policy" in w for w in warnings)

    watch.update([*NAMED, "hosting.public.leads"])
    assert gauge(metrics) == {"hosting.public.leads": 1.0}, "a deleted topic leaves the gauge"


def test_the_prefix_is_a_setting_with_the_demo_default() -> None:
    assert Settings().cdc_topic_prefix == "hosting"
    assert Settings.from_env({"LETHE_CDC_TOPIC_PREFIX": "shop"}).cdc_topic_prefix == "shop"


def test_change_topics_of_one_partition_count_give_it() -> None:
    assert same_partition_count({"hosting.public.orders": 3, "hosting.public.customers": 3}) == 3
    assert same_partition_count({}) is None


def test_change_topics_of_different_partition_counts_stop_the_worker_naming_them() -> None:
    counts = {"hosting.public.orders": 1, "hosting.public.customers": 4, "hosting.public.leads": 1}
    with pytest.raises(ConfigError) as error:
        same_partition_count(counts)
    message = str(error.value)
    assert (
        "different partition counts (1 partition: hosting.public.leads, hosting.public.orders; "
        "4 partitions: hosting.public.customers)"
    ) in message
    assert "give them all the same one (e.g. 4" in message
    assert "repartition them" in message


def test_the_subject_events_topic_is_prefixed_by_the_app_id() -> None:
    assert topics.subject_events_topic_name("lethe") == "lethe-subject-events"
    assert topics.subject_events_topic_name("lethe-it-route-1") == "lethe-it-route-1-subject-events"


@pytest.mark.parametrize(
    ("key", "value"),
    [(b'{"id":7}', b'{"op":"c"}'), (b'{"id":7}', None), (None, b"\xff not JSON"), (None, None)],
)
def test_change_records_reach_the_stream_as_the_broker_holds_them(
    key: bytes | None, value: bytes | None
) -> None:
    """The worker's own decoding of change and subject-events records hands the stream
    what Faust's raw serializers would: the bytes untouched, a tombstone's None kept."""
    app = faust.App("lethe-unit-raw-schema", broker="memory://", store="memory://")
    message = Message(
        "hosting.public.customers", 0, 3, 1.0, 0, None, key, value, None, tp=TP("t", 0)
    )
    fausts = faust.Schema(
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        allow_empty=True,
    ).compile(app)
    ours = topics.RawBytesSchema().compile(app)
    expected = asyncio.run(fausts(message))
    got = asyncio.run(ours(message))
    assert (got.key, got.value, got.message) == (expected.key, expected.value, message)
    assert (got.key, got.value) == (key, value)
    for topic in (
        topics.change_topics(app, ["hosting.public.customers"]),
        topics.subject_events_topic(app, 8),
    ):
        assert isinstance(topic.schema, topics.RawBytesSchema)
