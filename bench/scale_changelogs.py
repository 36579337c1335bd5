"""The scale bench's changelog writer (`bench/scale_bench.py`): the rows' Debezium creates,
the state a worker would have written for them, derived with lethe's own code, produced
straight into the app's changelog topics, and the Kafka calls that make and read those topics.
Kept apart from the scenarios the bench times.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import orjson
from aiokafka.partitioner import murmur2
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from lethe.agents.assign import LOCATIONS_TABLE
from lethe.agents.routing import route
from lethe.faust_store import LOCATIONS, ROWS, SUBJECTS, row_key, where_key
from policy.decoding import decode_raw
from policy.driver import Driver
from policy.engine import Engine
from policy.events import ChangeEvent
from policy.instants import format_instant, parse_instant
from policy.store import MemoryStore

PARTITIONS = 8
SWEEP_AT = parse_instant("2026-06-01T00:00:00Z")
"""Scenario k's group is due at SWEEP_AT + k minutes (logged a year before)."""
INGESTED_AT = SWEEP_AT - 86_400_000_000
"""The enforcement instant the rows were read at (the manual clock's, before any is due)."""
CUSTOMER_BASE = 700_000_000
STEP_US = 60_000_000


@dataclass
class Layout:
    run: str
    prefix: str
    table: str = field(init=False)
    topic: str = field(init=False)
    app_id: str = field(init=False)

    def __post_init__(self) -> None:
        self.table = f"bench_scale_{self.run}"
        self.topic = f"{self.prefix}.public.{self.table}"
        self.app_id = f"scale-{self.run}"

    def changelogs(self, app_id: str) -> dict[str, tuple[str, int]]:
        """Table name -> (its changelog topic, partitions)."""
        return {
            name: (f"{app_id}-{name}-changelog", 1 if name == LOCATIONS_TABLE else PARTITIONS)
            for name in (ROWS, SUBJECTS, LOCATIONS, LOCATIONS_TABLE)
        }


def logged_at(row: int, due: int, groups: int) -> str:
    """When row `row` was logged: a year before its group's due instant, or half a year
    later for the rows of no group."""
    group = row // due if row < due * groups else None
    sweep = datetime.fromtimestamp(SWEEP_AT / 1e6, UTC)
    if group is None:
        at = sweep + timedelta(days=180)
    else:
        at = sweep + timedelta(microseconds=group * STEP_US)
    return format_instant(int(at.replace(year=at.year - 1).timestamp() * 1_000_000))


def change_record(row: int, customers: int, due: int, groups: int) -> tuple[bytes, bytes]:
    after = {
        "id": row,
        "customer_id": CUSTOMER_BASE + row % customers,
        "ip_address": "192.0.2.1",
        "logged_at": logged_at(row, due, groups),
    }
    value = {"before": None, "after": after, "source": {"ts_ms": 1_780_000_000_000}, "op": "c"}
    return orjson.dumps({"id": row}), orjson.dumps(value)


def partition_of(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


Record = tuple[str, int, bytes, bytes]
"""(table name, partition, key, value) of a changelog record."""


def state_records(
    engine: Engine, layout: Layout, rows: int, customers: int, due: int, groups: int, chunk: int
) -> Iterator[Record]:
    """The changelog records of a worker that read `rows` creates (see the module)."""
    for first in range(0, customers, chunk):
        store = MemoryStore()
        driver = Driver(engine, store)
        subject_partition: dict[str, int] = {}
        for customer in range(first, min(first + chunk, customers)):
            for row in range(customer, rows, customers):
                _, value = change_record(row, customers, due, groups)
                event = decode_raw(engine.decoding, layout.topic, None, value)
                assert isinstance(event, ChangeEvent), event
                event = replace(event, ts=INGESTED_AT)  # the manual clock's instant
                routing = route(engine, None, event)
                for location, subject in routing.writes:
                    assert subject is not None
                    yield LOCATIONS_TABLE, 0, location.encode(), subject.encode()
                (record,) = routing.records
                subject_key = record.key.encode()
                subject_partition[record.key] = partition_of(subject_key, PARTITIONS)
                outcome = driver.feed(event, {})
                assert not outcome.commands
        for (subject, table, row_key_values), state in store._rows.items():
            assert subject is not None
            partition = subject_partition[subject]
            yield ROWS, partition, row_key((subject, table, row_key_values)), state.to_bytes()
            yield LOCATIONS, partition, where_key(table, row_key_values), orjson.dumps(subject)
        for subject, subject_state in store._subjects.items():
            yield SUBJECTS, subject_partition[subject], subject.encode(), subject_state.to_bytes()


def write_state(
    bootstrap: str, layout: Layout, records: Iterator[Record], keep: bool
) -> dict[tuple[str, int, bytes], bytes]:
    """Produce the records to the app's changelog topics; return them by (table, partition,
    key) when asked to keep them (validation), else an empty dict with the counts printed."""
    topics = layout.changelogs(layout.app_id)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "log_level": 0,
        }
    )
    kept: dict[tuple[str, int, bytes], bytes] = {}
    counts: dict[str, int] = dict.fromkeys(topics, 0)
    for produced, (name, partition, key, value) in enumerate(records, 1):
        while True:
            try:
                producer.produce(topics[name][0], key=key, value=value, partition=partition)
                break
            except BufferError:
                producer.poll(0.1)
        counts[name] += 1
        if keep:
            kept[(name, partition, key)] = value
        if produced % 100_000 == 0:
            producer.poll(0)
    producer.flush(120)
    print("changelog records written: " + ", ".join(f"{n} {c:,}" for n, c in counts.items()))
    return kept


def create_topics(bootstrap: str, specs: dict[str, tuple[int, dict[str, str]]]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    futures = admin.create_topics(
        [
            NewTopic(name, num_partitions=count, replication_factor=1, config=config)
            for name, (count, config) in specs.items()
        ]
    )
    for future in futures.values():
        future.result(30)


def read_changelogs(
    bootstrap: str, topics: dict[str, tuple[str, int]]
) -> dict[tuple[str, int, bytes], bytes]:
    """Every changelog record (last value per key; tombstones drop the key)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"scale-read-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "log_level": 0,
        }
    )
    by_topic = {topic: name for name, (topic, _) in topics.items()}
    assignment = [
        TopicPartition(topic, p, 0) for topic, count in topics.values() for p in range(count)
    ]
    ends = {
        (tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1]
        for tp in assignment
    }
    consumer.assign(assignment)
    found: dict[tuple[str, int, bytes], bytes] = {}
    done = {where for where, end in ends.items() if end == 0}
    deadline = time.monotonic() + 300
    while len(done) < len(ends) and time.monotonic() < deadline:
        for message in consumer.consume(10_000, timeout=1.0):
            where = (message.topic(), message.partition())
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    done.add(where)
                continue
            key = (by_topic[where[0]], where[1], message.key())
            if message.value() is None:
                found.pop(key, None)
            else:
                found[key] = message.value()
            if message.offset() + 1 >= ends[where]:
                done.add(where)
    consumer.close()
    return found


def topic_ends(bootstrap: str, topic: str) -> list[TopicPartition]:
    """Each partition of `topic` at its current end offset."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "scale-probe", "log_level": 0})
    try:
        ends = []
        for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            where = TopicPartition(topic, partition)
            ends.append(
                TopicPartition(topic, partition, consumer.get_watermark_offsets(where, 10)[1])
            )
        return ends
    finally:
        consumer.close()
