"""The soak bench's load (`bench/soak_bench.py`): the ledger of what it wrote and saw, the
change records of its table, the feed that writes creates, updates and early deletes at their
steady rates, and the database thread that confirms each delete command. Kept apart from the
sampler and the verdict.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from ingest_stream import ip_address, zoned

from lethe.topics import COMMAND_PARTITIONS

ROWS_PER_CUSTOMER = 5
MUTABLE_MARGIN_S = 2.0


@dataclass
class Ledger:
    """What the bench wrote and saw, shared by its threads (each key written by one)."""

    due_ms: dict[int, int] = field(default_factory=dict)
    early_deleted: set[int] = field(default_factory=set)
    commanded_ms: dict[int, int] = field(default_factory=dict)
    repeated: int = 0
    after_early_delete: int = 0
    written: int = 0
    confirmations: int = 0


def change_record(
    row: int, op: str, now_ms: int, rng: random.Random, logged_ms: int | None = None
) -> bytes:
    """A Debezium change record of the bench table (schemaless JSON, REPLICA IDENTITY
    DEFAULT: no before image on update; the key columns only on delete)."""
    image = None
    if logged_ms is not None:
        image = {
            "id": row,
            "customer_id": 700_000_000 + row // ROWS_PER_CUSTOMER,
            "ip_address": ip_address(rng),
            "logged_at": zoned(logged_ms),
        }
    envelope = {
        "before": {"id": row, "customer_id": None, "ip_address": None, "logged_at": None}
        if op == "d"
        else None,
        "after": image,
        "source": {"ts_ms": now_ms},
        "op": op,
        "ts_ms": now_ms,
    }
    return orjson.dumps(envelope)


def key_of(row: int) -> bytes:
    return orjson.dumps({"id": row})


class Feed(threading.Thread):
    """Writes creates, updates and early deletes at their steady rates until `stop` is set."""

    def __init__(self, producer: Producer, topic: str, args: argparse.Namespace, ledger: Ledger):
        super().__init__(daemon=True)
        self.producer, self.topic, self.ledger = producer, topic, ledger
        creates = args.rate * (1 - args.update_share) / 2
        self.weights = (creates, args.rate * args.update_share, creates * args.early_share)
        self.lifetime_ms = int(args.lifetime * 1000)
        self.rng = random.Random(args.seed)
        self.stop = threading.Event()
        self.mutable: deque[int] = deque()
        self.next_row = 1
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def _run(self) -> None:
        started = time.monotonic()
        per_second = sum(self.weights)
        while not self.stop.is_set():
            target = int((time.monotonic() - started) * per_second)
            while self.ledger.written < target:
                self._one()
            self.producer.poll(0)
            time.sleep(0.02)

    def _one(self) -> None:
        now_ms = int(time.time() * 1000)
        horizon = now_ms + MUTABLE_MARGIN_S * 1000
        while self.mutable and self.ledger.due_ms[self.mutable[0]] <= horizon:
            self.mutable.popleft()
        kind = self.rng.choices(("c", "u", "d"), self.weights)[0]
        row = self._pick() if kind != "c" else None
        if kind == "c" or row is None:
            row = self.next_row
            self.next_row += 1
            self.ledger.due_ms[row] = now_ms + self.lifetime_ms
            self.mutable.append(row)
            value = change_record(row, "c", now_ms, self.rng, now_ms)
        elif kind == "u":
            logged = self.ledger.due_ms[row] - self.lifetime_ms
            value = change_record(row, "u", now_ms, self.rng, logged)
        else:
            self.ledger.early_deleted.add(row)
            value = change_record(row, "d", now_ms, self.rng)
        self._send(key_of(row), value)
        if kind == "d":
            self._send(key_of(row), None)

    def _pick(self) -> int | None:
        """A random row not deleted and not within MUTABLE_MARGIN_S of its due."""
        for _ in range(3):
            if not self.mutable:
                return None
            row = self.mutable[self.rng.randrange(len(self.mutable))]
            if row not in self.ledger.early_deleted:
                return row
        return None

    def _send(self, key: bytes, value: bytes | None) -> None:
        while True:
            try:
                self.producer.produce(self.topic, key=key, value=value)
                break
            except BufferError:
                self.producer.poll(0.1)
        if value is not None:
            self.ledger.written += 1


class Database(threading.Thread):
    """Plays PostgreSQL and Debezium for the sink topic: each delete command read there is
    answered with the row's delete record and tombstone on the change topic (once a row)."""

    def __init__(self, bootstrap: str, sink: str, topic: str, ledger: Ledger, seed: int):
        super().__init__(daemon=True)
        self.topic, self.ledger = topic, ledger
        self.rng = random.Random(seed + 1)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 0})
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"unused-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "log_level": 0,
            }
        )
        self.consumer.assign(
            [TopicPartition(sink, p, OFFSET_BEGINNING) for p in range(COMMAND_PARTITIONS)]
        )
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for message in self.consumer.consume(500, timeout=0.2):
                    if message.error() is None:
                        self._apply(message.key(), message.timestamp()[1])
                self.producer.poll(0)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.producer.flush(30)
            self.consumer.close()

    def _apply(self, key: bytes | None, sent_ms: int) -> None:
        row = int(orjson.loads(key or b"{}").get("payload", {}).get("id", 0))
        if row in self.ledger.commanded_ms:
            self.ledger.repeated += 1
            return
        self.ledger.commanded_ms[row] = sent_ms
        if row in self.ledger.early_deleted:
            self.ledger.after_early_delete += 1
            return
        now_ms = int(time.time() * 1000)
        self.producer.produce(
            self.topic, key=key_of(row), value=change_record(row, "d", now_ms, self.rng)
        )
        self.producer.produce(self.topic, key=key_of(row), value=None)
        self.ledger.confirmations += 1
