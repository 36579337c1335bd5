"""What the policy makes due, and when, for what the demo's worker reads.

At its start the demo reads every record of the change topics (`read_history`), as its
worker, with a new app id, will, and runs them through the same engine and driver
(`policy.simulation.simulate`) under the demo's enforcement clock. The result is every
command the worker should issue up to a horizon, each with the enforcement instant it is
issued at; the summary counts those issued by the clock's now as "due", beside the commands
the worker did issue. On a stack whose topics hold more than the initial snapshot (an earlier
demo's deletes, rows seeded again), the worker issues commands for the rows as they were
then too, and so does the schedule. `schedule` does the same for rows (the generated demo
rows), as one snapshot.
"""

from __future__ import annotations

import time
import uuid
from bisect import bisect_right
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

from policy.enforcement_clock import EnforcementClock
from policy.engine import Engine
from policy.instants import Instant
from policy.simulation import simulate

EPOCH = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Per table (`public.<name>`), the sorted enforcement instants its commands are issued at."""

    issued_at: Mapping[str, Sequence[Instant]]

    def due_by(self, now: Instant) -> dict[str, int]:
        """Commands issued by `now`, by table."""
        return {table: bisect_right(times, now) for table, times in self.issued_at.items()}


def wait_quiet(
    kafka: Mapping[str, Any], topics: Sequence[str], quiet_s: float = 3.0, timeout_s: float = 60.0
) -> None:
    """Until no record was added to `topics` for `quiet_s` seconds (at most `timeout_s`): the
    rows just written (seeded, or snapshotted by a new source) are on the topics by then."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**kafka, "group.id": f"lethe-demo-quiet-{uuid.uuid4().hex[:12]}"})
    try:
        metadata = consumer.list_topics(timeout=10).topics
        places = [
            TopicPartition(topic, partition)
            for topic in topics
            if topic in metadata
            for partition in metadata[topic].partitions
        ]

        def ends() -> list[int]:
            return [consumer.get_watermark_offsets(place, timeout=10)[1] for place in places]

        deadline = time.monotonic() + timeout_s
        last, since = ends(), time.monotonic()
        while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
            time.sleep(0.5)
            now = ends()
            if now != last:
                last, since = now, time.monotonic()
    finally:
        consumer.close()


def read_history(
    kafka: Mapping[str, Any],
    topics: Sequence[str],
    first: Collection[str] = (),
    timeout_s: float = 120.0,
) -> list[bytes]:
    """Every record now on the change `topics`, as `lethe simulate` lines: what a worker with a
    new app id reads. Those of the `first` topics (the legal holds') come first, then the others
    in the order they were written (record timestamp, then offset): the worker reads the
    topics side by side, so a customer's rows are not issued before it has seen their hold."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            **kafka,
            "group.id": f"lethe-demo-schedule-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
        }
    )
    records: list[tuple[int, int, str, int, int, bytes]] = []
    try:
        metadata = consumer.list_topics(timeout=10).topics
        remaining: dict[tuple[str, int], int] = {}
        assignment = []
        for topic in topics:
            partitions = sorted(metadata[topic].partitions) if topic in metadata else []
            for partition in partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                if high > low:
                    remaining[(topic, partition)] = high
                    assignment.append(TopicPartition(topic, partition, OFFSET_BEGINNING))
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            place = (message.topic() or "", message.partition() or 0)
            offset = message.offset() or 0
            if place not in remaining:
                continue
            key, value = message.key(), message.value()
            line = orjson.dumps(
                {
                    "topic": place[0],
                    "key": orjson.loads(key) if key else None,
                    "value": orjson.loads(value) if value is not None else None,
                }
            )
            written = message.timestamp()[1]
            records.append(
                (0 if place[0] in first else 1, written, place[0], place[1], offset, line)
            )
            if offset + 1 >= remaining[place]:
                del remaining[place]
        if remaining:
            raise TimeoutError(f"the change topics were not read to their end: {remaining}")
    finally:
        consumer.close()
    records.sort(key=lambda record: record[:5])
    return [record[5] for record in records]


def snapshot_line(topic: str, table: str, row: Mapping[str, Any], ts_ms: int) -> bytes:
    """The row as the Debezium snapshot record `lethe simulate` reads (no schema wrapper)."""
    after = {column: _json_value(value) for column, value in row.items()}
    key = {column: after[column] for column in ("id",) if column in after}
    value = {
        "before": None,
        "after": after,
        "source": {"ts_ms": ts_ms, "table": table.split(".", 1)[1], "snapshot": "true"},
        "op": "r",
        "ts_ms": ts_ms,
    }
    return orjson.dumps({"topic": topic, "key": key, "value": value})


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return (value - EPOCH).days
    if isinstance(value, Decimal):
        return str(value)
    return value


def schedule(
    engine: Engine,
    rows: Iterator[tuple[str, Mapping[str, Any]]],
    clock: EnforcementClock,
    wall_start_ms: int,
    until: Instant,
) -> Schedule:
    """The commands the worker issues for `rows`, snapshotted at `wall_start_ms`, up to `until`."""
    policy = engine.policy
    lines = (
        snapshot_line(policy.sources[table].topic, table, row, wall_start_ms) for table, row in rows
    )
    return replay(engine, lines, clock, until)


def replay(
    engine: Engine, lines: Iterable[bytes], clock: EnforcementClock, until: Instant
) -> Schedule:
    """The commands the engine issues for the change records `lines` under `clock`, up to
    `until` (`lethe simulate`)."""
    policy = engine.policy
    result = simulate(engine, lines, until=until, clock=clock)
    if result.errors:
        first = result.errors[0]
        raise ValueError(f"{len(result.errors)} demo row(s) did not decode: {first.message}")
    issued: dict[str, list[Instant]] = {table: [] for table in policy.sources}
    for command in result.commands:
        issued[command.table].append(command.issued_at)
    return Schedule({table: sorted(times) for table, times in issued.items()})
