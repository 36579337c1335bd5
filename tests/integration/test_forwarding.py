"""At least once through the worker's own forwarding producer (`lethe.forwarding`), on the
real broker.

The assign agent forwards each change to `<app id>-subject-events` through a confluent-kafka
producer, outside Faust; Faust commits a change record's offset only once that producer has
delivered what it forwarded. Two tests, each on a change topic of its own (1 partition, named
by the workers' policy: config/policy.yaml's purposes with that source only), LETHE_ENFORCE=off:
- a worker killed (SIGKILL) while its forwards wait undelivered in its producer (a long
  linger.ms, tests/integration/held_forward_worker.py) has committed nothing, and the next
  worker of the app forwards every change again: each change record's offset reaches the
  subject events at least once. With LETHE_IT_COMMIT_UNSETTLED=1 the held worker commits
  without waiting for its deliveries and the test fails (2026-11-30: offset 200 committed,
  all 200 forwards undelivered; the next worker would start past them); so it does under
  Faust's exactly_once, whose transactions commit without asking the forwarder
  (tests/integration/exactly_once/sitecustomize.py; 2026-11-30: the same, offset 200
  committed, 200 undelivered);
- a worker whose forwards the broker refuses for good (its subject events topic takes records
  of 64 bytes at most) stops, says why, and commits nothing;
- the forwarding producer puts each subject in the partition Faust's producer (aiokafka's
  murmur2 partitioner) put it in, so a worker of this version keeps a subject's records in the
  partition an earlier one wrote them to.

The run's topics and consumer group are deleted at the end. Fails (never skips) when the stack
is down.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from lethe import topics
from lethe.forwarding import kafka_forwarder
from lethe.settings import Settings
from tests.integration.test_rebalance import forget, write_policy
from tests.integration.workers import (
    Reader,
    WorkerProcess,
    forwards,
    free_port,
    quiet,
    stop,
    topic_ends,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
HELD = Path(__file__).with_name("held_forward_worker.py")
CHANGES = 200
HELD_LINGER_MS = 120_000
"""The held worker's producer waits this long before it sends a batch: longer than the test."""
COMMIT_WAIT_S = 8.0
"""How long the held worker runs after handling every change: Faust tries to commit every
2.8 s."""


@dataclass
class Run:
    app_id: str
    topic: str
    table: str
    policy: Path
    settings: Settings
    workdir: Path

    @property
    def subject_events(self) -> str:
        return topics.subject_events_topic_name(self.app_id)

    def start(self, name: str, *, held: bool = False) -> WorkerProcess:
        port = free_port()
        log_path = self.workdir / f"{name}.log"
        env = {
            **os.environ,
            "LETHE_DATA_DIR": str(self.workdir / name),
            "LETHE_WEB_PORT": str(port),
            "LETHE_POLICY": str(self.policy),
            "LETHE_ENFORCE": "off",
            "LETHE_INTERNAL_PARTITIONS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        script = [str(HELD)] if held else ["-m", "lethe", "worker"]
        if held:
            env["LETHE_IT_FORWARD_LINGER_MS"] = str(HELD_LINGER_MS)
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, *script, "--app-id", self.app_id, "-l", "info"],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        return WorkerProcess(process, log_path, f"http://127.0.0.1:{port}/metrics", self.app_id)

    def committed(self) -> int | None:
        """The app's committed offset on the change topic (None: nothing committed)."""
        consumer = Consumer({**quiet(self.settings), "group.id": self.app_id})
        try:
            [tp] = consumer.committed([TopicPartition(self.topic, 0)], timeout=10)
        finally:
            consumer.close()
        return tp.offset if tp.offset >= 0 else None

    def forwarded_offsets(self) -> set[int]:
        """The change-topic offsets of the changes on the subject events topic now."""
        reader = Reader(self.settings, self.subject_events)
        try:
            records = reader.read()
        finally:
            reader.close()
        offsets: set[int] = set()
        for forward in forwards(records):
            if (decoded := forward.event) is not None and decoded[1] is not None:
                offsets.add(decoded[1][2])
            elif forward.headers.get(topics.KIND_HEADER) == topics.EVENT_KIND:
                offsets.add(int(forward.headers[topics.SOURCE_OFFSET_HEADER]))
        return offsets


@pytest.fixture
def run(real_stack: Settings, tmp_path: Path) -> Iterator[Run]:
    suffix = uuid.uuid4().hex[:8]
    app_id = f"lethe-it-forward-{suffix}"
    topic = f"hosting.public.lethe_it_forward_{suffix}"
    admin = AdminClient(quiet(real_stack))
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(
        timeout=30
    )
    try:
        yield Run(
            app_id,
            topic,
            topic.split(".", 1)[1],
            write_policy(topic, tmp_path / "policy.yaml"),
            real_stack,
            tmp_path,
        )
    finally:
        forget(real_stack, app_id, topic)


def produce_creates(run: Run, count: int) -> None:
    producer = Producer(quiet(run.settings))
    for row_id in range(1, count + 1):
        value = {
            "op": "c",
            "before": None,
            "after": {"id": row_id, "handled_at": 1_700_000_000_000_000},
            "source": {"ts_ms": 1_700_000_000_000},
        }
        producer.produce(run.topic, key=orjson.dumps({"id": row_id}), value=orjson.dumps(value))
    assert producer.flush(30) == 0, f"records to {run.topic} not delivered within 30s"


def handled(worker: WorkerProcess, table: str, count: int) -> bool | None:
    counts = worker.change_counts(table) or {}
    return True if counts.get("c", 0) >= count else None


def test_a_worker_killed_right_after_forwarding_loses_no_change(run: Run) -> None:
    produce_creates(run, CHANGES)
    held = run.start("held", held=True)
    try:
        wait_for(
            lambda: f"the held worker to handle {CHANGES} creates: {held.change_counts(run.table)}",
            lambda: handled(held, run.table, CHANGES),
            held,
        )
        time.sleep(COMMIT_WAIT_S)
        undelivered = CHANGES - len(run.forwarded_offsets())
        assert undelivered > 0, "every forward was delivered before the kill: nothing was at risk"
        held.process.kill()
        held.process.wait(timeout=10)
    finally:
        stop(held)
    committed = run.committed()
    assert committed is None or committed < CHANGES, (
        f"the killed worker committed offset {committed} of {run.topic} while {undelivered} of "
        "its forwards were not delivered"
    )

    restarted = run.start("restarted")
    try:
        wanted = set(range(CHANGES))
        wait_for(
            lambda: (
                f"every change forwarded at least once; missing offsets "
                f"{sorted(wanted - run.forwarded_offsets())[:20]}"
            ),
            lambda: True if wanted <= run.forwarded_offsets() else None,
            restarted,
        )
    finally:
        stop(restarted)


def test_a_forward_the_broker_refuses_stops_the_worker_before_it_commits(run: Run) -> None:
    admin = AdminClient(quiet(run.settings))
    admin.create_topics(
        [NewTopic(run.subject_events, num_partitions=1, config={"max.message.bytes": "64"})]
    )[run.subject_events].result(timeout=30)
    produce_creates(run, 5)
    worker = run.start("refused")
    try:
        deadline = time.monotonic() + 120
        while worker.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert worker.process.poll() is not None, (
            f"the worker still runs 120 s after its forwards were refused\n{worker.tail()}"
        )
    finally:
        stop(worker)
    assert "The broker refused a record" in worker.log(), worker.tail()
    assert run.committed() is None, "the worker committed changes it had not forwarded"
    assert topic_ends(run.settings, run.subject_events) == {0: 0}


@pytest.mark.parametrize("batched", [True, False], ids=["batches", "records"])
def test_subjects_land_in_the_partitions_fausts_producer_chose(run: Run, batched: bool) -> None:
    """Forwards sent in batches (as `lethe worker` sends them), or one record each, land
    where Faust's producer would have put them."""
    topic = f"{run.app_id}-placement"
    admin = AdminClient(quiet(run.settings))
    admin.create_topics([NewTopic(topic, num_partitions=8)])[topic].result(timeout=30)
    subjects = [f"customer:{n}".encode() for n in range(40)] + [b"email:ada@example.org"]
    forwarder = kafka_forwarder(run.settings, topic, 8 if batched else None)

    async def forward_all() -> bool:
        for subject in subjects:
            await forwarder.send(key=subject, value=b"{}", headers=[])
        return await forwarder.settle()

    assert asyncio.run(forward_all())
    reader = Reader(run.settings, topic)
    try:
        records = reader.read()
    finally:
        reader.close()
    placed = {forward.key: forward.partition for forward in forwards(records)}
    assert batched == all(record.key() is None for record in records)
    faust_placed = {
        key: DefaultPartitioner()(key, list(range(8)), list(range(8))) for key in subjects
    }
    assert placed == faust_placed
