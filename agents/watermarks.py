"""How far each change topic has been processed: the watermarks the ticks carry to the enforcer.

Never early because an input lags (docs/design/enforcer.md): a stage due at T is issued only
once every input that can change the row's fate has been processed up to T. The change topics
advance unevenly and the enforcing stage (E) of a subject may run on another worker than the
assign agent (A) that reads a given change-topic partition, so the watermarks travel in the
ticks of `<app id>-subject-events`:
- A's side, `ChangeProgress`: per change-topic partition this worker processed, the next
  offset to process and the newest event time it forwarded. Its `watermarks` (taken before
  the timer sends the ticks through the producer the events went through, which keeps
  per-partition order, so every event they cover is before the tick that carries them)
  give, per partition, the wall instant up to which it has been forwarded: the
  newest event time forwarded, or, when the partition is caught up (every record up to the
  high watermark of the consumer's last fetch is processed), the time of that fetch if later,
  but never past the source connector's newest heartbeat (`lethe.heartbeat`): a topic read
  to its end is complete only as far as the connector is known to have published.
- E's side, `InputWatermarks`: per partition of `<app id>-subject-events`, the newest
  watermark each tick brought per change-topic partition (kept in memory; after a restart a
  partition counts as not processed until a tick reports it), and per table the earliest over
  its topic's partitions (a table with a partition not reported yet has none).
Watermarks are per E partition because a tick says where the events it covers are in that
partition only. They assume that a change-topic partition's event times (Debezium's envelope
`ts_ms`, the connector's clock) do not go back.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from policy.instants import Instant

log = logging.getLogger(__name__)

InputPartition = tuple[str, int]
"""(change topic, partition)."""
Watermarks = Mapping[InputPartition, Instant]
"""Per change-topic partition, the wall instant (µs) up to which it has been forwarded."""


@dataclass(frozen=True, slots=True)
class PartitionEnd:
    """What the consumer knows of a change-topic partition assigned to this worker."""

    topic: str
    partition: int
    committed: int | None
    """The committed offset Faust knows (every record below it was processed), or None."""
    highwater: int | None
    """The partition's end at the consumer's last fetch of it, or None before any."""
    polled_us: Instant | None
    """When that fetch's answer arrived (µs since the epoch), or None."""


UNCHECKED: Instant = 2**62
"""`heard_until` when the source's heartbeats are not checked (LETHE_SOURCE_HEARTBEAT_TOPIC=off)."""


def watermark(
    newest: Instant | None,
    next_offset: int,
    highwater: int | None,
    polled_us: Instant | None,
    heard_until: Instant | None = UNCHECKED,
) -> Instant | None:
    """Up to when a partition has been forwarded (see the module docstring); None: unknown.

    A caught-up partition counts up to its last fetch only as far as the source connector is
    heard from (`heard_until`, `lethe.heartbeat`; None: never heard): past that, a change the
    connector has not published yet could still come."""
    if highwater is not None and polled_us is not None and next_offset >= highwater:
        if heard_until is None:
            return newest
        caught_up = min(polled_us, heard_until)
        return caught_up if newest is None or newest < caught_up else newest
    return newest


class ChangeProgress:
    """The assign agent's progress per change-topic partition (A's side, see the module)."""

    __slots__ = ("_newest", "_next", "topics")

    def __init__(self, topics: Collection[str]) -> None:
        self.topics = frozenset(topics)
        self._next: dict[InputPartition, int] = {}
        self._newest: dict[InputPartition, Instant] = {}

    def processed(self, topic: str, partition: int, offset: int, forwarded: Instant | None) -> None:
        """The record at `offset` was processed; `forwarded`: the time of the event it sent to
        the subject events topic (None: nothing sent, a tombstone or a dead letter)."""
        where = (topic, partition)
        if offset + 1 > self._next.get(where, 0):
            self._next[where] = offset + 1
        if forwarded is not None and forwarded > self._newest.get(where, forwarded - 1):
            self._newest[where] = forwarded

    def position(self, end: PartitionEnd) -> int:
        """The next offset to process in `end`'s partition: what this worker processed, or
        what Faust committed if that is further."""
        return max(self._next.get((end.topic, end.partition), 0), end.committed or 0)

    def newest(self, end: PartitionEnd) -> Instant | None:
        """The newest event time processed from `end`'s partition (None: none yet)."""
        return self._newest.get((end.topic, end.partition))

    def watermarks(
        self, ends: Iterable[PartitionEnd], heard_until: Instant | None
    ) -> dict[InputPartition, Instant]:
        """Per partition in `ends` (those this worker is assigned), its watermark if known;
        `heard_until`: see `watermark`."""
        found: dict[InputPartition, Instant] = {}
        for end in ends:
            where = (end.topic, end.partition)
            next_offset = max(self._next.get(where, 0), end.committed or 0)
            mark = watermark(
                self._newest.get(where), next_offset, end.highwater, end.polled_us, heard_until
            )
            if mark is not None:
                found[where] = mark
        return found


def partition_ends(consumer: Any, topics: Collection[str]) -> list[PartitionEnd]:
    """What Faust's consumer (`app.consumer`) knows of its assigned partitions of `topics`.

    Reads aiokafka's per-partition fetch state (high watermark and the time of its last
    fetch) and the offsets Faust has committed; a partition it cannot read (being revoked) is
    left out, so it is reported by no watermark this time."""
    ends: list[PartitionEnd] = []
    try:
        client = consumer._thread._ensure_consumer()
        committed = consumer._committed_offset
        assigned = [tp for tp in consumer.assignment() if tp.topic in topics]
    except Exception:
        log.debug("The consumer cannot tell its assignment yet", exc_info=True)
        return ends
    for tp in assigned:
        try:
            polled_ms = client.last_poll_timestamp(tp)
            highwater = client.highwater(tp)
        except Exception:  # revoked meanwhile
            continue
        ends.append(
            PartitionEnd(
                tp.topic,
                tp.partition,
                committed.get(tp),
                highwater,
                None if polled_ms is None else int(polled_ms) * 1000,
            )
        )
    return ends


class InputWatermarks:
    """The watermarks the ticks brought, per partition of the subject events (E's side)."""

    __slots__ = ("_reported", "partitions", "tables")

    def __init__(self, tables: Mapping[str, str], partitions: int) -> None:
        self.tables = dict(tables)
        """Change topic -> its table (the policy's sources)."""
        self.partitions = partitions
        """The change topics' partition count P."""
        self._reported: dict[int, dict[InputPartition, Instant]] = {}

    def report(self, partition: int, watermarks: Iterable[tuple[str, int, Instant]]) -> None:
        """A tick on `partition` brought these (topic, partition, wall µs): keep the newest.
        Topics outside the policy and partitions outside 0..P-1 are ignored."""
        known = self._reported.setdefault(partition, {})
        for topic, input_partition, instant in watermarks:
            if topic not in self.tables or not 0 <= input_partition < self.partitions:
                continue
            where = (topic, input_partition)
            if instant > known.get(where, instant - 1):
                known[where] = instant

    def processed(self, partition: int) -> dict[str, Instant]:
        """Per table, the wall instant up to which all of its topic's partitions were
        processed, as the ticks on `partition` say; a table with a partition not reported on
        `partition` yet is left out."""
        known = self._reported.get(partition, {})
        found: dict[str, Instant] = {}
        for topic, table in self.tables.items():
            marks = [known.get((topic, p)) for p in range(self.partitions)]
            if all(mark is not None for mark in marks):
                found[table] = min(mark for mark in marks if mark is not None)
        return found

    def slowest(self) -> dict[str, Instant]:
        """Per table, the earliest of `processed` over every partition that had a tick; a
        table that one of them lacks is left out."""
        found: dict[str, Instant] = {}
        views = [self.processed(partition) for partition in self._reported]
        for table in self.tables.values():
            marks = [view.get(table) for view in views]
            if marks and all(mark is not None for mark in marks):
                found[table] = min(mark for mark in marks if mark is not None)
        return found

    def forget(self, partition: int) -> None:
        """Drop what the ticks on `partition` brought (it was revoked)."""
        self._reported.pop(partition, None)
