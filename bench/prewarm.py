"""Prototype (bench only): replay a worker's changelogs into its RocksDB files before it starts.

Faust replays a changelog at a few thousand records per second, most of it its own
per-message handling. This reads the same topics with confluent-kafka and writes them into
the very files Faust opens (`<data dir>/<app id>/v1/tables/<table>-<partition>.db`, rocksdict
in raw mode, one write batch per fetch), then stores, as Faust does, the offset of the last
record applied under `__faust\\0offset__`; Faust's own recovery then reads only what came
after. Each partition is read from the offset its file already holds (+1), so a kept data
directory costs nothing here. Used by `bench/scale_bench.py --scenarios prewarmed`.
"""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition
from rocksdict import Options, Rdict, WriteBatch

OFFSET_KEY = b"__faust\x00offset__"


def prewarm(bootstrap: str, tabledir: Path, tables: dict[str, tuple[str, int]]) -> int:
    """Replay each table's changelog (name -> (topic, partitions)) into `tabledir`; return
    the records applied."""
    tabledir.mkdir(parents=True, exist_ok=True)
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    dbs: dict[tuple[str, int], Rdict] = {}
    names: dict[str, str] = {}
    start: list[TopicPartition] = []
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"prewarm-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
            "log_level": 0,
        }
    )
    ends: dict[tuple[str, int], int] = {}
    for name, (topic, partitions) in tables.items():
        names[topic] = name
        for partition in range(partitions):
            db = Rdict(str(tabledir / f"{name}-{partition}.db"), options)
            dbs[(topic, partition)] = db
            held = db.get(OFFSET_KEY)
            first = 0 if held is None else int(held) + 1
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            if first < high:
                ends[(topic, partition)] = high
                start.append(TopicPartition(topic, partition, first))
    applied = 0
    if start:
        consumer.assign(start)
    while ends:
        batches: dict[tuple[str, int], WriteBatch] = {}
        last: dict[tuple[str, int], int] = {}
        for message in consumer.consume(50_000, timeout=1.0):
            where = (message.topic(), message.partition())
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    ends.pop(where, None)
                continue
            batch = batches.get(where)
            if batch is None:
                batch = batches[where] = WriteBatch(raw_mode=True)
            if message.value() is None:
                batch.delete(message.key())
            else:
                batch.put(message.key(), message.value())
            last[where] = message.offset()
            applied += 1
        for where, batch in batches.items():
            db = dbs[where]
            db.write(batch)
            db.put(OFFSET_KEY, str(last[where]).encode())
            if last[where] + 1 >= ends.get(where, 0):
                ends.pop(where, None)
    consumer.close()
    for db in dbs.values():
        db.close()
    return applied
