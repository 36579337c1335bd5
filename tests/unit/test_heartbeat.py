"""The source connector's heartbeat as the worker keeps it, and the settings that name it."""

from __future__ import annotations

import pytest

from lethe.errors import ConfigError
from lethe.heartbeat import SourceHeartbeat
from lethe.settings import Settings


def test_the_source_is_heard_up_to_its_newest_heartbeat_plus_the_lease() -> None:
    client = {"bootstrap.servers": "127.0.0.1:1"}
    heartbeat = SourceHeartbeat(client, "__debezium-heartbeat.hosting", lease_s=0.5)
    assert heartbeat.heard_until() is None, "nothing heard yet: no change topic is complete"
    heartbeat.seen(2_000_000)
    heartbeat.seen(1_000_000)  # an older one read late changes nothing
    assert heartbeat.newest == 2_000_000
    assert heartbeat.heard_until() == 2_500_000


def test_the_heartbeat_topic_is_debeziums_default_for_the_prefix_unless_named_or_off() -> None:
    assert Settings(cdc_topic_prefix="shop").heartbeat_topic == "__debezium-heartbeat.shop"
    assert Settings(source_heartbeat_topic="beats.shop").heartbeat_topic == "beats.shop"
    assert Settings(source_heartbeat_topic="OFF").heartbeat_topic is None


def test_a_negative_lease_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"LETHE_SOURCE_HEARTBEAT_LEASE=-1\.0 is less than 0"):
        Settings(source_heartbeat_lease=-1.0)
