"""What a record of `<app id>-subject-events` asks the enforcer to do, read from its headers.

`read_subject_record(headers, value)` is the enforce agent's reading of the wire format
(docs/design/enforcer.md, "Wire format of lethe-subject-events") as a pure function:
- `change`: a change of a row as the assign stage decoded it (`DecodedChange`, read with
  `policy.event_wire.decode_event`), to feed to the partition's driver;
- `event`: the same undecoded (what an older worker's assign stage sent, and what it sends
  for an event holding a value `change` cannot carry), to decode with the policy from its
  change topic (`ChangeRecord.source_topic`);
- `depart`: the row (table, key) left the record's subject (`Depart.subject`, None when it
  was keyed by the row) at `Depart.ts`: the driver forgets it here, after checking whether
  the change that moved it (`Depart.value`, when the record carries it) confirms a command;
- `tick`: the partition's sweep: advance the driver to the enforcement clock's now, within
  what the tick's watermarks say of the change topics (`Tick.watermarks`).
A record it cannot read raises `UnreadableRecord`, naming the header, never a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import orjson

from lethe import topics
from policy.event_wire import EventWireError, decode_event
from policy.events import ChangeEvent, Key, KeyValue
from policy.instants import Instant


class UnreadableRecord(ValueError):
    """The record does not follow the wire format (dead-letter it)."""


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """An `event`: the change record's value, from `source_topic` at `source_partition` and
    `source_offset` (the record A forwarded)."""

    value: bytes
    source_topic: str
    source_partition: int
    source_offset: int


@dataclass(frozen=True, slots=True)
class DecodedChange:
    """A `change`: the event as the assign stage decoded it, read from `source_topic` at
    `source_partition` and `source_offset`."""

    event: ChangeEvent
    source_topic: str
    source_partition: int
    source_offset: int


@dataclass(frozen=True, slots=True)
class Depart:
    """A `depart`: the row (table, key) moved from `subject` (None: keyed by the row) to
    another key, by a change at `ts` (µs, the change's own time); `value`: that change
    record's value (None from an assign agent that sent none), from `source_topic` at
    `source_partition` and `source_offset`."""

    table: str
    key: Key
    subject: str | None
    ts: Instant
    value: bytes | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None

    @property
    def source(self) -> tuple[str, int, int] | None:
        """(topic, partition, offset) of the change that moved the row, when carried."""
        if self.source_topic is None or self.source_partition is None:
            return None
        return (self.source_topic, self.source_partition, self.source_offset or 0)


@dataclass(frozen=True, slots=True)
class Tick:
    """A `tick`: sweep the partition. `watermarks`: (change topic, partition, wall µs) per
    change-topic partition the sending worker processed: every event of it at or before that
    instant that it forwarded to this partition is before the tick (`lethe.agents.watermarks`)."""

    watermarks: tuple[tuple[str, int, Instant], ...] = ()


TICK = Tick()
TICK_VALUE: Final = b""
"""A tick without watermarks: an empty value (aiokafka refuses a record whose key and value
are both null)."""
WATERMARKS_FIELD: Final = "watermarks"


def tick_value(watermarks: Mapping[tuple[str, int], Instant]) -> bytes:
    """A tick's value: `{"watermarks":{"<change topic>":{"<partition>":<wall µs>}}}`, compact
    JSON, topics and partitions in order; `TICK_VALUE` when there are none."""
    if not watermarks:
        return TICK_VALUE
    by_topic: dict[str, dict[str, int]] = {}
    for (topic, partition), instant in sorted(watermarks.items()):
        by_topic.setdefault(topic, {})[str(partition)] = instant
    return orjson.dumps({WATERMARKS_FIELD: by_topic})


def read_tick(value: bytes | None) -> Tick:
    """The tick of `value` (`tick_value`); an empty or null value is a tick without watermarks."""
    if not value:
        return TICK
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise UnreadableRecord("a tick whose value is not JSON") from None
    by_topic = document.get(WATERMARKS_FIELD) if isinstance(document, dict) else None
    if not isinstance(by_topic, dict):
        raise UnreadableRecord(f"a tick whose value has no {WATERMARKS_FIELD} object")
    found: list[tuple[str, int, Instant]] = []
    for topic, partitions in by_topic.items():
        if not isinstance(partitions, dict):
            raise UnreadableRecord(f"a tick whose {WATERMARKS_FIELD} of a topic is not an object")
        for partition, instant in partitions.items():
            if not partition.isascii() or not partition.isdigit() or type(instant) is not int:
                raise UnreadableRecord(
                    f"a tick whose {WATERMARKS_FIELD} are not partition: whole µs"
                )
            found.append((topic, int(partition), instant))
    return Tick(tuple(found))


SubjectRecord = DecodedChange | ChangeRecord | Depart | Tick


def header_map(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, bytes]:
    """Kafka headers as a dict (the last value of a repeated name; null values left out)."""
    return {name: value for name, value in headers or () if value is not None}


def tick_headers() -> list[tuple[str, bytes]]:
    """The headers of a tick record (its key is null, its value `tick_value`'s)."""
    return [(topics.KIND_HEADER, topics.TICK_KIND)]


def read_subject_record(headers: dict[str, bytes], value: bytes | None) -> SubjectRecord:
    """What the record asks for; `UnreadableRecord` when it does not follow the format."""
    kind = headers.get(topics.KIND_HEADER)
    if kind == topics.CHANGE_KIND:
        if value is None:
            raise UnreadableRecord("a change record with a null value")
        try:
            event, where = decode_event(value)
        except EventWireError as exc:
            raise UnreadableRecord(str(exc)) from None
        if where is None:
            raise UnreadableRecord("a change record that does not say where it was read")
        return DecodedChange(event, *where)
    if kind == topics.TICK_KIND:
        return read_tick(value)
    if kind == topics.EVENT_KIND:
        if value is None:
            raise UnreadableRecord("an event record with a null value")
        return ChangeRecord(
            value,
            _text(headers, topics.SOURCE_TOPIC_HEADER),
            _integer(headers, topics.SOURCE_PARTITION_HEADER),
            _integer(headers, topics.SOURCE_OFFSET_HEADER),
        )
    if kind == topics.DEPART_KIND:
        subject = headers.get(topics.SUBJECT_HEADER)
        depart = Depart(
            _text(headers, topics.TABLE_HEADER),
            parse_key(_text(headers, topics.KEY_HEADER)),
            None if subject is None else _decoded(topics.SUBJECT_HEADER, subject),
            _integer(headers, topics.TS_HEADER),
        )
        if not value:
            return depart
        return Depart(
            depart.table,
            depart.key,
            depart.subject,
            depart.ts,
            value,
            _text(headers, topics.SOURCE_TOPIC_HEADER),
            _integer(headers, topics.SOURCE_PARTITION_HEADER),
            _integer(headers, topics.SOURCE_OFFSET_HEADER),
        )
    shown = "none" if kind is None else repr(kind[:20])
    raise UnreadableRecord(
        f"header {topics.KIND_HEADER} is {shown}, not change, event, depart or tick"
    )


def parse_key(text: str) -> Key:
    """A primary key as `lethe-key` writes it (`{"id":42}`, primary-key order) -> `Key`."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise UnreadableRecord(f"header {topics.KEY_HEADER} is not JSON") from None
    if not isinstance(document, dict) or not document:
        raise UnreadableRecord(f"header {topics.KEY_HEADER} is not a JSON object of columns")
    key: list[tuple[str, KeyValue]] = []
    for column, value in document.items():
        if not isinstance(value, str | int | float | bool) and value is not None:
            raise UnreadableRecord(f"header {topics.KEY_HEADER}: column {column} is not a scalar")
        key.append((column, value))
    return tuple(key)


def _decoded(name: str, raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise UnreadableRecord(f"header {name} is not UTF-8") from None


def _text(headers: dict[str, bytes], name: str) -> str:
    raw = headers.get(name)
    if raw is None:
        raise UnreadableRecord(f"header {name} is missing")
    return _decoded(name, raw)


def _integer(headers: dict[str, bytes], name: str) -> int:
    text = _text(headers, name)
    if not text.isascii() or not text.lstrip("-").isdigit():
        raise UnreadableRecord(f"header {name} is not a whole number")
    return int(text)
