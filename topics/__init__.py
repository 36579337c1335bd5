"""Topic declarations (`lethe.topics`): every Kafka topic Lethe reads or writes, in one place.

- The Debezium change topics the policy names, `<prefix>.<schema>.<table>`
  (prefix: the `cdc_topic_prefix` setting, Debezium's `topic.prefix`, `hosting`
  by default; `policy_change_topics`). The worker subscribes to exactly these at
  start and never changes its subscription: a new table is a policy change and a
  restart. Keys and values are read as raw bytes and decoded in code
  (`policy.envelope`, `policy.decoding`), so a bad record can be dead-lettered instead of failing
  inside Faust's deserializer. Change topics of tables the policy does not name
  are reported (`unclassified_change_topics`), never read.
- `lethe.deadletter`: one JSON record per input record that could not be used,
  with its source topic, partition, offset, the reason (a
  `policy.envelope.DecodeReason` code) and its detail, and the raw key and
  value (base64) so that nothing is lost. These raw values may hold personal
  data, so the topic keeps them for `DEADLETTER_RETENTION_S` only: fix and
  replay (or discard) dead letters within that time.
- `lethe.audit`: one record per decision of the enforcer (`policy.audit`: tracked,
  scheduled, held, released, issued, reissued, confirmed, dead_lettered), schemaless Avro
  of `schemas/audit_record.avsc`, keyed by the row, `<table>:<key JSON>` (a dead letter:
  `<topic>:<partition>`), so one row's decisions stay in order on one partition whichever
  subject it moves between. Kept for good (`retention.ms=-1`, delete cleanup, never
  compacted): the audit proves, years later, what was deleted, when and why, so it must
  outlive the data; it may, because it holds no row values and no direct identifier (an
  `email:` subject only as its keyed hash). `AUDIT_PARTITIONS` partitions, created by
  the worker if missing.
- `lethe.clock` (LETHE_CLOCK_TOPIC): the manual enforcement clock. `lethe clock advance`
  writes one JSON record `{"instant": ..., "advanced_at": ...}` under the key `clock`
  (`lethe.clock.ManualClockReader` follows it); compacted, so the latest advance stays
  for good. One partition, created by the first `lethe clock advance`.
- `<app id>-subject-events` (`lethe-subject-events` for the default app id): every change
  record of the policy's tables, keyed by the subject of its row, for the enforcing stage
  (E). Prefixed by the app id, as Faust names its own topics, so two workers with
  different ids never share it. LETHE_INTERNAL_PARTITIONS partitions (default 8), created
  by the worker before its agents send, kept `SUBJECT_EVENTS_RETENTION_S`. Its records
  (values: the decoded change events, on a depart the Debezium value: personal data) are
  described under "Wire format of lethe-subject-events" in docs/design/enforcer.md; the
  header names are the `*_HEADER` constants below. Every worker's timer also sends a
  `tick` to each of its partitions every LETHE_TICK_INTERVAL seconds: the enforcer issues
  what fell due then.
- `lethe.commands` (`policy.command_records.COMMANDS_TOPIC`) and `lethe.sink.<schema>.<table>`
  (`policy.sink_records.sink_topic`): the retention commands and the records the JDBC sink
  connector applies to the database (docs/commands.md). The worker declares them at start
  (`COMMAND_PARTITIONS` partitions when it creates them) and writes them raw.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Collection, Iterable, Sequence
from typing import Any, Final

import faust
import orjson
from faust.types import AppT, Message, TopicT

from lethe.errors import ConfigError
from policy.model import Policy

DEADLETTER_TOPIC: Final = "lethe.deadletter"
DEADLETTER_PARTITIONS: Final = 1
DEADLETTER_RETENTION_S: Final = 30 * 24 * 3600
AUDIT_TOPIC: Final = "lethe.audit"
AUDIT_PARTITIONS: Final = 1
AUDIT_TOPIC_CONFIG: Final = {"cleanup.policy": "delete", "retention.ms": "-1"}
"""Infinite retention; delete (not compact), so every decision of a row stays."""
CLOCK_TOPIC: Final = "lethe.clock"
CLOCK_TOPIC_CONFIG: Final = {"cleanup.policy": "compact"}
CLOCK_KEY: Final = b"clock"
SUBJECT_EVENTS_SUFFIX: Final = "subject-events"
SUBJECT_EVENTS_RETENTION_S: Final = 7 * 24 * 3600
SUBJECT_EVENTS_TOPIC_CONFIG: Final = {"retention.ms": str(SUBJECT_EVENTS_RETENTION_S * 1000)}
"""`<app id>-subject-events` holds the row images (personal data): the worker creates it
kept 7 days (Kafka's default, set on the topic so that a broker that keeps everything does not
keep these copies). A worker stopped longer than that loses the forwarded events it had not
enforced yet: start it with a new app id (it reads the change topics again from their start)."""
COMMAND_PARTITIONS: Final = 1
"""Partitions of `lethe.commands` and of each sink topic when the worker creates them; their
records are keyed (by subject, by primary key), so more partitions keep each key's order."""

KIND_HEADER: Final = "lethe-kind"
"""`change` (a change of a row, value = the decoded event), `event` (the same with the
Debezium value, when the event holds a value `change` cannot carry), `depart` (value: the
Debezium value of the change that moved the row) or `tick` (null key, the only header: the
enforcer's sweep of its partition; its value carries the sending worker's watermarks of the
change topics, `lethe.agents.subject_records.tick_value`)."""
EVENT_KIND: Final = b"event"
CHANGE_KIND: Final = b"change"
"""An event as the assign stage decoded it (value: `policy.event_wire.encode_event`, with the
change record's topic, partition and offset; no other header): what A sends for an event."""
DEPART_KIND: Final = b"depart"
TICK_KIND: Final = b"tick"
BATCH_KIND: Final = b"batch"
"""Many forwards of one partition in one record (null key; `lethe.topics.batches`)."""
TABLE_HEADER: Final = "lethe-table"
"""The row's schema-qualified table, `public.info_requests`."""
KEY_HEADER: Final = "lethe-key"
"""The row's primary key as a JSON object in the policy's primary-key order, `{"id":42}`."""
OP_HEADER: Final = "lethe-op"
"""Debezium's op of the event: c, u, d or r (events only)."""
TS_HEADER: Final = "lethe-ts"
"""The event's time (`ChangeEvent.ts`): microseconds since the epoch, decimal digits."""
SOURCE_TOPIC_HEADER: Final = "lethe-source-topic"
SOURCE_PARTITION_HEADER: Final = "lethe-source-partition"
SOURCE_OFFSET_HEADER: Final = "lethe-source-offset"
"""Where the change record is (topic; partition and offset in decimal digits): the record
itself on an event, the record that moved the row on a depart."""
SUBJECT_HEADER: Final = "lethe-subject"
"""The record's key when it is a subject; absent when the row has no subject (the record
key is then `<table>:<key JSON>`)."""
MOVED_FROM_HEADER: Final = "lethe-moved-from"
"""On an event that moved its row: the key the row's earlier records were sent under."""
MOVED_TO_HEADER: Final = "lethe-moved-to"
"""On a depart: the key the moving event was sent under."""


def policy_change_topics(policy: Policy, prefix: str) -> tuple[str, ...]:
    """The change topics of every source of `policy`, sorted.

    ConfigError when a source's topic is not under `<prefix>.`: the policy's
    `topic_prefix` and LETHE_CDC_TOPIC_PREFIX (Debezium's `topic.prefix`, which
    `lethe stack` configures) must be the same.
    """
    outside = sorted(
        f"{table} -> {source.topic}"
        for table, source in policy.sources.items()
        if not source.topic.startswith(f"{prefix}.")
    )
    if outside:
        shown = ", ".join(outside[:3]) + (
            f" and {len(outside) - 3} more" if len(outside) > 3 else ""
        )
        raise ConfigError(
            f"the policy {policy.name!r} reads change topics outside LETHE_CDC_TOPIC_PREFIX="
            f"{prefix!r} (Debezium's topic.prefix): {shown}; set the policy's topic_prefix "
            "and LETHE_CDC_TOPIC_PREFIX to the same value"
        )
    return tuple(sorted(source.topic for source in policy.sources.values()))


def unclassified_change_topics(
    names: Iterable[str], prefix: str, named: Collection[str]
) -> list[str]:
    """The change topics among `names` that the policy does not name, sorted.

    A change topic is `<prefix>.<schema>.<table>`; other topics under the prefix
    (Debezium's `<prefix>` schema-change and `<prefix>.transaction` topics) are not.
    """
    pattern = re.compile(rf"^{re.escape(prefix)}\.[^.]+\..+")
    return sorted(name for name in set(names) if pattern.match(name) and name not in named)


class RawBytesSchema(faust.Schema[bytes, bytes]):
    """Keys and values as the broker holds them (bytes, or None), handed to the stream
    without Faust's serializer registry: its codec lookups for the `raw` codec, which
    returns the bytes as they are, and its settings lookup of the event class cost about
    5 µs a record (docs/benchmarks.md (a), session 10). Sending is Faust's as before."""

    def __init__(self) -> None:
        super().__init__(
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            allow_empty=True,
        )

    def compile(self, app: AppT, *, default_propagate: bool = False, **handlers: Any) -> Any:
        event_type: Any = app.conf.Event  # `app.create_event` reads it from the settings each time

        async def decode(message: Message, *, propagate: bool = default_propagate) -> Any:
            return event_type(app, message.key, message.value, message.headers, message)

        return decode


def change_topics(app: faust.App, names: Sequence[str]) -> TopicT:
    """The change topics `names` as one Faust topic of raw bytes.

    Faust cannot subscribe by regular expression (its conductor only routes
    named topics); the names come from the policy (`policy_change_topics`).
    """
    return app.topic(*names, schema=RawBytesSchema())


def subject_events_topic_name(app_id: str) -> str:
    """`<app id>-subject-events`: `lethe-subject-events` for the default app id `lethe`."""
    return f"{app_id}-{SUBJECT_EVENTS_SUFFIX}"


def subject_events_topic(app: faust.App, partitions: int) -> TopicT:
    """The app's `<app id>-subject-events` with `partitions` partitions (raw bytes)."""
    return app.topic(
        subject_events_topic_name(app.conf.id),
        schema=RawBytesSchema(),
        partitions=partitions,
        internal=True,
        allow_empty=True,
    )


def output_topic(app: faust.App, name: str) -> TopicT:
    """A topic the enforcer writes raw records to (`lethe.commands`, a sink topic)."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=COMMAND_PARTITIONS,
        allow_empty=True,
    )


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


def audit_topic(app: faust.App, partitions: int = AUDIT_PARTITIONS) -> TopicT:
    """`lethe.audit`, created by the worker if missing, with infinite retention (raw bytes:
    `policy.audit.audit_record_key` and `policy.audit_avro.audit_avro`)."""
    return app.topic(
        AUDIT_TOPIC,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        config=AUDIT_TOPIC_CONFIG,
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
    raw_dropped: str | None = None,
) -> bytes:
    """The JSON value of one dead letter; `key_b64`/`value_b64` are null for null.

    `key_bytes`/`value_bytes` give the raw record's sizes. With `raw_dropped` (the error that
    kept the dead letter from being delivered with its raw record) `key_b64` and `value_b64`
    are null whatever the record held: read it again from its topic, partition and offset
    while the topic keeps it."""
    return orjson.dumps(
        {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "reason": reason,
            "detail": detail,
            "timestamp_ms": timestamp_ms,
            "key_b64": None if raw_dropped else _b64(key),
            "value_b64": None if raw_dropped else _b64(value),
            "key_bytes": None if key is None else len(key),
            "value_bytes": None if value is None else len(value),
            "raw_dropped": raw_dropped,
        }
    )


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")
