"""Which topics the worker takes for Debezium change topics (LETHE_CDC_TOPIC_PREFIX)."""

from __future__ import annotations

from lethe import topics
from lethe.settings import Settings


def test_change_topics_are_the_prefix_public_tables_only() -> None:
    names = [
        "hosting.public.orders",
        "hosting.public.customers",
        "hosting.public.",
        "hosting.other.orders",
        "hostingXpublic.orders",
        "shop.public.orders",
        "lethe.deadletter",
        "__consumer_offsets",
    ]
    assert topics.matching_change_topics(names, "hosting") == [
        "hosting.public.customers",
        "hosting.public.orders",
    ]
    assert topics.matching_change_topics(names, "shop") == ["shop.public.orders"]


def test_the_prefix_is_a_setting_with_the_demo_default() -> None:
    assert Settings().cdc_topic_prefix == "hosting"
    assert Settings.from_env({"LETHE_CDC_TOPIC_PREFIX": "shop"}).cdc_topic_prefix == "shop"
