"""The ingest bench's input (`bench/ingest_bench.py`): Debezium change records of a table
with the connection-log columns, the policy naming that table, and the Kafka calls that make,
fill and measure its topic. Kept apart from the contenders the bench times.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

import orjson
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
SOURCE_TABLE = "public.connection_logs"


# --- the records ------------------------------------------------------------------------


def zoned(ms: int) -> str:
    """Debezium's io.debezium.time.ZonedTimestamp text of a timestamptz (microseconds)."""
    instant = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def ip_address(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(65536):x}"
    return f"{rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rng.randrange(1, 255)}"


def change_records(
    n: int, table: str, create_share: float, seed: int = 7, *, full_identity: bool = False
) -> Iterator[tuple[bytes, bytes]]:
    """N change records of `public.<table>` (connection-log columns) as Debezium's JSON
    converter writes them without schemas, a few seconds apart: a create logs a connection,
    an update rewrites an earlier one (REPLICA IDENTITY DEFAULT: no before image; with
    `full_identity`, REPLICA IDENTITY FULL as on the demo tables: the row before it)."""
    rng = random.Random(seed)
    start_ms = int(dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC).timestamp() * 1000)
    lsn = 24_023_928
    rows: list[tuple[int, int, str, int]] = []
    before: dict[str, object] | None = None
    for index in range(n):
        now_ms = start_ms + index * 3_000 + rng.randrange(3_000)
        lsn += rng.randrange(200, 600)
        if not rows or rng.random() < create_share:
            row = (len(rows) + 1, rng.randrange(1, 20_000), ip_address(rng), now_ms)
            rows.append(row)
            op = "c"
        else:
            index_of_row = rng.randrange(len(rows))
            previous = rows[index_of_row]
            row_id, customer_id, _, logged_ms = previous
            row = rows[index_of_row] = (row_id, customer_id, ip_address(rng), logged_ms)
            op = "u"
            before = _image(previous) if full_identity else None
        envelope = {
            "before": before if op == "u" else None,
            "after": _image(row),
            "source": {
                "version": "2.7.3.Final",
                "connector": "postgresql",
                "name": "hosting",
                "ts_ms": now_ms,
                "snapshot": "false",
                "db": "hosting",
                "sequence": f'["{lsn - 312}","{lsn}"]',
                "schema": "public",
                "table": table,
                "txId": 800 + index,
                "lsn": lsn,
                "xmin": None,
            },
            "transaction": None,
            "op": op,
            "ts_ms": now_ms + 41,
        }
        yield orjson.dumps({"id": row[0]}), orjson.dumps(envelope)


def _image(row: tuple[int, int, str, int]) -> dict[str, object]:
    row_id, customer_id, address, logged_ms = row
    return {
        "id": row_id,
        "customer_id": customer_id,
        "ip_address": address,
        "logged_at": zoned(logged_ms),
    }


def bench_policy(path: Path, table: str) -> Path:
    """config/policy.yaml with its sources cut to the connection-log source, renamed `table`."""
    document = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
    document["sources"] = {f"public.{table}": document["sources"][SOURCE_TABLE]}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


# --- Kafka ------------------------------------------------------------------------------


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})


def create_topic(bootstrap: str, topic: str) -> None:
    client = admin(bootstrap)  # alive until the future is done
    future = client.create_topics([NewTopic(topic, num_partitions=1)])[topic]
    future.result(timeout=30)


def produce(bootstrap: str, topic: str, records: Iterator[tuple[bytes, bytes]]) -> tuple[int, int]:
    """Write the records; return their count and total value bytes."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000, "acks": "all"}
    )
    count = size = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        size += len(value)
        if count % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise SystemExit(f"could not write all {count} records to {topic} within 120 s")
    return count, size


def end_offsets(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Sum of the end offsets of each topic's partitions (0 for a topic that is not there)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "log_level": 0})
    try:
        metadata = consumer.list_topics(timeout=10)
        totals: dict[str, int] = {}
        for topic in topics:
            found = metadata.topics.get(topic)
            totals[topic] = 0
            if found is None or found.error is not None:
                continue
            for partition in found.partitions:
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                totals[topic] += max(high, 0)
        return totals
    finally:
        consumer.close()


def topics_of(bootstrap: str, prefix: str) -> list[str]:
    names = admin(bootstrap).list_topics(timeout=10).topics
    return sorted(name for name in names if name.startswith(prefix))
