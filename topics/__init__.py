"""Topic declarations (`lethe.topics`): every Kafka topic Lethe reads or writes, in one place.

- The Debezium change topics of the demo database, `<prefix>.public.<table>`
  (prefix: the `cdc_topic_prefix` setting, `hosting` by default), matched by
  `change_topic_pattern(prefix)`. Keys and values are read as raw bytes and
  decoded in code (`policy.envelope`, `policy.decoding`), so a bad record can be dead-lettered
  instead of failing inside Faust's deserializer.
- `lethe.deadletter`: one JSON record per input record that could not be used,
  with its source topic, partition, offset, the reason (a
  `policy.envelope.DecodeReason` code) and its detail, and the raw key and
  value (base64) so that nothing is lost. These raw values may hold personal
  data, so the topic keeps them for `DEADLETTER_RETENTION_S` only: fix and
  replay (or discard) dead letters within that time.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Final

import faust
import orjson
from faust.types import TopicT

CHANGE_TOPIC_SCHEMA: Final = "public"
"""The PostgreSQL schema Debezium captures (`schema.include.list` of the source connector)."""

DEADLETTER_TOPIC: Final = "lethe.deadletter"
DEADLETTER_PARTITIONS: Final = 1
DEADLETTER_RETENTION_S: Final = 30 * 24 * 3600


def change_topic_pattern(prefix: str) -> re.Pattern[str]:
    """Matches `<prefix>.public.<table>`: Debezium's `topic.prefix`, the schema, a table."""
    return re.compile(rf"^{re.escape(prefix)}\.{CHANGE_TOPIC_SCHEMA}\..+")


def matching_change_topics(names: Iterable[str], prefix: str) -> list[str]:
    """The names among `names` that are change topics of `prefix`, sorted."""
    pattern = change_topic_pattern(prefix)
    return sorted(name for name in names if pattern.match(name))


def change_topics(app: faust.App, names: list[str]) -> TopicT:
    """The change topics as one Faust topic of raw bytes.

    Faust cannot subscribe by regular expression (its conductor only routes
    named topics), so the names are resolved against the broker by the caller.
    The list object is kept by the topic and its clones: appending a name to it
    and flagging the conductor (see `lethe.app.follow_new_change_topics`)
    subscribes to a topic created later.
    """
    topic = app.topic(
        *names,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        allow_empty=True,
    )
    topic.topics = names  # the caller's list itself, not the tuple app.topic() made
    return topic


def deadletter_topic(app: faust.App) -> TopicT:
    """`lethe.deadletter`, created by the worker if missing (raw JSON bytes)."""
    return app.topic(
        DEADLETTER_TOPIC,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=DEADLETTER_PARTITIONS,
        retention=DEADLETTER_RETENTION_S,
        deleting=True,
        internal=True,
    )


def dead_letter_record(
    *,
    topic: str,
    partition: int,
    offset: int,
    reason: str,
    detail: str,
    key: bytes | None,
    value: bytes | None,
    timestamp_ms: int | None,
) -> bytes:
    """The JSON value of one dead letter; `key_b64`/`value_b64` are null for null."""
    return orjson.dumps(
        {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "reason": reason,
            "detail": detail,
            "timestamp_ms": timestamp_ms,
            "key_b64": _b64(key),
            "value_b64": _b64(value),
        }
    )


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")
