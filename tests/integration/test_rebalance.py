"""No first record lost when a second worker joins (issue 7), against the real broker.

A change topic of the run's own with 4 partitions, named by the workers' policy
(config/policy.yaml's purposes with that source only). Worker 1 starts and reads all 4; nothing is
committed, as nothing has been written yet. Worker 2 joins the group: worker 1's
event loop stalls just before it resumes its streams after the rebalance
(tests/integration/stalled_worker.py), and meanwhile records arrive in every
partition, their first ones. Then worker 1 goes on. Every record must be counted
in `lethe_change_events_total`, summed over both workers: each partition gets
records of one operation (c, u, d, r), so the count per operation is the count per
partition; a record counted twice is allowed (at least once), one missing is not.
No record of the topic may be dead-lettered either (`lethe_dead_letters_total`): a
record that fails after it is counted (routing, the `locations` table) goes to
lethe.deadletter instead of being processed.

In faust-streaming 0.15.3 the fetch worker 1 began before the rebalance returns
those records while its flow is stopped; Faust drops them and seeks back only
partitions with a committed offset, so worker 1 would skip its partitions' first
records for good (lethe/consumer.py says how Lethe prevents it). In a worker that
fetch waits for records 1 s at most; here it waits `FETCH_TIMEOUT_S`, so that it is
still waiting when the records arrive and the test does not depend on timing.
With Faust's own consumer (LETHE_IT_STOCK_CONSUMER=1 in the environment) the test
fails: on 2026-11-30 the 25 records of partition 2 were never counted.

Since the worker has a table, Faust also empties the stream buffers at the end of the
rebalance, after its seek: a record worker 1 fetched in between and had not processed
yet was lost (the first record of partition 2 or 3, in 6 of 11 runs on 2026-11-30).
The test makes it happen every time: each seek takes `SEEK_PAUSE_S` longer and each
record `HANDLE_DELAY_S` to process, so that records wait in the buffer when the
rebalance ends. Before `lethe.consumer` held such records back until the rebalance is
over, worker 1 then counted 5 of the 25 records of each of its partitions.

The run's topic, consumer group and Faust's internal topics are deleted at the end,
and both workers stopped (SIGTERM, then SIGKILL). Fails (never skips) when the
stack is down.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import orjson
import pytest
import yaml
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from lethe.policy_file import load_policy
from lethe.settings import Settings
from tests.integration.workers import free_port, quiet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = Path(__file__).with_name("stalled_worker.py")
PARTITIONS = 4
OPS = ("c", "u", "d", "r")
"""The operation of the records of partition 0, 1, 2, 3."""
RECORDS_PER_PARTITION = 25
TIMEOUT_S = 120.0
FETCHED_WAIT_S = 3.0
"""How long worker 1 stays stalled after the records are written: ample for its
consumer to fetch them (it fetches within milliseconds on the local stack)."""
FETCH_TIMEOUT_S = 30.0
"""How long one fetch of Faust's waits for records in the test (Faust: 1 s), so that
the fetch worker 1 began before the rebalance is still waiting when they arrive."""

SEEK_PAUSE_S = 0.5
"""How much longer each seek to committed offsets takes in the test (stalled_worker.py),
so that worker 1 fetches records between its last seek of the rebalance and the end of
that rebalance."""
HANDLE_DELAY_S = 0.05
"""How long each change record takes to process in the test, so that fetched records
are still waiting in the stream's buffer when the rebalance ends."""

T = TypeVar("T")


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_url: str
    stall_dir: Path

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.name} log (tail) ---\n" + "\n".join(text)

    def resumed(self) -> int:
        """How many times the worker has resumed its streams after an assignment."""
        path = self.stall_dir / "resumed"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def metrics(self) -> str | None:
        """The worker's /metrics page; None while it does not answer."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return None

    def counts(self, table: str) -> dict[str, int] | None:
        """lethe_change_events_total of `table` by op; None while /metrics does not answer."""
        return self.samples("lethe_change_events_total", "table", table, "op")

    def dead_letters(self, topic: str) -> dict[str, int] | None:
        """lethe_dead_letters_total of `topic` by reason; None while /metrics does not answer."""
        return self.samples("lethe_dead_letters_total", "topic", topic, "reason")

    def samples(self, name: str, label: str, value: str, by: str) -> dict[str, int] | None:
        text = self.metrics()
        if text is None:
            return None
        return {
            sample.labels[by]: int(sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and sample.labels.get(label) == value
        }


def wait_for(what: Callable[[], str], probe: Callable[[], T | None], workers: list[Worker]) -> T:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.process.poll() is not None:
                pytest.fail(
                    f"{worker.name} exited ({worker.process.returncode}) while waiting for "
                    f"{what()}\n{worker.tail()}"
                )
        result = probe()
        if result is not None:
            return result
        time.sleep(0.2)
    tails = "\n".join(worker.tail() for worker in workers)
    pytest.fail(f"timed out after {TIMEOUT_S:.0f}s waiting for {what()}\n{tails}")


def write_policy(topic: str, path: Path) -> Path:
    """config/policy.yaml with one source only, the run's table: the worker needs every
    change topic it reads to have the same partition count, and the demo's have 1."""
    document = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
    document["sources"] = {}
    document["sources"][topic.split(".", 1)[1]] = {
        "primary_key": ["id"],
        "subject": [{"kind": "customer", "column": "id"}],
        "columns": {"id": "bigint", "handled_at": "timestamptz"},
        "rules": [
            {
                "purpose": "information_requests",
                "stages": [{"action": "delete", "due": {"after": "P1Y", "from": "handled_at"}}],
            }
        ],
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    assert topic in {source.topic for source in load_policy(path).sources.values()}
    return path


def change_record(op: str, row_id: int) -> tuple[bytes, bytes]:
    """A Debezium change of row `row_id` with operation `op` (key, value), no schema."""
    row = {"id": row_id}
    before = row if op in ("u", "d") else None
    after = None if op == "d" else row
    value = {"op": op, "before": before, "after": after, "source": {"ts_ms": 1_700_000_000_000}}
    return orjson.dumps(row), orjson.dumps(value)


def produce_to_every_partition(settings: Settings, topic: str) -> None:
    producer = Producer({**quiet(settings), "linger.ms": "0"})
    failed: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    for partition, op in enumerate(OPS):
        for n in range(RECORDS_PER_PARTITION):
            key, value = change_record(op, partition * 1000 + n)
            producer.produce(
                topic, key=key, value=value, partition=partition, on_delivery=on_delivery
            )
    assert producer.flush(30) == 0, f"records to {topic} not delivered within 30s"
    assert not failed, f"produce to {topic} failed: {failed[:3]}"


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def forget(settings: Settings, app_id: str, topic: str) -> None:
    """Delete the run's consumer group, the app's internal topics and the run's topic."""
    admin = AdminClient(quiet(settings))
    doomed = [
        name
        for name in admin.list_topics(timeout=10).topics
        if name.startswith(f"{app_id}-") or name == topic
    ]
    futures = list(admin.delete_consumer_groups([app_id]).values())
    if doomed:
        futures += list(admin.delete_topics(doomed).values())
    for future in futures:
        with contextlib.suppress(KafkaException):  # already gone: nothing to keep
            future.result(timeout=30)


@pytest.fixture
def run(real_stack: Settings, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """(app id, topic, policy file) of this run; the topic has 4 partitions."""
    suffix = uuid.uuid4().hex[:8]
    app_id = f"lethe-it-rebalance-{suffix}"
    topic = f"hosting.public.lethe_it_rebalance_{suffix}"
    admin = AdminClient(quiet(real_stack))
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[
        topic
    ].result(timeout=30)
    try:
        yield app_id, topic, write_policy(topic, tmp_path / "policy.yaml")
    finally:
        forget(real_stack, app_id, topic)


@pytest.fixture
def start_worker(run: tuple[str, str, Path], tmp_path: Path) -> Iterator[Callable[[str], Worker]]:
    app_id, _, policy = run
    started: list[Worker] = []

    def start(name: str) -> Worker:
        workdir = tmp_path / name
        stall_dir = workdir / "stall"
        stall_dir.mkdir(parents=True)
        port = free_port()
        log_path = workdir / "worker.log"
        env = {
            **os.environ,
            "LETHE_DATA_DIR": str(workdir / "data"),
            "LETHE_WEB_PORT": str(port),
            "LETHE_POLICY": str(policy),
            "LETHE_IT_STALL_DIR": str(stall_dir),
            "LETHE_IT_FETCH_TIMEOUT_S": str(FETCH_TIMEOUT_S),
            "LETHE_ENFORCE": "off",  # the assign stage is under test; no table of its own
            "LETHE_IT_SEEK_PAUSE_S": str(SEEK_PAUSE_S),
            "LETHE_IT_HANDLE_DELAY_S": str(HANDLE_DELAY_S),
            "PYTHONUNBUFFERED": "1",
        }
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, str(WRAPPER), "--app-id", app_id, "-l", "info"],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(name, process, log_path, f"http://127.0.0.1:{port}/metrics", stall_dir)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            (worker.stall_dir / "resume").touch()
        for worker in started:
            stop(worker.process)


def test_a_second_worker_joining_loses_no_first_record(
    run: tuple[str, str, Path], start_worker: Callable[[str], Worker]
) -> None:
    settings = Settings.from_env()
    _, topic, _ = run
    table = topic.split(".", 1)[1]
    first = start_worker("worker-1")
    wait_for(
        lambda: "worker 1 to read its first assignment",
        lambda: True if first.resumed() >= 1 and first.counts(table) is not None else None,
        [first],
    )

    (first.stall_dir / "arm").touch()
    second = start_worker("worker-2")
    workers = [first, second]
    wait_for(
        lambda: "the rebalance that lets worker 2 in (worker 1 stalled)",
        lambda: True if (first.stall_dir / "stalled").exists() else None,
        workers,
    )
    produce_to_every_partition(settings, topic)
    time.sleep(FETCHED_WAIT_S)
    (first.stall_dir / "resume").touch()

    expected = dict.fromkeys(OPS, RECORDS_PER_PARTITION)

    def counted() -> dict[str, int]:
        total = dict.fromkeys(OPS, 0)
        for worker in workers:
            for op, count in (worker.counts(table) or {}).items():
                total[op] = total.get(op, 0) + count
        return total

    wait_for(
        lambda: (
            f"every record counted at least once: {RECORDS_PER_PARTITION} per operation "
            f"(= partition {', '.join(f'{p}: {op}' for p, op in enumerate(OPS))}); "
            f"counted {counted()} (worker 1 {first.counts(table)}, worker 2 {second.counts(table)})"
        ),
        lambda: True if all(counted()[op] >= n for op, n in expected.items()) else None,
        workers,
    )
    for worker in workers:
        dead = worker.dead_letters(topic)
        assert dead == {}, (
            f"{worker.name} sent records of {topic} to lethe.deadletter instead of processing "
            f"them (by reason: {dead}; None: /metrics did not answer)\n{worker.tail()}"
        )
    assert first.counts(table), "worker 1 kept no partition of the topic: nothing was at risk"
    assert second.resumed() >= 1, "worker 2 never read an assignment"
