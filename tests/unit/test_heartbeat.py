"""The source connector's heartbeat as the worker keeps it, and the settings that name it.

The records are written by hand as Debezium 3.6's JsonConverter writes the changes of
`lethe_heartbeat.source_heartbeat`; the instants are worked out by hand:
2026-11-30T17:27:41.046980Z is 1_796_059_661_046_980 µs since the epoch.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from confluent_kafka import Message

from lethe.app import UnclassifiedWatch, lethe_owned_topics
from lethe.errors import ConfigError
from lethe.heartbeat import SourceHeartbeat, commit_time
from lethe.metrics import WorkerMetrics
from lethe.settings import Settings

CLIENT = {"bootstrap.servers": "127.0.0.1:1"}
TABLE_TOPIC = "hosting.lethe_heartbeat.source_heartbeat"
COMMITTED_US = 1_796_059_661_046_980
"""2026-11-30T17:27:41.046980Z, the heartbeat's commit in the database."""
SENT_MS = 1_796_059_661_253
"""2026-11-30T17:27:41.253Z, when Connect wrote the record to Kafka (later: the send)."""


def change(op: str, source: dict[str, Any]) -> dict[str, Any]:
    """A change of the heartbeat row as Debezium's envelope carries it."""
    after = {"id": 1, "beat_at": "2026-11-30T17:27:41.044895Z"}
    return {
        "before": None,
        "after": after,
        "source": {"connector": "postgresql", "name": "hosting", "snapshot": "false",
                   "schema": "lethe_heartbeat", "table": "source_heartbeat", **source},
        "op": op,
        "ts_ms": 1_796_059_661_153,
        "ts_us": 1_796_059_661_153_124,
    }  # fmt: skip


def wrapped(payload: dict[str, Any]) -> dict[str, Any]:
    """The same with JsonConverter's schema wrapper (`schemas.enable=true`)."""
    schema = {
        "type": "struct",
        "name": "hosting.lethe_heartbeat.source_heartbeat.Envelope",
        "fields": [],
    }
    return {"schema": schema, "payload": payload}


def record(value: object, topic: str = TABLE_TOPIC, sent_ms: int = SENT_MS) -> Message:
    raw = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
    return Message(topic=topic, partition=0, offset=7, value=raw, timestamp=(1, sent_ms))


def test_a_heartbeat_change_is_read_at_its_commit_time_with_or_without_the_schema() -> None:
    source = {"ts_ms": 1_796_059_661_046, "ts_us": COMMITTED_US}
    assert commit_time(orjson.dumps(change("u", source))) == COMMITTED_US
    assert commit_time(orjson.dumps(wrapped(change("u", source)))) == COMMITTED_US
    assert commit_time(orjson.dumps(change("c", source))) == COMMITTED_US
    snapshot = change("r", {"ts_ms": 1_796_059_661_046, "snapshot": "true"})
    assert commit_time(orjson.dumps(snapshot)) == 1_796_059_661_046_000, "ms without ts_us"


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"not json {",
        b"[1, 2]",
        b'{"ts_ms": 1796059661253}',  # a record of Debezium's own heartbeat topic
        orjson.dumps(change("u", {})),
        orjson.dumps(change("u", {"ts_ms": "1796059661046"})),
        orjson.dumps(change("x", {"ts_ms": 1_796_059_661_046})),
        orjson.dumps({"schema": {"type": "struct"}, "payload": None}),
    ],
)
def test_a_record_that_is_no_heartbeat_change_has_no_commit_time(value: bytes | None) -> None:
    assert commit_time(value) is None


def test_the_heartbeat_tables_topic_is_heard_up_to_the_commit_not_the_send(
    caplog: pytest.LogCaptureFixture,
) -> None:
    heartbeat = SourceHeartbeat(CLIENT, TABLE_TOPIC)
    caplog.set_level(logging.DEBUG, logger="lethe.heartbeat")
    heartbeat.read(record(b"garbage"))
    heartbeat.read(record(None))
    assert heartbeat.heard_until() is None, "records that are no heartbeat change prove nothing"
    assert any("left out" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    heartbeat.read(
        record(wrapped(change("u", {"ts_ms": 1_796_059_661_046, "ts_us": COMMITTED_US})))
    )
    assert heartbeat.heard_until() == COMMITTED_US


def test_debeziums_own_heartbeat_topic_is_heard_up_to_the_send_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="lethe.heartbeat")
    heartbeat = SourceHeartbeat(CLIENT, "__debezium-heartbeat.hosting")
    heartbeat.read(record(b'{"ts_ms": 1}', topic="__debezium-heartbeat.hosting"))
    assert heartbeat.heard_until() == SENT_MS * 1000
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "alive but behind" in warnings[0]


def test_the_heartbeat_table_is_not_unclassified_personal_data() -> None:
    metrics = WorkerMetrics.create()
    named = ("hosting.public.customers",)
    settings = Settings()
    watch = UnclassifiedWatch("hosting", (*named, *lethe_owned_topics(settings)),
                              metrics.unclassified_tables)  # fmt: skip
    found = watch.update([*named, TABLE_TOPIC, "hosting.public.leads"])
    assert found == ["hosting.public.leads"]


def test_the_source_is_heard_up_to_its_newest_heartbeat_plus_the_lease() -> None:
    heartbeat = SourceHeartbeat(CLIENT, TABLE_TOPIC, lease_s=0.5)
    assert heartbeat.heard_until() is None, "nothing heard yet: no change topic is complete"
    heartbeat.seen(2_000_000)
    heartbeat.seen(1_000_000)  # an older one read late changes nothing
    assert heartbeat.newest == 2_000_000
    assert heartbeat.heard_until() == 2_500_000


def test_the_heartbeat_topic_is_the_heartbeat_tables_for_the_prefix_unless_named_or_off() -> None:
    assert (
        Settings(cdc_topic_prefix="shop").heartbeat_topic == "shop.lethe_heartbeat.source_heartbeat"
    )
    assert Settings(source_heartbeat_topic="beats.shop").heartbeat_topic == "beats.shop"
    assert Settings(source_heartbeat_topic="OFF").heartbeat_topic is None


def test_a_negative_lease_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"LETHE_SOURCE_HEARTBEAT_LEASE=-1\.0 is less than 0"):
        Settings(source_heartbeat_lease=-1.0)
